/*
 * gptq.c - GPTQ for one Linear layer.
 *
 * DESIGN
 *
 * Hessian.  The accumulator keeps the plain sum S = sum_t x_t x_t^T in
 * float32 (upper triangle, one SYRK per batch; masked tokens are gathered
 * out first) and counts sequences.  gptq_hessian_matrix() scales by 2/N and
 * mirrors the triangle once.  This equals the reference's running average
 * up to float rounding, and GPTQ is invariant to the scale of H anyway
 * except for the constant 1 put on dead diagonals, which sees the same
 * 2/N normalisation as the reference.
 *
 * Solve.  The reference factors the damped H with potrf, inverts it with
 * potri and factors the inverse again (upper) to get U with H^-1 = U^T U:
 * n^3/3 + 2n^3/3 + n^3/3 flops.  The same U is the inverse of the upper
 * triangular R in the "reverse" Cholesky H = R R^T, and R comes from an
 * ordinary Cholesky of H with rows and columns reversed: if J H J = L L^T
 * then R = J L J.  So: gather J P H P^T J (P = act-order permutation) into
 * a buffer, spotrf (lower), strtri (lower) -> L^-1, and U = J L^-1 J read
 * back transposed into row-major order.  n^3/3 + n^3/3 flops, half of the
 * reference route.
 *
 * Column loop.  W is kept transposed (Wt: cols x rows) so one input column
 * is one contiguous vector.  Columns are processed in blocks of block_size;
 * inside a block each column is quantized and its scaled error is pushed
 * into the block's remaining columns (rank-1 updates on a copy W1); the
 * columns right of the block get all of the block's errors at once with one
 * GEMM.  Rows are independent in GPTQ, so the intra-block work runs over
 * row tiles that keep W1 in cache.  Group parameters are taken, like the
 * reference, from the outer Wt, which has not yet seen the current block's
 * updates: a group that starts inside a block uses partially stale weights
 * (bit-parity with the reference; irrelevant when group % block == 0).
 *
 * Act-order tie rule: columns are sorted by diag(H) descending, and equal
 * diagonals (dead columns all tie at 1) keep ascending column order.
 */
#include "gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"

/*
 * Inside a lazy block, columns go in sub-blocks of SUB_BLOCK: rank-1 updates
 * within the sub-block, one GEMM into the rest of the block after it (the
 * same arithmetic as the reference, with most of it in BLAS).  Rows go in
 * tiles of ROW_TILE so a sub-block's rows stay in cache.
 */
#define SUB_BLOCK 16
#define ROW_TILE 512

void gptq_params_default(struct gptq_params *p)
{
    quant_config_default(&p->q);
    p->group_size = 128;
    p->desc_act = 0;
    p->static_groups = 0;
    p->block_size = 128;
    p->damp_percent = 0.01;
    p->damp_auto_increment = 0.0025;
    p->metrics = 1;
}

