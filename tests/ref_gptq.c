/*
 * ref_gptq.c - the naive double-precision GPTQ oracle (see ref_gptq.h).
 *
 * DESIGN
 *
 * Written to be read next to GPTQ-NOTES.md §1.2/§1.3, one step per
 * paragraph, with no blocking, no BLAS and no cleverness:
 *
 *   find_params   range containing 0, the sym quirk, all-zero rows, the
 *                 optional MSE grid search (first strictly better p wins);
 *   factor        dead diagonals -> 1, act-order permutation, damping,
 *                 Cholesky, explicit inverse, upper Cholesky of the inverse,
 *                 retrying with more damping while a Cholesky fails;
 *   column loop   quantize column j, push its scaled error into every later
 *                 column at once; group parameters of a non-static group
 *                 come from a snapshot of W taken at the start of the
 *                 lazy block that holds the group's first column, which is
 *                 exactly what the reference's outer W holds at that time;
 *   bookkeeping   codes and g_idx back in original column order, scales
 *                 and zeros in the order the reference appends them;
 *   tie following optional (struct ref_hint): at a code within tol steps of
 *                 a rounding boundary, take the tested implementation's
 *                 code, so one float32-vs-double tie does not turn the
 *                 rest of a row into noise.
 *
 * Memory comes from plain malloc, not gq_malloc, so the allocation-failure
 * tests of core/ never see the oracle's allocations.
 */
#include "ref_gptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x rounded to float32 and back: where the reference's float32 tensors decide a tie */
static double f32(double x)
{
    return (double)(float)x;
}

double ref_rint(double x)
{
    return rint(x);
}

/*
 * The quotient is rounded to float32 before rint, like the reference's
 * float32 division: for w = -absmax in a symmetric row, w / scale is
 * -maxq / 2 = -(k + 0.5) in exact arithmetic and the float32 rounding of
 * the quotient is what decides the tie (see ref_gptq.h).
 */
int ref_code(double w, double scale, double zero, int maxq)
{
    double q = ref_rint(f32(w / scale)) + zero;
    if (!(q >= 0.0))
        return 0;
    if (q > (double)maxq)
        return maxq;
    return (int)q;
}

double ref_dequant(int q, double scale, double zero)
{
    return scale * ((double)q - zero);
}

/*
 * scale and zero of the range [xmin, xmax] (already adjusted), rounded the
 * way the reference's float32 tensors round them: the range width, the
 * scale, and the quotient -xmin / scale whose rint is the asymmetric zero
 * (see the precision note in ref_gptq.h: it decides the exact ties of
 * all-zero rows).  For float32 inputs each of these equals the float32
 * operation exactly (a double result of an operation on floats rounds to
 * the correctly rounded float).
 */
static void range_params(double *scale, double *zero, double xmin, double xmax, int sym,
                         int maxq)
{
    double s = f32(f32(xmax - xmin) / (double)maxq);
    *scale = s;
    if (sym)
        *zero = (double)((maxq + 1) / 2);
    else
        *zero = ref_rint(f32(-xmin / s));
}

