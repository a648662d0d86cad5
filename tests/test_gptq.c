/*
 * test_gptq.c - GPTQ (core/gptq.h) against the naive double oracle
 * (tests/ref_gptq.c): Hessian accumulation, the solve over a grid of
 * configurations, GPTQ versus RTN, the metrics, damping, cancellation,
 * allocation failures, parameter checks.
 *
 * Layers are synthetic but realistic: calibration inputs are correlated
 * (X = Z A + noise, with per-channel scales so that act-order matters),
 * some inputs are always zero (dead columns) and some weight rows are all
 * zero.  Widths are not multiples of the block size, so partial blocks,
 * partial groups and groups that start inside a block are all exercised.
 */
#include <stdbool.h>
#include <stdint.h>

#include "blas_env.h"
#include "gptq.h"
#include "mem.h"
#include "quant.h"
#include "ref_gptq.h"
#include "test.h"

/*
 * Tolerances against the oracle.  Codes are judged with the oracle
 * following the implementation at rounding ties (within TIE_TOL steps of a
 * boundary, see struct ref_hint in ref_gptq.h).  Measured on this grid:
 * every row in which a free-running double oracle parts from the float32
 * implementation parts at a code at most 3e-5 steps from a tie, and GPTQ's
 * error feedback then changes the rest of that row, which pushes a few
 * configs over 0.1% of codes for no fault of either side.  The summary
 * lines print both views.
 */
#define MIN_CODE_MATCH 0.999   /* fraction of integer codes */
#define MIN_ZERO_MATCH 0.999   /* fraction of (group, row) zero points */
#define WQ_REL_TOL 1e-4        /* ||wq - wq_ref|| / ||wq_ref|| over matching codes */
#define LOSS_REL_TOL 1e-3      /* avg_loss */
#define METRIC_REL_TOL 1e-4    /* out_err, out_ref against a double trace */
#define TIE_TOL 1e-3           /* steps from a rounding boundary where the oracle follows */
#define MAX_TIE_FRAC 1e-3      /* ties followed, fraction of all codes */

/* ---- synthetic layers ---------------------------------------------------- */

struct layer {
    size_t rows, cols, tokens, nseq;
    float *W;   /* (rows, cols) */
    float *X;   /* (tokens, cols) */
    float *H;   /* (cols, cols) = 2/N X^T X */
};

static void layer_free(struct layer *L)
{
    free(L->W);
    free(L->X);
    free(L->H);
    memset(L, 0, sizeof(*L));
}

/* sum_t x_t x_t^T in double over the tokens with mask[t] != 0 (mask may be NULL) */
static void naive_xtx(double *S, const float *X, size_t tokens, size_t ldx, size_t cols,
                      const unsigned char *mask)
{
    for (size_t t = 0; t < tokens; t++) {
        const float *x = X + t * ldx;
        if (mask && !mask[t])
            continue;
        for (size_t i = 0; i < cols; i++)
            for (size_t j = 0; j < cols; j++)
                S[i * cols + j] += (double)x[i] * (double)x[j];
    }
}

/*
 * rows x cols weights (0.02 normal, heavier tails, rows 3 and rows-5 all
 * zero), tokens = 4 cols inputs X = (Z A + 0.3 noise) * channel scale with
 * Z (tokens, cols/2) and A (cols/2, cols), ndead dead input columns, nseq =
 * tokens / 100 sequences, and H = 2/N X^T X rounded to float.
 */
static int layer_make(struct layer *L, size_t rows, size_t cols, size_t ndead,
                      unsigned long long seed)
{
    size_t k = cols / 2, tokens = 4 * cols;
    double *A = malloc(k * cols * sizeof(double)), *z = malloc(k * sizeof(double));
    double *scale = malloc(cols * sizeof(double)), *S = calloc(cols * cols, sizeof(double));
    unsigned char *dead = calloc(cols, 1);
    unsigned long long s = seed;
    int ok = 0;

    memset(L, 0, sizeof(*L));
    L->rows = rows;
    L->cols = cols;
    L->tokens = tokens;
    L->nseq = tokens / 100 ? tokens / 100 : 1;
    L->W = malloc(rows * cols * sizeof(float));
    L->X = malloc(tokens * cols * sizeof(float));
    L->H = malloc(cols * cols * sizeof(float));
    if (!A || !z || !scale || !S || !dead || !L->W || !L->X || !L->H)
        goto done;

    for (size_t i = 0; i < ndead; i++)
        dead[(7 + i * (cols / (ndead + 1) + 5)) % cols] = 1;
    for (size_t i = 0; i < k * cols; i++)
        A[i] = test_rand_normal(&s) / sqrt((double)k);
    for (size_t c = 0; c < cols; c++)
        scale[c] = exp(0.7 * test_rand_normal(&s));
    for (size_t t = 0; t < tokens; t++) {
        for (size_t i = 0; i < k; i++)
            z[i] = test_rand_normal(&s);
        for (size_t c = 0; c < cols; c++) {
            double v = 0.3 * test_rand_normal(&s);
            for (size_t i = 0; i < k; i++)
                v += z[i] * A[i * cols + c];
            L->X[t * cols + c] = dead[c] ? 0.0f : (float)(v * scale[c]);
        }
    }
    for (size_t r = 0; r < rows; r++) {
        double rs = 0.5 + test_rand_unit(&s);
        for (size_t c = 0; c < cols; c++) {
            double v = test_rand_normal(&s);
            L->W[r * cols + c] = (float)(0.02 * rs * v * (1.0 + 0.2 * v * v));
        }
    }
    for (size_t c = 0; c < cols; c++) {
        if (rows > 3)
            L->W[3 * cols + c] = 0.0f;
        if (rows > 8)
            L->W[(rows - 5) * cols + c] = 0.0f;
    }
    naive_xtx(S, L->X, tokens, cols, cols, NULL);
    for (size_t i = 0; i < cols * cols; i++)
        L->H[i] = (float)(S[i] * 2.0 / (double)L->nseq);
    ok = 1;
done:
    free(A);
    free(z);
    free(scale);
    free(S);
    free(dead);
    if (!ok)
        layer_free(L);
    return ok ? 0 : -1;
}

static struct gptq_params params(int bits, int gs, int sym, int desc, int stat)
{
    struct gptq_params p;
    gptq_params_default(&p);
    p.q.bits = bits;
    p.q.sym = sym;
    p.group_size = gs;
    p.desc_act = desc;
    p.static_groups = stat;
    return p;
}

static void describe(char *buf, size_t n, const struct layer *L, const struct gptq_params *p)
{
    snprintf(buf, n, "%zux%zu bits %d gs %d %s desc_act %d static %d mse %d block %d", L->rows,
             L->cols, p->q.bits, p->group_size, p->q.sym ? "sym" : "asym", p->desc_act,
             p->static_groups, p->q.mse, p->block_size);
}

/* ---- fast path versus oracle ------------------------------------------------ */

struct family {
    const char *name;
    int free_run;   /* also run the oracle free-running, for the report only */
    size_t configs, failed, codes, code_mis, zeros, zero_mis, gidx_mis, worst_code_mis;
    size_t raw_code_mis, raw_over, ties;
    double worst_wq_rel, worst_loss_rel, worst_scale_rel, worst_first_dist, worst_tie_dist;
};

