/*
 * quant.h - the GPTQ quantizer: per-output-row scale and zero point over a
 * group of input columns, exactly as the reference computes them
 * (IST-DASLab gptq quant.py, AutoGPTQ quantizer.py; GPTQ-NOTES.md §1.2).
 *
 *   xmin = min(rowmin, 0), xmax = max(rowmax, 0)      (range contains 0)
 *   sym:  xmax = max(|xmin|, xmax); xmin = -xmax only where xmin < 0
 *   all-zero row: xmin = -1, xmax = +1
 *   scale = (xmax - xmin) / maxq
 *   zero  = sym ? (maxq + 1) / 2 : rint(-xmin / scale)
 *   q     = clamp(rint(w / scale) + zero, 0, maxq),  w^ = scale * (q - zero)
 *
 * rint() is round-half-to-even (torch.round), never round().  All arithmetic
 * is float32, like the reference.  An optional MSE grid search shrinks the
 * range by p = 1 - i/grid for i < maxshrink*grid and keeps, per row, the
 * first p with the smallest sum |w^ - w|^norm.
 */
#ifndef GQ_QUANT_H
#define GQ_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct quant_config {
    int bits;            /* 1..8 in memory; packing accepts 2, 3, 4, 8 */
    int sym;             /* 1 = symmetric (constant zero (maxq+1)/2) */
    int mse;             /* 1 = grid search of the clipping range */
    int mse_grid;        /* reference default 100 */
    float mse_maxshrink; /* reference default 0.8 */
    float mse_norm;      /* reference default 2.4 */
};

/* 4-bit, asymmetric, no MSE search, grid 100 / 0.8 / 2.4. */
void quant_config_default(struct quant_config *c);

/* 0, or GQ_EINVAL naming the bad field. */
int quant_config_check(const struct quant_config *c, gq_err *e);

static inline int quant_maxq(int bits)
{
    return (1 << bits) - 1;
}

/*
 * rintf() without a libm call, so loops over it vectorise on any x86-64:
 * for |x| < 2^22, adding and subtracting 1.5 * 2^23 rounds x to an integer
 * half-to-even in the default rounding mode (the sum lands where the ulp is
 * 1, and 1.5 * 2^23 is even); larger |x| are integers already.  Identical
 * to rintf() for every float except that -0.5 < x < 0 gives +0.0.
 */
static inline float gq_rintf(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float r = (x + magic) - magic;
    return fabsf(x) < 4194304.0f ? r : x;
}

/* The integer code of w: clamp(rint(w / scale) + zero, 0, maxq). */
static inline int quant_code(float w, float scale, float zero, int maxq)
{
    float q = gq_rintf(w / scale) + zero;
    if (!(q >= 0.0f))
        return 0;
    if (q > (float)maxq)
        return maxq;
    return (int)q;
}

static inline float quant_dequant(int q, float scale, float zero)
{
    return scale * ((float)q - zero);
}

/*
 * Parameters of every row r < rows over the slice x[r*ld + c], c < cols
 * (row-major, W's own layout).  scale[rows], zero[rows] are written; zero
 * holds an integer value in [0, maxq].
 */
void quant_find_params(float *scale, float *zero, const float *x, size_t rows, size_t cols,
                       size_t ld, const struct quant_config *c);

/*
 * The same over a transposed slice: xt[c*ldt + r] is W[r][c] (the layout
 * the GPTQ column loop keeps).  Needs no scratch memory when mse is off;
 * with mse it needs work[4*rows] floats (pass NULL otherwise).
 */
void quant_find_params_t(float *scale, float *zero, const float *xt, size_t rows, size_t cols,
                         size_t ldt, const struct quant_config *c, float *work);

/*
 * Round-to-nearest of a whole matrix w (rows, cols) row-major, the
 * baseline GPTQ is measured against.  group_size -1 means one group per
 * row.  Outputs: q (rows, cols) codes; scales and zeros (ngroups, rows),
 * ngroups = ceil(cols / group); wq (rows, cols) dequantized, may be NULL.
 */
int quant_rtn(uint8_t *q, float *scales, int32_t *zeros, float *wq, const float *w, size_t rows,
              size_t cols, int group_size, const struct quant_config *c, gq_err *e);

#endif