void ref_find_params(double *scale, double *zero, const double *x, size_t rows, size_t cols,
                     size_t ld, const struct quant_config *c)
{
    int maxq = (1 << c->bits) - 1;

    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * ld;
        double xmin = 0.0, xmax = 0.0;

        /* 1. the range always contains 0 */
        for (size_t k = 0; k < cols; k++) {
            if (xr[k] < xmin)
                xmin = xr[k];
            if (xr[k] > xmax)
                xmax = xr[k];
        }
        /* 2. sym: widen to the absolute maximum; a row without negatives keeps xmin = 0 */
        if (c->sym) {
            if (fabs(xmin) > xmax)
                xmax = fabs(xmin);
            if (xmin < 0.0)
                xmin = -xmax;
        }
        /* 3. all-zero rows */
        if (xmin == 0.0 && xmax == 0.0) {
            xmin = -1.0;
            xmax = 1.0;
        }
        /* 4. scale and zero */
        range_params(&scale[r], &zero[r], xmin, xmax, c->sym, maxq);

        /* 5. MSE grid search: shrink both ends by p, keep the first strictly better p */
        if (c->mse) {
            int steps = (int)((double)c->mse_maxshrink * (double)c->mse_grid);
            double best = INFINITY;
            for (int i = 0; i < steps; i++) {
                /* torch multiplies a float32 tensor by the scalar p in float32 */
                double p = f32(1.0 - (double)i / (double)c->mse_grid);
                double s1, z1, err = 0.0;
                range_params(&s1, &z1, f32(p * xmin), f32(p * xmax), c->sym, maxq);
                for (size_t k = 0; k < cols; k++) {
                    double d = ref_dequant(ref_code(xr[k], s1, z1, maxq), s1, z1) - xr[k];
                    err += pow(fabs(d), (double)c->mse_norm);
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

/* ---- the inverse-Hessian factor ---------------------------------------- */

/* In place: a (n, n) -> L lower with a = L L^T, upper part zeroed. -1 if not PD. */
static int cholesky_lower(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double s = a[j * n + j];
        for (size_t k = 0; k < j; k++)
            s -= a[j * n + k] * a[j * n + k];
        if (!(s > 0.0))
            return -1;
        a[j * n + j] = sqrt(s);
        for (size_t i = j + 1; i < n; i++) {
            double t = a[i * n + j];
            for (size_t k = 0; k < j; k++)
                t -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = t / a[j * n + j];
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            a[i * n + j] = 0.0;
    return 0;
}

/* inv (n, n) = (L L^T)^-1 = L^-T L^-1 from the lower factor L; t is n*n scratch. */
static void inverse_from_cholesky(double *inv, double *t, const double *L, size_t n)
{
    /* t = L^-1 (lower), column by column by forward substitution */
    memset(t, 0, n * n * sizeof(double));
    for (size_t c = 0; c < n; c++) {
        t[c * n + c] = 1.0 / L[c * n + c];
        for (size_t i = c + 1; i < n; i++) {
            double s = 0.0;
            for (size_t k = c; k < i; k++)
                s += L[i * n + k] * t[k * n + c];
            t[i * n + c] = -s / L[i * n + i];
        }
    }
    /* inv[i][j] = sum_k t[k][i] t[k][j], k >= max(i, j) */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t k = i > j ? i : j; k < n; k++)
                s += t[k * n + i] * t[k * n + j];
            inv[i * n + j] = s;
        }
    }
}

/* a before b in act-order: diag descending, then column ascending. */
static int comes_before(const double *diag, int32_t a, int32_t b)
{
    if (diag[a] != diag[b])
        return diag[a] > diag[b];
    return a < b;
}

void ref_factor_free(struct ref_factor *f)
{
    if (!f)
        return;
    free(f->perm);
    free(f->u);
    memset(f, 0, sizeof(*f));
}

int ref_factor_new(struct ref_factor *out, const float *H, size_t cols, int desc_act,
                   double damp_percent, double damp_auto_increment)
{
    size_t n = cols;
    struct ref_factor f;
    double *diag = malloc(n * sizeof(double));
    double *h = malloc(n * n * sizeof(double));
    double *a = malloc(n * n * sizeof(double));
    double *t = malloc(n * n * sizeof(double));
    double mean = 0.0, pd = damp_percent;
    int rc = GQ_ENOMEM;

    memset(out, 0, sizeof(*out));
    memset(&f, 0, sizeof(f));
    f.n = n;
    f.u = malloc(n * n * sizeof(double));
    if (desc_act)
        f.perm = malloc(n * sizeof(int32_t));
    if (!diag || !h || !a || !t || !f.u || (desc_act && !f.perm))
        goto done;

    /* dead columns: a zero diagonal becomes 1 (their W columns are zeroed by the caller) */
    for (size_t c = 0; c < n; c++) {
        diag[c] = (double)H[c * n + c];
        if (diag[c] == 0.0)
            diag[c] = 1.0;
        mean += diag[c];
    }
    mean /= (double)n;

    /* act-order permutation, by insertion sort (n is small in tests) */
    if (desc_act) {
        for (size_t i = 0; i < n; i++) {
            int32_t c = (int32_t)i;
            size_t p = i;
            while (p > 0 && comes_before(diag, c, f.perm[p - 1])) {
                f.perm[p] = f.perm[p - 1];
                p--;
            }
            f.perm[p] = c;
        }
    }

    /* h = P H' P^T */
    for (size_t i = 0; i < n; i++) {
        size_t pi = f.perm ? (size_t)f.perm[i] : i;
        for (size_t j = 0; j < n; j++) {
            size_t pj = f.perm ? (size_t)f.perm[j] : j;
            h[i * n + j] = pi == pj ? diag[pi] : (double)H[pi * n + pj];
        }
    }

    for (;;) {
        int ok;
        memcpy(a, h, n * n * sizeof(double));
        for (size_t i = 0; i < n; i++)
            a[i * n + i] += pd * mean;
        ok = cholesky_lower(a, n) == 0;
        if (ok) {
            /* f.u temporarily holds H^-1, then its lower Cholesky factor */
            inverse_from_cholesky(f.u, t, a, n);
            ok = cholesky_lower(f.u, n) == 0;
        }
        if (ok)
            break;
        if (!(damp_auto_increment > 0.0)) {
            rc = GQ_ENUMERIC;
            goto done;
        }
        pd += damp_auto_increment;
        if (!(pd < 1.0)) {
            rc = GQ_ENUMERIC;
            goto done;
        }
        f.damp_retries++;
    }
    /* H^-1 = Lh Lh^T = U^T U with U = Lh^T */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            f.u[i * n + j] = f.u[j * n + i];
            f.u[j * n + i] = 0.0;
        }
    }
    f.damp_percent = pd;
    *out = f;
    memset(&f, 0, sizeof(f));
    rc = 0;
done:
    ref_factor_free(&f);
    free(diag);
    free(h);
    free(a);
    free(t);
    return rc;
}

