/*
 * test_calib.c - calibration matrices: the sampling rule, the digest,
 * reading texts and id files, and the shared fixture's calibration set.
 *
 * Oracles are written here independently of core/calib.c: the documented
 * generator (splitmix64, checked first against its published seed-0
 * outputs) and offset mapping, the canonical byte form of the digest built
 * byte by byte, SHA-256 from OpenSSL's one-shot SHA256() and from a vector
 * computed with sha256sum.  Texts are tokenized with a tiny character-level
 * tokenizer (one id per character), so a window can be read back as text.
 */
#include <errno.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "json.h"
#include "mem.h"
#include "test.h"
#include "tokenizer.h"

/* ---- helpers and oracles ---- */

static char tmpdir[] = "/tmp/gq-calib-XXXXXX";

/* Write len bytes to tmpdir/name; the path goes to path. */
static int put_file(char *path, size_t cap, const char *name, const void *data, size_t len)
{
    FILE *f;
    int ok;
    snprintf(path, cap, "%s/%s", tmpdir, name);
    if (!(f = fopen(path, "wb")))
        return -1;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int put_text(char *path, size_t cap, const char *name, const char *text)
{
    return put_file(path, cap, name, text, strlen(text));
}

/* The generator as calib.h spells it out. */
static uint64_t oracle_next(uint64_t *state)
{
    return (uint64_t)test_rand_u64((unsigned long long *)state);
}

/* The offset rule of calib.h: r offsets, reject x < 2^64 mod r, then x mod r. */
static size_t oracle_offset(uint64_t *state, uint64_t r)
{
    /* 2^64 mod r computed the long way: (2^64 - 1) mod r, plus one, mod r */
    uint64_t min = (UINT64_MAX % r + 1) % r, x;
    do
        x = oracle_next(state);
    while (x < min);
    return (size_t)(x % r);
}

/* Lower-case hex SHA-256 of the canonical form, built byte by byte. */
static void oracle_digest(char hex[65], const int32_t *ids, size_t rows, size_t cols)
{
    size_t len = 16 + 4 * rows * cols;
    unsigned char *b = malloc(len), md[32];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)rows >> (8 * i));
        b[8 + i] = (unsigned char)((uint64_t)cols >> (8 * i));
    }
    for (size_t i = 0; i < rows * cols; i++)
        for (int k = 0; k < 4; k++)
            b[16 + 4 * i + (size_t)k] = (unsigned char)((uint32_t)ids[i] >> (8 * k));
    SHA256(b, len, md);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    free(b);
}

/* One id per character: a-z are 0-25, ' ' 26, '\n' 27, '.' 28 (the id is the place in alphabet). */
static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz \n.";
static const char char_tokenizer[] =
    "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": null,"
    " \"post_processor\": null, \"decoder\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {"
    "\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"e\": 4, \"f\": 5, \"g\": 6, \"h\": 7, \"i\": 8, \"j\": 9,"
    " \"k\": 10, \"l\": 11, \"m\": 12, \"n\": 13, \"o\": 14, \"p\": 15, \"q\": 16, \"r\": 17, \"s\": 18,"
    " \"t\": 19, \"u\": 20, \"v\": 21, \"w\": 22, \"x\": 23, \"y\": 24, \"z\": 25, \" \": 26, \"\\n\": 27,"
    " \".\": 28}, \"merges\": []}}";

static char id_char(int32_t id)
{
    return id >= 0 && id < 29 ? alphabet[id] : '?';
}

/* ---- sampling ---- */

static void test_calib__generator_matches_published_splitmix64(void)
{
    /* splitmix64's published first outputs for seed 0; they pin the oracle */
    static const uint64_t want[4] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
                                     0xf88bb8a8724c81ecull};
    int32_t stream[1004];
    struct calib c = {0};
    gq_err e = GQ_ERR_INIT;
    uint64_t s = 0;

    for (int i = 0; i < 4; i++)
        CHECK(oracle_next(&s) == want[i]);
    /* r = 1000 offsets: 2^64 mod 1000 = 616 rejects none of these, so the
     * starts are the outputs mod 1000: 535, 700, 679, 444 */
    for (int i = 0; i < 1004; i++)
        stream[i] = i;
    CHECK_OK(calib_from_stream(&c, stream, 1004, 4, 4, 0, &e), &e);
    if (c.ids) {
        CHECK_EQ_INT(c.ids[0], want[0] % 1000);
        CHECK_EQ_INT(c.ids[4], want[1] % 1000);
        CHECK_EQ_INT(c.ids[8], want[2] % 1000);
        CHECK_EQ_INT(c.ids[12], want[3] % 1000);
    }
    calib_free(&c);
}