int gptq_params_check(const struct gptq_params *p, gq_err *e)
{
    int rc;
    if ((rc = quant_config_check(&p->q, e)) < 0)
        return rc;
    if (p->group_size == 0 || p->group_size < -1)
        return GQ_FAIL(e, GQ_EINVAL, "group_size must be -1 or positive (got %d)", p->group_size);
    if (p->block_size < 1 || p->block_size > 65536)
        return GQ_FAIL(e, GQ_EINVAL, "block_size must be between 1 and 65536 (got %d)",
                       p->block_size);
    if (!(p->damp_percent > 0.0 && p->damp_percent < 1.0))
        return GQ_FAIL(e, GQ_EINVAL, "damp_percent must be in (0, 1) (got %g)", p->damp_percent);
    if (!(p->damp_auto_increment >= 0.0 && p->damp_auto_increment < 1.0))
        return GQ_FAIL(e, GQ_EINVAL, "damp_auto_increment must be in [0, 1) (got %g)",
                       p->damp_auto_increment);
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int all_finite(const float *x, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * 0.0f;   /* stays 0 unless some x[i] is Inf or NaN */
    return acc == 0.0f;
}

/* ---- Hessian ----------------------------------------------------------- */

struct gptq_hessian {
    size_t cols;
    size_t nsamples;
    size_t ntokens;
    int finished;
    float *h;         /* (cols, cols) */
    float *gather;    /* kept rows of a masked batch */
    size_t gather_rows;
};

int gptq_hessian_new(gptq_hessian **out, size_t cols, gq_err *e)
{
    gptq_hessian *h;

    if (cols == 0 || cols > (size_t)INT_MAX)
        return GQ_FAIL(e, GQ_EINVAL, "hessian width must be between 1 and %d (got %zu)", INT_MAX,
                       cols);
    if (cols > SIZE_MAX / sizeof(float) / cols)
        return GQ_FAIL(e, GQ_ENOMEM, "hessian of width %zu is too large", cols);
    h = gq_calloc(1, sizeof(*h));
    if (!h)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a hessian");
    h->cols = cols;
    h->h = gq_malloc_aligned(cols * cols * sizeof(float));
    if (!h->h) {
        gq_free(h);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a %zu x %zu hessian", cols, cols);
    }
    memset(h->h, 0, cols * cols * sizeof(float));
    *out = h;
    return 0;
}

void gptq_hessian_free(gptq_hessian *h)
{
    if (!h)
        return;
    gq_free(h->h);
    gq_free(h->gather);
    gq_free(h);
}

size_t gptq_hessian_cols(const gptq_hessian *h)
{
    return h->cols;
}

size_t gptq_hessian_nsamples(const gptq_hessian *h)
{
    return h->nsamples;
}

size_t gptq_hessian_ntokens(const gptq_hessian *h)
{
    return h->ntokens;
}

/* S += x^T x over tokens rows of x, in chunks BLAS's int can index. */
static void syrk_add(float *s, const float *x, size_t tokens, size_t ldx, size_t cols)
{
    const size_t chunk = (size_t)1 << 20;
    for (size_t t0 = 0; t0 < tokens; t0 += chunk) {
        size_t k = tokens - t0 < chunk ? tokens - t0 : chunk;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)k, 1.0f,
                    x + t0 * ldx, (int)ldx, 1.0f, s, (int)cols);
    }
}

int gptq_hessian_add(gptq_hessian *h, const float *x, size_t tokens, size_t ldx,
                     const unsigned char *mask, size_t nseq, gq_err *e)
{
    size_t kept = tokens;

    if (h->finished)
        return GQ_FAIL(e, GQ_EINVAL, "hessian already finished; cannot add more inputs");
    if (ldx < h->cols || ldx > (size_t)INT_MAX)
        return GQ_FAIL(e, GQ_EINVAL, "input row stride %zu is invalid for width %zu", ldx,
                       h->cols);
    for (size_t t = 0; t < tokens; t++) {
        /* only the cols values of kept rows matter: padding rows and row strides may hold anything */
        if ((!mask || mask[t]) && !all_finite(x + t * ldx, h->cols))
            return GQ_FAIL(e, GQ_ENUMERIC, "calibration inputs contain NaN or Inf (token %zu)", t);
    }
    if (mask) {
        const size_t max_gather = 4096;
        kept = 0;
        for (size_t t = 0; t < tokens; t++)
            kept += mask[t] != 0;
        if (kept && kept < tokens) {
            size_t rows = kept < max_gather ? kept : max_gather;
            if (h->gather_rows < rows) {
                float *g = gq_mallocn(rows * h->cols, sizeof(float));
                if (!g)
                    return GQ_FAIL(e, GQ_ENOMEM, "out of memory gathering %zu masked tokens",
                                   rows);
                gq_free(h->gather);
                h->gather = g;
                h->gather_rows = rows;
            }
            {
                size_t n = 0;
                for (size_t t = 0; t < tokens; t++) {
                    if (!mask[t])
                        continue;
                    memcpy(h->gather + n * h->cols, x + t * ldx, h->cols * sizeof(float));
                    if (++n == rows) {
                        syrk_add(h->h, h->gather, n, h->cols, h->cols);
                        n = 0;
                    }
                }
                if (n)
                    syrk_add(h->h, h->gather, n, h->cols, h->cols);
            }
            goto counted;
        }
    }
    if (kept)
        syrk_add(h->h, x, tokens, ldx, h->cols);
counted:
    h->nsamples += nseq;
    h->ntokens += kept;
    return 0;
}

