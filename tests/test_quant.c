/*
 * test_quant.c - the float32 quantizer (core/quant.h) against the naive
 * double oracle (tests/ref_gptq.c), known values of the reference's
 * quirks, the MSE search, RTN with groups, config validation.
 */
#include <stdint.h>

#include "mem.h"
#include "quant.h"
#include "ref_gptq.h"
#include "test.h"

/* Exact-tie differences allowed between float32 and double: codes, zeros. */
#define MAX_CODE_MISMATCH_FRAC 1e-4
#define MAX_ZERO_MISMATCH_FRAC 1e-3
#define SCALE_REL_TOL 1e-6

static struct quant_config cfg(int bits, int sym, int mse)
{
    struct quant_config c;
    quant_config_default(&c);
    c.bits = bits;
    c.sym = sym;
    c.mse = mse;
    return c;
}

/*
 * A (rows, ld) matrix whose rows cover the shapes the quantizer must get
 * right: normal, positive only (the sym quirk), negative only, all zero,
 * one non-zero, heavy tails, tiny magnitudes, an exactly symmetric range
 * (asym zero is an exact tie k + 0.5 there), and integers.
 */
static void fill_rows(float *x, size_t rows, size_t cols, size_t ld, unsigned long long seed)
{
    unsigned long long s = seed;
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        int kind = (int)(r % 10);
        for (size_t k = 0; k < ld; k++)
            xr[k] = k < cols ? 0.0f : 1e30f;   /* padding must never be read */
        for (size_t k = 0; k < cols; k++) {
            double v = test_rand_normal(&s);
            switch (kind) {
            case 0: xr[k] = (float)(0.02 * v); break;
            case 1: xr[k] = (float)(0.5 + fabs(v)); break;
            case 2: xr[k] = (float)(-0.1 * fabs(v)); break;
            case 3: xr[k] = 0.0f; break;
            case 4: xr[k] = k == cols / 3 ? (float)(v + 0.1) : 0.0f; break;
            case 5: xr[k] = (float)(v * v * v); break;
            case 6: xr[k] = (float)(1e-4 * v); break;
            case 7: xr[k] = (float)(0.3 * test_rand_unit(&s) - 0.15); break;
            case 8: xr[k] = (float)((int)(8.0 * v)); break;
            default: xr[k] = (float)(3.0 * v); break;
            }
        }
        if (kind == 7 && cols >= 2) {   /* exactly symmetric range */
            xr[0] = -0.25f;
            xr[cols - 1] = 0.25f;
        }
    }
}

struct cmp {
    size_t rows, zero_mismatch, scale_bad, codes, code_mismatch;
    double max_scale_rel;
};

/* Compare float params (s, z) of x with the oracle's, row by row, and all codes. */
static void compare_params(struct cmp *m, const float *s, const float *z, const float *x,
                           size_t rows, size_t cols, size_t ld, const struct quant_config *c)
{
    double *xd = calloc(rows * cols, sizeof(double));
    double *sd = malloc(rows * sizeof(double)), *zd = malloc(rows * sizeof(double));
    int maxq = quant_maxq(c->bits);

    CHECK(xd && sd && zd);
    if (!xd || !sd || !zd)
        goto done;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < cols; k++)
            xd[r * cols + k] = (double)x[r * ld + k];
    ref_find_params(sd, zd, xd, rows, cols, cols, c);
    for (size_t r = 0; r < rows; r++) {
        double rel = fabs((double)s[r] - sd[r]) / fabs(sd[r]);
        m->rows++;
        if (rel > m->max_scale_rel)
            m->max_scale_rel = rel;
        if (!(rel <= SCALE_REL_TOL)) {
            if (m->scale_bad++ == 0)
                fprintf(stderr, "  bits %d sym %d mse %d row %zu: scale %.9g vs oracle %.17g\n",
                        c->bits, c->sym, c->mse, r, (double)s[r], sd[r]);
        }
        if ((double)z[r] != zd[r]) {
            m->zero_mismatch++;
            continue;   /* codes are compared only where the parameters agree */
        }
        for (size_t k = 0; k < cols; k++) {
            int qf = quant_code(x[r * ld + k], s[r], z[r], maxq);
            int qr = ref_code(xd[r * cols + k], sd[r], zd[r], maxq);
            m->codes++;
            if (qf != qr)
                m->code_mismatch++;
        }
    }