static void family_print(const struct family *f)
{
    if (f->free_run)
        printf("  %-16s free-running oracle: codes mismatched %zu of %zu, %zu configs over "
               "%.1f%%, every row diverges first <= %.1e steps from a tie\n",
               f->name, f->raw_code_mis, f->codes, f->raw_over, 100.0 * (1.0 - MIN_CODE_MATCH),
               f->worst_first_dist);
    printf("  %-16s configs %3zu failed %zu | ties followed %zu (<= %.1e steps) | codes "
           "mismatched %zu of %zu (worst config %zu) | zeros %zu of %zu | g_idx %zu | worst: "
           "wq rel %.1e, avg_loss rel %.1e, scale rel %.1e\n",
           f->name, f->configs, f->failed, f->ties, f->worst_tie_dist, f->code_mis, f->codes,
           f->worst_code_mis, f->zero_mis, f->zeros, f->gidx_mis, f->worst_wq_rel,
           f->worst_loss_rel, f->worst_scale_rel);
}

/* distance of the oracle's unrounded code from the boundary between codes a and b */
static double tie_distance(double qv, int a, int b)
{
    int lo = a < b ? a : b;
    if (a - b != 1 && b - a != 1)
        return INFINITY;
    return fabs(qv - ((double)lo + 0.5));
}

/*
 * Run both sides on one configuration and judge.  The oracle runs twice:
 * free-running, only to report how far apart the two get and that every
 * divergence starts at a rounding tie; and following the implementation's
 * codes at ties (struct ref_hint, TIE_TOL), which is what is judged: codes
 * and zeros agree on at least MIN_*_MATCH, g_idx, perm, dead columns and
 * damping identical, wq within WQ_REL_TOL over the positions where the
 * codes agree, avg_loss within LOSS_REL_TOL.  On failure print the config
 * and the first mismatching weight.  pre may be NULL.
 */
static void compare_one(struct family *f, const struct layer *L, const struct gptq_params *p,
                        const struct ref_factor *pre)
{
    size_t rows = L->rows, cols = L->cols;
    struct gptq_result r;
    struct ref_result o, o0;
    struct ref_hint hint;
    gq_err e = GQ_ERR_INIT;
    char what[160];
    size_t code_mis = 0, zero_mis = 0, gidx_mis = 0, first = SIZE_MAX;
    double num = 0.0, den = 0.0, wq_rel, loss_rel, scale_rel = 0.0;
    int bad = 0, rc, rrc, rrc0;

    memset(&r, 0, sizeof(r));
    memset(&o, 0, sizeof(o));
    memset(&o0, 0, sizeof(o0));
    describe(what, sizeof(what), L, p);
    f->configs++;
    rc = gptq_quantize(&r, L->W, rows, cols, L->H, (double)L->nseq, p, NULL, &e);
    rrc0 = f->free_run ? ref_gptq(&o0, L->W, rows, cols, L->H, (double)L->nseq, p, pre, NULL)
                       : 0;
    hint.qint = r.qint;
    hint.tol = TIE_TOL;
    rrc = rc == 0 ? ref_gptq(&o, L->W, rows, cols, L->H, (double)L->nseq, p, pre, &hint) : -1;
    if (rc != 0 || rrc != 0 || rrc0 != 0) {
        CHECK_MSG(0, "%s: gptq_quantize %d (%s), oracle %d %d", what, rc, e.msg, rrc0, rrc);
        f->failed++;
        goto done;
    }

    /* the free-running oracle: where does each row first part from the implementation?
     * (in processing order: before that point both sides hold the same row) */
    for (size_t row = 0; row < rows && f->free_run; row++) {
        for (size_t j = 0; j < cols; j++) {
            size_t i = row * cols + (r.perm ? (size_t)r.perm[j] : j);
            if (r.qint[i] != o0.qint[i]) {
                double dist = tie_distance(o0.qv[i], r.qint[i], o0.qint[i]);
                if (dist > f->worst_first_dist)
                    f->worst_first_dist = dist;
                break;
            }
        }
    }
    if (f->free_run) {
        size_t raw = 0;
        for (size_t i = 0; i < rows * cols; i++)
            raw += r.qint[i] != o0.qint[i];
        f->raw_code_mis += raw;
        f->raw_over += (double)raw > (1.0 - MIN_CODE_MATCH) * (double)(rows * cols);
    }

    CHECK_EQ_INT(r.rows, rows);
    CHECK_EQ_INT(r.cols, cols);
    CHECK_EQ_INT(r.ngroups, o.ngroups);
    CHECK_EQ_INT(r.group, o.group);
    CHECK_EQ_INT(r.dead_columns, o.dead_columns);
    CHECK_EQ_INT(r.damp_retries, o.damp_retries);
    CHECK_NEAR(r.damp_percent, o.damp_percent, 1e-12);
    if (r.ngroups != o.ngroups || r.dead_columns != o.dead_columns) {
        bad = 1;
        goto report;
    }
    if (p->desc_act) {
        CHECK(r.perm != NULL);
        CHECK(r.perm && memcmp(r.perm, o.perm, cols * sizeof(int32_t)) == 0);
    } else {
        CHECK(r.perm == NULL);
    }

    for (size_t c = 0; c < cols; c++)
        gidx_mis += r.g_idx[c] != o.g_idx[c];
    for (size_t i = 0; i < rows * cols; i++) {
        if (r.qint[i] != o.qint[i]) {
            if (first == SIZE_MAX)
                first = i;
            code_mis++;
            continue;
        }
        num += ((double)r.wq[i] - o.wq[i]) * ((double)r.wq[i] - o.wq[i]);
        den += o.wq[i] * o.wq[i];
    }
    for (size_t i = 0; i < r.ngroups * rows; i++) {
        if (r.zeros[i] != o.zeros[i]) {
            zero_mis++;
        } else {
            double rel = fabs((double)r.scales[i] - o.scales[i]) / o.scales[i];
            if (rel > scale_rel)
                scale_rel = rel;
        }
    }
    wq_rel = den > 0.0 ? sqrt(num) / sqrt(den) : sqrt(num);
    loss_rel = fabs(r.avg_loss - o.avg_loss) / fabs(o.avg_loss);

    if ((double)code_mis > (1.0 - MIN_CODE_MATCH) * (double)(rows * cols) ||
        (double)zero_mis > (1.0 - MIN_ZERO_MATCH) * (double)(r.ngroups * rows) || gidx_mis ||
        !(wq_rel <= WQ_REL_TOL) || !(loss_rel <= LOSS_REL_TOL) ||
        (double)o.ties_followed > MAX_TIE_FRAC * (double)(rows * cols))
        bad = 1;
    CHECK_MSG((double)code_mis <= (1.0 - MIN_CODE_MATCH) * (double)(rows * cols),
              "%s: %zu of %zu codes differ", what, code_mis, rows * cols);
    CHECK_MSG((double)zero_mis <= (1.0 - MIN_ZERO_MATCH) * (double)(r.ngroups * rows),
              "%s: %zu of %zu zeros differ", what, zero_mis, r.ngroups * rows);
    CHECK_MSG(gidx_mis == 0, "%s: %zu g_idx entries differ", what, gidx_mis);
    CHECK_MSG(wq_rel <= WQ_REL_TOL, "%s: wq relative error %.3g over matching codes", what,
              wq_rel);
    CHECK_MSG(loss_rel <= LOSS_REL_TOL, "%s: avg_loss %.9g vs oracle %.9g", what, r.avg_loss,
              o.avg_loss);
    /* ties are rare events; many would mean the two sides compute different quotients */
    CHECK_MSG((double)o.ties_followed <= MAX_TIE_FRAC * (double)(rows * cols),
              "%s: %zu ties followed", what, o.ties_followed);

    f->codes += rows * cols;
    f->code_mis += code_mis;
    f->zeros += r.ngroups * rows;
    f->zero_mis += zero_mis;
    f->gidx_mis += gidx_mis;
    f->ties += o.ties_followed;
    if (o.max_tie_dist > f->worst_tie_dist)
        f->worst_tie_dist = o.max_tie_dist;
    if (code_mis > f->worst_code_mis)
        f->worst_code_mis = code_mis;
    if (wq_rel > f->worst_wq_rel)
        f->worst_wq_rel = wq_rel;
    if (loss_rel > f->worst_loss_rel)
        f->worst_loss_rel = loss_rel;
    if (scale_rel > f->worst_scale_rel)
        f->worst_scale_rel = scale_rel;

report:
    if (bad) {
        f->failed++;
        fprintf(stderr, "  FAILED %s: codes %zu/%zu, zeros %zu/%zu, g_idx %zu, ties followed %zu\n",
                what, code_mis, rows * cols, zero_mis, r.ngroups * rows, gidx_mis,
                o.ties_followed);
        if (first != SIZE_MAX) {
            size_t row = first / cols, c = first % cols, pos = c;
            size_t gf = (size_t)r.g_idx[c] * rows + row, go = (size_t)o.g_idx[c] * rows + row;
            if (p->desc_act)
                for (size_t j = 0; j < cols; j++)
                    if ((size_t)o.perm[j] == c)
                        pos = j;
            fprintf(stderr,
                    "    first code mismatch row %zu col %zu (processing position %zu): "
                    "w %.9g, code %d vs oracle %d (oracle w/scale+zero %.9f), scale %.9g vs "
                    "%.9g, zero %d vs %d, wq %.9g vs %.9g\n",
                    row, c, pos, (double)L->W[first], r.qint[first], o.qint[first], o.qv[first],
                    (double)r.scales[gf], o.scales[go], r.zeros[gf], o.zeros[go],
                    (double)r.wq[first], o.wq[first]);
        }
    }
done:
    gptq_result_free(&r);
    ref_result_free(&o);
    ref_result_free(&o0);
}