static void test_calib__windows_follow_the_rule(void)
{
    const size_t n = 5000, seqlen = 64, nsamples = 300;
    int32_t *stream = malloc(n * sizeof(*stream));
    struct calib a = {0}, b = {0}, c = {0};
    gq_err e = GQ_ERR_INIT;
    uint64_t state = 42;
    size_t bad_window = 0, bad_oracle = 0, same_rows = 0;

    /* distinct ids, so a window's first id tells its start */
    for (size_t i = 0; i < n; i++)
        stream[i] = (int32_t)(7 * i + 3);
    CHECK_OK(calib_from_stream(&a, stream, n, nsamples, seqlen, 42, &e), &e);
    CHECK_OK(calib_from_stream(&b, stream, n, nsamples, seqlen, 42, &e), &e);
    CHECK_OK(calib_from_stream(&c, stream, n, nsamples, seqlen, 43, &e), &e);
    if (!a.ids || !b.ids || !c.ids)
        goto done;
    CHECK_EQ_INT(a.nsamples, nsamples);
    CHECK_EQ_INT(a.seqlen, seqlen);
    CHECK_EQ_INT(a.stream_tokens, n);
    CHECK_EQ_INT(strlen(a.sha256), 64);
    for (size_t r = 0; r < nsamples; r++) {
        const int32_t *row = a.ids + r * seqlen;
        long s = (row[0] - 3) / 7;
        /* a real window of the stream, starting in [0, n - seqlen - 1] */
        if (s < 0 || (size_t)s > n - seqlen - 1 || memcmp(row, stream + s, seqlen * sizeof(*row)))
            bad_window++;
        if ((size_t)s != oracle_offset(&state, n - seqlen))
            bad_oracle++;
        same_rows += !memcmp(row, c.ids + r * seqlen, seqlen * sizeof(*row));
    }
    CHECK_EQ_INT(bad_window, 0);
    CHECK_EQ_INT(bad_oracle, 0);
    /* same seed: the same matrix; another seed: another one */
    CHECK(!memcmp(a.ids, b.ids, nsamples * seqlen * sizeof(*a.ids)));
    CHECK(!strcmp(a.sha256, b.sha256));
    CHECK(strcmp(a.sha256, c.sha256) != 0);
    CHECK_MSG(same_rows < 5, "%zu of %zu rows equal under seeds 42 and 43", same_rows, nsamples);
done:
    calib_free(&a);
    calib_free(&b);
    calib_free(&c);
    calib_free(&c);   /* freeing twice is harmless: calib_free clears */
    calib_free(NULL);
    free(stream);
}

static void test_calib__every_start_reachable(void)
{
    int32_t stream[13];
    gq_err e = GQ_ERR_INIT;
    struct calib c = {0};
    size_t hits[13] = {0};

    for (int i = 0; i < 13; i++)
        stream[i] = 100 + i;
    /* n = 13, seqlen = 10: starts 0, 1, 2 only (3 would fit but is outside the rule) */
    CHECK_OK(calib_from_stream(&c, stream, 13, 3000, 10, 7, &e), &e);
    if (c.ids) {
        for (size_t r = 0; r < 3000; r++) {
            int32_t s = c.ids[r * 10] - 100;
            CHECK(s >= 0 && s <= 2);
            if (s >= 0 && s < 13)
                hits[s]++;
        }
        /* uniform: about 1000 each, and both ends reached */
        for (int s = 0; s < 3; s++)
            CHECK_MSG(hits[s] > 850 && hits[s] < 1150, "start %d drawn %zu times of 3000", s, hits[s]);
        CHECK_EQ_INT(hits[3], 0);
    }
    calib_free(&c);
    /* n = seqlen + 1: the only start is 0 */
    CHECK_OK(calib_from_stream(&c, stream, 11, 50, 10, 99, &e), &e);
    if (c.ids)
        for (size_t r = 0; r < 50; r++)
            CHECK_EQ_INT(c.ids[r * 10], 100);
    calib_free(&c);
}