int gptq_hessian_matrix(const float **out, gptq_hessian *h, gq_err *e)
{
    size_t n = h->cols;

    if (!h->finished) {
        float scale;
        if (h->nsamples == 0)
            return GQ_FAIL(e, GQ_EINVAL, "hessian has no calibration samples");
        scale = (float)(2.0 / (double)h->nsamples);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = i; j < n; j++) {
                float v = h->h[i * n + j] * scale;
                h->h[i * n + j] = v;
                h->h[j * n + i] = v;
            }
        }
        h->finished = 1;
    }
    *out = h->h;
    return 0;
}

/* ---- the solve ----------------------------------------------------------- */

void gptq_result_free(struct gptq_result *r)
{
    if (!r)
        return;
    gq_free(r->qint);
    gq_free(r->scales);
    gq_free(r->zeros);
    gq_free(r->g_idx);
    gq_free(r->wq);
    gq_free(r->perm);
    memset(r, 0, sizeof(*r));
}

/* out (cols, rows) = in (rows, cols)^T, in cache-sized tiles. */
static void transpose(float *out, const float *in, size_t rows, size_t cols)
{
    const size_t T = 32;
    for (size_t r0 = 0; r0 < rows; r0 += T) {
        size_t r1 = r0 + T < rows ? r0 + T : rows;
        for (size_t c0 = 0; c0 < cols; c0 += T) {
            size_t c1 = c0 + T < cols ? c0 + T : cols;
            for (size_t r = r0; r < r1; r++)
                for (size_t c = c0; c < c1; c++)
                    out[c * rows + r] = in[r * cols + c];
        }
    }
}

/*
 * Act-order: perm[p] = the column processed at position p, by diag
 * descending, then column ascending.  Sorting (diag, column) pairs keeps
 * qsort's comparator free of global state.
 */
struct diag_key {
    float d;
    int32_t c;
};

static int cmp_key(const void *a, const void *b)
{
    const struct diag_key *x = a, *y = b;
    if (x->d != y->d)
        return x->d > y->d ? -1 : 1;
    return (x->c > y->c) - (x->c < y->c);
}

static int act_order(int32_t *perm, const float *diag, size_t n, gq_err *e)
{
    struct diag_key *k = gq_mallocn(n, sizeof(*k));
    if (!k)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory sorting %zu columns", n);
    for (size_t i = 0; i < n; i++) {
        k[i].d = diag[i];
        k[i].c = (int32_t)i;
    }
    qsort(k, n, sizeof(*k), cmp_key);
    for (size_t i = 0; i < n; i++)
        perm[i] = k[i].c;
    gq_free(k);
    return 0;
}

/* Rows of m (n rows of len floats) become m'[p] = m[perm[p]], in place. */
static int permute_rows(float *m, const int32_t *perm, size_t n, size_t len, gq_err *e)
{
    float *tmp = gq_mallocn(len, sizeof(float));
    unsigned char *seen = gq_calloc(n, 1);
    int rc = 0;

    if (!tmp || !seen) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory permuting %zu columns", n);
        goto done;
    }
    for (size_t s = 0; s < n; s++) {
        size_t p = s;
        if (seen[s] || (size_t)perm[s] == s)
            continue;
        memcpy(tmp, m + s * len, len * sizeof(float));
        for (;;) {
            size_t src = (size_t)perm[p];
            seen[p] = 1;
            if (src == s) {
                memcpy(m + p * len, tmp, len * sizeof(float));
                break;
            }
            memcpy(m + p * len, m + src * len, len * sizeof(float));
            p = src;
        }
    }
done:
    gq_free(tmp);
    gq_free(seen);
    return rc;
}

/*
 * U (n, n) row-major upper with (P H' P^T + damp I)^-1 = U^T U, where H' is
 * H with dead diagonals set to 1 (diag[] holds H' diagonal).  Retries with
 * more damping while Cholesky fails.  Only U's upper triangle is valid.
 */
