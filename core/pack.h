/*
 * pack.h - the GPTQ checkpoint tensors (GPTQ-NOTES.md §2).
 *
 * For a Linear with out = rows and in = cols, bits b in {2, 3, 4, 8}:
 *   qweight int32 [in*b/32, out]   codes packed along the input dim
 *   qzeros  int32 [G, out*b/32]    zero points packed along the output dim
 *   scales  fp16  [G, out]
 *   g_idx   int32 [in]
 * Values are packed LSB-first as one bit stream per 32 values: 32 values
 * of b bits fill exactly b words, value i at stream bit b*i.  For b = 2, 4,
 * 8 no value straddles a word; for b = 3 this is the exact AutoGPTQ 3-bit
 * layout (v10 and v21 straddle).  Words are stored as int32 holding the
 * uint32 bit pattern.
 *
 * Zero points: "gptq" (v1) stores (zero - 1) mod 2^b field by field, with
 * no borrow into neighbouring fields (loaders add 1 back); "gptq_v2" stores
 * zeros as they are.
 *
 * Packing takes the integer codes the algorithm produced; nothing here
 * re-derives integers from floats.
 */
#ifndef GQ_PACK_H
#define GQ_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum { PACK_GPTQ = 1, PACK_GPTQ_V2 = 2 } pack_format;

/* "gptq" / "gptq_v2" <-> pack_format ("unknown" for any other value);
 * parse returns 0 or GQ_EINVAL. */
const char *pack_format_name(pack_format f);
int pack_format_parse(pack_format *out, const char *name, gq_err *e);

/*
 * Whether a Linear of this shape can be written in the GPTQ format the
 * loaders read: bits 2, 3, 4 or 8; in and out multiples of 32 (AutoGPTQ and
 * GPTQModel size qweight as in/32*bits and qzeros as out/32*bits); and, when
 * grouped, in a multiple of group_size (vLLM's requirement).  GQ_EINVAL
 * with a message saying which rule failed.
 */
int pack_check(size_t rows, size_t cols, int bits, int group_size, gq_err *e);

/* Element counts of the packed tensors. */
size_t pack_qweight_rows(size_t cols, int bits);   /* cols * bits / 32 */
size_t pack_qzeros_cols(size_t rows, int bits);    /* rows * bits / 32 */

/*
 * qweight (cols*bits/32, rows) from codes q (rows, cols) row-major.
 * Codes above 2^bits - 1 give GQ_EINVAL.
 */
int pack_qweight(int32_t *qweight, const uint8_t *q, size_t rows, size_t cols, int bits,
                 gq_err *e);
/* The inverse: q (rows, cols) from qweight. */
int unpack_qweight(uint8_t *q, const int32_t *qweight, size_t rows, size_t cols, int bits,
                   gq_err *e);

/*
 * qzeros (ngroups, rows*bits/32) from zeros (ngroups, rows), in format fmt.
 * Zero points outside [0, 2^bits - 1] give GQ_EINVAL (in v1 such a value
 * could not be told apart after the modular -1).  Like every function here
 * it applies pack_check's shape rules and refuses empty shapes.
 */
int pack_qzeros(int32_t *qzeros, const int32_t *zeros, size_t ngroups, size_t rows, int bits,
                pack_format fmt, gq_err *e);
/* The inverse: the zero points a loader uses (v1: stored + 1 mod 2^bits). */
int unpack_qzeros(int32_t *zeros, const int32_t *qzeros, size_t ngroups, size_t rows, int bits,
                  pack_format fmt, gq_err *e);

#endif