done:
    free(xd);
    free(sd);
    free(zd);
}

static void check_cmp(const struct cmp *m, const char *what)
{
    printf("  %s: rows %zu, zero mismatches %zu, codes %zu, code mismatches %zu, "
           "max scale rel diff %.3g\n",
           what, m->rows, m->zero_mismatch, m->codes, m->code_mismatch, m->max_scale_rel);
    CHECK_EQ_INT(m->scale_bad, 0);
    CHECK_MSG((double)m->zero_mismatch <= MAX_ZERO_MISMATCH_FRAC * (double)m->rows,
              "%zu of %zu zeros differ", m->zero_mismatch, m->rows);
    CHECK_MSG((double)m->code_mismatch <= MAX_CODE_MISMATCH_FRAC * (double)m->codes,
              "%zu of %zu codes differ", m->code_mismatch, m->codes);
}

/* ---- cases ---------------------------------------------------------------- */

static void test_quant__config_check(void)
{
    struct quant_config c;
    gq_err e = GQ_ERR_INIT;

    quant_config_default(&c);
    CHECK_EQ_INT(c.bits, 4);
    CHECK_EQ_INT(c.sym, 0);
    CHECK_EQ_INT(c.mse, 0);
    CHECK_EQ_INT(c.mse_grid, 100);
    CHECK_NEAR(c.mse_maxshrink, 0.8, 1e-7);
    CHECK_NEAR(c.mse_norm, 2.4, 1e-7);
    CHECK_OK(quant_config_check(&c, &e), &e);
    for (int b = 1; b <= 8; b++) {
        c = cfg(b, b & 1, 0);
        CHECK_OK(quant_config_check(&c, &e), &e);
    }
    {
        const int bad[] = { 0, 9, -1, 16, 32 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            c = cfg(bad[i], 0, 0);
            gq_err_clear(&e);
            CHECK_EQ_INT(quant_config_check(&c, &e), GQ_EINVAL);
            CHECK_EQ_INT(e.code, GQ_EINVAL);
            CHECK_MSG(strstr(e.msg, "bits") != NULL, "message '%s' names no field", e.msg);
        }
    }
    c = cfg(4, 0, 1);
    CHECK_OK(quant_config_check(&c, &e), &e);
    c.mse_grid = 0;
    CHECK_EQ_INT(quant_config_check(&c, &e), GQ_EINVAL);
    c = cfg(4, 0, 1);
    c.mse_maxshrink = 0.0f;
    CHECK_EQ_INT(quant_config_check(&c, &e), GQ_EINVAL);
    c.mse_maxshrink = 1.5f;
    CHECK_EQ_INT(quant_config_check(&c, &e), GQ_EINVAL);
    c = cfg(4, 0, 1);
    c.mse_norm = 0.0f;
    CHECK_EQ_INT(quant_config_check(&c, &e), GQ_EINVAL);
}

