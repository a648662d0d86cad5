/*
 * test_dtype.c - float16 / bfloat16 conversions against independent oracles.
 *
 * Oracles that share no code with core/dtype.c:
 *   - the value of a half/bfloat16 pattern from its fields with ldexp();
 *   - f32 -> narrow by binary search over the (monotone) positive patterns
 *     and an exact midpoint comparison in double (2x versus lo + hi, both
 *     exact), ties to the even pattern;
 *   - where the compiler has it (GCC 12 on x86-64 does), C's _Float16 cast,
 *     which goes through libgcc's soft-float code.
 * Widening is checked over all 65536 patterns; narrowing over every
 * rounding boundary (each midpoint and its two float neighbours) plus
 * random floats of several shapes.
 */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "test.h"

#if defined(__FLT16_MANT_DIG__)
#define HAVE_FLOAT16 1
#else
#define HAVE_FLOAT16 0
#endif

#define NRANDOM (1u << 18)

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* Magnitude of a positive half pattern; 0x7C00 counts as 65536, the next
 * step up, which is exactly what rounding to infinity needs. */
static double half_mag(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0)
        return ldexp(m, -24);
    return ldexp(1024 + m, e - 25);
}

/* Magnitude of a positive bfloat16 pattern; 0x7F80 counts as 2^128. */
static double bf16_mag(uint16_t h)
{
    int e = (h >> 7) & 0xff, m = h & 0x7f;
    if (e == 0)
        return ldexp(m, -133);
    return ldexp(128 + m, e - 134);
}

/* f32 -> narrow by search: mag() is monotone over [0, top]; top is the
 * infinity pattern, standing for the next step past the largest finite. */
static uint16_t ref_narrow(float f, double (*mag)(uint16_t), uint16_t top)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0, lo = 0, hi = top;
    double a = fabs((double)f), m2;

    if (a >= mag(top))
        return (uint16_t)(sign | top);
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (mag(mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    m2 = mag(lo) + mag(hi);
    if (2 * a < m2)
        return (uint16_t)(sign | lo);
    if (2 * a > m2)
        return (uint16_t)(sign | hi);
    return (uint16_t)(sign | ((lo & 1) ? hi : lo));
}

static uint16_t ref_f32_to_f16(float f)
{
    return ref_narrow(f, half_mag, 0x7c00);
}

static uint16_t ref_f32_to_bf16(float f)
{
    return ref_narrow(f, bf16_mag, 0x7f80);
}

static int half_is_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

static int bf16_is_nan(uint16_t h)
{
    return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
}

/* The float rounded from a random source of one of three shapes. */
static float random_float(unsigned long long *s, int shape, double (*mag)(uint16_t),
                          uint16_t top)
{
    uint64_t r = test_rand_u64(s);
    switch (shape) {
    case 0:   /* any bit pattern (NaNs included) */
        return float_of((uint32_t)r);
    case 1: { /* exponents around the narrow type's range */
        int emin = top == 0x7c00 ? 100 : 0, emax = top == 0x7c00 ? 145 : 255;
        uint32_t e = (uint32_t)(emin + (int)((r >> 32) % (uint64_t)(emax - emin)));
        return float_of((uint32_t)(r & 0x807fffffu) | (e << 23));
    }
    default: { /* a midpoint between two patterns, nudged by -2..2 ulps */
        uint16_t h = (uint16_t)((r >> 32) % top);
        float mid = (float)((mag(h) + mag((uint16_t)(h + 1))) / 2);
        uint32_t u = bits_of(mid);
        int nudge = (int)((r >> 16) % 5) - 2;
        if (u != 0 || nudge >= 0)
            u = (uint32_t)((int64_t)u + nudge);
        return float_of(u | (r & 1 ? 0x80000000u : 0));
    }
    }
}

static void test_dtype__f16_exhaustive(void)
{
    int bad_value = 0, bad_back = 0, bad_nan = 0;

    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = gq_f16_to_f32(h);
        uint32_t u = bits_of(f);
        if (half_is_nan(h)) {
            /* quiet, same sign, payload kept; back to the quiet pattern */
            if (!isnan(f) || !(u & 0x00400000u) || (u >> 31) != (i >> 15) ||
                ((u >> 13) & 0x3ff) != ((i & 0x3ff) | 0x200) ||
                gq_f32_to_f16(f) != (uint16_t)(h | 0x200))
                bad_nan++;
            continue;
        }
        if ((h & 0x7fff) == 0x7c00 ? !isinf(f) : (double)fabsf(f) != half_mag(h & 0x7fff))
            bad_value++;
        if ((u >> 31) != (i >> 15))
            bad_value++;
        if (gq_f32_to_f16(f) != h)
            bad_back++;
    }
    CHECK_EQ_INT(bad_value, 0);
    CHECK_EQ_INT(bad_back, 0);
    CHECK_EQ_INT(bad_nan, 0);
    CHECK_EQ_INT(bits_of(gq_f16_to_f32(0x8000)), 0x80000000u);   /* -0 */
    CHECK_EQ_INT(bits_of(gq_f16_to_f32(0x7c00)), 0x7f800000u);
    CHECK_EQ_INT(bits_of(gq_f16_to_f32(0xfc00)), 0xff800000u);
    CHECK(gq_f16_to_f32(0x3c00) == 1.0f);
    CHECK(gq_f16_to_f32(0x7bff) == 65504.0f);
}

