/*
 * test_pack.c - GPTQ packing: qweight/qzeros layout, v1/v2 zero points,
 * round trips, and the shape and range checks.
 *
 * The oracle for layouts is a naive packer that sets one bit at a time
 * (value i of a unit of 32 at stream bit bits*i, word = bit / 32), sharing
 * nothing with core/pack.c.  The 3-bit layout is also checked against word
 * constants built field by field from the AutoGPTQ description in
 * GPTQ-NOTES.md §2.4, and the symmetric qzeros words against the constants
 * the notes quote from real checkpoints.
 */
#include <stdint.h>
#include <string.h>

#include "pack.h"
#include "test.h"

static const int all_bits[] = { 2, 3, 4, 8 };
#define NBITS (sizeof(all_bits) / sizeof(all_bits[0]))

/* Set bit `bit` of the bit string made of words w[0], w[1], ... */
static void set_bit(uint32_t *w, size_t bit)
{
    w[bit / 32] |= 1u << (bit % 32);
}

/* Naive qweight (cols*bits/32, rows): code (n, k) to stream bit
 * bits*(k%32) + b of the unit in word rows (k/32)*bits .. +bits-1. */
static void ref_pack_qweight(uint32_t *qw, const uint8_t *q, size_t rows, size_t cols, int bits)
{
    memset(qw, 0, cols * (size_t)bits / 32 * rows * sizeof(*qw));
    for (size_t n = 0; n < rows; n++)
        for (size_t k = 0; k < cols; k++)
            for (int b = 0; b < bits; b++)
                if (q[n * cols + k] >> b & 1) {
                    size_t bit = (size_t)bits * (k % 32) + (size_t)b;
                    size_t wrow = (k / 32) * (size_t)bits + bit / 32;
                    qw[wrow * rows + n] |= 1u << (bit % 32);
                }
}

/* Naive qzeros (ngroups, rows*bits/32); v1 subtracts 1 modulo 2^bits. */
static void ref_pack_qzeros(uint32_t *qz, const int32_t *z, size_t ngroups, size_t rows,
                            int bits, pack_format fmt)
{
    size_t qcols = rows * (size_t)bits / 32;
    int maxq = (1 << bits) - 1;
    memset(qz, 0, ngroups * qcols * sizeof(*qz));
    for (size_t g = 0; g < ngroups; g++)
        for (size_t n = 0; n < rows; n++) {
            int v = fmt == PACK_GPTQ ? (z[g * rows + n] - 1 + (1 << bits)) % (1 << bits)
                                     : z[g * rows + n];
            CHECK(v >= 0 && v <= maxq);
            for (int b = 0; b < bits; b++)
                if (v >> b & 1)
                    set_bit(qz + g * qcols, (size_t)bits * n + (size_t)b);
        }
}

static void fill_codes(uint8_t *q, size_t n, int bits, unsigned long long seed)
{
    for (size_t i = 0; i < n; i++)
        q[i] = (uint8_t)(test_rand_u64(&seed) & ((1u << bits) - 1));
}

static void test_pack__format_names(void)
{
    gq_err e = GQ_ERR_INIT;
    pack_format f = PACK_GPTQ_V2;

    CHECK(strcmp(pack_format_name(PACK_GPTQ), "gptq") == 0);
    CHECK(strcmp(pack_format_name(PACK_GPTQ_V2), "gptq_v2") == 0);
    CHECK_OK(pack_format_parse(&f, "gptq", &e), &e);
    CHECK_EQ_INT(f, PACK_GPTQ);
    CHECK_OK(pack_format_parse(&f, "gptq_v2", &e), &e);
    CHECK_EQ_INT(f, PACK_GPTQ_V2);
    CHECK_EQ_INT(pack_format_parse(&f, "gptq_v3", &e), GQ_EINVAL);
    CHECK_EQ_INT(e.code, GQ_EINVAL);
    CHECK(strstr(e.msg, "gptq_v3") != NULL);
    CHECK_EQ_INT(f, PACK_GPTQ_V2);   /* untouched on failure */
    CHECK_EQ_INT(pack_format_parse(&f, "GPTQ", &e), GQ_EINVAL);
    CHECK_EQ_INT(pack_format_parse(&f, "", &e), GQ_EINVAL);
    CHECK_EQ_INT(pack_format_parse(&f, NULL, &e), GQ_EINVAL);
}