static void test_quant__known_values(void)
{
    struct quant_config c;
    float s[4], z[4];

    /* sym: the constant zero (maxq + 1) / 2 whatever the row */
    {
        const float row[5] = { -0.3f, 0.1f, 0.7f, -0.9f, 0.2f };
        const int bits[4] = { 2, 3, 4, 8 }, want[4] = { 2, 4, 8, 128 };
        for (int i = 0; i < 4; i++) {
            c = cfg(bits[i], 1, 0);
            quant_find_params(s, z, row, 1, 5, 5, &c);
            CHECK_EQ_INT((int)z[0], want[i]);
            /* xmax = max(|xmin|, xmax) = 0.9, xmin = -0.9 */
            CHECK_NEAR(s[0], 1.8 / quant_maxq(bits[i]), 1e-7);
        }
        c = cfg(4, 1, 0);
        quant_find_params(s, z, row, 1, 5, 5, &c);
        /* +absmax clamps: rint(0.9 / (1.8/15)) + 8 = 16 -> 15; -absmax -> 0 */
        CHECK_EQ_INT(quant_code(0.9f, s[0], z[0], 15), 15);
        CHECK_EQ_INT(quant_code(-0.9f, s[0], z[0], 15), 0);
    }

    /* all-zero row: range [-1, 1], scale 2 / maxq; the asym zero is the float32
     * rint of 1 / fl(2/maxq), which falls just below maxq / 2 for 4 bits: 7 */
    {
        const float row[3] = { 0.0f, 0.0f, 0.0f };
        c = cfg(4, 0, 0);
        quant_find_params(s, z, row, 1, 3, 3, &c);
        CHECK(s[0] == 2.0f / 15.0f);
        CHECK_EQ_INT((int)z[0], 7);
        CHECK_EQ_INT(quant_code(0.0f, s[0], z[0], 15), 7);
        CHECK(quant_dequant(7, s[0], z[0]) == 0.0f);
        c = cfg(4, 1, 0);
        quant_find_params(s, z, row, 1, 3, 3, &c);
        CHECK(s[0] == 2.0f / 15.0f);
        CHECK_EQ_INT((int)z[0], 8);
        c = cfg(8, 0, 0);
        quant_find_params(s, z, row, 1, 3, 3, &c);
        CHECK(s[0] == 2.0f / 255.0f);
        CHECK_EQ_INT((int)z[0], 127);
        c = cfg(2, 0, 0);   /* 1 / fl(2/3) = 1.5 exactly in float32: half to even -> 2 */
        quant_find_params(s, z, row, 1, 3, 3, &c);
        CHECK_EQ_INT((int)z[0], 2);
        {   /* the oracle agrees on every bit width */
            double sd, zd, xd[3] = { 0.0, 0.0, 0.0 };
            for (int b = 1; b <= 8; b++) {
                for (int sym = 0; sym <= 1; sym++) {
                    c = cfg(b, sym, 0);
                    quant_find_params(s, z, row, 1, 3, 3, &c);
                    ref_find_params(&sd, &zd, xd, 1, 3, 3, &c);
                    CHECK_MSG((double)s[0] == sd && (double)z[0] == zd,
                              "bits %d sym %d: %g/%g vs oracle %g/%g", b, sym, (double)s[0],
                              (double)z[0], sd, zd);
                }
            }
        }
    }

    /* sym quirk: a row without negatives keeps xmin = 0, so scale = xmax / maxq
     * (not 2 xmax / maxq) and the top half of the row clamps */
    {
        const float row[3] = { 0.5f, 1.0f, 3.0f };
        double sd, zd, xd[3] = { 0.5, 1.0, 3.0 };
        c = cfg(4, 1, 0);
        quant_find_params(s, z, row, 1, 3, 3, &c);
        CHECK(s[0] == 3.0f / 15.0f);
        CHECK_EQ_INT((int)z[0], 8);
        CHECK_EQ_INT(quant_code(3.0f, s[0], z[0], 15), 15);
        CHECK_NEAR(quant_dequant(15, s[0], z[0]), 1.4, 1e-6);
        CHECK_EQ_INT(quant_code(1.0f, s[0], z[0], 15), 13);
        ref_find_params(&sd, &zd, xd, 1, 3, 3, &c);
        CHECK(sd == (double)(3.0f / 15.0f));
        CHECK(zd == 8.0);
        /* a row with a negative value does get the symmetric range */
        {
            const float row2[3] = { -0.5f, 1.0f, 3.0f };
            quant_find_params(s, z, row2, 1, 3, 3, &c);
            CHECK(s[0] == 6.0f / 15.0f);
        }
    }

    /* half to even: weights exactly k + 0.5 steps from zero round to the even k */
    {
        const float row[8] = { 0.0f, 2.5f, 3.5f, 0.5f, 1.5f, 15.0f, 4.5f, 14.5f };
        const int want[8] = { 0, 2, 4, 0, 2, 15, 4, 14 };
        c = cfg(4, 0, 0);
        quant_find_params(s, z, row, 1, 8, 8, &c);
        CHECK(s[0] == 1.0f);
        CHECK_EQ_INT((int)z[0], 0);
        for (int k = 0; k < 8; k++) {
            CHECK_EQ_INT(quant_code(row[k], s[0], z[0], 15), want[k]);
            CHECK_EQ_INT(ref_code((double)row[k], 1.0, 0.0, 15), want[k]);
        }
    }
    {   /* negative side: zero 15, -2.5 -> -2 + 15, -3.5 -> -4 + 15 */
        const float row[4] = { -15.0f, 0.0f, -2.5f, -3.5f };
        c = cfg(4, 0, 0);
        quant_find_params(s, z, row, 1, 4, 4, &c);
        CHECK(s[0] == 1.0f);
        CHECK_EQ_INT((int)z[0], 15);
        CHECK_EQ_INT(quant_code(-2.5f, s[0], z[0], 15), 13);
        CHECK_EQ_INT(quant_code(-3.5f, s[0], z[0], 15), 11);
        CHECK_EQ_INT(quant_code(-15.0f, s[0], z[0], 15), 0);
        CHECK_EQ_INT(quant_code(-20.0f, s[0], z[0], 15), 0);
    }
    /* the asym zero itself: -xmin / scale = 2.5 -> 2, 3.5 -> 4 */
    {
        const float r1[2] = { -2.5f, 12.5f }, r2[2] = { -3.5f, 11.5f };
        c = cfg(4, 0, 0);
        quant_find_params(s, z, r1, 1, 2, 2, &c);
        CHECK(s[0] == 1.0f);
        CHECK_EQ_INT((int)z[0], 2);
        quant_find_params(s, z, r2, 1, 2, 2, &c);
        CHECK(s[0] == 1.0f);
        CHECK_EQ_INT((int)z[0], 4);
    }
    /* the inline rint itself */
    CHECK(gq_rintf(0.5f) == 0.0f);
    CHECK(gq_rintf(1.5f) == 2.0f);
    CHECK(gq_rintf(2.5f) == 2.0f);
    CHECK(gq_rintf(-2.5f) == -2.0f);
    CHECK(gq_rintf(-3.5f) == -4.0f);
    CHECK(gq_rintf(8388609.0f) == 8388609.0f);
    CHECK(gq_rintf(1e10f) == 1e10f);
}

