/*
 * test_tokenizer.c - the tokenizer against the Hugging Face tokenizers
 * library: every case of the shared fixture's reference/tokenize.json
 * (ids produced by tokenizers 0.23 from the fixture's tokenizer.json) must
 * come out id for id; components we do not implement are refused by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "test.h"
#include "tokenizer.h"

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
        const gq_json *want = gq_json_get(c, "ids");
        int32_t *ids = NULL;
        size_t n = 0, i = 0;
        int same;

        cases++;
        CHECK_OK(tokenizer_encode(&ids, &n, t, s, strlen(s), 1, &e), &e);
        same = n == gq_json_size(want);
        for (const gq_json *w = gq_json_first(want); w && same; w = gq_json_next(w), i++)
            same = (int32_t)gq_json_number(w) == ids[i];
        CHECK_MSG(same, "case %zu (%.40s...): %zu ids, want %zu", cases, s, n, gq_json_size(want));
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

/* A minimal byte-level BPE tokenizer.json with the given replacements. */
static int parse_variant(tokenizer **t, const char *model_extra, const char *normalizer,
                         const char *added, gq_err *e)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"version\": \"1.0\", \"added_tokens\": %s, \"normalizer\": %s,"
             " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
             " \"post_processor\": null, \"decoder\": null,"
             " \"model\": {\"type\": \"BPE\", %s \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3,"
             " \"\\u0120a\": 4}, \"merges\": [\"a b\", [\"\\u0120\", \"a\"]]}}",
             added, normalizer, model_extra);
    return tokenizer_parse(t, json, strlen(json), e);
}

static void test_tokenizer__small_bpe_and_errors(void)
{
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;

    /* both merge encodings; "ab a" -> ab, (space a) */
    CHECK_OK(parse_variant(&t, "\"dropout\": null,", "null", "[]", &e), &e);
    if (t) {
        CHECK_OK(tokenizer_encode(&ids, &n, t, "ab a", 4, 1, &e), &e);
        CHECK_EQ_INT(n, 2);
        if (n == 2) {
            CHECK_EQ_INT(ids[0], 2);
            CHECK_EQ_INT(ids[1], 4);
        }
        gq_free(ids);
        CHECK_EQ_INT(tokenizer_encode(&ids, &n, t, "a\xff", 2, 1, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "UTF-8") != NULL);
        tokenizer_free(t);
        t = NULL;
    }
    CHECK_EQ_INT(parse_variant(&t, "\"dropout\": 0.1,", "null", "[]", &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "dropout") != NULL);
    CHECK_EQ_INT(parse_variant(&t, "", "{\"type\": \"NFKD\"}", "[]", &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "normalizer 'NFKD'") != NULL);
    CHECK_EQ_INT(parse_variant(&t, "",  "null",
                               "[{\"id\": 5, \"content\": \"<x>\", \"lstrip\": true}]", &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "lstrip") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"model\": {\"type\": \"WordPiece\"}}", 33, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "model 'WordPiece'") != NULL);
    CHECK_EQ_INT(tokenizer_parse(&t, "{\"model\": ", 10, &e), GQ_EINVAL);
    CHECK_EQ_INT(tokenizer_load(&t, "/nonexistent/tokenizer.json", &e), GQ_ENOTFOUND);
    CHECK(t == NULL);
}

int main(void)
{
    t_prog = "test_tokenizer";
    RUN(test_tokenizer__matches_tokenizers_library);
    RUN(test_tokenizer__small_bpe_and_errors);
    return test_report();
}