static void test_pack__sizes(void)
{
    CHECK_EQ_INT(pack_qweight_rows(4096, 4), 512);
    CHECK_EQ_INT(pack_qweight_rows(4096, 3), 384);
    CHECK_EQ_INT(pack_qweight_rows(4096, 2), 256);
    CHECK_EQ_INT(pack_qweight_rows(11008, 8), 2752);
    CHECK_EQ_INT(pack_qzeros_cols(4096, 4), 512);
    CHECK_EQ_INT(pack_qzeros_cols(96, 3), 9);
}

/* Shapes (rows, cols), all multiples of 32, including non-square and ones
 * that are not multiples of the 16-row tile twice over. */
static const size_t shapes[][2] = { { 32, 32 }, { 64, 96 }, { 96, 64 }, { 32, 1024 },
                                    { 1024, 32 }, { 160, 288 } };
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

static void test_pack__qweight_roundtrip(void)
{
    for (size_t si = 0; si < NSHAPES; si++)
        for (size_t bi = 0; bi < NBITS; bi++) {
            size_t rows = shapes[si][0], cols = shapes[si][1];
            int bits = all_bits[bi];
            size_t nw = pack_qweight_rows(cols, bits) * rows;
            uint8_t *q = malloc(rows * cols), *back = malloc(rows * cols);
            int32_t *qw = malloc(nw * sizeof(int32_t));
            uint32_t *ref = malloc(nw * sizeof(uint32_t));
            gq_err e = GQ_ERR_INIT;

            if (!q || !back || !qw || !ref) {
                CHECK(!"out of memory");
            } else {
                fill_codes(q, rows * cols, bits, 1000 + si * 10 + bi);
                memset(back, 0xff, rows * cols);
                CHECK_OK(pack_qweight(qw, q, rows, cols, bits, &e), &e);
                ref_pack_qweight(ref, q, rows, cols, bits);
                CHECK_MSG(memcmp(qw, ref, nw * sizeof(*qw)) == 0,
                          "qweight differs from the naive packer (%zux%zu, %d bits)", rows, cols,
                          bits);
                CHECK_OK(unpack_qweight(back, qw, rows, cols, bits, &e), &e);
                CHECK_MSG(memcmp(q, back, rows * cols) == 0,
                          "unpack(pack(q)) != q (%zux%zu, %d bits)", rows, cols, bits);
            }
            free(q);
            free(back);
            free(qw);
            free(ref);
        }
}

static void test_pack__qzeros_roundtrip(void)
{
    static const size_t ngroups_list[] = { 1, 3, 32 };
    static const pack_format fmts[] = { PACK_GPTQ, PACK_GPTQ_V2 };

    for (size_t si = 0; si < NSHAPES; si++)
        for (size_t bi = 0; bi < NBITS; bi++)
            for (size_t gi = 0; gi < 3; gi++)
                for (size_t fi = 0; fi < 2; fi++) {
                    size_t rows = shapes[si][0], ng = ngroups_list[gi];
                    int bits = all_bits[bi];
                    size_t nz = ng * rows, nw = ng * pack_qzeros_cols(rows, bits);
                    int32_t *z = malloc(nz * sizeof(int32_t)), *back = malloc(nz * sizeof(int32_t));
                    int32_t *qz = malloc(nw * sizeof(int32_t));
                    uint32_t *ref = malloc(nw * sizeof(uint32_t));
                    unsigned long long seed = 77 + si * 100 + bi * 10 + gi * 3 + fi;
                    gq_err e = GQ_ERR_INIT;

                    if (!z || !back || !qz || !ref) {
                        CHECK(!"out of memory");
                    } else {
                        for (size_t i = 0; i < nz; i++)   /* 0 and maxq appear often */
                            z[i] = (int32_t)(test_rand_u64(&seed) % (1u << bits));
                        z[0] = 0;
                        z[nz - 1] = (1 << bits) - 1;
                        CHECK_OK(pack_qzeros(qz, z, ng, rows, bits, fmts[fi], &e), &e);
                        ref_pack_qzeros(ref, z, ng, rows, bits, fmts[fi]);
                        CHECK_MSG(memcmp(qz, ref, nw * sizeof(*qz)) == 0,
                                  "qzeros differs from the naive packer (%zu x %zu, %d bits, %s)",
                                  ng, rows, bits, pack_format_name(fmts[fi]));
                        CHECK_OK(unpack_qzeros(back, qz, ng, rows, bits, fmts[fi], &e), &e);
                        CHECK_MSG(memcmp(z, back, nz * sizeof(*z)) == 0,
                                  "unpack(pack(zeros)) != zeros (%zu x %zu, %d bits, %s)", ng,
                                  rows, bits, pack_format_name(fmts[fi]));
                    }
                    free(z);
                    free(back);
                    free(qz);
                    free(ref);
                }
}