/* ---- GPTQ ----------------------------------------------------------------- */

void ref_result_free(struct ref_result *r)
{
    if (!r)
        return;
    free(r->qint);
    free(r->scales);
    free(r->zeros);
    free(r->g_idx);
    free(r->wq);
    free(r->perm);
    free(r->qv);
    memset(r, 0, sizeof(*r));
}

int ref_gptq(struct ref_result *out, const float *W, size_t rows, size_t cols, const float *H,
             double nsamples, const struct gptq_params *p, const struct ref_factor *pre,
             const struct ref_hint *hint)
{
    size_t n = cols;
    int grouped = p->group_size > 0, act = p->desc_act != 0;
    int stat = grouped && p->static_groups;
    size_t group = grouped ? (size_t)p->group_size : cols;
    size_t bs = (size_t)p->block_size;
    int maxq = (1 << p->q.bits) - 1;
    struct ref_result r;
    struct ref_factor own;
    const struct ref_factor *f = pre;
    double *wd = NULL, *w = NULL, *snap = NULL, *sc = NULL, *zc = NULL, *qvp = NULL;
    uint8_t *qp = NULL;
    int rc = GQ_ENOMEM;

    memset(out, 0, sizeof(*out));
    memset(&r, 0, sizeof(r));
    memset(&own, 0, sizeof(own));
    if (group > cols)
        group = cols;   /* one group, like c / gs == 0 for every column */
    r.rows = rows;
    r.cols = cols;
    r.group = group;
    r.ngroups = (cols + group - 1) / group;

    wd = malloc(rows * n * sizeof(double));
    w = malloc(rows * n * sizeof(double));
    snap = malloc(rows * n * sizeof(double));
    sc = malloc(r.ngroups * rows * sizeof(double));
    zc = malloc(r.ngroups * rows * sizeof(double));
    qp = malloc(rows * n);
    qvp = malloc(rows * n * sizeof(double));
    r.qv = malloc(rows * n * sizeof(double));
    r.qint = malloc(rows * n);
    r.scales = malloc(r.ngroups * rows * sizeof(double));
    r.zeros = malloc(r.ngroups * rows * sizeof(int32_t));
    r.g_idx = malloc(n * sizeof(int32_t));
    r.wq = malloc(rows * n * sizeof(double));
    if (act)
        r.perm = malloc(n * sizeof(int32_t));
    if (!wd || !w || !snap || !sc || !zc || !qp || !qvp || !r.qv || !r.qint || !r.scales || !r.zeros || !r.g_idx ||
        !r.wq || (act && !r.perm))
        goto done;

    for (size_t i = 0; i < rows * n; i++)
        wd[i] = (double)W[i];

    /* (1) whole-row parameters, before dead columns are zeroed */
    if (!grouped)
        ref_find_params(sc, zc, wd, rows, n, n, &p->q);

    /* (2) dead columns: zero in W (the factor sets their diagonal to 1) */
    for (size_t c = 0; c < n; c++) {
        if (H[c * n + c] == 0.0f) {
            r.dead_columns++;
            for (size_t row = 0; row < rows; row++)
                wd[row * n + c] = 0.0;
        }
    }

    /* (3) static groups: natural groups of the dead-zeroed W, before any update */
    if (stat) {
        for (size_t g = 0; g < r.ngroups; g++) {
            size_t c0 = g * group, width = n - c0 < group ? n - c0 : group;
            ref_find_params(sc + g * rows, zc + g * rows, wd + c0, rows, width, n, &p->q);
        }
    }

    /* (4)-(6) permutation, damping and the factor U with H'^-1 = U^T U */
    if (!f) {
        rc = ref_factor_new(&own, H, n, act, p->damp_percent, p->damp_auto_increment);
        if (rc < 0)
            goto done;
        f = &own;
    }
    if (f->n != n || (f->perm != NULL) != act) {
        rc = GQ_EINVAL;
        goto done;
    }
    r.damp_percent = f->damp_percent;
    r.damp_retries = f->damp_retries;
    if (act)
        memcpy(r.perm, f->perm, n * sizeof(int32_t));

    /* w = W with columns in processing order */
    for (size_t row = 0; row < rows; row++)
        for (size_t j = 0; j < n; j++)
            w[row * n + j] = wd[row * n + (act ? (size_t)f->perm[j] : j)];

    /* (7) the column loop, with immediate full-row updates */
    for (size_t j = 0; j < n; j++) {
        const double *urow = f->u + j * n;
        double d = urow[j];
        size_t g;

        if (grouped && !stat) {
            /* the reference's outer W at the start of the block holding j */
            if (j % bs == 0)
                memcpy(snap, w, rows * n * sizeof(double));
            if (j % group == 0) {
                size_t width = n - j < group ? n - j : group;
                ref_find_params(sc + (j / group) * rows, zc + (j / group) * rows, snap + j, rows,
                                width, n, &p->q);
            }
        }
        if (!grouped)
            g = 0;
        else if (stat)
            g = (act ? (size_t)f->perm[j] : j) / group;
        else
            g = j / group;

        for (size_t row = 0; row < rows; row++) {
            double *wr = w + row * n;
            double s = sc[g * rows + row], z = zc[g * rows + row];
            int q = ref_code(wr[j], s, z, maxq);
            double e;
            qvp[row * n + j] = wr[j] / s + z;
            if (hint) {
                size_t c = act ? (size_t)f->perm[j] : j;
                int h = hint->qint[row * n + c];
                int lo = h < q ? h : q;
                double dist = fabs(qvp[row * n + j] - ((double)lo + 0.5));
                if ((h == q + 1 || h == q - 1) && dist <= hint->tol) {
                    q = h;
                    r.ties_followed++;
                    if (dist > r.max_tie_dist)
                        r.max_tie_dist = dist;
                }
            }
            e = (wr[j] - ref_dequant(q, s, z)) / d;
            qp[row * n + j] = (uint8_t)q;
            r.loss += e * e / 2.0;
            for (size_t k = j + 1; k < n; k++)
                wr[k] -= e * urow[k];
        }
    }

    /* (8) original column order */
    for (size_t j = 0; j < n; j++) {
        size_t c = act ? (size_t)f->perm[j] : j;
        if (!grouped)
            r.g_idx[c] = 0;
        else if (act && !stat)
            r.g_idx[c] = (int32_t)(j / group);
        else
            r.g_idx[c] = (int32_t)(c / group);
        for (size_t row = 0; row < rows; row++) {
            r.qint[row * n + c] = qp[row * n + j];
            r.qv[row * n + c] = qvp[row * n + j];
        }
    }
    for (size_t i = 0; i < r.ngroups * rows; i++) {
        r.scales[i] = sc[i];
        r.zeros[i] = (int32_t)zc[i];
    }
    for (size_t row = 0; row < rows; row++) {
        for (size_t c = 0; c < n; c++) {
            size_t gi = (size_t)r.g_idx[c] * rows + row;
            r.wq[row * n + c] = ref_dequant(r.qint[row * n + c], sc[gi], zc[gi]);
        }
    }
    r.avg_loss = nsamples > 0.0 ? r.loss / nsamples : r.loss;
    *out = r;
    memset(&r, 0, sizeof(r));
    rc = 0;
done:
    ref_result_free(&r);
    ref_factor_free(&own);
    free(wd);
    free(w);
    free(snap);
    free(sc);
    free(zc);
    free(qp);
    free(qvp);
    return rc;
}

void ref_output_error(double *err, double *ref, const float *W, const float *Wq, size_t rows,
                      size_t cols, const float *H)
{
    double se = 0.0, sr = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *w = W + r * cols, *wq = Wq + r * cols;
        for (size_t i = 0; i < cols; i++) {
            double di = (double)w[i] - (double)wq[i];
            for (size_t j = 0; j < cols; j++) {
                double h = (double)H[i * cols + j];
                se += di * h * ((double)w[j] - (double)wq[j]);
                sr += (double)w[i] * h * (double)w[j];
            }
        }
    }
    *err = se;
    *ref = sr;
}