static int factor(float *u, double *damp_used, int *retries, const float *h, const float *diag,
                  const int32_t *perm, size_t n, const struct gptq_params *p, gq_err *e)
{
    double mean = 0.0, pd = p->damp_percent;
    lapack_int info;

    for (size_t i = 0; i < n; i++)
        mean += diag[i];
    mean /= (double)n;
    *retries = 0;
    for (;;) {
        float damp = (float)(pd * mean);
        /* u[a][b] = H'[pa][pb] + damp [a == b], pa = perm[n-1-a]: reversed order */
        for (size_t a = 0; a < n; a++) {
            size_t pa = perm ? (size_t)perm[n - 1 - a] : n - 1 - a;
            const float *hr = h + pa * n;
            float *ur = u + a * n;
            if (perm) {
                for (size_t b = 0; b <= a; b++)
                    ur[b] = hr[perm[n - 1 - b]];
            } else {
                for (size_t b = 0; b <= a; b++)
                    ur[b] = hr[n - 1 - b];
            }
            ur[a] = diag[pa] + damp;
        }
        /* Row-major lower == column-major upper: factor as 'U'. */
        info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, u, (lapack_int)n);
        if (info == 0)
            break;
        if (info < 0)
            return GQ_FAIL(e, GQ_ENUMERIC, "spotrf rejected argument %d", (int)-info);
        if (p->damp_auto_increment <= 0.0 || pd + p->damp_auto_increment >= 1.0)
            return GQ_FAIL(e, GQ_ENUMERIC,
                           "hessian is not positive definite (cholesky failed at column %d) "
                           "even with damp_percent %.4f after %d increases",
                           (int)info, pd, *retries);
        pd += p->damp_auto_increment;
        (*retries)++;
    }
    info = LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, u, (lapack_int)n);
    if (info != 0)
        return GQ_FAIL(e, GQ_ENUMERIC, "cholesky factor is singular at column %d", (int)info);
    /*
     * With M = L L^T (L lower, M the reversed matrix), spotrf 'U' left L^T
     * in the column-major upper triangle and strtri made it L^-T, which
     * read row-major is X[a][b] = L^-1(a, b) for a >= b.  U(j, k) =
     * L^-1(n-1-j, n-1-k) = X[n-1-j][n-1-k]: rotate the matrix by 180
     * degrees (rows j and n-1-j swap, each reversed).
     */
    for (size_t j = 0; j < n / 2; j++) {
        float *top = u + j * n, *bot = u + (n - 1 - j) * n;
        for (size_t k = 0; k < n; k++) {
            float t = top[k];
            top[k] = bot[n - 1 - k];
            bot[n - 1 - k] = t;
        }
    }
    if (n % 2) {
        float *mid = u + (n / 2) * n;
        for (size_t k = 0; k < n / 2; k++) {
            float t = mid[k];
            mid[k] = mid[n - 1 - k];
            mid[n - 1 - k] = t;
        }
    }
    for (size_t j = 0; j < n; j++) {
        float d = u[j * n + j];
        if (!(d > 0.0f) || !isfinite(d))
            return GQ_FAIL(e, GQ_ENUMERIC, "inverse hessian factor has a bad diagonal %g at %zu",
                           (double)d, j);
    }
    *damp_used = pd;
    return 0;
}

/*
 * One row tile of one sub-block: quantize block columns i in [s1, s2)
 * (absolute column i1 + i) of rows r0..r1-1 in w1 (count x rows, a copy of
 * the block), pushing each column's scaled error into the sub-block's
 * remaining columns; the rest of the block gets them by one GEMM later.
 * A finished column of w1 is overwritten with its dequantized value.
 * Returns sum (w - q)^2 / d^2.  Cloned for AVX-512 and AVX2 where the CPU
 * has them: this is the only part of the solve that is not BLAS.
 */