/* Every rounding boundary: the midpoint between adjacent halves goes to the
 * even one, the floats just below and above it go down and up. */
static void test_dtype__f16_rne_boundaries(void)
{
    int bad = 0;

    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = half_mag((uint16_t)h), hi = half_mag((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
        CHECK((double)mid == (lo + hi) / 2);   /* exact in f32 */
        for (int neg = 0; neg < 2; neg++) {
            uint16_t s = neg ? 0x8000 : 0;
            float m = neg ? -mid : mid;
            float below = nextafterf(m, 0.0f), above = nextafterf(m, neg ? -INFINITY : INFINITY);
            bad += gq_f32_to_f16(m) != (uint16_t)(s | even);
            bad += gq_f32_to_f16(below) != (uint16_t)(s | h);
            bad += gq_f32_to_f16(above) != (uint16_t)(s | (h + 1));
        }
    }
    CHECK_EQ_INT(bad, 0);

    /* A few by hand: 1 + 2^-11 is a tie between 0x3c00 and 0x3c01. */
    CHECK_EQ_INT(gq_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    CHECK_EQ_INT(gq_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    CHECK_EQ_INT(gq_f32_to_f16(2049.0f), 0x6800);   /* 2048 */
    CHECK_EQ_INT(gq_f32_to_f16(2051.0f), 0x6802);   /* 2052 */
    CHECK_EQ_INT(gq_f32_to_f16(-2051.0f), 0xe802);
    CHECK_EQ_INT(gq_f32_to_f16(0.1f), 0x2e66);
    CHECK_EQ_INT(gq_f32_to_f16(1.0f / 3.0f), 0x3555);
}

static void test_dtype__f16_overflow(void)
{
    CHECK_EQ_INT(gq_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(gq_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    CHECK_EQ_INT(gq_f32_to_f16(65520.0f), 0x7c00);   /* tie, 0x7bff is odd */
    CHECK_EQ_INT(gq_f32_to_f16(-65520.0f), 0xfc00);
    CHECK_EQ_INT(gq_f32_to_f16(65536.0f), 0x7c00);
    CHECK_EQ_INT(gq_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(gq_f32_to_f16(FLT_MAX), 0x7c00);
    CHECK_EQ_INT(gq_f32_to_f16(-FLT_MAX), 0xfc00);
    CHECK_EQ_INT(gq_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(gq_f32_to_f16(-INFINITY), 0xfc00);
}

static void test_dtype__f16_subnormals(void)
{
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(gq_f32_to_f16(-0x1p-24f), 0x8001);
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-14f - 0x1p-24f), 0x03ff);
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400);   /* tie up to even */
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-14f), 0x0400);
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-25f), 0x0000);              /* tie down to 0 */
    CHECK_EQ_INT(gq_f32_to_f16(-0x1p-25f), 0x8000);
    CHECK_EQ_INT(gq_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    CHECK_EQ_INT(gq_f32_to_f16(3 * 0x1p-25f), 0x0002);          /* 1.5 -> 2 */
    CHECK_EQ_INT(gq_f32_to_f16(5 * 0x1p-25f), 0x0002);          /* 2.5 -> 2 */
    CHECK_EQ_INT(gq_f32_to_f16(0x1p-26f), 0x0000);
    CHECK_EQ_INT(gq_f32_to_f16(float_of(1)), 0x0000);           /* f32 subnormal */
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0x80000001u)), 0x8000);
    CHECK_EQ_INT(gq_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ_INT(gq_f32_to_f16(-0.0f), 0x8000);
    CHECK(gq_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(gq_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(gq_f16_to_f32(0x8200) == -512 * 0x1p-24f);
}

static void test_dtype__f16_nan(void)
{
    /* quiet NaNs keep sign and top payload */
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0x7fc00000u)), 0x7e00);
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0xffc00000u)), 0xfe00);
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0xffc12345u)), 0xfe09);
    /* signalling NaNs come out quiet, never as infinity */
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0x7f800001u)), 0x7e00);
    CHECK_EQ_INT(gq_f32_to_f16(float_of(0x7fa00000u)), 0x7f00);
    CHECK(isnan(gq_f16_to_f32(0x7c01)));
    CHECK_EQ_INT(bits_of(gq_f16_to_f32(0x7c01)), 0x7fc02000u);
    CHECK_EQ_INT(bits_of(gq_f16_to_f32(0xfe00)), 0xffc00000u);
    CHECK(isnan(gq_round_f16(NAN)));
}

