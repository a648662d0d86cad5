/*
 * test_tokenizer.c - the tokenizer against the Hugging Face tokenizers
 * library, component by component.
 *
 *   - the shared fixture's reference/tokenize.json (tokenizers 0.23);
 *   - tests/fixtures/tokenizers/synthetic.jsonl: one small tokenizer.json
 *     per component and flag (normalizers, every Split behavior, Metaspace
 *     schemes, added-token flags, post-processors, decoders, byte
 *     fallback, unk fusing, merge priority, subword affixes) with the
 *     library's ids and decodings (tests/tokenizer/synthetic.js made it);
 *   - errors: every unsupported or malformed component is refused by name;
 *   - tokenizer_config.json handling, threads, allocation failures.
 * The real-world tokenizers and the 2,000-line corpus are in
 * test_tokenizer_fixtures.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "mem.h"
#include "test.h"
#include "tokenizer.h"

/* 1 when ids[0, n) equals the JSON array want. */
static int same_ids(const int32_t *ids, size_t n, const gq_json *want)
{
    size_t i = 0;
    if (n != gq_json_size(want))
        return 0;
    for (const gq_json *w = gq_json_first(want); w; w = gq_json_next(w), i++)
        if ((int32_t)gq_json_number(w) != ids[i])
            return 0;
    return 1;
}

static void test_tokenizer__matches_tokenizers_library(void)
{
    const char *shared = test_shared_dir();
    char path[4200];
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    gq_json *ref = NULL;
    char *text = NULL;
    size_t len = 0, cases = 0, equal = 0;

    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide tokenizer");
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/model/tokenizer.json", shared);
    CHECK_OK(tokenizer_load(&t, path, &e), &e);
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/reference/tokenize.json", shared);
    text = test_read_file(path, &len);
    CHECK(text != NULL);
    if (!t || !text)
        goto done;
    CHECK_EQ_INT(tokenizer_vocab_size(t), 8192);
    CHECK_OK(gq_json_parse(&ref, text, len, &e), &e);
    for (const gq_json *c = gq_json_first(gq_json_get(ref, "cases")); c; c = gq_json_next(c)) {
        const char *s = gq_json_string(gq_json_get(c, "text"));
        int32_t *ids = NULL;
        size_t n = 0;
        int same;

        cases++;
        CHECK_OK(tokenizer_encode(&ids, &n, t, s, strlen(s), 1, &e), &e);
        same = same_ids(ids, n, gq_json_get(c, "ids"));
        CHECK_MSG(same, "case %zu (%.40s...): %zu ids", cases, s, n);
        equal += (size_t)same;
        gq_free(ids);
    }
    printf("  %zu of %zu reference tokenizations identical\n", equal, cases);
    CHECK(cases == 48);
done:
    gq_json_free(ref);
    free(text);
    tokenizer_free(t);
}

static void test_tokenizer__synthetic_components(void)
{
    gq_err e = GQ_ERR_INIT;
    size_t len = 0, ntok = 0, ncases = 0, good = 0;
    char *text = test_read_file("tests/fixtures/tokenizers/synthetic.jsonl", &len);

    CHECK(text != NULL);
    for (char *line = text, *end; text && line < text + len; line = end + 1) {
        gq_json *j = NULL;
        char *json = NULL;
        tokenizer *t = NULL;
        const char *name;

        end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end)
            end = text + len;
        if (end == line)
            continue;
        CHECK_OK(gq_json_parse(&j, line, (size_t)(end - line), &e), &e);
        name = gq_json_string(gq_json_get(j, "name"));
        json = gq_json_print(gq_json_get(j, "tokenizer"), 0);
        CHECK(json != NULL);
        if (json) {
            int rc = tokenizer_parse(&t, json, strlen(json), &e);
            CHECK_MSG(rc == 0, "%s: %s", name, e.msg);
        }
        ntok++;
        for (const gq_json *c = gq_json_first(gq_json_get(j, "cases")); t && c; c = gq_json_next(c)) {
            const char *s = gq_json_string(gq_json_get(c, "text"));
            const char *want_dec = gq_json_string(gq_json_get(c, "decoded"));
            const char *want_skip = gq_json_string(gq_json_get(c, "decoded_skip"));
            int32_t *ids = NULL, *plain = NULL;
            size_t n = 0, np = 0, dl = 0;
            char *dec = NULL, *skip = NULL;
            int ok = 1;

            ncases++;
            if (tokenizer_encode(&ids, &n, t, s, strlen(s), 1, &e) < 0 ||
                tokenizer_encode(&plain, &np, t, s, strlen(s), 0, &e) < 0 ||
                tokenizer_decode(&dec, &dl, t, ids, n, 0, &e) < 0 ||
                tokenizer_decode(&skip, &dl, t, ids, n, 1, &e) < 0) {
                CHECK_MSG(0, "%s '%s': %s", name, s, e.msg);
                ok = 0;
            } else {
                int a = same_ids(ids, n, gq_json_get(c, "ids")), b = same_ids(plain, np, gq_json_get(c, "ids_plain"));
                int d = !strcmp(dec, want_dec), k = !strcmp(skip, want_skip);
                CHECK_MSG(a && b && d && k, "%s '%s': ids %s, plain ids %s, decoded %s ('%s' vs '%s'), decoded_skip %s",
                          name, s, a ? "ok" : "DIFFER", b ? "ok" : "DIFFER", d ? "ok" : "DIFFER", dec, want_dec,
                          k ? "ok" : "DIFFER");
                ok = a && b && d && k;
            }
            good += (size_t)ok;
            gq_free(ids);
            gq_free(plain);
            gq_free(dec);
            gq_free(skip);
        }
        tokenizer_free(t);
        gq_json_free_text(json);
        gq_json_free(j);
    }
    printf("  %zu tokenizers, %zu of %zu cases identical to the library\n", ntok, good, ncases);
    CHECK(ntok >= 30);
    CHECK(ncases >= 100);
    free(text);
}