/* Build the oracle's factors for desc_act off and on (the O(cols^3) part). */
static int factors_make(struct ref_factor pre[2], const struct layer *L, double damp, double inc)
{
    memset(pre, 0, 2 * sizeof(*pre));
    for (int d = 0; d <= 1; d++) {
        int rc = ref_factor_new(&pre[d], L->H, L->cols, d, damp, inc);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void factors_free(struct ref_factor pre[2])
{
    ref_factor_free(&pre[0]);
    ref_factor_free(&pre[1]);
}

static void test_gptq__vs_oracle_grid(void)
{
    const size_t shapes[2][2] = { { 48, 300 }, { 48, 200 } };
    const int bits[4] = { 2, 3, 4, 8 }, gss[4] = { -1, 32, 64, 128 };

    for (int si = 0; si < 2; si++) {
        struct layer L;
        struct ref_factor pre[2];
        if (layer_make(&L, shapes[si][0], shapes[si][1], 3, 0x5eed0000u + (unsigned)si) < 0) {
            CHECK(0);
            return;
        }
        if (factors_make(pre, &L, 0.01, 0.0025) == 0) {
            for (int bi = 0; bi < 4; bi++) {
                char name[64];
                struct family f;
                memset(&f, 0, sizeof(f));
                snprintf(name, sizeof(name), "%zux%zu %d-bit", L.rows, L.cols, bits[bi]);
                f.name = name;
                f.free_run = 1;
                for (int gi = 0; gi < 4; gi++)
                    for (int sym = 0; sym <= 1; sym++)
                        for (int desc = 0; desc <= 1; desc++)
                            for (int stat = 0; stat <= (gss[gi] > 0); stat++) {
                                struct gptq_params p =
                                    params(bits[bi], gss[gi], sym, desc, stat);
                                compare_one(&f, &L, &p, &pre[desc]);
                            }
                family_print(&f);
            }
        }
        factors_free(pre);
        layer_free(&L);
    }
}

/* MSE search, a block of 32 (groups start inside blocks differently), and a
 * tall layer (several row tiles, a partial last block). */
static void test_gptq__vs_oracle_variants(void)
{
    struct layer L;
    struct ref_factor pre[2];

    if (layer_make(&L, 48, 300, 3, 0xabcdefu) < 0) {
        CHECK(0);
        return;
    }
    if (factors_make(pre, &L, 0.01, 0.0025) == 0) {
        struct family f;
        const int gss[2] = { -1, 64 };
        memset(&f, 0, sizeof(f));
        f.name = "48x300 mse";
        for (int b = 3; b <= 4; b++)
            for (int gi = 0; gi < 2; gi++)
                for (int sym = 0; sym <= 1; sym++)
                    for (int desc = 0; desc <= 1; desc++)
                        for (int stat = 0; stat <= (gss[gi] > 0); stat++) {
                            struct gptq_params p = params(b, gss[gi], sym, desc, stat);
                            p.q.mse = 1;
                            compare_one(&f, &L, &p, &pre[desc]);
                        }
        family_print(&f);
    }
    {
        struct family f;
        const int gss[6] = { -1, 32, 48, 64, 128, 512 };
        memset(&f, 0, sizeof(f));
        f.name = "48x300 block 32";
        f.free_run = 1;
        for (int b = 3; b <= 4; b++)
            for (int gi = 0; gi < 6; gi++)
                for (int sym = 0; sym <= 1; sym++)
                    for (int desc = 0; desc <= 1; desc++)
                        for (int stat = 0; stat <= (gss[gi] > 0); stat++) {
                            struct gptq_params p = params(b, gss[gi], sym, desc, stat);
                            p.block_size = 32;
                            compare_one(&f, &L, &p, pre[0].u ? &pre[desc] : NULL);
                        }
        family_print(&f);
    }
    /* the stale-group quirk is observable: the same config with block 128 and
     * block 32 gives different codes, so a fast path that ignored it (or the
     * block size) would fail one of the two families above */
    {
        struct gptq_params p = params(4, 32, 0, 0, 0);
        struct ref_result a, b;
        size_t differ = 0;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        CHECK_EQ_INT(ref_gptq(&a, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, NULL), 0);
        p.block_size = 32;
        CHECK_EQ_INT(ref_gptq(&b, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, NULL), 0);
        if (a.qint && b.qint)
            for (size_t i = 0; i < L.rows * L.cols; i++)
                differ += a.qint[i] != b.qint[i];
        printf("  stale-group quirk: 4-bit g32 codes differ between block 128 and 32 in %zu "
               "of %zu\n", differ, L.rows * L.cols);
        CHECK(differ > L.rows * L.cols / 100);
        ref_result_free(&a);
        ref_result_free(&b);
    }
    factors_free(pre);
    layer_free(&L);

    if (layer_make(&L, 530, 136, 2, 0x7a11u) < 0) {
        CHECK(0);
        return;
    }
    {
        struct family f;
        const int gss[3] = { -1, 32, 128 };
        memset(&f, 0, sizeof(f));
        f.name = "530x136 tall";
        for (int gi = 0; gi < 3; gi++)
            for (int sym = 0; sym <= 1; sym++)
                for (int desc = 0; desc <= 1; desc++) {
                    struct gptq_params p = params(4, gss[gi], sym, desc, 0);
                    compare_one(&f, &L, &p, NULL);
                }
        family_print(&f);
    }
    layer_free(&L);
}

/* ---- GPTQ versus RTN, metrics ------------------------------------------------ */

static double gptq_rtn_ratio(const struct layer *L, int bits, int gs, int desc)
{
    struct gptq_params p = params(bits, gs, 0, desc, 0);
    struct gptq_result r;
    size_t rows = L->rows, cols = L->cols, ng = gs > 0 ? (cols + (size_t)gs - 1) / (size_t)gs : 1;
    uint8_t *q = malloc(rows * cols);
    float *sc = malloc(ng * rows * sizeof(float)), *wq = malloc(rows * cols * sizeof(float));
    int32_t *zr = malloc(ng * rows * sizeof(int32_t));
    double err = 0.0, ref = 0.0, ratio = INFINITY;
    gq_err e = GQ_ERR_INIT;

    memset(&r, 0, sizeof(r));
    CHECK(q && sc && wq && zr);
    if (!q || !sc || !wq || !zr)
        goto done;
    CHECK_OK(gptq_quantize(&r, L->W, rows, cols, L->H, (double)L->nseq, &p, NULL, &e), &e);
    CHECK_OK(quant_rtn(q, sc, zr, wq, L->W, rows, cols, gs, &p.q, &e), &e);
    CHECK_OK(gptq_output_error(&err, &ref, L->W, wq, rows, cols, L->H, &e), &e);
    if (err > 0.0 && r.wq)
        ratio = r.out_err / err;
    printf("  %d-bit g%d%s: out_err gptq %.4g rtn %.4g ratio %.3f (rel %.4f vs %.4f)\n", bits,
           gs, desc ? " desc_act" : "", r.out_err, err, ratio, r.out_rel, err / ref);
done:
    gptq_result_free(&r);
    free(q);
    free(sc);
    free(wq);
    free(zr);
    return ratio;
}

static void test_gptq__beats_rtn(void)
{
    struct layer L;
    double r4, r3, r3row, r4d;

    if (layer_make(&L, 64, 256, 2, 0xbeefu) < 0) {
        CHECK(0);
        return;
    }
    r4 = gptq_rtn_ratio(&L, 4, 128, 0);
    r4d = gptq_rtn_ratio(&L, 4, 128, 1);
    r3 = gptq_rtn_ratio(&L, 3, 128, 0);
    r3row = gptq_rtn_ratio(&L, 3, -1, 0);
    /* measured 0.436, 0.191, 0.453, 0.444 on this layer; the bounds leave slack */
    CHECK_MSG(r4 < 0.6, "4-bit g128 ratio %.3f", r4);
    CHECK_MSG(r4d < 0.35, "4-bit g128 desc_act ratio %.3f", r4d);
    CHECK_MSG(r4d < r4, "act-order does not help: %.3f vs %.3f", r4d, r4);
    CHECK_MSG(r3 < 0.6, "3-bit g128 ratio %.3f", r3);
    CHECK_MSG(r3row < 0.6, "3-bit per-row ratio %.3f", r3row);
    layer_free(&L);
}

static void test_gptq__metrics(void)
{
    struct layer L;
    float *Wc = NULL, *Hc = NULL;

    if (layer_make(&L, 40, 150, 2, 0x3e7u) < 0) {
        CHECK(0);
        return;
    }
    Wc = malloc(L.rows * L.cols * sizeof(float));
    Hc = malloc(L.cols * L.cols * sizeof(float));
    CHECK(Wc && Hc);
    if (!Wc || !Hc)
        goto done;
    memcpy(Wc, L.W, L.rows * L.cols * sizeof(float));
    memcpy(Hc, L.H, L.cols * L.cols * sizeof(float));
    for (int cfg = 0; cfg < 4; cfg++) {
        struct gptq_params p = params(cfg < 2 ? 4 : 3, cfg & 1 ? 32 : -1, cfg == 3, cfg == 1, 0);
        struct gptq_result r;
        struct ref_result o;
        gq_err e = GQ_ERR_INIT;
        double err, ref, sq = 0.0;

        memset(&r, 0, sizeof(r));
        memset(&o, 0, sizeof(o));
        struct ref_hint hint;
        CHECK_OK(gptq_quantize(&r, L.W, L.rows, L.cols, L.H, (double)L.nseq, &p, NULL, &e), &e);
        if (!r.qint)
            continue;
        hint.qint = r.qint;
        hint.tol = TIE_TOL;
        CHECK_EQ_INT(ref_gptq(&o, L.W, L.rows, L.cols, L.H, (double)L.nseq, &p, NULL, &hint), 0);
        if (r.wq && o.wq) {
            ref_output_error(&err, &ref, L.W, r.wq, L.rows, L.cols, L.H);
            for (size_t i = 0; i < L.rows * L.cols; i++)
                sq += ((double)L.W[i] - (double)r.wq[i]) * ((double)L.W[i] - (double)r.wq[i]);
            printf("  cfg %d: out_err %.6g (naive %.6g, rel diff %.2e) out_ref %.6g (naive %.6g) "
                   "avg_loss %.6g (oracle %.6g)\n",
                   cfg, r.out_err, err, fabs(r.out_err - err) / err, r.out_ref, ref, r.avg_loss,
                   o.avg_loss);
            CHECK_NEAR(r.out_err, err, METRIC_REL_TOL * err);
            CHECK_NEAR(r.out_ref, ref, METRIC_REL_TOL * ref);
            CHECK_NEAR(r.out_rel, err / ref, METRIC_REL_TOL * err / ref);
            CHECK_NEAR(r.weight_sqerr, sq, 1e-6 * sq);
            CHECK_NEAR(r.avg_loss, o.avg_loss, LOSS_REL_TOL * o.avg_loss);
            CHECK(r.avg_loss > 0.0);
            CHECK(r.seconds >= 0.0);
        }
        gptq_result_free(&r);
        ref_result_free(&o);
    }
    /* inputs untouched */
    CHECK(memcmp(Wc, L.W, L.rows * L.cols * sizeof(float)) == 0);
    CHECK(memcmp(Hc, L.H, L.cols * L.cols * sizeof(float)) == 0);

    /* metrics off: no output errors computed */
    {
        struct gptq_params p = params(4, 32, 0, 0, 0);
        struct gptq_result r;
        gq_err e = GQ_ERR_INIT;
        memset(&r, 0, sizeof(r));
        p.metrics = 0;
        CHECK_OK(gptq_quantize(&r, L.W, L.rows, L.cols, L.H, (double)L.nseq, &p, NULL, &e), &e);
        CHECK(r.out_err == 0.0 && r.out_ref == 0.0 && r.out_rel == 0.0);
        CHECK(r.weight_sqerr > 0.0);
        gptq_result_free(&r);
    }
    /* gptq_output_error on its own: zero for Wq = W, the naive trace otherwise */
    {
        double err = -1.0, ref = -1.0, nerr, nref;
        float *wq = malloc(L.rows * L.cols * sizeof(float));
        gq_err e = GQ_ERR_INIT;
        unsigned long long s = 99;
        CHECK_OK(gptq_output_error(&err, &ref, L.W, L.W, L.rows, L.cols, L.H, &e), &e);
        CHECK(err == 0.0);
        ref_output_error(&nerr, &nref, L.W, L.W, L.rows, L.cols, L.H);
        CHECK_NEAR(ref, nref, METRIC_REL_TOL * nref);
        if (wq) {
            for (size_t i = 0; i < L.rows * L.cols; i++)
                wq[i] = L.W[i] + (float)(0.001 * test_rand_normal(&s));
            CHECK_OK(gptq_output_error(&err, &ref, L.W, wq, L.rows, L.cols, L.H, &e), &e);
            ref_output_error(&nerr, &nref, L.W, wq, L.rows, L.cols, L.H);
            CHECK_NEAR(err, nerr, METRIC_REL_TOL * nerr);
            CHECK_NEAR(ref, nref, METRIC_REL_TOL * nref);
        }
        free(wq);
    }
    /* more rows than one chunk of gptq_output_error */
    {
        struct layer T;
        if (layer_make(&T, 300, 50, 1, 0x7a1u) == 0) {
            float *wq = malloc(T.rows * T.cols * sizeof(float));
            double err, ref, nerr, nref;
            gq_err e = GQ_ERR_INIT;
            unsigned long long s = 5;
            if (wq) {
                for (size_t i = 0; i < T.rows * T.cols; i++)
                    wq[i] = T.W[i] + (float)(0.002 * test_rand_normal(&s));
                CHECK_OK(gptq_output_error(&err, &ref, T.W, wq, T.rows, T.cols, T.H, &e), &e);
                ref_output_error(&nerr, &nref, T.W, wq, T.rows, T.cols, T.H);
                CHECK_NEAR(err, nerr, METRIC_REL_TOL * nerr);
                CHECK_NEAR(ref, nref, METRIC_REL_TOL * nref);
            }
            free(wq);
        } else {
            CHECK(0);
        }
        layer_free(&T);
    }
done:
    free(Wc);
    free(Hc);
    layer_free(&L);
}

/* ---- Hessian --------------------------------------------------------------- */

static void test_gptq__hessian(void)
{
    const size_t cols = 37, ld = 41;
    const size_t tok[5] = { 50, 33, 5000, 20, 9 }, nseq[5] = { 2, 1, 40, 3, 1 };
    float *x[5] = { NULL, NULL, NULL, NULL, NULL };
    unsigned char *mask[5] = { NULL, NULL, NULL, NULL, NULL };
    double *S = calloc(cols * cols, sizeof(double));
    gptq_hessian *h = NULL;
    const float *H = NULL, *H2 = NULL;
    gq_err e = GQ_ERR_INIT;
    unsigned long long s = 31337;
    size_t N = 0, ntok = 0;
    double maxrel = 0.0;

    CHECK(S != NULL);
    if (!S)
        return;
    /* batch 0: plain; 1: masked, stride ld; 2: masked, more kept tokens than
     * one gather chunk; 3: mask of all ones; 4: every token masked (counts a
     * sequence, adds nothing) */
    for (int b = 0; b < 5; b++) {
        size_t stride = b == 1 || b == 2 ? ld : cols;
        x[b] = malloc(tok[b] * stride * sizeof(float));
        CHECK(x[b] != NULL);
        if (!x[b])
            goto done;
        for (size_t t = 0; t < tok[b]; t++)
            for (size_t c = 0; c < stride; c++)
                x[b][t * stride + c] =
                    c < cols ? (float)(test_rand_normal(&s) + 0.3 * (double)(c % 5)) : 1e4f;
        if (b >= 1) {
            mask[b] = malloc(tok[b]);
            if (!mask[b])
                goto done;
            for (size_t t = 0; t < tok[b]; t++)
                mask[b][t] = b == 3 ? 1 : b == 4 ? 0 : (unsigned char)(test_rand_unit(&s) < 0.8);
            /* a masked token carries huge values: any leak into H shows */
            for (size_t t = 0; t < tok[b]; t++)
                if (!mask[b][t])
                    for (size_t c = 0; c < cols; c++)
                        x[b][t * stride + c] = 1e4f;
        }
    }

    CHECK_OK(gptq_hessian_new(&h, cols, &e), &e);
    if (!h)
        goto done;
    CHECK_EQ_INT(gptq_hessian_cols(h), cols);
    CHECK_EQ_INT(gptq_hessian_nsamples(h), 0);
    CHECK_EQ_INT(gptq_hessian_ntokens(h), 0);
    CHECK_EQ_INT(gptq_hessian_matrix(&H, h, &e), GQ_EINVAL);   /* nothing accumulated */
    for (int b = 0; b < 5; b++) {
        size_t stride = b == 1 || b == 2 ? ld : cols;
        CHECK_OK(gptq_hessian_add(h, x[b], tok[b], stride, mask[b], nseq[b], &e), &e);
        naive_xtx(S, x[b], tok[b], stride, cols, mask[b]);
        N += nseq[b];
        for (size_t t = 0; t < tok[b]; t++)
            ntok += !mask[b] || mask[b][t];
    }
    CHECK_EQ_INT(gptq_hessian_nsamples(h), N);
    CHECK_EQ_INT(gptq_hessian_ntokens(h), ntok);
    CHECK_OK(gptq_hessian_matrix(&H, h, &e), &e);
    if (!H)
        goto done;
    for (size_t i = 0; i < cols; i++) {
        for (size_t j = 0; j < cols; j++) {
            double want = S[i * cols + j] * 2.0 / (double)N;
            double tol = 1e-5 * sqrt(S[i * cols + i] * S[j * cols + j]) * 2.0 / (double)N;
            double rel = fabs((double)H[i * cols + j] - want) / (tol * 1e5);
            if (rel > maxrel)
                maxrel = rel;
            CHECK_NEAR(H[i * cols + j], want, tol);
            CHECK(H[i * cols + j] == H[j * cols + i]);
        }
    }
    printf("  hessian: %zu sequences, %zu tokens kept, max error %.2e of sqrt(Hii Hjj)\n", N,
           ntok, maxrel);
    /* finished: a second call gives the same matrix, unscaled again; adding fails */
    CHECK_OK(gptq_hessian_matrix(&H2, h, &e), &e);
    CHECK(H2 == H);
    CHECK_NEAR(H[0], S[0] * 2.0 / (double)N, 1e-5 * S[0] * 2.0 / (double)N);
    gq_err_clear(&e);
    CHECK(gptq_hessian_add(h, x[0], tok[0], cols, NULL, nseq[0], &e) < 0);
    CHECK(e.code < 0 && e.msg[0] != '\0');
    CHECK_EQ_INT(gptq_hessian_nsamples(h), N);

    /* bad stride, bad width; the padding between strided rows is not input */
    {
        gptq_hessian *h2 = NULL;
        CHECK_EQ_INT(gptq_hessian_new(&h2, 0, &e), GQ_EINVAL);
        CHECK(h2 == NULL);
        CHECK_OK(gptq_hessian_new(&h2, cols, &e), &e);
        if (h2) {
            float *xp = malloc(tok[1] * ld * sizeof(float));
            CHECK(gptq_hessian_add(h2, x[0], tok[0], cols - 1, NULL, 1, &e) < 0);
            if (xp) {
                memcpy(xp, x[1], tok[1] * ld * sizeof(float));
                for (size_t t = 0; t + 1 < tok[1]; t++)
                    for (size_t c = cols; c < ld; c++)
                        xp[t * ld + c] = NAN;
                CHECK_OK(gptq_hessian_add(h2, xp, tok[1], ld, NULL, 1, &e), &e);
                free(xp);
            }
            gptq_hessian_free(h2);
        }
    }
    gptq_hessian_free(NULL);

    /* allocation failures in new and in a masked add: GQ_ENOMEM, nothing leaked */
    {
        size_t base = gq_mem_current();
        int rc = -1;
        long n;
        for (n = 0; n < 50 && rc != 0; n++) {
            gptq_hessian *h3 = NULL;
            gq_err_clear(&e);
            gq_alloc_fail_after(n);
            rc = gptq_hessian_new(&h3, cols, &e);
            if (rc == 0)
                rc = gptq_hessian_add(h3, x[1], tok[1], ld, mask[1], nseq[1], &e);
            gq_alloc_fail_after(-1);
            if (rc != 0) {
                CHECK_EQ_INT(rc, GQ_ENOMEM);
                CHECK_EQ_INT(e.code, GQ_ENOMEM);
            }
            gptq_hessian_free(h3);
            CHECK_EQ_INT(gq_mem_current(), base);
            if (rc != 0 && rc != GQ_ENOMEM)
                break;
        }
        CHECK_EQ_INT(rc, 0);
        CHECK(n >= 2);
    }
done:
    gptq_hessian_free(h);
    for (int b = 0; b < 5; b++) {
        free(x[b]);
        free(mask[b]);
    }
    free(S);
}

/* ---- damping, bad inputs, cancellation, allocation failures ----------------- */

static int result_is_empty(const struct gptq_result *r)
{
    return !r->qint && !r->scales && !r->zeros && !r->g_idx && !r->wq && !r->perm;
}

static int all_finite_f(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static void random_w(float *W, size_t n, unsigned long long seed)
{
    for (size_t i = 0; i < n; i++)
        W[i] = (float)(0.02 * test_rand_normal(&seed));
}

static void test_gptq__damping(void)
{
    const size_t n = 64, k = 32, rows = 16;
    float *H = malloc(n * n * sizeof(float)), *W = malloc(rows * n * sizeof(float));
    double *B = malloc(n * k * sizeof(double));
    unsigned long long s = 4711;
    gq_err e = GQ_ERR_INIT;

    CHECK(H && W && B);
    if (!H || !W || !B)
        goto done;
    random_w(W, rows * n, 5);

    /* fixable: B B^T (rank 32) - 0.5 I has 32 eigenvalues at -0.5 while
     * mean(diag) is about 31.5, so damping 0.01 (0.315) fails and
     * 0.0175 (0.55) succeeds */
    for (size_t i = 0; i < n * k; i++)
        B[i] = test_rand_normal(&s);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            double v = 0.0;
            for (size_t t = 0; t < k; t++)
                v += B[i * k + t] * B[j * k + t];
            H[i * n + j] = (float)(v - (i == j ? 0.5 : 0.0));
        }
    }
    {
        struct gptq_params p = params(4, 16, 0, 1, 0);
        struct gptq_result r;
        struct ref_result o;
        memset(&r, 0, sizeof(r));
        memset(&o, 0, sizeof(o));
        CHECK_OK(gptq_quantize(&r, W, rows, n, H, 4.0, &p, NULL, &e), &e);
        CHECK_EQ_INT(ref_gptq(&o, W, rows, n, H, 4.0, &p, NULL, NULL), 0);
        printf("  fixable hessian: damp_percent %.4f after %d retries (oracle %.4f after %d)\n",
               r.damp_percent, r.damp_retries, o.damp_percent, o.damp_retries);
        CHECK(r.damp_retries > 0);
        CHECK(r.damp_percent > p.damp_percent);
        CHECK_EQ_INT(r.damp_retries, o.damp_retries);
        CHECK_NEAR(r.damp_percent, o.damp_percent, 1e-12);
        CHECK_NEAR(r.damp_percent, p.damp_percent + r.damp_retries * p.damp_auto_increment,
                   1e-12);
        CHECK(r.wq && all_finite_f(r.wq, rows * n) && all_finite_f(r.scales, r.ngroups * rows));
        CHECK(isfinite(r.avg_loss) && isfinite(r.out_err));
        gptq_result_free(&r);
        ref_result_free(&o);

        /* without the automatic increase it is an error */
        p.damp_auto_increment = 0.0;
        gq_err_clear(&e);
        CHECK_EQ_INT(gptq_quantize(&r, W, rows, n, H, 4.0, &p, NULL, &e), GQ_ENUMERIC);
        CHECK(result_is_empty(&r));
        CHECK_MSG(strstr(e.msg, "positive definite") != NULL, "message: %s", e.msg);
        CHECK_EQ_INT(ref_gptq(&o, W, rows, n, H, 4.0, &p, NULL, NULL), GQ_ENUMERIC);
    }

    /* hopeless: I - 100 v v^T has an eigenvalue -99 and a negative mean diagonal */
    {
        struct gptq_params p = params(4, -1, 0, 0, 0);
        struct gptq_result r;
        struct ref_result o;
        double nv = 0.0;
        double *v = B;   /* reuse: n values */
        memset(&r, 0, sizeof(r));
        memset(&o, 0, sizeof(o));
        for (size_t i = 0; i < n; i++) {
            v[i] = test_rand_normal(&s);
            nv += v[i] * v[i];
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                H[i * n + j] = (float)((i == j ? 1.0 : 0.0) - 100.0 * v[i] * v[j] / nv);
        gq_err_clear(&e);
        CHECK_EQ_INT(gptq_quantize(&r, W, rows, n, H, 4.0, &p, NULL, &e), GQ_ENUMERIC);
        CHECK_EQ_INT(e.code, GQ_ENUMERIC);
        CHECK(result_is_empty(&r));
        CHECK_MSG(strstr(e.msg, "positive definite") != NULL, "message: %s", e.msg);
        CHECK_MSG(strstr(e.msg, "damp") != NULL, "message names no damping: %s", e.msg);
        printf("  hopeless hessian: \"%s\"\n", e.msg);
        CHECK_EQ_INT(ref_gptq(&o, W, rows, n, H, 4.0, &p, NULL, NULL), GQ_ENUMERIC);
    }
done:
    free(H);
    free(W);
    free(B);
}

static void test_gptq__bad_inputs(void)
{
    struct layer L;
    struct gptq_params p = params(4, 32, 0, 1, 0);
    struct gptq_result r;
    gq_err e = GQ_ERR_INIT;
    float *Wb = NULL, *Hb = NULL;
    size_t base;

    memset(&r, 0, sizeof(r));
    if (layer_make(&L, 16, 70, 1, 0xbadu) < 0) {
        CHECK(0);
        return;
    }
    Wb = malloc(L.rows * L.cols * sizeof(float));
    Hb = malloc(L.cols * L.cols * sizeof(float));
    if (!Wb || !Hb) {
        CHECK(0);
        goto done;
    }
    base = gq_mem_current();

    memcpy(Hb, L.H, L.cols * L.cols * sizeof(float));
    Hb[5 * L.cols + 9] = NAN;
    CHECK_EQ_INT(gptq_quantize(&r, L.W, L.rows, L.cols, Hb, 1.0, &p, NULL, &e), GQ_ENUMERIC);
    CHECK(result_is_empty(&r));
    memcpy(Hb, L.H, L.cols * L.cols * sizeof(float));
    Hb[3 * L.cols + 3] = NAN;   /* on the diagonal */
    CHECK_EQ_INT(gptq_quantize(&r, L.W, L.rows, L.cols, Hb, 1.0, &p, NULL, &e), GQ_ENUMERIC);
    CHECK(result_is_empty(&r));

    memcpy(Wb, L.W, L.rows * L.cols * sizeof(float));
    Wb[7 * L.cols + 11] = INFINITY;
    gq_err_clear(&e);
    CHECK(gptq_quantize(&r, Wb, L.rows, L.cols, L.H, 1.0, &p, NULL, &e) < 0);
    CHECK(e.code < 0);
    CHECK(result_is_empty(&r));
    Wb[7 * L.cols + 11] = -INFINITY;
    CHECK(gptq_quantize(&r, Wb, L.rows, L.cols, L.H, 1.0, &p, NULL, &e) < 0);
    Wb[7 * L.cols + 11] = NAN;
    CHECK(gptq_quantize(&r, Wb, L.rows, L.cols, L.H, 1.0, &p, NULL, &e) < 0);
    CHECK(result_is_empty(&r));

    /* bad shapes and parameters */
    CHECK_EQ_INT(gptq_quantize(&r, L.W, 0, L.cols, L.H, 1.0, &p, NULL, &e), GQ_EINVAL);
    p.q.bits = 9;
    CHECK_EQ_INT(gptq_quantize(&r, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, &e), GQ_EINVAL);
    CHECK(result_is_empty(&r));
    CHECK_EQ_INT(gq_mem_current(), base);
done:
    free(Wb);
    free(Hb);
    layer_free(&L);
}

static void test_gptq__cancel(void)
{
    struct layer L;
    struct gptq_params p = params(4, 32, 0, 1, 0);
    struct gptq_result r;
    gq_err e = GQ_ERR_INIT;
    atomic_bool cancel;
    size_t base = gq_mem_current();

    memset(&r, 0, sizeof(r));
    if (layer_make(&L, 24, 150, 1, 0xca11u) < 0) {
        CHECK(0);
        return;
    }
    atomic_init(&cancel, true);
    CHECK_EQ_INT(gptq_quantize(&r, L.W, L.rows, L.cols, L.H, 1.0, &p, &cancel, &e),
                 GQ_ECANCELED);
    CHECK_EQ_INT(e.code, GQ_ECANCELED);
    CHECK(result_is_empty(&r));
    CHECK_EQ_INT(gq_mem_current(), base);

    atomic_store(&cancel, false);
    CHECK_OK(gptq_quantize(&r, L.W, L.rows, L.cols, L.H, 1.0, &p, &cancel, &e), &e);
    CHECK(r.qint != NULL);
    gptq_result_free(&r);
    CHECK(result_is_empty(&r));
    gptq_result_free(NULL);
    CHECK_EQ_INT(gq_mem_current(), base);
    layer_free(&L);
}

static void test_gptq__alloc_failures(void)
{
    struct layer L;
    struct gptq_params ps[3];
    size_t base = gq_mem_current();

    if (layer_make(&L, 20, 90, 2, 0xa110cu) < 0) {
        CHECK(0);
        return;
    }
    ps[0] = params(4, 32, 0, 1, 0);    /* act-order: sort and permutation buffers */
    ps[0].q.mse = 1;                   /* mse: work buffer */
    ps[0].block_size = 32;
    ps[1] = params(3, -1, 1, 0, 0);
    ps[2] = params(4, 32, 0, 1, 1);
    for (int i = 0; i < 3; i++) {
        int rc = -1;
        long n;
        for (n = 0; n < 1000 && rc != 0; n++) {
            struct gptq_result r;
            gq_err e = GQ_ERR_INIT;
            memset(&r, 0, sizeof(r));
            gq_alloc_fail_after(n);
            rc = gptq_quantize(&r, L.W, L.rows, L.cols, L.H, 1.0, &ps[i], NULL, &e);
            gq_alloc_fail_after(-1);
            if (rc != 0) {
                CHECK_MSG(rc == GQ_ENOMEM && e.code == GQ_ENOMEM,
                          "config %d, failing allocation %ld: rc %d (%s)", i, n, rc, e.msg);
                CHECK(result_is_empty(&r));
                CHECK_EQ_INT(gq_mem_current(), base);
                if (rc != GQ_ENOMEM)
                    break;
            } else {
                CHECK(r.qint != NULL && r.wq != NULL);
            }
            gptq_result_free(&r);
        }
        printf("  config %d: succeeded after %ld injected failures\n", i, n - 1);
        CHECK_EQ_INT(rc, 0);
        CHECK(n >= 5);
    }
    CHECK_EQ_INT(gq_mem_current(), base);
    layer_free(&L);
}

static void test_gptq__params_check(void)
{
    struct gptq_params p;
    gq_err e = GQ_ERR_INIT;

    gptq_params_default(&p);
    CHECK_EQ_INT(p.q.bits, 4);
    CHECK_EQ_INT(p.q.sym, 0);
    CHECK_EQ_INT(p.group_size, 128);
    CHECK_EQ_INT(p.desc_act, 0);
    CHECK_EQ_INT(p.static_groups, 0);
    CHECK_EQ_INT(p.block_size, 128);
    CHECK_NEAR(p.damp_percent, 0.01, 1e-15);
    CHECK_NEAR(p.damp_auto_increment, 0.0025, 1e-15);
    CHECK_EQ_INT(p.metrics, 1);
    CHECK_OK(gptq_params_check(&p, &e), &e);

#define REJECT(field, value)                                                          \
    do {                                                                              \
        gptq_params_default(&p);                                                      \
        p.field = (value);                                                            \
        gq_err_clear(&e);                                                             \
        CHECK_EQ_INT(gptq_params_check(&p, &e), GQ_EINVAL);                           \
        CHECK_MSG(e.code == GQ_EINVAL && e.msg[0] != '\0', "%s = %s", #field, #value); \
    } while (0)
    REJECT(q.bits, 9);
    REJECT(q.bits, 0);
    REJECT(group_size, 0);
    REJECT(group_size, -2);
    REJECT(damp_percent, -0.01);
    REJECT(damp_percent, 1.0);
    REJECT(damp_percent, 1.5);
    REJECT(damp_percent, NAN);
    REJECT(block_size, 0);
    REJECT(block_size, -128);
    REJECT(damp_auto_increment, -0.1);
#undef REJECT
    gptq_params_default(&p);
    p.group_size = -1;
    CHECK_OK(gptq_params_check(&p, &e), &e);
    p.group_size = 7;
    p.block_size = 1;
    p.q.bits = 8;
    CHECK_OK(gptq_params_check(&p, &e), &e);
}

/* ---- the oracle itself ------------------------------------------------------ */

/*
 * Checks of the oracle that do not go through the code under test: the
 * factor really is the inverse's Cholesky factor; with a diagonal Hessian
 * no error propagates, so GPTQ is RTN and the loss is a closed form; and
 * tie following follows nothing when there is nothing to follow.
 */
static void test_gptq__oracle_sanity(void)
{
    const size_t n = 40, rows = 12;
    float *H = malloc(n * n * sizeof(float)), *W = malloc(rows * n * sizeof(float));
    double *B = malloc(n * n * sizeof(double));
    struct ref_factor f;
    unsigned long long s = 2024;

    memset(&f, 0, sizeof(f));
    CHECK(H && W && B);
    if (!H || !W || !B)
        goto done;

    /* (a) U^T U (P H' P^T + damp I) = I, U upper; a dead column gets diagonal 1 */
    for (size_t i = 0; i < n * n; i++)
        B[i] = test_rand_normal(&s);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double v = 0.0;
            for (size_t k = 0; k < n; k++)
                v += B[i * n + k] * B[j * n + k] * (1.0 + (double)(k % 3));
            H[i * n + j] = (float)v;
        }
    for (size_t i = 0; i < n; i++)   /* column 5 dead */
        H[5 * n + i] = H[i * n + 5] = 0.0f;
    for (int desc = 0; desc <= 1; desc++) {
        double mean = 0.0, worst = 0.0;
        CHECK_EQ_INT(ref_factor_new(&f, H, n, desc, 0.01, 0.0025), 0);
        if (!f.u)
            continue;
        CHECK_EQ_INT(f.damp_retries, 0);
        for (size_t i = 0; i < n; i++)
            mean += H[i * n + i] == 0.0f ? 1.0 : (double)H[i * n + i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < i; j++)
                CHECK(f.u[i * n + j] == 0.0);
        if (desc) {
            for (size_t i = 1; i < n; i++) {
                float a = H[f.perm[i - 1] * (n + 1)], b = H[f.perm[i] * (n + 1)];
                a = a == 0.0f ? 1.0f : a;
                b = b == 0.0f ? 1.0f : b;
                CHECK(a > b || (a == b && f.perm[i - 1] < f.perm[i]));
            }
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < n; j++) {
                /* (U^T U M)[i][j], M = P H' P^T + damp I */
                double v = 0.0;
                for (size_t k = 0; k < n; k++) {
                    double utu = 0.0, m;
                    size_t pk = desc ? (size_t)f.perm[k] : k, pj = desc ? (size_t)f.perm[j] : j;
                    for (size_t t = 0; t < n; t++)
                        utu += f.u[t * n + i] * f.u[t * n + k];
                    m = pk == pj ? (H[pk * n + pk] == 0.0f ? 1.0 : (double)H[pk * n + pk]) +
                                       0.01 * mean
                                 : (double)H[pk * n + pj];
                    v += utu * m;
                }
                v -= i == j ? 1.0 : 0.0;
                if (fabs(v) > worst)
                    worst = fabs(v);
            }
        }
        CHECK_MSG(worst < 1e-9, "desc %d: |U^T U M - I| = %g", desc, worst);
        ref_factor_free(&f);
    }

    /* (b) diagonal H: GPTQ == RTN on the dead-zeroed W, loss in closed form */
    memset(H, 0, n * n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        H[i * n + i] = i == 9 ? 0.0f : (float)(0.5 + (double)((i * 7) % 11));
    random_w(W, rows * n, 8);
    for (size_t r = 0; r < rows; r++)
        W[r * n + 9] = 0.0f;
    {
        const int gss[3] = { -1, 16, 7 };
        for (int gi = 0; gi < 3; gi++) {
            for (int cfg = 0; cfg < 3; cfg++) {
                /* natural groups throughout: no act-order unless static */
                struct gptq_params p = params(cfg == 2 ? 3 : 4, gss[gi], cfg == 1, cfg == 2,
                                              cfg == 2 && gss[gi] > 0);
                size_t ng = gss[gi] > 0 ? (n + (size_t)gss[gi] - 1) / (size_t)gss[gi] : 1;
                uint8_t q[12 * 40];
                float sc[12 * 40], wq[12 * 40];
                int32_t zr[12 * 40];
                struct ref_result o;
                struct gptq_result r;
                gq_err e = GQ_ERR_INIT;
                double mean = 0.0, loss = 0.0;

                if (cfg == 2 && gss[gi] < 0)
                    p.desc_act = 0;   /* act-order with one group would regroup nothing */
                memset(&o, 0, sizeof(o));
                memset(&r, 0, sizeof(r));
                CHECK(ng * rows <= sizeof(sc) / sizeof(sc[0]));
                CHECK_OK(quant_rtn(q, sc, zr, wq, W, rows, n, gss[gi], &p.q, &e), &e);
                CHECK_EQ_INT(ref_gptq(&o, W, rows, n, H, 2.0, &p, NULL, NULL), 0);
                CHECK_OK(gptq_quantize(&r, W, rows, n, H, 2.0, &p, NULL, &e), &e);
                if (!o.qint || !r.qint)
                    continue;
                CHECK_MSG(memcmp(o.qint, q, rows * n) == 0, "gs %d cfg %d: oracle != rtn",
                          gss[gi], cfg);
                CHECK_MSG(memcmp(r.qint, q, rows * n) == 0, "gs %d cfg %d: gptq != rtn",
                          gss[gi], cfg);
                for (size_t i = 0; i < ng * rows; i++)
                    CHECK(o.zeros[i] == zr[i] && o.scales[i] == (double)sc[i]);
                for (size_t i = 0; i < n; i++)
                    mean += H[i * n + i] == 0.0f ? 1.0 : (double)H[i * n + i];
                mean /= (double)n;
                /* U_jj = 1 / sqrt(h_j + damp): loss = sum (w - q)^2 (h_j + damp) / 2 */
                for (size_t r0 = 0; r0 < rows; r0++)
                    for (size_t c = 0; c < n; c++) {
                        size_t g = (gss[gi] > 0 ? c / (size_t)gss[gi] : 0) * rows + r0;
                        double d = (double)W[r0 * n + c] -
                                   (double)sc[g] * ((double)q[r0 * n + c] - (double)zr[g]);
                        double h = H[c * n + c] == 0.0f ? 1.0 : (double)H[c * n + c];
                        loss += d * d * (h + 0.01 * mean) / 2.0;
                    }
                CHECK_NEAR(o.loss, loss, 1e-9 * loss);
                CHECK_NEAR(o.avg_loss, loss / 2.0, 1e-9 * loss);
                CHECK_NEAR(r.avg_loss, loss / 2.0, 1e-5 * loss);
                ref_result_free(&o);
                gptq_result_free(&r);
            }
        }
    }

    /* (c) tie following: its own codes are followed nowhere; a code one step
     * off far from any tie is not followed either */
    {
        struct layer L;
        struct gptq_params p = params(4, 32, 0, 1, 0);
        struct ref_result o0, o1;
        struct ref_hint hint;
        uint8_t *alt = NULL;
        memset(&o0, 0, sizeof(o0));
        memset(&o1, 0, sizeof(o1));
        if (layer_make(&L, 16, 100, 1, 0x1eu) < 0) {
            CHECK(0);
            goto done;
        }
        CHECK_EQ_INT(ref_gptq(&o0, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, NULL), 0);
        alt = malloc(L.rows * L.cols);
        if (o0.qint && alt) {
            size_t k = SIZE_MAX;
            hint.qint = o0.qint;
            hint.tol = TIE_TOL;
            CHECK_EQ_INT(ref_gptq(&o1, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, &hint), 0);
            CHECK_EQ_INT(o1.ties_followed, 0);
            CHECK(o1.qint && memcmp(o1.qint, o0.qint, L.rows * L.cols) == 0);
            ref_result_free(&o1);
            memcpy(alt, o0.qint, L.rows * L.cols);
            for (size_t i = 0; i < L.rows * L.cols && k == SIZE_MAX; i++)
                if (o0.qint[i] > 0 && o0.qint[i] < 15 && fabs(o0.qv[i] - rint(o0.qv[i])) < 0.3)
                    k = i;
            CHECK(k != SIZE_MAX);
            if (k != SIZE_MAX) {
                alt[k]++;
                hint.qint = alt;
                CHECK_EQ_INT(ref_gptq(&o1, L.W, L.rows, L.cols, L.H, 1.0, &p, NULL, &hint), 0);
                CHECK_EQ_INT(o1.ties_followed, 0);
                CHECK(o1.qint && memcmp(o1.qint, o0.qint, L.rows * L.cols) == 0);
            }
        }
        free(alt);
        ref_result_free(&o0);
        ref_result_free(&o1);
        layer_free(&L);
    }
done:
    ref_factor_free(&f);
    free(H);
    free(W);
    free(B);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    t_prog = "test_gptq";
    RUN(test_gptq__params_check);
    RUN(test_gptq__hessian);
    RUN(test_gptq__oracle_sanity);
    RUN(test_gptq__vs_oracle_grid);
    RUN(test_gptq__vs_oracle_variants);
    RUN(test_gptq__beats_rtn);
    RUN(test_gptq__metrics);
    RUN(test_gptq__damping);
    RUN(test_gptq__bad_inputs);
    RUN(test_gptq__cancel);
    RUN(test_gptq__alloc_failures);
    return test_report();
}