static void test_dtype__f16_random_vs_reference(void)
{
    unsigned long long s = 12345;
    int bad = 0, bad_nan = 0;

    for (int shape = 0; shape < 3; shape++)
        for (uint32_t i = 0; i < NRANDOM; i++) {
            float f = random_float(&s, shape, half_mag, 0x7c00);
            uint16_t got = gq_f32_to_f16(f);
            if (isnan(f)) {
                bad_nan += !half_is_nan(got) || !(got & 0x200) ||
                           (got >> 15) != (bits_of(f) >> 31);
                continue;
            }
            if (got != ref_f32_to_f16(f)) {
                if (bad < 5)
                    fprintf(stderr, "  f16(%a = 0x%08x): got 0x%04x want 0x%04x\n", (double)f,
                            (unsigned)bits_of(f), got, ref_f32_to_f16(f));
                bad++;
            }
        }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(bad_nan, 0);
}

static void test_dtype__f16_vs_float16(void)
{
#if HAVE_FLOAT16
    unsigned long long s = 777;
    int bad_narrow = 0, bad_widen = 0;

    /* widening, every pattern, NaNs included */
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        _Float16 x;
        memcpy(&x, &h, sizeof(x));
        bad_widen += bits_of((float)x) != bits_of(gq_f16_to_f32(h));
    }
    /* narrowing, random floats of every shape, NaNs included */
    for (int shape = 0; shape < 3; shape++)
        for (uint32_t i = 0; i < NRANDOM; i++) {
            float f = random_float(&s, shape, half_mag, 0x7c00);
            volatile float vf = f;
            _Float16 x = (_Float16)vf;
            uint16_t want;
            memcpy(&want, &x, sizeof(want));
            if (gq_f32_to_f16(f) != want) {
                if (bad_narrow < 5)
                    fprintf(stderr, "  f16(0x%08x): got 0x%04x, _Float16 0x%04x\n",
                            (unsigned)bits_of(f), gq_f32_to_f16(f), want);
                bad_narrow++;
            }
        }
    CHECK_EQ_INT(bad_widen, 0);
    CHECK_EQ_INT(bad_narrow, 0);
#else
    SKIP("this compiler has no _Float16; the search oracle still ran");
#endif
}

static void test_dtype__bf16_exhaustive(void)
{
    int bad_value = 0, bad_back = 0, bad_nan = 0;

    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = gq_bf16_to_f32(h);
        uint32_t u = bits_of(f);
        if (bf16_is_nan(h)) {
            if (!isnan(f) || u != (((uint32_t)h << 16) | 0x00400000u) ||
                gq_f32_to_bf16(f) != (uint16_t)(h | 0x40))
                bad_nan++;
            continue;
        }
        if ((h & 0x7fff) != 0x7f80 && (double)fabsf(f) != bf16_mag(h & 0x7fff))
            bad_value++;
        if (u != (uint32_t)h << 16)
            bad_value++;
        if (gq_f32_to_bf16(f) != h)
            bad_back++;
    }
    CHECK_EQ_INT(bad_value, 0);
    CHECK_EQ_INT(bad_back, 0);
    CHECK_EQ_INT(bad_nan, 0);
    CHECK(gq_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(isinf(gq_bf16_to_f32(0x7f80)));
}