/* Pack one group of `rows` equal zeros; every word must equal want. */
static void check_sym_word(int bits, int32_t zero, pack_format fmt, uint32_t want)
{
    enum { ROWS = 64 };
    int32_t z[ROWS], qz[ROWS], back[ROWS];
    size_t nw = pack_qzeros_cols(ROWS, bits);
    gq_err e = GQ_ERR_INIT;

    for (size_t i = 0; i < ROWS; i++)
        z[i] = zero;
    CHECK_OK(pack_qzeros(qz, z, 1, ROWS, bits, fmt, &e), &e);
    for (size_t i = 0; i < nw; i++)
        CHECK_MSG((uint32_t)qz[i] == want, "%d bits %s zero %d word %zu: 0x%08x, want 0x%08x",
                  bits, pack_format_name(fmt), (int)zero, i, (unsigned)(uint32_t)qz[i],
                  (unsigned)want);
    CHECK_OK(unpack_qzeros(back, qz, 1, ROWS, bits, fmt, &e), &e);
    for (size_t i = 0; i < ROWS; i++)
        CHECK_EQ_INT(back[i], zero);
}

/* The words of symmetric checkpoints (GPTQ-NOTES.md §2.5). */
static void test_pack__known_qzeros_words(void)
{
    check_sym_word(4, 8, PACK_GPTQ, 0x77777777u);
    check_sym_word(8, 128, PACK_GPTQ, 0x7f7f7f7fu);
    check_sym_word(2, 2, PACK_GPTQ, 0x55555555u);
    check_sym_word(4, 8, PACK_GPTQ_V2, 0x88888888u);
    check_sym_word(8, 128, PACK_GPTQ_V2, 0x80808080u);
    check_sym_word(2, 2, PACK_GPTQ_V2, 0xaaaaaaaau);
    /* v1 zero 1 stores 0 everywhere; v1 zero 0 stores maxq everywhere */
    check_sym_word(4, 1, PACK_GPTQ, 0x00000000u);
    check_sym_word(4, 0, PACK_GPTQ, 0xffffffffu);
    check_sym_word(3, 0, PACK_GPTQ, 0xffffffffu);
    check_sym_word(3, 7, PACK_GPTQ_V2, 0xffffffffu);
}

/* v1 zero 0 becomes the field 2^bits - 1 and borrows nothing from the
 * neighbours (packed-word subtraction of 0x11111111 would). */
static void test_pack__v1_zero_no_borrow(void)
{
    int32_t z[32], qz[8], back[32];
    gq_err e = GQ_ERR_INIT;

    for (size_t i = 0; i < 32; i++)
        z[i] = 1;
    z[0] = 0;
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 4, PACK_GPTQ, &e), &e);
    CHECK_EQ_INT((uint32_t)qz[0], 0x0000000fu);
    CHECK_EQ_INT((uint32_t)qz[1], 0);
    CHECK_EQ_INT((uint32_t)qz[2], 0);
    CHECK_EQ_INT((uint32_t)qz[3], 0);
    CHECK_OK(unpack_qzeros(back, qz, 1, 32, 4, PACK_GPTQ, &e), &e);
    CHECK(memcmp(back, z, sizeof(z)) == 0);

    z[0] = 1;
    z[1] = 0;   /* second field, and the last value of the first word */
    z[7] = 0;
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 4, PACK_GPTQ, &e), &e);
    CHECK_EQ_INT((uint32_t)qz[0], 0xf00000f0u);
    CHECK_EQ_INT((uint32_t)qz[1], 0);

    /* 8-bit: zero 0 next to 200 */
    for (size_t i = 0; i < 32; i++)
        z[i] = 200;
    z[1] = 0;
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 8, PACK_GPTQ, &e), &e);
    CHECK_EQ_INT((uint32_t)qz[0], 0xc7c7ffc7u);
    CHECK_OK(unpack_qzeros(back, qz, 1, 32, 8, PACK_GPTQ, &e), &e);
    CHECK(memcmp(back, z, sizeof(z)) == 0);

    /* 2-bit: zeros 0 and 3 alternate: fields 3, 2 */
    for (size_t i = 0; i < 32; i++)
        z[i] = i % 2 ? 3 : 0;
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 2, PACK_GPTQ, &e), &e);
    CHECK_EQ_INT((uint32_t)qz[0], 0xbbbbbbbbu);
    CHECK_EQ_INT((uint32_t)qz[1], 0xbbbbbbbbu);
}