__attribute__((target_clones("avx512f", "avx2", "default")))
static double block_tile(float *w1, float *err1, uint8_t *qt, const float *u, size_t n,
                         size_t rows, size_t r0, size_t r1, size_t i1, size_t s1, size_t s2,
                         const float *sc, const float *zc, const int32_t *colgroup, int maxq)
{
    double loss = 0.0;

    for (size_t i = s1; i < s2; i++) {
        size_t j = i1 + i;
        const float *urow = u + j * n + i1;
        const float *s = sc + (size_t)colgroup[j] * rows, *z = zc + (size_t)colgroup[j] * rows;
        float d = urow[i], sq = 0.0f;
        float *w = w1 + i * rows, *er = err1 + i * rows;
        uint8_t *q = qt + j * rows;

        for (size_t r = r0; r < r1; r++) {
            int code = quant_code(w[r], s[r], z[r], maxq);
            float v = quant_dequant(code, s[r], z[r]), diff = w[r] - v;
            q[r] = (uint8_t)code;
            w[r] = v;   /* the column is done: keep its dequantized value */
            sq += diff * diff;
            er[r] = diff / d;
        }
        loss += (double)sq / ((double)d * (double)d);
        for (size_t k = i + 1; k < s2; k++) {
            float uk = urow[k];
            float *wk = w1 + k * rows;
            for (size_t r = r0; r < r1; r++)
                wk[r] -= uk * er[r];
        }
    }
    return loss;
}