static void test_dtype__bf16_rne_and_edges(void)
{
    int bad = 0;

    for (uint32_t h = 0; h < 0x7f80; h++) {
        double lo = bf16_mag((uint16_t)h), hi = bf16_mag((uint16_t)(h + 1));
        double mid = (lo + hi) / 2;
        uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
        float m = (float)mid;   /* exact; for h = 0x7f7f it is 0x7f7f8000 */
        for (int neg = 0; neg < 2; neg++) {
            uint16_t s = neg ? 0x8000 : 0;
            float mm = neg ? -m : m;
            float below = nextafterf(mm, 0.0f), above = nextafterf(mm, neg ? -INFINITY : INFINITY);
            bad += gq_f32_to_bf16(mm) != (uint16_t)(s | even);
            bad += gq_f32_to_bf16(below) != (uint16_t)(s | h);
            bad += gq_f32_to_bf16(above) != (uint16_t)(s | (h + 1));
        }
    }
    CHECK_EQ_INT(bad, 0);

    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x3f808000u)), 0x3f80);   /* tie, even down */
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x3f818000u)), 0x3f82);   /* tie, even up */
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x3f808001u)), 0x3f81);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x7f7f7fffu)), 0x7f7f);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x7f7f8000u)), 0x7f80);   /* overflow on the tie */
    CHECK_EQ_INT(gq_f32_to_bf16(FLT_MAX), 0x7f80);
    CHECK_EQ_INT(gq_f32_to_bf16(-FLT_MAX), 0xff80);
    CHECK_EQ_INT(gq_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(gq_f32_to_bf16(-INFINITY), 0xff80);
    /* subnormals */
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x00008000u)), 0x0000);   /* tie to 0 */
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x00008001u)), 0x0001);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x00018000u)), 0x0002);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x807f8000u)), 0x8080);   /* up to min normal */
    CHECK(gq_bf16_to_f32(0x0001) == 0x1p-133f);
    /* NaNs: quiet, sign and top payload kept, never infinity */
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x7f800001u)), 0x7fc0);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0xff810000u)), 0xffc1);
    CHECK_EQ_INT(gq_f32_to_bf16(float_of(0x7fc00000u)), 0x7fc0);
    CHECK_EQ_INT(bits_of(gq_bf16_to_f32(0x7f81)), 0x7fc10000u);
}

static void test_dtype__bf16_random_vs_reference(void)
{
    unsigned long long s = 4242;
    int bad = 0, bad_nan = 0;

    for (int shape = 0; shape < 3; shape++)
        for (uint32_t i = 0; i < NRANDOM; i++) {
            float f = random_float(&s, shape, bf16_mag, 0x7f80);
            uint16_t got = gq_f32_to_bf16(f);
            if (isnan(f)) {
                bad_nan += !bf16_is_nan(got) || !(got & 0x40) ||
                           (got >> 15) != (bits_of(f) >> 31);
                continue;
            }
            if (got != ref_f32_to_bf16(f)) {
                if (bad < 5)
                    fprintf(stderr, "  bf16(0x%08x): got 0x%04x want 0x%04x\n",
                            (unsigned)bits_of(f), got, ref_f32_to_bf16(f));
                bad++;
            }
        }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(bad_nan, 0);
}

/* The array versions agree with the scalar ones, element by element. */
static void test_dtype__arrays(void)
{
    enum { N = 4099 };   /* not a multiple of any vector width */
    unsigned long long s = 99;
    float *f = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t));
    int bad = 0;

    if (!f || !g || !h) {
        free(f);
        free(g);
        free(h);
        CHECK(!"out of memory");
        return;
    }
    for (size_t i = 0; i < N; i++)
        f[i] = random_float(&s, (int)(i % 3), half_mag, 0x7c00);

    gq_f32_to_f16_n(h, f, N);
    for (size_t i = 0; i < N; i++)
        bad += h[i] != gq_f32_to_f16(f[i]);
    gq_f16_to_f32_n(g, h, N);
    for (size_t i = 0; i < N; i++)
        bad += bits_of(g[i]) != bits_of(gq_f16_to_f32(h[i]));
    gq_f32_to_bf16_n(h, f, N);
    for (size_t i = 0; i < N; i++)
        bad += h[i] != gq_f32_to_bf16(f[i]);
    gq_bf16_to_f32_n(g, h, N);
    for (size_t i = 0; i < N; i++)
        bad += bits_of(g[i]) != bits_of(gq_bf16_to_f32(h[i]));
    gq_f32_to_f16_n(h, f, 0);   /* n = 0 touches nothing */
    CHECK_EQ_INT(bad, 0);

    /* gq_round_*: what a weight stored in the type reads back as */
    CHECK(gq_round_f16(0.1f) == gq_f16_to_f32(0x2e66));
    CHECK(gq_round_bf16(1.0f + 0x1p-9f) == 1.0f);
    free(f);
    free(g);
    free(h);
}

int main(void)
{
    t_prog = "test_dtype";
    RUN(test_dtype__f16_exhaustive);
    RUN(test_dtype__f16_rne_boundaries);
    RUN(test_dtype__f16_overflow);
    RUN(test_dtype__f16_subnormals);
    RUN(test_dtype__f16_nan);
    RUN(test_dtype__f16_random_vs_reference);
    RUN(test_dtype__f16_vs_float16);
    RUN(test_dtype__bf16_exhaustive);
    RUN(test_dtype__bf16_rne_and_edges);
    RUN(test_dtype__bf16_random_vs_reference);
    RUN(test_dtype__arrays);
    return test_report();
}