/* The AutoGPTQ 3-bit words, built field by field from the rules, not as a
 * bit stream:
 *   w0: v0..v9 at 0,3,..,27; bits 30-31 = bits 0-1 of v10
 *   w1: bit 0 = bit 2 of v10; v11..v20 at 1,4,..,28; bit 31 = bit 0 of v21
 *   w2: bits 0-1 = bits 1-2 of v21; v22..v31 at 2,5,..,29 */
static void autogptq_3bit_words(uint32_t w[3], const uint8_t v[32])
{
    w[0] = w[1] = w[2] = 0;
    for (unsigned i = 0; i <= 9; i++)
        w[0] |= (uint32_t)v[i] << (3 * i);
    w[0] |= (uint32_t)(v[10] & 3) << 30;
    w[1] |= (uint32_t)(v[10] >> 2) & 1;
    for (unsigned i = 11; i <= 20; i++)
        w[1] |= (uint32_t)v[i] << (1 + 3 * (i - 11));
    w[1] |= (uint32_t)(v[21] & 1) << 31;
    w[2] |= (uint32_t)(v[21] >> 1) & 3;
    for (unsigned i = 22; i <= 31; i++)
        w[2] |= (uint32_t)v[i] << (2 + 3 * (i - 22));
}

/* Pack v as one qweight unit (32 rows of q all equal to v) and as one
 * qzeros unit (v2, and v1 with zeros v+1); all must give want. */
static void check_3bit_unit(const uint8_t v[32], const uint32_t want[3])
{
    enum { R = 32 };
    uint8_t q[R * 32], back[R * 32];
    int32_t qw[3 * R], z[32], qz[3], zback[32];
    gq_err e = GQ_ERR_INIT;

    for (size_t n = 0; n < R; n++)
        memcpy(q + n * 32, v, 32);
    CHECK_OK(pack_qweight(qw, q, R, 32, 3, &e), &e);
    for (size_t j = 0; j < 3; j++)
        for (size_t n = 0; n < R; n++)
            CHECK_MSG((uint32_t)qw[j * R + n] == want[j], "qweight[%zu][%zu] = 0x%08x, want 0x%08x",
                      j, n, (unsigned)(uint32_t)qw[j * R + n], (unsigned)want[j]);
    CHECK_OK(unpack_qweight(back, qw, R, 32, 3, &e), &e);
    CHECK(memcmp(q, back, sizeof(q)) == 0);

    for (size_t i = 0; i < 32; i++)
        z[i] = v[i];
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 3, PACK_GPTQ_V2, &e), &e);
    for (size_t j = 0; j < 3; j++)
        CHECK_EQ_INT((uint32_t)qz[j], want[j]);
    CHECK_OK(unpack_qzeros(zback, qz, 1, 32, 3, PACK_GPTQ_V2, &e), &e);
    CHECK(memcmp(z, zback, sizeof(z)) == 0);
    for (size_t i = 0; i < 32; i++)
        z[i] = (v[i] + 1) % 8;   /* v1 stores zero - 1 */
    CHECK_OK(pack_qzeros(qz, z, 1, 32, 3, PACK_GPTQ, &e), &e);
    for (size_t j = 0; j < 3; j++)
        CHECK_EQ_INT((uint32_t)qz[j], want[j]);
}