/* find_params and find_params_t against the oracle, bits 1..8, sym and asym. */
static void test_quant__params_vs_oracle(void)
{
    const size_t rows = 200, cols = 96, ld = 101;
    float *x = malloc(rows * ld * sizeof(float)), *xt = malloc(rows * cols * sizeof(float));
    float s[200], z[200], st[200], zt[200];
    struct cmp m;
    size_t t_mismatch = 0;

    memset(&m, 0, sizeof(m));
    CHECK(x && xt);
    if (!x || !xt)
        goto done;
    for (int b = 1; b <= 8; b++) {
        for (int sym = 0; sym <= 1; sym++) {
            struct quant_config c = cfg(b, sym, 0);
            fill_rows(x, rows, cols, ld, 1000u + (unsigned)(b * 2 + sym));
            for (size_t r = 0; r < rows; r++)
                for (size_t k = 0; k < cols; k++)
                    xt[k * rows + r] = x[r * ld + k];
            quant_find_params(s, z, x, rows, cols, ld, &c);
            quant_find_params_t(st, zt, xt, rows, cols, rows, &c, NULL);
            compare_params(&m, s, z, x, rows, cols, ld, &c);
            /* both layouts run the same float32 arithmetic: bit-identical */
            for (size_t r = 0; r < rows; r++)
                if (s[r] != st[r] || z[r] != zt[r])
                    t_mismatch++;
            for (size_t r = 0; r < rows; r++)
                CHECK_MSG(z[r] >= 0.0f && z[r] <= (float)quant_maxq(b) && z[r] == rintf(z[r]),
                          "bits %d row %zu zero %g", b, r, (double)z[r]);
        }
    }
    check_cmp(&m, "find_params vs oracle, bits 1..8");
    CHECK_EQ_INT(t_mismatch, 0);
done:
    free(x);
    free(xt);
}