static void test_calib__too_few_tokens_and_bad_sizes(void)
{
    int32_t stream[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct calib c = {0};
    gq_err e = GQ_ERR_INIT;

    CHECK_EQ_INT(calib_from_stream(&c, stream, 8, 4, 8, 0, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "8 tokens") && strstr(e.msg, "9"), "%s", e.msg);
    CHECK(c.ids == NULL);
    CHECK_EQ_INT(calib_from_stream(&c, stream, 3, 4, 100, 0, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "3 tokens") && strstr(e.msg, "101"), "%s", e.msg);
    CHECK_EQ_INT(calib_from_stream(&c, stream, 0, 1, 1, 0, &e), GQ_EINVAL);
    CHECK_EQ_INT(calib_from_stream(&c, stream, 8, 0, 4, 0, &e), GQ_EINVAL);
    CHECK_EQ_INT(calib_from_stream(&c, stream, 8, 4, 0, 0, &e), GQ_EINVAL);
    /* a matrix whose size overflows is refused, not wrapped around */
    CHECK_EQ_INT(calib_from_stream(&c, stream, 8, SIZE_MAX / 2, 4, 0, &e), GQ_ENOMEM);
    CHECK(c.ids == NULL);
}

/* ---- digest ---- */

static void test_calib__digest_known_answer(void)
{
    /*
     * The canonical form of this 2 x 3 matrix, written with printf and
     * hashed with sha256sum when this test was written:
     *   printf '\x02\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\0'  nsamples 2, seqlen 3
     *          '\0\0\0\0\x01\0\0\0\xff\xff\xff\xff'    0, 1, -1
     *          '\0\x01\0\0\xff\xff\xff\x7f\0\0\0\x80'  256, INT32_MAX, INT32_MIN
     * and the same with nsamples 1 and the first row only.
     */
    const int32_t ids[6] = {0, 1, -1, 256, INT32_MAX, INT32_MIN};
    struct calib c = {0};
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(calib_from_blocks(&c, ids, 2, 3, 0, &e), &e);
    CHECK(!strcmp(c.sha256, "9a83b777aa577cbe9bd82c639770aa939c4b783278ed17ab880be484bea715ac"));
    calib_free(&c);
    CHECK_OK(calib_from_blocks(&c, ids, 2, 3, 1, &e), &e);
    CHECK(!strcmp(c.sha256, "1d154b62eadb7edb234899ec835ca611bc01176889298befd012b72bce6d3a78"));
    calib_free(&c);
}

static void test_calib__digest_matches_canonical_form(void)
{
    /* larger than calib.c's 4 KiB hashing buffer, and not a multiple of it */
    const size_t n = 20000, seqlen = 333, nsamples = 7;
    int32_t *stream = malloc(n * sizeof(*stream));
    unsigned long long s = 5;
    struct calib c = {0}, d = {0};
    gq_err e = GQ_ERR_INIT;
    char want[65];

    for (size_t i = 0; i < n; i++)
        stream[i] = (int32_t)(uint32_t)test_rand_u64(&s);
    CHECK_OK(calib_from_stream(&c, stream, n, nsamples, seqlen, 1, &e), &e);
    if (c.ids) {
        oracle_digest(want, c.ids, nsamples, seqlen);
        CHECK_MSG(!strcmp(c.sha256, want), "%s != %s", c.sha256, want);
        /* the shape is part of the digest: the same ids as 21 x 111 differ */
        CHECK_OK(calib_from_blocks(&d, c.ids, 21, 111, 0, &e), &e);
        oracle_digest(want, c.ids, 21, 111);
        CHECK(!strcmp(d.sha256, want));
        CHECK(strcmp(d.sha256, c.sha256) != 0);
    }
    calib_free(&c);
    calib_free(&d);
    free(stream);
}

/* ---- blocks and id files ---- */

static void test_calib__blocks(void)
{
    int32_t ids[12];
    struct calib c = {0};
    gq_err e = GQ_ERR_INIT;
    char want[65];

    for (int i = 0; i < 12; i++)
        ids[i] = i * 11;
    CHECK_OK(calib_from_blocks(&c, ids, 3, 4, 0, &e), &e);
    CHECK_EQ_INT(c.nsamples, 3);
    CHECK_EQ_INT(c.seqlen, 4);
    CHECK_EQ_INT(c.stream_tokens, 0);
    CHECK(c.ids && c.ids != ids && !memcmp(c.ids, ids, sizeof(ids)));
    oracle_digest(want, ids, 3, 4);
    CHECK(!strcmp(c.sha256, want));
    calib_free(&c);
    CHECK_OK(calib_from_blocks(&c, ids, 3, 4, 2, &e), &e);
    CHECK_EQ_INT(c.nsamples, 2);
    CHECK(c.ids && !memcmp(c.ids, ids, 8 * sizeof(*ids)));
    oracle_digest(want, ids, 2, 4);
    CHECK(!strcmp(c.sha256, want));
    calib_free(&c);
    CHECK_EQ_INT(calib_from_blocks(&c, ids, 3, 4, 4, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "4") && strstr(e.msg, "3 blocks"), "%s", e.msg);
    CHECK_EQ_INT(calib_from_blocks(&c, ids, 0, 4, 0, &e), GQ_EINVAL);
    CHECK_EQ_INT(calib_from_blocks(&c, ids, 3, 0, 0, &e), GQ_EINVAL);
    CHECK(c.ids == NULL);
}

static void test_calib__read_ids(void)
{
    const unsigned char le[12] = {1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02, 0x83};
    char path[512];
    int32_t *ids = NULL;
    size_t n = 99;
    gq_err e = GQ_ERR_INIT;

    CHECK(put_file(path, sizeof(path), "ids.i32", le, 12) == 0);
    CHECK_OK(calib_read_ids(&ids, &n, path, &e), &e);
    CHECK_EQ_INT(n, 3);
    if (ids && n == 3) {
        CHECK_EQ_INT(ids[0], 1);
        CHECK_EQ_INT(ids[1], -1);
        CHECK_EQ_INT(ids[2], (int32_t)0x83020100u);
    }
    gq_free(ids);
    ids = NULL;
    CHECK(put_file(path, sizeof(path), "empty.i32", le, 0) == 0);
    CHECK_OK(calib_read_ids(&ids, &n, path, &e), &e);
    CHECK_EQ_INT(n, 0);
    gq_free(ids);
    ids = NULL;
    for (size_t odd = 1; odd < 12; odd += (odd % 4 == 3) ? 2 : 1) {
        char want[32];
        CHECK(put_file(path, sizeof(path), "odd.i32", le, odd) == 0);
        CHECK_EQ_INT(calib_read_ids(&ids, &n, path, &e), GQ_EINVAL);
        snprintf(want, sizeof(want), "size %zu", odd);
        CHECK_MSG(strstr(e.msg, want) && strstr(e.msg, "multiple of 4"), "%s", e.msg);
        CHECK(ids == NULL);
    }
    snprintf(path, sizeof(path), "%s/missing.i32", tmpdir);
    CHECK_EQ_INT(calib_read_ids(&ids, &n, path, &e), GQ_ENOTFOUND);
    CHECK(strstr(e.msg, "missing.i32") != NULL);
    CHECK_EQ_INT(calib_read_ids(&ids, &n, tmpdir, &e), GQ_EINVAL);
    CHECK(ids == NULL);
}

/* ---- texts ---- */

static void test_calib__read_jsonl(void)
{
    char path[512], *big = NULL;
    char **texts = NULL;
    size_t n = 0, biglen = 200000;
    gq_err e = GQ_ERR_INIT;
    FILE *f;

    /* objects and strings, blank lines, CRLF, a last line with no newline */
    CHECK(put_text(path, sizeof(path), "a.jsonl",
                   "\n  {\"text\": \"first\", \"id\": 3}\n\n\"second\\nline\"\r\n \t\n{\"meta\": 1, \"text\": \"\"}\n"
                   "{\"text\": \"caf\\u00e9 \xe2\x82\xac\"}") == 0);
    CHECK_OK(calib_read_texts(&texts, &n, path, &e), &e);
    CHECK_EQ_INT(n, 4);
    if (texts && n == 4) {
        CHECK(!strcmp(texts[0], "first"));
        CHECK(!strcmp(texts[1], "second\nline"));
        CHECK(!strcmp(texts[2], ""));
        CHECK(!strcmp(texts[3], "caf\xc3\xa9 \xe2\x82\xac"));
    }
    calib_texts_free(texts, n);
    texts = NULL;

    /* lines longer than any chunk, around a short one */
    snprintf(path, sizeof(path), "%s/long.jsonl", tmpdir);
    big = malloc(biglen + 1);
    for (size_t i = 0; i < biglen; i++)
        big[i] = (char)('a' + i % 26);
    big[biglen] = '\0';
    if ((f = fopen(path, "w"))) {
        fprintf(f, "{\"text\": \"%s\"}\n\"x\"\n{\"text\": \"%s!\"}\n", big, big);
        fclose(f);
    }
    CHECK_OK(calib_read_texts(&texts, &n, path, &e), &e);
    CHECK_EQ_INT(n, 3);
    if (texts && n == 3) {
        CHECK(strlen(texts[0]) == biglen && !strcmp(texts[0], big));
        CHECK(!strcmp(texts[1], "x"));
        CHECK(strlen(texts[2]) == biglen + 1 && !strncmp(texts[2], big, biglen) && texts[2][biglen] == '!');
    }
    calib_texts_free(texts, n);
    calib_texts_free(NULL, 0);
    free(big);
}

/* path holds text; reading it fails with code and a message holding want (and want2). */
static void expect_refused(const char *text, size_t len, int code, const char *want, const char *want2)
{
    char path[512];
    char **texts = NULL;
    size_t n = 77;
    gq_err e = GQ_ERR_INIT;

    CHECK(put_file(path, sizeof(path), "bad.jsonl", text, len) == 0);
    CHECK_EQ_INT(calib_read_texts(&texts, &n, path, &e), code);
    CHECK_MSG(strstr(e.msg, want) && (!want2 || strstr(e.msg, want2)) && strstr(e.msg, "bad.jsonl"),
              "'%s' lacks '%s' / '%s'", e.msg, want, want2 ? want2 : "");
    CHECK(texts == NULL && n == 77);
}

#define REFUSED(text, code, want, want2) expect_refused(text, sizeof(text) - 1, code, want, want2)

static void test_calib__jsonl_errors_name_the_line(void)
{
    char path[512];
    char **texts = NULL;
    size_t n = 0;
    gq_err e = GQ_ERR_INIT;

    REFUSED("{\"text\": \"a\"}\n\n{\"text\": \"b\"\n", GQ_EINVAL, "line 3", "invalid JSON");
    REFUSED("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", GQ_EINVAL, "line 2", "no \"text\"");
    REFUSED("{\"text\": \"a\"}\n{\"text\": 5}\n", GQ_EINVAL, "line 2", "must be a string (got number)");
    REFUSED("\"a\"\n[\"b\"]\n", GQ_EINVAL, "line 2", "got array");
    REFUSED("\"a\"\n\"b\"\nplain words\n", GQ_EINVAL, "line 3", "invalid JSON");
    REFUSED("\"a\" \"b\"\n", GQ_EINVAL, "line 1", "unexpected data");
    REFUSED("\"a\"\n{\"text\": \"x\\u0000y\"}\n", GQ_EINVAL, "line 2", "\\u0000");
    REFUSED("\"a\"\n\"b\"\n{\"text\": \"x\0y\"}\n", GQ_EINVAL, "line 3", "NUL");
    REFUSED("\"a\"\n{\"text\": \"\xc3(\"}\n", GQ_EINVAL, "line 2", "UTF-8");
    REFUSED("{\"text\": \"\\ud800\"}\n", GQ_EINVAL, "line 1", "invalid JSON");
    /* empty and blank files are empty sets */
    REFUSED("", GQ_EINVAL, "no calibration text", NULL);
    REFUSED(" \n\r\n\t", GQ_EINVAL, "no calibration text", NULL);
    /* a plain text with a NUL byte or invalid UTF-8 */
    REFUSED("some\0text", GQ_EINVAL, "NUL byte at offset 4", NULL);
    REFUSED("\0\0", GQ_EINVAL, "NUL byte at offset 0", NULL);
    REFUSED("some \xff text", GQ_EINVAL, "UTF-8", "byte 5");

    snprintf(path, sizeof(path), "%s/missing.jsonl", tmpdir);
    CHECK_EQ_INT(calib_read_texts(&texts, &n, path, &e), GQ_ENOTFOUND);
    CHECK(strstr(e.msg, "missing.jsonl") != NULL);
    CHECK_EQ_INT(calib_read_texts(&texts, &n, tmpdir, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "not a regular file") != NULL);
    /* over 4 GiB is refused before anything is read (a sparse file) */
    snprintf(path, sizeof(path), "%s/huge.txt", tmpdir);
    {
        FILE *f = fopen(path, "w");
        int made = f && ftruncate(fileno(f), (off_t)(4ll << 30) + 1) == 0;
        if (f)
            fclose(f);
        if (made) {
            CHECK_EQ_INT(calib_read_texts(&texts, &n, path, &e), GQ_EINVAL);
            CHECK_MSG(strstr(e.msg, "4294967297"), "%s", e.msg);
        } else {
            printf("  note: no sparse 4 GiB file here (%s); size limit not exercised\n", strerror(errno));
        }
        unlink(path);
    }
    CHECK(texts == NULL);
}

static void test_calib__plain_text(void)
{
    const char *body = "  Leading blanks stay.\n\n{not json} in the middle\r\nand no newline at the end";
    char path[512];
    char **texts = NULL;
    size_t n = 0;
    gq_err e = GQ_ERR_INIT;

    CHECK(put_text(path, sizeof(path), "plain.txt", body) == 0);
    CHECK_OK(calib_read_texts(&texts, &n, path, &e), &e);
    CHECK_EQ_INT(n, 1);
    if (texts && n == 1)
        CHECK(!strcmp(texts[0], body));
    calib_texts_free(texts, n);
}

static void test_calib__from_texts_windows_are_text(void)
{
    const char *texts[] = {"the cat sat.", "on the mat", "and purred loudly."};
    char joined[128], window[16];
    tokenizer *t = NULL;
    struct calib c = {0}, d = {0};
    gq_err e = GQ_ERR_INIT;
    size_t jl, nsamples = 200, seqlen = 9;
    uint64_t state = 11;
    size_t bad = 0;

    snprintf(joined, sizeof(joined), "%s\n\n%s\n\n%s", texts[0], texts[1], texts[2]);
    jl = strlen(joined);
    CHECK_OK(tokenizer_parse(&t, char_tokenizer, strlen(char_tokenizer), &e), &e);
    if (!t)
        return;
    CHECK_OK(calib_from_texts(&c, t, texts, 3, nsamples, seqlen, 11, &e), &e);
    if (c.ids) {
        CHECK_EQ_INT(c.stream_tokens, jl);
        /* each row, read back as characters, is the joined text at the oracle's offset */
        for (size_t r = 0; r < nsamples; r++) {
            size_t s = oracle_offset(&state, jl - seqlen);
            for (size_t k = 0; k < seqlen; k++)
                window[k] = id_char(c.ids[r * seqlen + k]);
            bad += memcmp(window, joined + s, seqlen) != 0;
        }
        CHECK_EQ_INT(bad, 0);
        /* the same as sampling the stream directly */
        {
            int32_t stream[128];
            for (size_t i = 0; i < jl; i++)
                stream[i] = (int32_t)(strchr(alphabet, joined[i]) - alphabet);
            CHECK_OK(calib_from_stream(&d, stream, jl, nsamples, seqlen, 11, &e), &e);
            CHECK(d.ids && !memcmp(d.ids, c.ids, nsamples * seqlen * sizeof(*c.ids)));
            CHECK(!strcmp(c.sha256, d.sha256));
        }
    }
    calib_free(&c);
    calib_free(&d);
    /* too few tokens: both numbers named; jl = 44 tokens */
    CHECK_EQ_INT(calib_from_texts(&c, t, texts, 3, 1, jl, 0, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "44 tokens") && strstr(e.msg, "45"), "%s", e.msg);
    CHECK_EQ_INT(calib_from_texts(&c, t, texts, 0, 1, 1, 0, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "0 tokens"), "%s", e.msg);
    CHECK_EQ_INT(calib_from_texts(&c, t, texts, 3, 0, 4, 0, &e), GQ_EINVAL);
    {
        const char *bad_utf8[] = {"fine", "no\xc3"};
        CHECK_EQ_INT(calib_from_texts(&c, t, bad_utf8, 2, 1, 1, 0, &e), GQ_EINVAL);
        CHECK_MSG(strstr(e.msg, "UTF-8"), "%s", e.msg);
    }
    CHECK(c.ids == NULL);
    tokenizer_free(t);
}

struct thread_arg {
    const tokenizer *t;
    const char *const *texts;
    struct calib c;
    int rc;
};

static void *calib_thread(void *p)
{
    struct thread_arg *a = p;
    gq_err e = GQ_ERR_INIT;
    for (int i = 0; i < 20 && a->rc == 0; i++) {
        calib_free(&a->c);
        a->rc = calib_from_texts(&a->c, a->t, a->texts, 2, 64, 8, 3, &e);
    }
    return NULL;
}

static void test_calib__threads(void)
{
    const char *texts[] = {"a quick brown fox jumps over the lazy dog.", "pack my box with five dozen jugs."};
    tokenizer *t = NULL;
    struct thread_arg a[4];
    struct calib ref = {0};
    pthread_t th[4];
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(tokenizer_parse(&t, char_tokenizer, strlen(char_tokenizer), &e), &e);
    if (!t)
        return;
    CHECK_OK(calib_from_texts(&ref, t, texts, 2, 64, 8, 3, &e), &e);
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){t, texts, {0}, 0};
        CHECK(pthread_create(&th[i], NULL, calib_thread, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(a[i].rc, 0);
        CHECK(!strcmp(a[i].c.sha256, ref.sha256));
        calib_free(&a[i].c);
    }
    calib_free(&ref);
    tokenizer_free(t);
}

static void test_calib__allocation_failures(void)
{
    const int32_t blocks[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    char jsonl[512], ids_path[512];
    tokenizer *t = NULL;
    gq_err e = GQ_ERR_INIT;
    int enomem = 0, ok = 0;

    CHECK(put_text(jsonl, sizeof(jsonl), "alloc.jsonl", "{\"text\": \"the cat sat\"}\n\n\"on the mat.\"\n") == 0);
    CHECK(put_file(ids_path, sizeof(ids_path), "alloc.i32", blocks, sizeof(blocks)) == 0);
    CHECK_OK(tokenizer_parse(&t, char_tokenizer, strlen(char_tokenizer), &e), &e);
    if (!t)
        return;
    /* every allocation fails once: a clean GQ_ENOMEM, nothing leaked, nothing set */
    for (long k = 0; k < 10000; k++) {
        struct calib c = {0}, b = {0};
        char **texts = NULL;
        int32_t *ids = NULL;
        size_t n = 0, nids = 0, before = gq_mem_current();
        int rc;

        gq_alloc_fail_after(k);
        /* each output is set only when its own call succeeds */
        if ((rc = calib_read_texts(&texts, &n, jsonl, &e)) < 0)
            CHECK(texts == NULL);
        else if ((rc = calib_from_texts(&c, t, (const char *const *)texts, n, 5, 6, 0, &e)) < 0)
            CHECK(c.ids == NULL);
        else if ((rc = calib_read_ids(&ids, &nids, ids_path, &e)) < 0)
            CHECK(ids == NULL);
        else if ((rc = calib_from_blocks(&b, ids, 2, 4, 0, &e)) < 0)
            CHECK(b.ids == NULL);
        gq_alloc_fail_after(-1);
        if (rc == 0) {
            CHECK_EQ_INT(n, 2);
            CHECK_EQ_INT(c.stream_tokens, 24);
            CHECK_EQ_INT(nids, 8);
            CHECK(b.ids && !memcmp(b.ids, blocks, sizeof(blocks)));
        }
        calib_texts_free(texts, n);
        calib_free(&c);
        gq_free(ids);
        calib_free(&b);
        CHECK_MSG(gq_mem_current() == before, "failure %ld: %zu bytes leaked", k, gq_mem_current() - before);
        if (rc == 0) {
            ok = 1;
            break;
        }
        CHECK_MSG(rc == GQ_ENOMEM, "failure %ld: rc %d (%s)", k, rc, e.msg);
        enomem++;
    }
    CHECK(ok);
    CHECK(enomem >= 8);
    printf("  %d allocation failures, each a clean GQ_ENOMEM\n", enomem);
    tokenizer_free(t);
}

/* ---- the shared fixture ---- */

static void test_calib__shared_fixture(void)
{
    const char *shared = test_shared_dir();
    char path[4200], *file = NULL, *joined = NULL;
    char **texts = NULL;
    size_t n = 0, len = 0, lines = 0, same = 0, jl = 0, nstream = 0;
    tokenizer *t = NULL;
    struct calib c = {0}, d = {0};
    int32_t *stream = NULL;
    gq_err e = GQ_ERR_INIT;
    uint64_t state = 0;
    size_t bad = 0;
    char want[65];

    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide calibration set");
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/calibration.jsonl", shared);
    CHECK_OK(calib_read_texts(&texts, &n, path, &e), &e);
    CHECK_EQ_INT(n, 2000);
    /* the texts against an independent reading: the file split at '\n', each line parsed */
    file = test_read_file(path, &len);
    CHECK(file != NULL);
    for (char *p = file, *nl; p && texts && p < file + len; p = nl + 1) {
        gq_json *j = NULL;
        if (!(nl = memchr(p, '\n', (size_t)(file + len - p))))
            nl = file + len;
        if (nl > p && gq_json_parse(&j, p, (size_t)(nl - p), &e) == 0 && lines < n)
            same += !strcmp(gq_json_string(gq_json_get(j, "text")), texts[lines]);
        lines += nl > p;
        gq_json_free(j);
    }
    CHECK_EQ_INT(lines, 2000);
    CHECK_EQ_INT(same, 2000);

    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    CHECK_OK(tokenizer_load_dir(&t, path, &e), &e);
    if (!t || !texts)
        goto done;
    CHECK_OK(calib_from_texts(&c, t, (const char *const *)texts, n, 128, 256, 0, &e), &e);
    CHECK_OK(calib_from_texts(&d, t, (const char *const *)texts, n, 128, 256, 0, &e), &e);
    if (!c.ids || !d.ids)
        goto done;
    printf("  calibration.jsonl: %zu texts, stream of %zu tokens, 128 x 256 windows, seed 0, sha256 %s\n", n,
           c.stream_tokens, c.sha256);
    CHECK(!strcmp(c.sha256, d.sha256));
    /*
     * Known answer, computed when this test was written outside this code
     * base: the tokenizers library (Node binding 0.23.2, build/npm) encoded
     * the texts joined with "\n\n" without special tokens (97053 ids), and a
     * separate JavaScript implementation of calib.h's rule (BigInt
     * splitmix64, rejection, windows) and canonical form hashed the matrix
     * with node's crypto SHA-256.
     */
    CHECK_EQ_INT(c.stream_tokens, 97053);
    CHECK_MSG(!strcmp(c.sha256, "8f9167365c407c5433047496cf11d8caf4545f9d4b7677e344603a3a6d830a6f"), "%s",
              c.sha256);
    /* the stream, tokenized here from a join made here; each row is its window at the oracle's offset */
    for (size_t i = 0; i < n; i++)
        jl += strlen(texts[i]) + (i ? 2 : 0);
    joined = malloc(jl + 1);
    joined[0] = '\0';
    for (size_t i = 0, at = 0; i < n; i++) {
        at += (size_t)sprintf(joined + at, "%s%s", i ? "\n\n" : "", texts[i]);
    }
    CHECK_OK(tokenizer_encode(&stream, &nstream, t, joined, jl, 0, &e), &e);
    CHECK_EQ_INT(nstream, c.stream_tokens);
    CHECK(nstream > 257);
    if (stream && nstream == c.stream_tokens && nstream > 257) {
        for (size_t r = 0; r < 128; r++) {
            size_t s = oracle_offset(&state, nstream - 256);
            bad += memcmp(c.ids + r * 256, stream + s, 256 * sizeof(*stream)) != 0;
        }
        CHECK_EQ_INT(bad, 0);
    }
    oracle_digest(want, c.ids, 128, 256);
    CHECK(!strcmp(c.sha256, want));
done:
    gq_free(stream);
    free(joined);
    free(file);
    calib_free(&c);
    calib_free(&d);
    calib_texts_free(texts, n);
    tokenizer_free(t);
}

static void remove_tmpdir(void)
{
    static const char *names[] = {"a.jsonl", "long.jsonl", "bad.jsonl", "plain.txt", "ids.i32", "empty.i32",
                                  "odd.i32", "alloc.jsonl", "alloc.i32"};
    char path[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

int main(void)
{
    t_prog = "test_calib";
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_calib__generator_matches_published_splitmix64);
    RUN(test_calib__windows_follow_the_rule);
    RUN(test_calib__every_start_reachable);
    RUN(test_calib__too_few_tokens_and_bad_sizes);
    RUN(test_calib__digest_known_answer);
    RUN(test_calib__digest_matches_canonical_form);
    RUN(test_calib__blocks);
    RUN(test_calib__read_ids);
    RUN(test_calib__read_jsonl);
    RUN(test_calib__jsonl_errors_name_the_line);
    RUN(test_calib__plain_text);
    RUN(test_calib__from_texts_windows_are_text);
    RUN(test_calib__threads);
    RUN(test_calib__allocation_failures);
    RUN(test_calib__shared_fixture);
    remove_tmpdir();
    return test_report();
}