static void test_pack__layout_3bit(void)
{
    /* Constants worked out by hand from the rules above (octal digits:
     * v0..v7 = 0..7 is 076543210 = 0xfac688 in w0's low 24 bits). */
    static const uint32_t want_mod8[3] = { 0x88fac688u, 0xc688fac6u, 0xfac688fau };
    static const uint32_t want_rev[3] = { 0x77053977u, 0x39770539u, 0x05397705u };
    static const uint32_t want_all7[3] = { 0xffffffffu, 0xffffffffu, 0xffffffffu };
    uint8_t v[32];
    uint32_t w[3];

    /* v_i = i % 8 */
    for (size_t i = 0; i < 32; i++)
        v[i] = (uint8_t)(i % 8);
    autogptq_3bit_words(w, v);
    CHECK(memcmp(w, want_mod8, sizeof(w)) == 0);   /* the two derivations agree */
    check_3bit_unit(v, want_mod8);

    /* v_i = (7 - i) % 8 */
    for (size_t i = 0; i < 32; i++)
        v[i] = (uint8_t)((7 - i % 8) % 8);
    autogptq_3bit_words(w, v);
    CHECK(memcmp(w, want_rev, sizeof(w)) == 0);
    check_3bit_unit(v, want_rev);

    /* all 7s: every bit set, the straddling ones included */
    memset(v, 7, sizeof(v));
    check_3bit_unit(v, want_all7);

    /* the straddlers alone */
    memset(v, 0, sizeof(v));
    v[10] = 5;   /* 0b101: w0 bit 30, w1 bit 0 */
    {
        static const uint32_t want[3] = { 0x40000000u, 0x00000001u, 0 };
        check_3bit_unit(v, want);
    }
    v[10] = 0;
    v[21] = 5;   /* 0b101: w1 bit 31, w2 bit 1 */
    {
        static const uint32_t want[3] = { 0, 0x80000000u, 0x00000002u };
        check_3bit_unit(v, want);
    }
    v[21] = 6;   /* 0b110: w2 bits 0-1 */
    {
        static const uint32_t want[3] = { 0, 0, 0x00000003u };
        check_3bit_unit(v, want);
    }

    /* random units agree with the field-by-field builder */
    {
        unsigned long long seed = 3;
        for (int r = 0; r < 200; r++) {
            fill_codes(v, 32, 3, seed + (unsigned long long)r);
            autogptq_3bit_words(w, v);
            check_3bit_unit(v, w);
        }
    }
}

/* 4-bit: code (n, k) goes to qweight[k/8][n] at shift 4*(k%8), alone. */
static void test_pack__qweight_placement_4bit(void)
{
    enum { ROWS = 64, COLS = 64, QR = COLS / 8 };
    static const size_t pos[][2] = { { 0, 0 }, { 0, 7 }, { 0, 8 }, { 5, 13 }, { 63, 63 },
                                     { 17, 32 }, { 40, 39 } };
    uint8_t q[ROWS * COLS];
    int32_t qw[QR * ROWS];
    gq_err e = GQ_ERR_INIT;

    for (size_t p = 0; p < sizeof(pos) / sizeof(pos[0]); p++) {
        size_t n = pos[p][0], k = pos[p][1];
        uint8_t code = (uint8_t)(1 + (k + n) % 15);
        memset(q, 0, sizeof(q));
        q[n * COLS + k] = code;
        CHECK_OK(pack_qweight(qw, q, ROWS, COLS, 4, &e), &e);
        for (size_t r = 0; r < QR; r++)
            for (size_t c = 0; c < ROWS; c++) {
                uint32_t want = r == k / 8 && c == n ? (uint32_t)code << (4 * (k % 8)) : 0;
                CHECK_MSG((uint32_t)qw[r * ROWS + c] == want,
                          "code at (%zu, %zu): qweight[%zu][%zu] = 0x%08x, want 0x%08x", n, k, r,
                          c, (unsigned)(uint32_t)qw[r * ROWS + c], (unsigned)want);
            }
    }

    /* a full row of codes 0..7 on input rows 0..7 makes 0x76543210 */
    for (size_t n = 0; n < ROWS; n++)
        for (size_t k = 0; k < COLS; k++)
            q[n * COLS + k] = (uint8_t)(k % 8 + (k / 8 % 2) * 8);
    CHECK_OK(pack_qweight(qw, q, ROWS, COLS, 4, &e), &e);
    for (size_t r = 0; r < QR; r++)
        CHECK_EQ_INT((uint32_t)qw[r * ROWS + 3], r % 2 ? 0xfedcba98u : 0x76543210u);
}