/* sum |q(x) - x|^norm over a row */
static double row_err(const float *x, size_t cols, float s, float z, int maxq, double norm)
{
    double e = 0.0;
    for (size_t k = 0; k < cols; k++)
        e += pow(fabs((double)quant_dequant(quant_code(x[k], s, z, maxq), s, z) - (double)x[k]),
                 norm);
    return e;
}

static void test_quant__mse_search(void)
{
    const size_t rows = 120, cols = 128;
    float *x = malloc(rows * cols * sizeof(float)), *xt = malloc(rows * cols * sizeof(float));
    float s0[120], z0[120], s1[120], z1[120], st[120], zt[120], work[4 * 120];
    struct cmp m, mt;
    size_t worse = 0, t_differ = 0;

    memset(&m, 0, sizeof(m));
    memset(&mt, 0, sizeof(mt));
    CHECK(x && xt);
    if (!x || !xt)
        goto done;
    for (int b = 2; b <= 8; b++) {
        for (int sym = 0; sym <= 1; sym++) {
            struct quant_config c0 = cfg(b, sym, 0), c1 = cfg(b, sym, 1);
            unsigned long long seed = 77u + (unsigned)b * 5u + (unsigned)sym;
            double e0 = 0.0, e1 = 0.0, sq0 = 0.0, sq1 = 0.0;
            int maxq = quant_maxq(b);

            /* heavy-tailed rows, where clipping pays */
            for (size_t i = 0; i < rows * cols; i++) {
                double v = test_rand_normal(&seed);
                x[i] = (float)(0.02 * v * (1.0 + 0.5 * v * v));
            }
            for (size_t k = 0; k < cols; k++)   /* one all-zero row */
                x[7 * cols + k] = 0.0f;
            for (size_t r = 0; r < rows; r++)
                for (size_t k = 0; k < cols; k++)
                    xt[k * rows + r] = x[r * cols + k];
            quant_find_params(s0, z0, x, rows, cols, cols, &c0);
            quant_find_params(s1, z1, x, rows, cols, cols, &c1);
            quant_find_params_t(st, zt, xt, rows, cols, rows, &c1, work);
            compare_params(&m, s1, z1, x, rows, cols, cols, &c1);
            compare_params(&mt, st, zt, x, rows, cols, cols, &c1);
            for (size_t r = 0; r < rows; r++) {
                double a = row_err(x + r * cols, cols, s0[r], z0[r], maxq, 2.4);
                double bb = row_err(x + r * cols, cols, s1[r], z1[r], maxq, 2.4);
                e0 += a;
                e1 += bb;
                sq0 += row_err(x + r * cols, cols, s0[r], z0[r], maxq, 2.0);
                sq1 += row_err(x + r * cols, cols, s1[r], z1[r], maxq, 2.0);
                if (bb > a * (1.0 + 1e-5))
                    worse++;
                if (s1[r] != st[r] || z1[r] != zt[r])
                    t_differ++;
            }
            /* p = 1 is the first candidate, so the search never loses, and on
             * heavy tails it clearly wins */
            printf("  %d-bit %s: mse search error ratio %.4f (norm 2.4), %.4f (norm 2)\n", b,
                   sym ? "sym " : "asym", e1 / e0, sq1 / sq0);
            CHECK_MSG(e1 <= e0, "bits %d sym %d: norm-2.4 error %g vs %g without search", b, sym,
                      e1, e0);
            /* at low bit widths clipping the heavy tails clearly pays (measured <= 0.93) */
            if (b <= 4)
                CHECK_MSG(e1 < 0.95 * e0 && sq1 < 0.95 * sq0,
                          "bits %d sym %d: search gains too little: %g vs %g, %g vs %g", b, sym,
                          e1, e0, sq1, sq0);
        }
    }
    CHECK_EQ_INT(worse, 0);
    check_cmp(&m, "mse find_params vs oracle");
    check_cmp(&mt, "mse find_params_t vs oracle");
    printf("  mse find_params vs find_params_t rows that differ: %zu of %zu\n", t_differ,
           m.rows);
    CHECK((double)t_differ <= MAX_ZERO_MISMATCH_FRAC * (double)m.rows);
done:
    free(x);
    free(xt);
}

