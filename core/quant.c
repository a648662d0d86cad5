/*
 * quant.c - the GPTQ quantizer (scale / zero point search) and RTN.
 *
 * Everything is float32 and follows the reference line by line (see the
 * header), because GPTQ's integer codes must match the reference's: the
 * order of min/max/abs, the sym quirk for rows without negatives, the
 * all-zero-row range, and half-to-even rounding (rintf in the default
 * rounding mode).  Two layouts are served: row-major slices of W (RTN, the
 * whole-row parameters) and transposed slices (the GPTQ column loop keeps
 * W transposed so that one input column is contiguous).  The transposed
 * variant walks columns in the outer loop so the inner loop over rows
 * vectorises.
 */
#include "quant.h"

#include <float.h>
#include <string.h>

#include "mem.h"

void quant_config_default(struct quant_config *c)
{
    c->bits = 4;
    c->sym = 0;
    c->mse = 0;
    c->mse_grid = 100;
    c->mse_maxshrink = 0.8f;
    c->mse_norm = 2.4f;
}

int quant_config_check(const struct quant_config *c, gq_err *e)
{
    if (c->bits < 1 || c->bits > 8)
        return GQ_FAIL(e, GQ_EINVAL, "bits must be between 1 and 8 (got %d)", c->bits);
    if (c->mse) {
        if (c->mse_grid < 1 || c->mse_grid > 10000)
            return GQ_FAIL(e, GQ_EINVAL, "mse grid must be between 1 and 10000 (got %d)",
                           c->mse_grid);
        if (!(c->mse_maxshrink > 0.0f && c->mse_maxshrink <= 1.0f))
            return GQ_FAIL(e, GQ_EINVAL, "mse max shrink must be in (0, 1] (got %g)",
                           (double)c->mse_maxshrink);
        if (!(c->mse_norm > 0.0f && c->mse_norm <= 100.0f))
            return GQ_FAIL(e, GQ_EINVAL, "mse norm must be in (0, 100] (got %g)",
                           (double)c->mse_norm);
    }
    return 0;
}

/*
 * Scale and zero from a row's raw min and max, in the reference's order of
 * operations.  xmin <= 0 <= xmax on entry.  Returns the adjusted range in
 * *pmin / *pmax for the MSE search.
 */
static inline void params_from_range(float *scale, float *zero, float *pmin, float *pmax,
                                     float xmin, float xmax, int sym, int maxq)
{
    if (sym) {
        float a = fabsf(xmin);
        if (a > xmax)
            xmax = a;
        if (xmin < 0.0f)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    *scale = (xmax - xmin) / (float)maxq;
    *zero = sym ? (float)((maxq + 1) / 2) : gq_rintf(-xmin / *scale);
    *pmin = xmin;
    *pmax = xmax;
}

static inline float err_pow(float d, float norm)
{
    d = fabsf(d);
    if (norm == 2.0f)
        return d * d;
    return powf(d, norm);
}

void quant_find_params(float *scale, float *zero, const float *x, size_t rows, size_t cols,
                       size_t ld, const struct quant_config *c)
{
    int maxq = quant_maxq(c->bits);
    int steps = c->mse ? (int)(c->mse_maxshrink * (float)c->mse_grid) : 0;

    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ld;
        float xmin = 0.0f, xmax = 0.0f, lo, hi;

        for (size_t k = 0; k < cols; k++) {
            float v = xr[k];
            xmin = v < xmin ? v : xmin;
            xmax = v > xmax ? v : xmax;
        }
        params_from_range(&scale[r], &zero[r], &lo, &hi, xmin, xmax, c->sym, maxq);
        if (!c->mse)
            continue;
        {
            double best = INFINITY;
            for (int i = 0; i < steps; i++) {
                float p = (float)(1.0 - (double)i / (double)c->mse_grid);
                float lo1 = p * lo, hi1 = p * hi;
                float s1 = (hi1 - lo1) / (float)maxq;
                float z1 = c->sym ? zero[r] : gq_rintf(-lo1 / s1);
                double err = 0.0;
                for (size_t k = 0; k < cols; k++) {
                    int q = quant_code(xr[k], s1, z1, maxq);
                    err += err_pow(quant_dequant(q, s1, z1) - xr[k], c->mse_norm);
                }
                if (err < best) {
                    best = err;
                    scale[r] = s1;
                    zero[r] = z1;
                }
            }
        }
    }
}