int gptq_quantize(struct gptq_result *out, const float *W, size_t rows, size_t cols,
                  const float *H, double nsamples, const struct gptq_params *p,
                  const atomic_bool *cancel, gq_err *e)
{
    struct gptq_result r;
    double t0 = now_seconds(), loss = 0.0;
    size_t n = cols, group, ngroups, block;
    int rc, maxq, grouped, act;
    float *wt = NULL, *u = NULL, *w1 = NULL, *err1 = NULL, *diag = NULL, *sc = NULL, *zc = NULL;
    float *work = NULL;
    uint8_t *qt = NULL;
    int32_t *colgroup = NULL, *colpos = NULL;

    memset(&r, 0, sizeof(r));
    if ((rc = gptq_params_check(p, e)) < 0)
        return rc;
    if (rows == 0 || cols == 0 || rows > (size_t)INT_MAX || cols > (size_t)INT_MAX)
        return GQ_FAIL(e, GQ_EINVAL, "weight shape %zu x %zu is empty or too large", rows, cols);
    if (rows > SIZE_MAX / sizeof(float) / cols || cols > SIZE_MAX / sizeof(float) / cols)
        return GQ_FAIL(e, GQ_ENOMEM, "weight shape %zu x %zu is too large", rows, cols);
    if (!all_finite(W, rows * cols))
        return GQ_FAIL(e, GQ_ENUMERIC, "weight contains NaN or Inf");
    if (!all_finite(H, cols * cols))
        return GQ_FAIL(e, GQ_ENUMERIC, "hessian contains NaN or Inf");

    grouped = p->group_size > 0;
    act = p->desc_act != 0;
    group = grouped ? (size_t)p->group_size : cols;
    if (group > cols)
        group = cols;
    ngroups = (cols + group - 1) / group;
    block = (size_t)p->block_size;
    maxq = quant_maxq(p->q.bits);

    r.rows = rows;
    r.cols = cols;
    r.ngroups = ngroups;
    r.group = group;
    r.qint = gq_mallocn(rows * cols, 1);
    r.scales = gq_mallocn(ngroups * rows, sizeof(float));
    r.zeros = gq_mallocn(ngroups * rows, sizeof(int32_t));
    r.g_idx = gq_mallocn(cols, sizeof(int32_t));
    r.wq = gq_mallocn(rows * cols, sizeof(float));
    if (act)
        r.perm = gq_mallocn(cols, sizeof(int32_t));
    wt = gq_malloc_aligned(rows * cols * sizeof(float));
    u = gq_malloc_aligned(cols * cols * sizeof(float));
    w1 = gq_malloc_aligned(block * rows * sizeof(float));
    err1 = gq_malloc_aligned(block * rows * sizeof(float));
    qt = gq_mallocn(rows * cols, 1);
    diag = gq_mallocn(cols, sizeof(float));
    sc = gq_mallocn(ngroups * rows, sizeof(float));
    zc = gq_mallocn(ngroups * rows, sizeof(float));
    colgroup = gq_mallocn(cols, sizeof(int32_t));
    colpos = gq_mallocn(cols, sizeof(int32_t));
    if (p->q.mse)
        work = gq_mallocn(4 * rows, sizeof(float));
    if (!r.qint || !r.scales || !r.zeros || !r.g_idx || !r.wq || (act && !r.perm) || !wt || !u ||
        !w1 || !err1 || !qt || !diag || !sc || !zc || !colgroup || !colpos || (p->q.mse && !work)) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory quantizing a %zu x %zu layer", rows, cols);
        goto done;
    }

    /* Whole-row parameters come from W before dead columns are zeroed. */
    if (!grouped) {
        if (p->q.mse) {
            transpose(wt, W, rows, cols);
            quant_find_params_t(sc, zc, wt, rows, cols, rows, &p->q, work);
        } else {
            quant_find_params(sc, zc, W, rows, cols, cols, &p->q);
        }
    }

    /* Dead columns: diag 1 in H', zero in W. */
    transpose(wt, W, rows, cols);
    for (size_t c = 0; c < n; c++) {
        float d = H[c * n + c];
        diag[c] = d;
        if (d == 0.0f) {
            diag[c] = 1.0f;
            memset(wt + c * rows, 0, rows * sizeof(float));
            r.dead_columns++;
        }
    }

    /* Static groups: natural groups of the dead-zeroed W, before anything moves. */
    if (grouped && p->static_groups) {
        for (size_t g = 0; g < ngroups; g++) {
            size_t c0 = g * group, w = n - c0 < group ? n - c0 : group;
            quant_find_params_t(sc + g * rows, zc + g * rows, wt + c0 * rows, rows, w, rows,
                                &p->q, work);
        }
    }

    if (act) {
        if ((rc = act_order(r.perm, diag, n, e)) < 0)
            goto done;
        if ((rc = permute_rows(wt, r.perm, n, rows, e)) < 0)
            goto done;
    }

    /* Group used at each processing position. */
    for (size_t j = 0; j < n; j++) {
        size_t c = act ? (size_t)r.perm[j] : j;
        colgroup[j] = !grouped ? 0 : (int32_t)((p->static_groups ? c : j) / group);
    }

    if ((rc = factor(u, &r.damp_percent, &r.damp_retries, H, diag, r.perm, n, p, e)) < 0)
        goto done;

    for (size_t i1 = 0; i1 < n; i1 += block) {
        size_t i2 = i1 + block < n ? i1 + block : n, count = i2 - i1;

        if (cancel && atomic_load(cancel)) {
            rc = GQ_FAIL(e, GQ_ECANCELED, "cancelled at column %zu of %zu", i1, n);
            goto done;
        }
        /* Groups starting in this block read the outer (stale) Wt, as the reference does. */
        if (grouped && !p->static_groups) {
            for (size_t j = (i1 + group - 1) / group * group; j < i2; j += group) {
                size_t w = n - j < group ? n - j : group;
                quant_find_params_t(sc + (j / group) * rows, zc + (j / group) * rows,
                                    wt + j * rows, rows, w, rows, &p->q, work);
            }
        }
        memcpy(w1, wt + i1 * rows, count * rows * sizeof(float));
        for (size_t s1 = 0; s1 < count; s1 += SUB_BLOCK) {
            size_t s2 = s1 + SUB_BLOCK < count ? s1 + SUB_BLOCK : count;
            for (size_t r0 = 0; r0 < rows; r0 += ROW_TILE) {
                size_t r1 = r0 + ROW_TILE < rows ? r0 + ROW_TILE : rows;
                loss += block_tile(w1, err1, qt, u, n, rows, r0, r1, i1, s1, s2, sc, zc,
                                   colgroup, maxq);
            }
            /* the sub-block's errors into the rest of the block */
            if (s2 < count)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(count - s2),
                            (int)rows, (int)(s2 - s1), -1.0f, u + (i1 + s1) * n + i1 + s2,
                            (int)n, err1 + s1 * rows, (int)rows, 1.0f, w1 + s2 * rows,
                            (int)rows);
        }
        /* Wt's block columns are never read again: they take the result. */
        memcpy(wt + i1 * rows, w1, count * rows * sizeof(float));
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(n - i2), (int)rows,
                        (int)count, -1.0f, u + i1 * n + i2, (int)n, err1, (int)rows, 1.0f,
                        wt + i2 * rows, (int)rows);
    }

    /* Back to the original column order, in tiles (qt is transposed). */
    for (size_t j = 0; j < n; j++) {
        size_t c = act ? (size_t)r.perm[j] : j;
        colpos[c] = (int32_t)j;
        r.g_idx[c] = act && grouped && !p->static_groups ? (int32_t)(j / group)
                                                         : (int32_t)(c / group);
    }
    for (size_t i = 0; i < ngroups * rows; i++) {
        r.scales[i] = sc[i];
        r.zeros[i] = (int32_t)zc[i];
    }
    /* wt now holds the dequantized weight, transposed, in processing order. */
    for (size_t r0 = 0; r0 < rows; r0 += 32) {
        size_t r1 = r0 + 32 < rows ? r0 + 32 : rows;
        for (size_t c0 = 0; c0 < cols; c0 += 32) {
            size_t c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (size_t row = r0; row < r1; row++) {
                float sq = 0.0f;
                for (size_t c = c0; c < c1; c++) {
                    size_t src = (size_t)colpos[c] * rows + row;
                    float v = wt[src], d = W[row * cols + c] - v;
                    r.qint[row * cols + c] = qt[src];
                    r.wq[row * cols + c] = v;
                    sq += d * d;
                }
                r.weight_sqerr += sq;
            }
        }
    }
    if (!all_finite(r.wq, rows * cols)) {
        rc = GQ_FAIL(e, GQ_ENUMERIC, "quantized weight is not finite (scale overflow?)");
        goto done;
    }
    r.avg_loss = nsamples > 0 ? loss / 2.0 / nsamples : loss / 2.0;
    if (p->metrics) {
        if ((rc = gptq_output_error(&r.out_err, &r.out_ref, W, r.wq, rows, cols, H, e)) < 0)
            goto done;
        r.out_rel = r.out_ref > 0.0 ? r.out_err / r.out_ref : 0.0;
    }
    r.seconds = now_seconds() - t0;
    *out = r;
    memset(&r, 0, sizeof(r));
    rc = 0;