/* A minimal byte-level BPE tokenizer.json with the given parts replaced. */
static int parse_variant(tokenizer **t, const char *model_extra, const char *normalizer, const char *pre,
                         const char *post, const char *decoder, const char *added, gq_err *e)
{
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"version\": \"1.0\", \"added_tokens\": %s, \"normalizer\": %s, \"pre_tokenizer\": %s,"
             " \"post_processor\": %s, \"decoder\": %s,"
             " \"model\": {\"type\": \"BPE\", %s \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3,"
             " \"\\u0120a\": 4}, \"merges\": [\"a b\", [\"\\u0120\", \"a\"]]}}",
             added, normalizer, pre, post, decoder, model_extra);
    return tokenizer_parse(t, json, strlen(json), e);
}

#define BL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

static void expect_refused(const char *model_extra, const char *normalizer, const char *pre, const char *post,
                           const char *decoder, const char *added, const char *needle)
{
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    int rc = parse_variant(&t, model_extra, normalizer, pre, post, decoder, added, &e);
    CHECK_MSG(rc == GQ_EINVAL, "expected a refusal mentioning '%s', got rc %d", needle, rc);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "message '%s' does not mention '%s'", e.msg, needle);
    CHECK(t == NULL);
    tokenizer_free(t);
}

static void test_tokenizer__small_bpe_and_errors(void)
{
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *nul = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\\u0000b\": 0}, \"merges\": []}}";

    /* both merge encodings; "ab a" -> ab, (space a) */
    CHECK_OK(parse_variant(&t, "\"dropout\": null,", "null", BL, "null", "null", "[]", &e), &e);
    if (t) {
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab a", 4, 1, &e), &e);
        CHECK_EQ_INT(n, 2);
        if (n == 2) {
            CHECK_EQ_INT(ids[0], 2);
            CHECK_EQ_INT(ids[1], 4);
        }
        gq_free(ids);
        CHECK_EQ_INT(tokenizer_encode(&ids, &n, t, "a\xff", 2, 1, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "UTF-8") != NULL && strstr(e.msg, "byte 1") != NULL);
        CHECK_EQ_INT(tokenizer_encode(&ids, &n, t, "a\xed\xa0\x80", 4, 1, &e), GQ_EINVAL);   /* a surrogate */
        CHECK_EQ_INT(tokenizer_token_id(t, "ab"), 2);
        CHECK_EQ_INT(tokenizer_token_id(t, "zz"), -1);
        tokenizer_free(t);
        t = NULL;
    }
    expect_refused("\"dropout\": 0.1,", "null", BL, "null", "null", "[]", "dropout");
    expect_refused("", "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}", BL, "null", "null", "[]",
                   "normalizer 'Precompiled'");
    expect_refused("", "{\"type\": \"BertNormalizer\"}", BL, "null", "null", "[]", "normalizer 'BertNormalizer'");
    expect_refused("", "null", "{\"type\": \"BertPreTokenizer\"}", "null", "null", "[]", "pre_tokenizer 'BertPreTokenizer'");
    expect_refused("", "null", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\"}]}", "null",
                   "null", "[]", "pre_tokenizer 'Punctuation'");
    expect_refused("", "null", BL, "{\"type\": \"Bogus\"}", "null", "[]", "post_processor 'Bogus'");
    expect_refused("", "null", BL, "null", "{\"type\": \"WordPiece\"}", "[]", "decoder 'WordPiece'");
    expect_refused("", "null", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}",
                   "null", "null", "[]", "cannot compile regex");
    expect_refused("", "null", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}",
                   "null", "null", "[]", "behavior must be");
    expect_refused("", "null", "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}", "null", "null", "[]",
                   "single character");
    expect_refused("", "null", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}",
                   "null", "null", "[]", "add_prefix_space does not match");
    expect_refused("", "null", BL,
                   "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\"}},"
                   " {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {}}",
                   "null", "[]", "'<x>' is not in special_tokens");
    expect_refused("", "null", BL, "null", "null", "[{\"id\": 5}]", "has no content");
    expect_refused("\"byte_fallback\": \"yes\",", "null", BL, "null", "null", "[]", "byte_fallback must be true or false");
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"model\": {\"type\": \"WordPiece\"}}", 32, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "model 'WordPiece'") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"version\": \"2.0\", \"model\": {}}", 31, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "version") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, nul, strlen(nul), &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "\\u0000") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                                 64, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "merge 0") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"model\": ", 10, &e), GQ_EINVAL);
    CHECK_EQ_INT(tokenizer_parse(&t, "[1, 2]", 6, &e), GQ_EINVAL);
    CHECK_EQ_INT(tokenizer_load(&t, "/nonexistent/tokenizer.json", &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(tokenizer_load_dir(&t, "/nonexistent", &e), GQ_ENOTFOUND);
    CHECK(t == NULL);
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "w")))
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_tokenizer__config_overrides(void)
{
    char dir[] = "/tmp/gq-tokcfg-XXXXXX", path[512];
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *tj =
        "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true},"
        " {\"id\": 4, \"content\": \"</s>\", \"special\": true}], \"normalizer\": null, \"pre_tokenizer\": null,"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
        " {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [3]}}},"
        " \"decoder\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
        " \"merges\": [\"a b\"]}}";

    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    CHECK(write_file(dir, "tokenizer.json", tj) == 0);
    /* no tokenizer_config.json: the template's BOS */
    CHECK_OK(tokenizer_load_dir(&t, dir, &e), &e);
    if (t) {
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab", 2, 1, &e), &e);
        CHECK(n == 2 && ids[0] == 3 && ids[1] == 2);
        CHECK_EQ_INT(tokenizer_model_max_length(t), 0);
        gq_free(ids);
        tokenizer_free(t);
        t = NULL;
    }
    /* add_eos_token: EOS after, BOS kept (add_bos_token absent) */
    CHECK(write_file(dir, "tokenizer_config.json",
                     "{\"add_eos_token\": true, \"eos_token\": {\"content\": \"</s>\"}, \"model_max_length\": 4096}") == 0);
    CHECK_OK(tokenizer_load_dir(&t, dir, &e), &e);
    if (t) {
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab", 2, 1, &e), &e);
        CHECK(n == 3 && ids[0] == 3 && ids[1] == 2 && ids[2] == 4);
        CHECK_EQ_INT(tokenizer_model_max_length(t), 4096);
        gq_free(ids);
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab", 2, 0, &e), &e);
        CHECK(n == 1 && ids[0] == 2);
        gq_free(ids);
        tokenizer_free(t);
        t = NULL;
    }
    /* add_bos_token false removes the template's BOS; 1e30 is no limit */
    CHECK(write_file(dir, "tokenizer_config.json",
                     "{\"add_bos_token\": false, \"model_max_length\": 1000000000000000019884624838656}") == 0);
    CHECK_OK(tokenizer_load_dir(&t, dir, &e), &e);
    if (t) {
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab", 2, 1, &e), &e);
        CHECK(n == 1 && ids[0] == 2);
        CHECK_EQ_INT(tokenizer_model_max_length(t), 0);
        gq_free(ids);
        tokenizer_free(t);
        t = NULL;
    }
    /* a flag naming a token that does not exist, and a malformed file */
    CHECK(write_file(dir, "tokenizer_config.json", "{\"add_bos_token\": true, \"bos_token\": \"<bos>\"}") == 0);
    CHECK_EQ_INT(tokenizer_load_dir(&t, dir, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "bos_token") != NULL && strstr(e.msg, "<bos>") != NULL);
    CHECK(write_file(dir, "tokenizer_config.json", "{\"add_bos_token\": tru") == 0);
    CHECK_EQ_INT(tokenizer_load_dir(&t, dir, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "tokenizer_config.json") != NULL);
    /* a file path loads that tokenizer.json alone */
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    CHECK_OK(tokenizer_load_dir(&t, path, &e), &e);
    tokenizer_free(t);
    t = NULL;
    /* a SentencePiece-only directory is refused with a reason */
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    unlink(path);
    CHECK(write_file(dir, "tokenizer.model", "x") == 0);
    CHECK_EQ_INT(tokenizer_load_dir(&t, dir, &e), GQ_ENOTFOUND);
    CHECK(strstr(e.msg, "tokenizer.model") != NULL);
    snprintf(path, sizeof(path), "%s/tokenizer.model", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
}

struct thread_arg {
    const tokenizer *t;
    const char *text;
    int32_t *ids;
    size_t n;
    int rc;
};

static void *encode_thread(void *p)
{
    struct thread_arg *a = p;
    gq_err e = GQ_ERR_INIT;
    for (int i = 0; i < 20 && a->rc == 0; i++) {
        gq_free(a->ids);
        a->ids = NULL;
        a->rc = tokenizer_encode(&a->ids, &a->n, a->t, a->text, strlen(a->text), 1, &e);
    }
    return NULL;
}

static const char rich_json[] =
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 8, \"content\": \"<m>\", \"lstrip\": true, \"special\": true},"
    " {\"id\": 9, \"content\": \"HI\", \"normalized\": true, \"single_word\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Lowercase\"},"
    " {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \" \"}]},"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\":"
    " {\"Regex\": \"\\\\p{N}{1,3}| ?\\\\p{L}+|\\\\s+(?!\\\\S)|\\\\s+|.\"}, \"behavior\": \"Isolated\"},"
    " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},"
    " \"post_processor\": {\"type\": \"RobertaProcessing\", \"cls\": [\"a\", 0], \"sep\": [\"b\", 1]},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120a\": 4,"
    " \"h\": 5, \"i\": 6, \"1\": 7}, \"merges\": [\"a b\", [\"\\u0120\", \"a\"]]}}";

static void test_tokenizer__threads_share_one_tokenizer(void)
{
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    struct thread_arg a[4];
    pthread_t th[4];
    const char *text = "ab  ab <m> HI hi ﬁ 12345 ab\tab ab";
    int32_t *ref = NULL;
    size_t nref = 0;

    CHECK_OK(tokenizer_parse(&t, rich_json, strlen(rich_json), &e), &e);
    if (!t)
        return;
    CHECK_OK(tokenizer_encode(&ref, &nref, t, text, strlen(text), 1, &e), &e);
    CHECK(nref > 5);
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){t, text, NULL, 0, 0};
        CHECK(pthread_create(&th[i], NULL, encode_thread, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(a[i].rc, 0);
        CHECK(a[i].n == nref && a[i].ids && !memcmp(a[i].ids, ref, nref * sizeof(int32_t)));
        gq_free(a[i].ids);
    }
    gq_free(ref);
    tokenizer_free(t);
}

static void test_tokenizer__allocation_failures(void)
{
    gq_err e = GQ_ERR_INIT;
    const char *text = "ab  ab <m> HI hi 12345";
    int enomem = 0, ok = 0;

    /* every allocation of loading, encoding and decoding fails once: a clean GQ_ENOMEM, no leak */
    for (long k = 0; k < 100000; k++) {
        tokenizer *t = NULL;
        int32_t *ids = NULL;
        char *dec = NULL;
        size_t n = 0, dl = 0;
        int rc;

        gq_alloc_fail_after(k);
        rc = tokenizer_parse(&t, rich_json, strlen(rich_json), &e);
        if (rc == 0)
            rc = tokenizer_encode(&ids, &n, t, text, strlen(text), 1, &e);
        if (rc == 0)
            rc = tokenizer_decode(&dec, &dl, t, ids, n, 0, &e);
        gq_alloc_fail_after(-1);
        gq_free(ids);
        gq_free(dec);
        tokenizer_free(t);
        if (rc == 0) {
            ok = 1;
            break;
        }
        CHECK_MSG(rc == GQ_ENOMEM || (rc == GQ_EINVAL && strstr(e.msg, "JSON")), "failure %ld: rc %d (%s)", k, rc,
                  e.msg);
        enomem++;
    }
    CHECK(ok);
    CHECK(enomem > 20);
}

int main(void)
{
    t_prog = "test_tokenizer";
    RUN(test_tokenizer__matches_tokenizers_library);
    RUN(test_tokenizer__synthetic_components);
    RUN(test_tokenizer__small_bpe_and_errors);
    RUN(test_tokenizer__config_overrides);
    RUN(test_tokenizer__threads_share_one_tokenizer);
    RUN(test_tokenizer__allocation_failures);
    return test_report();
}