/* 2-bit and 8-bit placement, with the high bit of the top field set (the
 * int32 holds the uint32 pattern). */
static void test_pack__qweight_words_2_8(void)
{
    enum { ROWS = 32, COLS = 32 };
    uint8_t q[ROWS * COLS];
    int32_t qw[8 * ROWS];
    gq_err e = GQ_ERR_INIT;

    for (size_t n = 0; n < ROWS; n++)
        for (size_t k = 0; k < COLS; k++)
            q[n * COLS + k] = (uint8_t)(k % 4);   /* 2-bit: 0,1,2,3 repeating */
    CHECK_OK(pack_qweight(qw, q, ROWS, COLS, 2, &e), &e);
    CHECK_EQ_INT((uint32_t)qw[0], 0xe4e4e4e4u);
    CHECK_EQ_INT((uint32_t)qw[ROWS + 31], 0xe4e4e4e4u);
    CHECK(qw[0] < 0);

    for (size_t n = 0; n < ROWS; n++)
        for (size_t k = 0; k < COLS; k++)
            q[n * COLS + k] = (uint8_t)(k * 8 + 7);   /* 8-bit: 0x07, 0x0f, ... 0xff */
    CHECK_OK(pack_qweight(qw, q, ROWS, COLS, 8, &e), &e);
    CHECK_EQ_INT((uint32_t)qw[0], 0x1f170f07u);
    CHECK_EQ_INT((uint32_t)qw[7 * ROWS + 9], 0xfff7efe7u);
}

static void check_fails(int rc, const gq_err *e, const char *want1, const char *want2)
{
    CHECK_EQ_INT(rc, GQ_EINVAL);
    CHECK_EQ_INT(e->code, GQ_EINVAL);
    CHECK_MSG(strstr(e->msg, want1) != NULL, "message \"%s\" lacks \"%s\"", e->msg, want1);
    if (want2)
        CHECK_MSG(strstr(e->msg, want2) != NULL, "message \"%s\" lacks \"%s\"", e->msg, want2);
    CHECK_MSG(e->msg[0] >= 'a' && e->msg[0] <= 'z', "message \"%s\" not lower-case", e->msg);
    CHECK(strchr(e->msg, '\n') == NULL);
}

static void test_pack__check(void)
{
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(pack_check(4096, 4096, 4, 128, &e), &e);
    CHECK_OK(pack_check(4096, 11008, 4, -1, &e), &e);
    CHECK_OK(pack_check(32, 32, 2, 32, &e), &e);
    CHECK_OK(pack_check(96, 96, 3, 96, &e), &e);
    CHECK_OK(pack_check(64, 4096, 8, 64, &e), &e);

    check_fails(pack_check(4096, 4096, 5, 128, &e), &e, "bits", "5");
    check_fails(pack_check(4096, 4096, 1, 128, &e), &e, "bits", "1");
    check_fails(pack_check(4096, 4096, 16, 128, &e), &e, "bits", "16");
    check_fails(pack_check(4096, 4096, 0, 128, &e), &e, "bits", "0");
    check_fails(pack_check(100, 4096, 4, 128, &e), &e, "rows", "100");
    check_fails(pack_check(0, 4096, 4, 128, &e), &e, "rows", "multiple of 32");
    check_fails(pack_check(4096, 48, 4, -1, &e), &e, "cols", "48");
    check_fails(pack_check(4096, 4096 + 16, 4, -1, &e), &e, "in/32*bits", "4112");
    check_fails(pack_check(4096, 0, 4, -1, &e), &e, "cols", "multiple of 32");
    check_fails(pack_check(4096, 4096, 4, 0, &e), &e, "group_size", "0");
    check_fails(pack_check(4096, 4096, 4, -2, &e), &e, "group_size", "-2");
    check_fails(pack_check(4096, 4096, 4, 100, &e), &e, "group_size", "100");
    check_fails(pack_check(4096, 64, 4, 128, &e), &e, "group_size", "128");
}

