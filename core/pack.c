/*
 * pack.c - GPTQ checkpoint packing: codes -> qweight, zero points -> qzeros,
 * and the exact inverses (GPTQ-NOTES.md §2.3-2.5).
 *
 * DESIGN.  Both tensors are made of the same unit: 32 consecutive values of
 * b bits, written LSB-first as one 32*b-bit stream into b consecutive 32-bit
 * words (value i at stream bit b*i).  For qweight the 32 values are 32
 * consecutive input columns of one row of q, so one row of q gives one
 * column of qweight; for qzeros they are 32 consecutive output rows of one
 * group, and the b words are adjacent in memory.  pack32()/unpack32() do
 * one unit; the rest is index arithmetic (all size_t).
 *
 * pack32() has a straight loop per bit width (2, 4, 8: a fixed number of
 * whole values per word, no value straddles; 3: v0..v21 go into one 64-bit
 * word that becomes w0 and w1, so v10 straddles for free, and v21..v31 into
 * w2, with v21 split by hand: the AutoGPTQ layout).  The width is a
 * compile-time constant inside each specialised driver, so the compiler
 * unrolls the loops into plain shifts and ORs; nothing loops per bit.
 *
 * qweight is a transpose as well as a packing: q is (rows, cols) row-major
 * and qweight is (cols*b/32, rows).  The driver walks 16 rows of q at a time
 * and, for each unit of 32 columns, writes b runs of 16 adjacent words (one
 * 64-byte line each), so both the reads and the writes stay in cache.
 *
 * Codes are validated before anything is written (an OR over the whole
 * array, which vectorises; only on failure is the offending code located
 * for the message), so a rejected call leaves qweight untouched.  Zero
 * points outside [0, 2^b - 1] are rejected the same way: in v1 a zero of
 * 2^b would be stored as 2^b - 1 and silently read back as 0.
 *
 * Zero points in "gptq" (v1) are stored as (zero - 1) mod 2^b field by
 * field; doing it per value before packing means a zero of 0 becomes the
 * field 2^b - 1 and never borrows from its neighbour, unlike subtracting
 * 0x11111111 from the packed word.
 */
#include "pack.h"

#include <string.h>

#define UNIT 32    /* values per packing unit (b words) */
#define TILE 16    /* rows of q per qweight tile; divides every valid rows */

const char *pack_format_name(pack_format f)
{
    switch (f) {
    case PACK_GPTQ: return "gptq";
    case PACK_GPTQ_V2: return "gptq_v2";
    }
    return "unknown";
}

int pack_format_parse(pack_format *out, const char *name, gq_err *e)
{
    GQ_ASSERT_ARG(e, out != NULL);
    if (name && strcmp(name, "gptq") == 0) {
        *out = PACK_GPTQ;
        return 0;
    }
    if (name && strcmp(name, "gptq_v2") == 0) {
        *out = PACK_GPTQ_V2;
        return 0;
    }
    return GQ_FAIL(e, GQ_EINVAL, "checkpoint format must be \"gptq\" or \"gptq_v2\" (got \"%.64s\")",
                   name ? name : "(null)");
}

static int check_bits(int bits, gq_err *e)
{
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return GQ_FAIL(e, GQ_EINVAL, "bits must be 2, 3, 4 or 8 (got %d)", bits);
    return 0;
}

static int check_rows(size_t rows, gq_err *e)
{
    if (rows == 0 || rows % 32 != 0)
        return GQ_FAIL(e, GQ_EINVAL,
                       "rows (out features) must be a positive multiple of 32 (got %zu): "
                       "loaders size qzeros as out/32*bits", rows);
    return 0;
}

static int check_cols(size_t cols, gq_err *e)
{
    if (cols == 0 || cols % 32 != 0)
        return GQ_FAIL(e, GQ_EINVAL,
                       "cols (in features) must be a positive multiple of 32 (got %zu): "
                       "loaders size qweight as in/32*bits", cols);
    return 0;
}

static int check_format(pack_format fmt, gq_err *e)
{
    if (fmt != PACK_GPTQ && fmt != PACK_GPTQ_V2)
        return GQ_FAIL(e, GQ_EINVAL, "pack format must be gptq (1) or gptq_v2 (2) (got %d)",
                       (int)fmt);
    return 0;
}

static int check_ngroups(size_t ngroups, gq_err *e)
{
    if (ngroups == 0)
        return GQ_FAIL(e, GQ_EINVAL, "ngroups must be at least 1 (got 0)");
    return 0;
}

int pack_check(size_t rows, size_t cols, int bits, int group_size, gq_err *e)
{
    int rc;

    if ((rc = check_bits(bits, e)) < 0 || (rc = check_rows(rows, e)) < 0 ||
        (rc = check_cols(cols, e)) < 0)
        return rc;
    if (group_size == 0 || group_size < -1)
        return GQ_FAIL(e, GQ_EINVAL, "group_size must be -1 (one group) or positive (got %d)",
                       group_size);
    if (group_size > 0 && cols % (size_t)group_size != 0)
        return GQ_FAIL(e, GQ_EINVAL,
                       "cols (in features) must be a multiple of group_size (got cols %zu, "
                       "group_size %d): vllm rejects a partial last group", cols, group_size);
    return 0;
}