void quant_find_params_t(float *scale, float *zero, const float *xt, size_t rows, size_t cols,
                         size_t ldt, const struct quant_config *c, float *work)
{
    int maxq = quant_maxq(c->bits);
    float *xmin = scale, *xmax = zero;   /* the outputs hold the raw range first */

    for (size_t r = 0; r < rows; r++)
        xmin[r] = xmax[r] = 0.0f;
    for (size_t k = 0; k < cols; k++) {
        const float *col = xt + k * ldt;
        for (size_t r = 0; r < rows; r++) {
            float v = col[r];
            xmin[r] = v < xmin[r] ? v : xmin[r];
            xmax[r] = v > xmax[r] ? v : xmax[r];
        }
    }
    if (!c->mse) {
        for (size_t r = 0; r < rows; r++) {
            float lo, hi;
            params_from_range(&scale[r], &zero[r], &lo, &hi, xmin[r], xmax[r], c->sym, maxq);
        }
        return;
    }

    /* MSE search: work = lo | hi | best error | running error. */
    {
        float *lo = work, *hi = work + rows, *best = work + 2 * rows, *err = work + 3 * rows;
        int steps = (int)(c->mse_maxshrink * (float)c->mse_grid);

        for (size_t r = 0; r < rows; r++) {
            params_from_range(&scale[r], &zero[r], &lo[r], &hi[r], xmin[r], xmax[r], c->sym,
                              maxq);
            best[r] = INFINITY;
        }
        for (int i = 0; i < steps; i++) {
            float p = (float)(1.0 - (double)i / (double)c->mse_grid);
            for (size_t r = 0; r < rows; r++)
                err[r] = 0.0f;
            for (size_t k = 0; k < cols; k++) {
                const float *col = xt + k * ldt;
                for (size_t r = 0; r < rows; r++) {
                    float lo1 = p * lo[r], hi1 = p * hi[r];
                    float s1 = (hi1 - lo1) / (float)maxq;
                    float z1 = c->sym ? (float)((maxq + 1) / 2) : gq_rintf(-lo1 / s1);
                    int q = quant_code(col[r], s1, z1, maxq);
                    err[r] += err_pow(quant_dequant(q, s1, z1) - col[r], c->mse_norm);
                }
            }
            for (size_t r = 0; r < rows; r++) {
                if (err[r] < best[r]) {
                    float lo1 = p * lo[r], hi1 = p * hi[r];
                    best[r] = err[r];
                    scale[r] = (hi1 - lo1) / (float)maxq;
                    zero[r] = c->sym ? (float)((maxq + 1) / 2) : gq_rintf(-lo1 / scale[r]);
                }
            }
        }
    }
}

int quant_rtn(uint8_t *q, float *scales, int32_t *zeros, float *wq, const float *w, size_t rows,
              size_t cols, int group_size, const struct quant_config *c, gq_err *e)
{
    size_t group, ngroups;
    float *s = NULL, *z = NULL;
    int rc, maxq;

    if ((rc = quant_config_check(c, e)) < 0)
        return rc;
    if (group_size == 0 || group_size < -1)
        return GQ_FAIL(e, GQ_EINVAL, "group_size must be -1 or positive (got %d)", group_size);
    if (rows == 0 || cols == 0)
        return GQ_FAIL(e, GQ_EINVAL, "empty matrix (%zu x %zu)", rows, cols);
    group = group_size < 0 ? cols : (size_t)group_size;
    ngroups = (cols + group - 1) / group;
    maxq = quant_maxq(c->bits);
    s = gq_mallocn(rows, sizeof(float));
    z = gq_mallocn(rows, sizeof(float));
    if (!s || !z) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for %zu row parameters", rows);
        goto done;
    }
    for (size_t g = 0; g < ngroups; g++) {
        size_t c0 = g * group, n = cols - c0 < group ? cols - c0 : group;
        quant_find_params(s, z, w + c0, rows, n, cols, c);
        for (size_t r = 0; r < rows; r++) {
            scales[g * rows + r] = s[r];
            zeros[g * rows + r] = (int32_t)z[r];
            for (size_t k = c0; k < c0 + n; k++) {
                int code = quant_code(w[r * cols + k], s[r], z[r], maxq);
                q[r * cols + k] = (uint8_t)code;
                if (wq)
                    wq[r * cols + k] = quant_dequant(code, s[r], z[r]);
            }
        }
    }
    rc = 0;
done:
    gq_free(s);
    gq_free(z);
    return rc;
}