done:
    gptq_result_free(&r);
    gq_free(wt);
    gq_free(u);
    gq_free(w1);
    gq_free(err1);
    gq_free(qt);
    gq_free(diag);
    gq_free(sc);
    gq_free(zc);
    gq_free(colgroup);
    gq_free(colpos);
    gq_free(work);
    return rc;
}

int gptq_output_error(double *err, double *ref, const float *W, const float *Wq, size_t rows,
                      size_t cols, const float *H, gq_err *e)
{
    const size_t chunk = 256;
    size_t m = rows < chunk ? rows : chunk;
    float *d = gq_mallocn(2 * m * cols, sizeof(float));
    float *t = gq_mallocn(2 * m * cols, sizeof(float));
    double se = 0.0, sr = 0.0;

    if (!d || !t) {
        gq_free(d);
        gq_free(t);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory measuring output error");
    }
    /* Chunks of [dW; W] rows times H, then row-wise dots: one GEMM in total. */
    for (size_t r0 = 0; r0 < rows; r0 += m) {
        size_t k = rows - r0 < m ? rows - r0 : m;
        for (size_t i = 0; i < k * cols; i++) {
            d[i] = W[r0 * cols + i] - Wq[r0 * cols + i];
            d[k * cols + i] = W[r0 * cols + i];
        }
        cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)(2 * k), (int)cols, 1.0f, H,
                    (int)cols, d, (int)cols, 0.0f, t, (int)cols);
        for (size_t i = 0; i < k * cols; i++) {
            se += (double)t[i] * (double)d[i];
            sr += (double)t[k * cols + i] * (double)d[k * cols + i];
        }
    }
    gq_free(d);
    gq_free(t);
    *err = se;
    *ref = sr;
    return 0;
}