size_t pack_qweight_rows(size_t cols, int bits)
{
    return cols * (size_t)bits / 32;
}

size_t pack_qzeros_cols(size_t rows, int bits)
{
    return rows * (size_t)bits / 32;
}

/*
 * One unit: 32 values v (each < 2^bits) -> bits words w, LSB-first.
 * bits is a constant wherever this is inlined.
 */
static inline void pack32(uint32_t *w, const uint8_t *v, const int bits)
{
    if (bits == 3) {
        /* Stream bits 0..63 in lo (w0, w1), 64..95 in hi (w2); v21 sits at
         * bit 63 and straddles. */
        uint64_t lo = 0;
        uint32_t hi = (uint32_t)v[21] >> 1;
        for (unsigned i = 0; i < 22; i++)
            lo |= (uint64_t)v[i] << (3 * i);   /* v21: only its bit 0 lands */
        for (unsigned i = 22; i < UNIT; i++)
            hi |= (uint32_t)v[i] << (3 * i - 64);
        w[0] = (uint32_t)lo;
        w[1] = (uint32_t)(lo >> 32);
        w[2] = hi;
        return;
    }
    {
        const unsigned per = 32 / (unsigned)bits;   /* whole values per word */
        for (unsigned j = 0; j < (unsigned)bits; j++) {
            uint32_t x = 0;
            for (unsigned i = 0; i < per; i++)
                x |= (uint32_t)v[j * per + i] << (i * (unsigned)bits);
            w[j] = x;
        }
    }
}

/* The inverse of pack32(): bits words w -> 32 values v. */
static inline void unpack32(uint8_t *v, const uint32_t *w, const int bits)
{
    const uint32_t mask = (1u << bits) - 1;

    if (bits == 3) {
        uint64_t lo = (uint64_t)w[0] | (uint64_t)w[1] << 32;
        for (unsigned i = 0; i < 21; i++)
            v[i] = (uint8_t)((lo >> (3 * i)) & mask);
        v[21] = (uint8_t)((lo >> 63) | ((w[2] & 3u) << 1));
        for (unsigned i = 22; i < UNIT; i++)
            v[i] = (uint8_t)((w[2] >> (3 * i - 64)) & mask);
        return;
    }
    {
        const unsigned per = 32 / (unsigned)bits;
        for (unsigned j = 0; j < (unsigned)bits; j++)
            for (unsigned i = 0; i < per; i++)
                v[j * per + i] = (uint8_t)((w[j] >> (i * (unsigned)bits)) & mask);
    }
}

/*
 * qw (cols*bits/32, rows) from q (rows, cols); shapes already checked.
 * Unit kb of row n is q[n*cols + 32*kb ...]; its word j goes to
 * qw[(kb*bits + j)*rows + n].
 */
static inline void qweight_pack(uint32_t *qw, const uint8_t *q, size_t rows, size_t cols,
                                const int bits)
{
    size_t nunits = cols / UNIT;

    for (size_t n0 = 0; n0 < rows; n0 += TILE)
        for (size_t kb = 0; kb < nunits; kb++) {
            uint32_t *dst = qw + kb * (size_t)bits * rows + n0;
            const uint8_t *src = q + n0 * cols + kb * UNIT;
            for (size_t t = 0; t < TILE; t++) {
                uint32_t w[8];
                pack32(w, src + t * cols, bits);
                for (size_t j = 0; j < (size_t)bits; j++)
                    dst[j * rows + t] = w[j];
            }
        }
}

static inline void qweight_unpack(uint8_t *q, const uint32_t *qw, size_t rows, size_t cols,
                                  const int bits)
{
    size_t nunits = cols / UNIT;

    for (size_t n0 = 0; n0 < rows; n0 += TILE)
        for (size_t kb = 0; kb < nunits; kb++) {
            const uint32_t *src = qw + kb * (size_t)bits * rows + n0;
            uint8_t *dst = q + n0 * cols + kb * UNIT;
            for (size_t t = 0; t < TILE; t++) {
                uint32_t w[8];
                for (size_t j = 0; j < (size_t)bits; j++)
                    w[j] = src[j * rows + t];
                unpack32(dst + t * cols, w, bits);
            }
        }
}