/* RTN against the oracle's find_params per natural group. */
static void check_rtn(const float *w, size_t rows, size_t cols, int gs,
                      const struct quant_config *c, struct cmp *m)
{
    size_t group = gs < 0 ? cols : (size_t)gs, ngroups = (cols + group - 1) / group;
    uint8_t *q = malloc(rows * cols), *q2 = malloc(rows * cols);
    float *sc = malloc(ngroups * rows * sizeof(float)), *wq = malloc(rows * cols * sizeof(float));
    int32_t *zr = malloc(ngroups * rows * sizeof(int32_t));
    double *xd = calloc(rows * group, sizeof(double)), *sd = malloc(rows * sizeof(double));
    double *zd = malloc(rows * sizeof(double));
    gq_err e = GQ_ERR_INIT;
    int maxq = quant_maxq(c->bits);

    CHECK(q && q2 && sc && wq && zr && xd && sd && zd);
    if (!q || !q2 || !sc || !wq || !zr || !xd || !sd || !zd)
        goto done;
    memset(wq, 0xff, rows * cols * sizeof(float));
    CHECK_OK(quant_rtn(q, sc, zr, wq, w, rows, cols, gs, c, &e), &e);
    CHECK_OK(quant_rtn(q2, sc, zr, NULL, w, rows, cols, gs, c, &e), &e);
    CHECK(memcmp(q, q2, rows * cols) == 0);
    for (size_t g = 0; g < ngroups; g++) {
        size_t c0 = g * group, width = cols - c0 < group ? cols - c0 : group;
        for (size_t r = 0; r < rows; r++)
            for (size_t k = 0; k < width; k++)
                xd[r * width + k] = (double)w[r * cols + c0 + k];
        ref_find_params(sd, zd, xd, rows, width, width, c);
        for (size_t r = 0; r < rows; r++) {
            float s = sc[g * rows + r];
            double rel = fabs((double)s - sd[r]) / sd[r];
            m->rows++;
            if (rel > m->max_scale_rel)
                m->max_scale_rel = rel;
            if (!(rel <= SCALE_REL_TOL))
                m->scale_bad++;
            if ((double)zr[g * rows + r] != zd[r]) {
                m->zero_mismatch++;
                continue;
            }
            for (size_t k = 0; k < width; k++) {
                size_t i = r * cols + c0 + k;
                int qr = ref_code(xd[r * width + k], sd[r], zd[r], maxq);
                m->codes++;
                if ((int)q[i] != qr)
                    m->code_mismatch++;
                /* wq is exactly the dequantized code with the stored parameters */
                if (wq[i] != quant_dequant(q[i], s, (float)zr[g * rows + r]))
                    m->scale_bad++;
            }
        }
    }
done:
    free(q);
    free(q2);
    free(sc);
    free(wq);
    free(zr);
    free(xd);
    free(sd);
    free(zd);
}