static void test_pack__codes_out_of_range(void)
{
    enum { ROWS = 32, COLS = 64 };
    uint8_t q[ROWS * COLS];
    int32_t qw[8 * ROWS * 2];
    gq_err e = GQ_ERR_INIT;

    for (size_t bi = 0; bi < NBITS; bi++) {
        int bits = all_bits[bi];
        if (bits == 8)
            continue;
        fill_codes(q, sizeof(q), bits, 5);
        q[3 * COLS + 40] = (uint8_t)(1u << bits);   /* one past maxq */
        for (size_t i = 0; i < sizeof(qw) / sizeof(qw[0]); i++)
            qw[i] = 0x5a5a5a5a;
        check_fails(pack_qweight(qw, q, ROWS, COLS, bits, &e), &e, "(3, 40)", "bits");
        for (size_t i = 0; i < sizeof(qw) / sizeof(qw[0]); i++)
            CHECK(qw[i] == 0x5a5a5a5a);   /* nothing written */
        q[3 * COLS + 40] = 255;
        check_fails(pack_qweight(qw, q, ROWS, COLS, bits, &e), &e, "255", NULL);
    }
    /* 8 bits: every byte is a valid code */
    memset(q, 255, sizeof(q));
    CHECK_OK(pack_qweight(qw, q, ROWS, COLS, 8, &e), &e);
    CHECK_EQ_INT((uint32_t)qw[0], 0xffffffffu);
}

static void test_pack__bad_arguments(void)
{
    int32_t z[64], qz[16], qw[16 * 32];
    uint8_t q[32 * 32] = { 0 };
    gq_err e = GQ_ERR_INIT;

    for (size_t i = 0; i < 64; i++)
        z[i] = 1;
    z[33] = 16;
    check_fails(pack_qzeros(qz, z, 2, 32, 4, PACK_GPTQ, &e), &e, "16", "group 1, row 1");
    z[33] = -1;
    check_fails(pack_qzeros(qz, z, 2, 32, 4, PACK_GPTQ_V2, &e), &e, "-1", "[0, 15]");
    z[33] = 4;
    check_fails(pack_qzeros(qz, z, 2, 32, 2, PACK_GPTQ, &e), &e, "4", "[0, 3]");
    z[33] = 3;   /* maxq itself is fine */
    CHECK_OK(pack_qzeros(qz, z, 2, 32, 2, PACK_GPTQ, &e), &e);
    check_fails(pack_qzeros(qz, z, 2, 32, 4, (pack_format)3, &e), &e, "format", "3");
    check_fails(pack_qzeros(qz, z, 0, 32, 4, PACK_GPTQ, &e), &e, "ngroups", NULL);
    check_fails(pack_qzeros(qz, z, 1, 48, 4, PACK_GPTQ, &e), &e, "rows", "48");
    check_fails(pack_qzeros(qz, z, 1, 32, 6, PACK_GPTQ, &e), &e, "bits", "6");
    check_fails(unpack_qzeros(z, qz, 1, 32, 4, (pack_format)0, &e), &e, "format", NULL);
    check_fails(unpack_qzeros(z, qz, 1, 40, 4, PACK_GPTQ, &e), &e, "rows", "40");
    check_fails(pack_qweight(qw, q, 32, 16, 4, &e), &e, "cols", "16");
    check_fails(pack_qweight(qw, q, 16, 32, 4, &e), &e, "rows", "16");
    check_fails(pack_qweight(qw, q, 32, 32, 7, &e), &e, "bits", "7");
    check_fails(unpack_qweight(q, qw, 32, 33, 4, &e), &e, "cols", "33");
    check_fails(unpack_qweight(q, qw, 32, 32, 9, &e), &e, "bits", "9");
}

int main(void)
{
    t_prog = "test_pack";
    RUN(test_pack__format_names);
    RUN(test_pack__sizes);
    RUN(test_pack__qweight_roundtrip);
    RUN(test_pack__qzeros_roundtrip);
    RUN(test_pack__known_qzeros_words);
    RUN(test_pack__v1_zero_no_borrow);
    RUN(test_pack__layout_3bit);
    RUN(test_pack__qweight_placement_4bit);
    RUN(test_pack__qweight_words_2_8);
    RUN(test_pack__check);
    RUN(test_pack__codes_out_of_range);
    RUN(test_pack__bad_arguments);
    return test_report();
}