int pack_qweight(int32_t *qweight, const uint8_t *q, size_t rows, size_t cols, int bits,
                 gq_err *e)
{
    /* int32 and uint32 may alias; the words are uint32 bit patterns. */
    uint32_t *qw = (uint32_t *)qweight;
    int rc;

    GQ_ASSERT_ARG(e, qweight != NULL && q != NULL);
    if ((rc = check_bits(bits, e)) < 0 || (rc = check_rows(rows, e)) < 0 ||
        (rc = check_cols(cols, e)) < 0)
        return rc;

    if (bits < 8) {
        const uint8_t maxq = (uint8_t)((1u << bits) - 1);
        size_t n = rows * cols;
        uint8_t any = 0;
        for (size_t i = 0; i < n; i++)
            any |= q[i];
        if (any > maxq)   /* some code has a bit at or above bits: find it */
            for (size_t i = 0; i < n; i++)
                if (q[i] > maxq)
                    return GQ_FAIL(e, GQ_EINVAL,
                                   "code %u at (%zu, %zu) does not fit in %d bits (max %u)",
                                   (unsigned)q[i], i / cols, i % cols, bits, (unsigned)maxq);
    }

    switch (bits) {
    case 2: qweight_pack(qw, q, rows, cols, 2); break;
    case 3: qweight_pack(qw, q, rows, cols, 3); break;
    case 4: qweight_pack(qw, q, rows, cols, 4); break;
    default: qweight_pack(qw, q, rows, cols, 8); break;
    }
    return 0;
}

int unpack_qweight(uint8_t *q, const int32_t *qweight, size_t rows, size_t cols, int bits,
                   gq_err *e)
{
    const uint32_t *qw = (const uint32_t *)qweight;
    int rc;

    GQ_ASSERT_ARG(e, q != NULL && qweight != NULL);
    if ((rc = check_bits(bits, e)) < 0 || (rc = check_rows(rows, e)) < 0 ||
        (rc = check_cols(cols, e)) < 0)
        return rc;

    switch (bits) {
    case 2: qweight_unpack(q, qw, rows, cols, 2); break;
    case 3: qweight_unpack(q, qw, rows, cols, 3); break;
    case 4: qweight_unpack(q, qw, rows, cols, 4); break;
    default: qweight_unpack(q, qw, rows, cols, 8); break;
    }
    return 0;
}

/*
 * qzeros (ngroups, rows*bits/32) from zeros (ngroups, rows).  Small (one row
 * per group), so one unit at a time through a byte buffer, width as a
 * variable.
 */
int pack_qzeros(int32_t *qzeros, const int32_t *zeros, size_t ngroups, size_t rows, int bits,
                pack_format fmt, gq_err *e)
{
    uint32_t *qz = (uint32_t *)qzeros;
    size_t nunits = rows / UNIT, qcols;
    int32_t maxq;
    int rc;

    GQ_ASSERT_ARG(e, qzeros != NULL && zeros != NULL);
    if ((rc = check_bits(bits, e)) < 0 || (rc = check_rows(rows, e)) < 0 ||
        (rc = check_ngroups(ngroups, e)) < 0 || (rc = check_format(fmt, e)) < 0)
        return rc;
    maxq = (int32_t)((1u << bits) - 1);
    qcols = pack_qzeros_cols(rows, bits);

    /* Validate everything first, so a rejected call writes nothing. */
    for (size_t i = 0; i < ngroups * rows; i++)
        if (zeros[i] < 0 || zeros[i] > maxq)
            return GQ_FAIL(e, GQ_EINVAL,
                           "zero point %d at (group %zu, row %zu) is outside [0, %d] for %d bits",
                           (int)zeros[i], i / rows, i % rows, (int)maxq, bits);

    for (size_t g = 0; g < ngroups; g++)
        for (size_t u = 0; u < nunits; u++) {
            const int32_t *z = zeros + g * rows + u * UNIT;
            uint8_t v[UNIT];
            for (size_t i = 0; i < UNIT; i++)
                /* v1: (zero - 1) mod 2^bits, within the field */
                v[i] = (uint8_t)(fmt == PACK_GPTQ ? (z[i] + maxq) & maxq : z[i]);
            pack32(qz + g * qcols + u * (size_t)bits, v, bits);
        }
    return 0;
}

int unpack_qzeros(int32_t *zeros, const int32_t *qzeros, size_t ngroups, size_t rows, int bits,
                  pack_format fmt, gq_err *e)
{
    const uint32_t *qz = (const uint32_t *)qzeros;
    size_t nunits = rows / UNIT, qcols;
    int32_t maxq;
    int rc;

    GQ_ASSERT_ARG(e, zeros != NULL && qzeros != NULL);
    if ((rc = check_bits(bits, e)) < 0 || (rc = check_rows(rows, e)) < 0 ||
        (rc = check_ngroups(ngroups, e)) < 0 || (rc = check_format(fmt, e)) < 0)
        return rc;
    maxq = (int32_t)((1u << bits) - 1);
    qcols = pack_qzeros_cols(rows, bits);

    for (size_t g = 0; g < ngroups; g++)
        for (size_t u = 0; u < nunits; u++) {
            int32_t *z = zeros + g * rows + u * UNIT;
            uint8_t v[UNIT];
            unpack32(v, qz + g * qcols + u * (size_t)bits, bits);
            for (size_t i = 0; i < UNIT; i++)
                /* v1: loaders add 1 back, modulo 2^bits */
                z[i] = fmt == PACK_GPTQ ? (v[i] + 1) & maxq : v[i];
        }
    return 0;
}