static void test_quant__rtn_groups(void)
{
    const size_t rows = 40, cols = 200;   /* 200 = 6*32 + 8 = 3*64 + 8 = 128 + 72 */
    float *w = malloc(rows * cols * sizeof(float));
    const int gss[] = { -1, 32, 64, 128, 256 };
    struct cmp m;

    memset(&m, 0, sizeof(m));
    CHECK(w != NULL);
    if (!w)
        return;
    fill_rows(w, rows, cols, cols, 4242);
    for (int b = 2; b <= 8; b++) {
        if (b == 5 || b == 6 || b == 7)
            continue;
        for (int sym = 0; sym <= 1; sym++) {
            struct quant_config c = cfg(b, sym, 0);
            for (size_t i = 0; i < sizeof(gss) / sizeof(gss[0]); i++)
                check_rtn(w, rows, cols, gss[i], &c, &m);
        }
    }
    {   /* with mse */
        struct quant_config c = cfg(4, 0, 1);
        check_rtn(w, rows, cols, 64, &c, &m);
    }
    check_cmp(&m, "rtn vs oracle, groups -1/32/64/128/256");

    /* the group decides the parameters: a group of a large value does not
     * widen its neighbour's range */
    {
        float row[64];
        uint8_t q[64];
        float sc[2];
        int32_t zr[2];
        gq_err e = GQ_ERR_INIT;
        struct quant_config c = cfg(4, 0, 0);
        for (int k = 0; k < 64; k++)
            row[k] = k < 32 ? 0.01f * (float)(k % 7) : 100.0f * (float)(k % 3);
        CHECK_OK(quant_rtn(q, sc, zr, NULL, row, 1, 64, 32, &c, &e), &e);
        CHECK(sc[0] == (0.01f * 6.0f) / 15.0f);
        CHECK(sc[1] == 200.0f / 15.0f);
    }
    free(w);
}

static void test_quant__rtn_errors(void)
{
    float w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, sc[8];
    int32_t zr[8];
    uint8_t q[8];
    struct quant_config c = cfg(4, 0, 0);
    gq_err e = GQ_ERR_INIT;
    size_t base;

    CHECK_EQ_INT(quant_rtn(q, sc, zr, NULL, w, 1, 8, 0, &c, &e), GQ_EINVAL);
    CHECK_EQ_INT(quant_rtn(q, sc, zr, NULL, w, 1, 8, -2, &c, &e), GQ_EINVAL);
    CHECK_EQ_INT(quant_rtn(q, sc, zr, NULL, w, 0, 8, 4, &c, &e), GQ_EINVAL);
    c.bits = 9;
    CHECK_EQ_INT(quant_rtn(q, sc, zr, NULL, w, 1, 8, 4, &c, &e), GQ_EINVAL);
    c.bits = 4;

    /* every allocation failure gives GQ_ENOMEM and leaks nothing */
    base = gq_mem_current();
    {
        int rc = -1;
        long n;
        for (n = 0; n < 100 && rc != 0; n++) {
            gq_err_clear(&e);
            gq_alloc_fail_after(n);
            rc = quant_rtn(q, sc, zr, NULL, w, 2, 4, 2, &c, &e);
            gq_alloc_fail_after(-1);
            CHECK_EQ_INT(gq_mem_current(), base);
            if (rc != 0) {
                CHECK_EQ_INT(rc, GQ_ENOMEM);
                CHECK_EQ_INT(e.code, GQ_ENOMEM);
                if (rc != GQ_ENOMEM)
                    break;
            }
        }
        CHECK_EQ_INT(rc, 0);
        CHECK(n >= 2);   /* it does allocate, so at least one failure was injected */
    }
}

int main(void)
{
    t_prog = "test_quant";
    RUN(test_quant__config_check);
    RUN(test_quant__known_values);
    RUN(test_quant__params_vs_oracle);
    RUN(test_quant__mse_search);
    RUN(test_quant__rtn_groups);
    RUN(test_quant__rtn_errors);
    return test_report();
}
