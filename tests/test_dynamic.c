/*
 * test_dynamic.c - GPTQModel's `dynamic` rules (core/dynamic.c): vLLM's
 * documented example, negative rules tried first, the first positive
 * match winning in the order written, re.match anchoring (start only),
 * Unicode classes as Python's re has them, the overrides parsed, the
 * rules written back in their original spelling and order, every error
 * named, allocation failures and concurrent matching.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dynamic.h"
#include "json.h"
#include "mem.h"
#include "test.h"

/* Parse text as JSON, then as rules; the rc of dynamic_parse (or of the JSON parse). */
static int parse(dynamic_rules **out, const char *text, gq_err *e)
{
    gq_json *j = NULL;
    int rc = gq_json_parse(&j, text, strlen(text), e);
    if (rc == 0)
        rc = dynamic_parse(out, j, e);
    gq_json_free(j);
    return rc;
}

static int match(const dynamic_rules *d, const char *module, struct gptq_override *ov)
{
    struct gptq_override tmp;
    return dynamic_match(d, module, ov ? ov : &tmp);
}

/* vLLM's docs: layers 10-15 in 8 bits, MoE modules left alone. */
static void test_dynamic__vllm_example(void)
{
    dynamic_rules *d = NULL;
    struct gptq_override ov;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse(&d, "{\"+:.*\\\\.(?:1[0-5])\\\\..*\": {\"bits\": 8}, \"-:.*\\\\.moe\\\\..*\": {}}", &e),
             &e);
    if (!d)
        return;
    CHECK_EQ_INT(dynamic_count(d), 2);
    CHECK_EQ_INT(match(d, "model.layers.12.mlp.down_proj", &ov), 1);
    CHECK(ov.has_bits && ov.bits == 8);
    CHECK(!ov.has_group_size && !ov.has_desc_act && !ov.has_sym && !ov.has_damp_percent &&
          !ov.has_static_groups && !ov.has_mse);
    CHECK_EQ_INT(match(d, "model.layers.10.self_attn.q_proj", NULL), 1);
    CHECK_EQ_INT(match(d, "model.layers.15.self_attn.o_proj", NULL), 1);
    CHECK_EQ_INT(match(d, "model.layers.16.mlp.down_proj", &ov), 0);
    CHECK(!ov.has_bits);
    CHECK_EQ_INT(match(d, "model.layers.1.mlp.down_proj", NULL), 0);
    CHECK_EQ_INT(match(d, "model.layers.115.mlp.down_proj", NULL), 0);
    CHECK_EQ_INT(match(d, "model.layers.3.moe.experts.0.w1", NULL), -1);
    /* both rules match: the negative one wins although it is written second */
    CHECK_EQ_INT(match(d, "model.layers.12.moe.experts.0.w1", &ov), -1);
    CHECK(!ov.has_bits);
    dynamic_free(d);
}

static void test_dynamic__negative_first_then_written_order(void)
{
    dynamic_rules *d = NULL;
    struct gptq_override ov;
    gq_err e = GQ_ERR_INIT;

    /* a catch-all positive rule before a negative one */
    CHECK_OK(parse(&d, "{\"+:.*\": {\"bits\": 8}, \"-:.*q_proj\": {}}", &e), &e);
    CHECK_EQ_INT(match(d, "model.layers.0.self_attn.q_proj", NULL), -1);
    CHECK_EQ_INT(match(d, "model.layers.0.self_attn.k_proj", &ov), 1);
    CHECK(ov.has_bits && ov.bits == 8);
    dynamic_free(d);
    d = NULL;

    /* positive rules: the first written wins, and only its own keys apply */
    CHECK_OK(parse(&d, "{\".*layers\\\\.0\\\\..*\": {\"bits\": 8}, \".*q_proj\": {\"bits\": 2, "
                       "\"group_size\": 64}}", &e), &e);
    CHECK_EQ_INT(match(d, "model.layers.0.self_attn.q_proj", &ov), 1);
    CHECK(ov.has_bits && ov.bits == 8 && !ov.has_group_size);
    CHECK_EQ_INT(match(d, "model.layers.1.self_attn.q_proj", &ov), 1);
    CHECK(ov.has_bits && ov.bits == 2 && ov.has_group_size && ov.group_size == 64);
    CHECK_EQ_INT(match(d, "model.layers.1.self_attn.k_proj", &ov), 0);
    dynamic_free(d);
}

/* re.match: anchored at the start of the full name, free at its end. */
static void test_dynamic__anchoring(void)
{
    dynamic_rules *d = NULL;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse(&d, "{\"-:q_proj\": {}}", &e), &e);
    CHECK_EQ_INT(match(d, "model.layers.0.self_attn.q_proj", NULL), 0);   /* only mid-name */
    CHECK_EQ_INT(match(d, "q_proj", NULL), -1);
    dynamic_free(d);
    d = NULL;

    CHECK_OK(parse(&d, "{\"-:self_attn\": {}, \"+:model\\\\.layers\\\\.1\": {\"bits\": 3}}", &e), &e);
    CHECK_EQ_INT(match(d, "model.layers.0.self_attn.q_proj", NULL), 0);
    /* no end anchor: layers.1 also matches layers.12 */
    CHECK_EQ_INT(match(d, "model.layers.1.mlp.up_proj", NULL), 1);
    CHECK_EQ_INT(match(d, "model.layers.12.mlp.up_proj", NULL), 1);
    CHECK_EQ_INT(match(d, "xmodel.layers.1.mlp.up_proj", NULL), 0);
    dynamic_free(d);
    d = NULL;

    /* an explicit end anchor is the regex's business */
    CHECK_OK(parse(&d, "{\"+:model\\\\.layers\\\\.1\\\\..*proj$\": {\"bits\": 3}}", &e), &e);
    CHECK_EQ_INT(match(d, "model.layers.1.mlp.up_proj", NULL), 1);
    CHECK_EQ_INT(match(d, "model.layers.1.mlp.up_proj.x", NULL), 0);
    dynamic_free(d);
}

/* Python's re on str patterns: \d is any Unicode decimal digit. */
static void test_dynamic__unicode_classes(void)
{
    dynamic_rules *d = NULL;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse(&d, "{\"-:m\\\\.\\\\d+\\\\.x\": {}}", &e), &e);
    CHECK_EQ_INT(match(d, "m.12.x", NULL), -1);
    CHECK_EQ_INT(match(d, "m.\xd9\xa3.x", NULL), -1);   /* ARABIC-INDIC DIGIT THREE */
    CHECK_EQ_INT(match(d, "m.a.x", NULL), 0);
    dynamic_free(d);
}

static void test_dynamic__overrides_parsed(void)
{
    dynamic_rules *d = NULL;
    struct gptq_override ov;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse(&d, "{\"+:.*\": {\"bits\": 3, \"group_size\": -1, \"desc_act\": true, \"sym\": false, "
                       "\"damp_percent\": 0.05, \"static_groups\": true, \"mse\": 2.4}}", &e), &e);
    CHECK_EQ_INT(match(d, "anything", &ov), 1);
    CHECK(ov.has_bits && ov.bits == 3);
    CHECK(ov.has_group_size && ov.group_size == -1);
    CHECK(ov.has_desc_act && ov.desc_act == 1);
    CHECK(ov.has_sym && ov.sym == 0);
    CHECK(ov.has_damp_percent && ov.damp_percent == 0.05);
    CHECK(ov.has_static_groups && ov.static_groups == 1);
    CHECK(ov.has_mse && ov.mse == 2.4);
    dynamic_free(d);
    d = NULL;
    CHECK_OK(parse(&d, "{\"+:.*\": {\"group_size\": 128, \"mse\": 0, \"desc_act\": false}}", &e), &e);
    CHECK_EQ_INT(match(d, "x", &ov), 1);
    CHECK(!ov.has_bits && ov.has_group_size && ov.group_size == 128 && ov.has_mse && ov.mse == 0.0 &&
          ov.has_desc_act && ov.desc_act == 0);
    dynamic_free(d);
}

static void test_dynamic__empty_and_null(void)
{
    static const char *const empty[] = {"{}", "null"};
    dynamic_rules *d = NULL;
    struct gptq_override ov;
    gq_err e = GQ_ERR_INIT;
    gq_json *j = NULL;
    char *txt;

    for (size_t i = 0; i < 2; i++) {
        d = NULL;
        CHECK_OK(parse(&d, empty[i], &e), &e);
        CHECK_MSG(d != NULL, "%s: an empty rule set, not NULL", empty[i]);
        CHECK_EQ_INT(dynamic_count(d), 0);
        CHECK_EQ_INT(match(d, "model.layers.0.mlp.up_proj", NULL), 0);
        dynamic_free(d);
    }
    d = NULL;
    CHECK_OK(dynamic_parse(&d, NULL, &e), &e);
    CHECK(d != NULL && dynamic_count(d) == 0);
    CHECK_OK(dynamic_to_json(&j, d, &e), &e);
    txt = j ? gq_json_print(j, 0) : NULL;
    CHECK(txt && !strcmp(txt, "{}"));
    gq_json_free_text(txt);
    gq_json_free(j);
    dynamic_free(d);
    /* NULL rules match nothing; dynamic_free(NULL) is a no-op */
    memset(&ov, 0x55, sizeof(ov));
    CHECK_EQ_INT(dynamic_match(NULL, "x", &ov), 0);
    CHECK(!ov.has_bits && !ov.has_mse);
    CHECK_EQ_INT(dynamic_count(NULL), 0);
    dynamic_free(NULL);
}

/* dynamic_to_json: every key as written (prefix or none), in the order written. */
static void test_dynamic__to_json_keeps_spelling_and_order(void)
{
    const char *text = "{\"+:.*\\\\.(?:1[0-5])\\\\..*\":{\"bits\":8,\"group_size\":64},"
                       "\"-:.*\\\\.moe\\\\..*\":{},"
                       "\".*down_proj\":{\"sym\":false,\"damp_percent\":0.1},"
                       "\"-:.*gate\\\\b\":{}}";
    dynamic_rules *d = NULL, *d2 = NULL;
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    char *txt = NULL, *txt2 = NULL;

    CHECK_OK(parse(&d, text, &e), &e);
    CHECK_OK(dynamic_to_json(&j, d, &e), &e);
    if (!j)
        goto done;
    txt = gq_json_print(j, 0);
    CHECK_MSG(txt && !strcmp(txt, text), "got %s\nwant %s", txt ? txt : "(null)", text);
    /* and it reads back to the same rules */
    CHECK_OK(dynamic_parse(&d2, j, &e), &e);
    gq_json_free(j);
    j = NULL;
    CHECK_OK(dynamic_to_json(&j, d2, &e), &e);
    txt2 = j ? gq_json_print(j, 0) : NULL;
    CHECK(txt2 && txt && !strcmp(txt, txt2));
    CHECK_EQ_INT(match(d2, "model.layers.11.mlp.down_proj", NULL), 1);
    CHECK_EQ_INT(match(d2, "model.layers.1.mlp.gate", NULL), -1);
    CHECK_EQ_INT(match(d2, "model.layers.1.mlp.gate_proj", NULL), 0);
done:
    gq_json_free_text(txt);
    gq_json_free_text(txt2);
    gq_json_free(j);
    dynamic_free(d);
    dynamic_free(d2);
}

/* Every error: GQ_EINVAL, nothing returned, a message naming the rule and the problem. */
static void test_dynamic__errors_named(void)
{
    static const struct {
        const char *json, *want1, *want2;
    } cases[] = {
        {"{\"+:(\": {}}", "'+:('", "cannot compile the regex"},
        {"{\"-:.*[\": {}}", "'-:.*['", "cannot compile the regex"},
        {"{\".*\": {\"bitz\": 4}}", "'.*'", "unknown key 'bitz'"},
        {"{\".*\": {\"bits\": 5}}", "'.*'", "bits must be 2, 3, 4 or 8 (got 5)"},
        {"{\".*\": {\"bits\": \"4\"}}", "'.*'", "bits must be 2, 3, 4 or 8 (got string)"},
        {"{\".*\": {\"bits\": 4.5}}", "'.*'", "(got 4.5)"},
        {"{\".*\": {\"group_size\": 0}}", "'.*'", "group_size must be -1 or a positive integer (got 0)"},
        {"{\".*\": {\"group_size\": -2}}", "'.*'", "group_size"},
        {"{\".*\": {\"group_size\": 12.5}}", "'.*'", "group_size"},
        {"{\".*\": {\"desc_act\": 1}}", "'.*'", "desc_act must be true or false (got 1)"},
        {"{\".*\": {\"sym\": \"yes\"}}", "'.*'", "sym must be true or false"},
        {"{\".*\": {\"static_groups\": null}}", "'.*'", "static_groups must be true or false (got null)"},
        {"{\".*\": {\"damp_percent\": 0}}", "'.*'", "damp_percent must be a number in (0, 1)"},
        {"{\".*\": {\"damp_percent\": 1}}", "'.*'", "damp_percent"},
        {"{\".*\": {\"mse\": -1}}", "'.*'", "mse must be a number >= 0"},
        {"{\".*\": {\"mse\": true}}", "'.*'", "mse"},
        {"{\"-:.*\": {\"bits\": 4}}", "'-:.*'", "a negative (-:) rule takes no overrides"},
        {"{\"+:.*\": 8}", "'+:.*'", "must be an object of overrides (got number)"},
        {"{\"+:.*\": null}", "'+:.*'", "must be an object"},
        {"{\"+:a\": {}, \"+:a\": {\"bits\": 8}}", "'+:a'", "appears twice"},
        {"{\"+:a\": {\"bits\": 8, \"bits\": 4}}", "'+:a'", "key 'bits' appears twice"},
        {"[\"+:a\"]", "dynamic must be an object", "(got array)"},
        {"\"+:a\"", "dynamic must be an object", "(got string)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static char sentinel;
        dynamic_rules *d = (dynamic_rules *)&sentinel;   /* must be reset to NULL */
        gq_err e = GQ_ERR_INIT;
        int rc = parse(&d, cases[i].json, &e);
        CHECK_MSG(rc == GQ_EINVAL, "%s: rc %d", cases[i].json, rc);
        CHECK_MSG(d == NULL, "%s: *out set on error", cases[i].json);
        CHECK_MSG(strstr(e.msg, cases[i].want1) && strstr(e.msg, cases[i].want2), "%s: message '%s'",
                  cases[i].json, e.msg);
    }
}

/* Each allocation of dynamic_parse failing in turn: GQ_ENOMEM, nothing leaked (ASan). */
static void test_dynamic__out_of_memory(void)
{
    const char *text = "{\"+:.*\\\\.(?:1[0-5])\\\\..*\": {\"bits\": 8}, \"-:.*\\\\.moe\\\\..*\": {}}";
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    int rc = -1;
    long n;

    CHECK_OK(gq_json_parse(&j, text, strlen(text), &e), &e);
    for (n = 0; n < 100 && rc != 0; n++) {
        dynamic_rules *d = NULL;
        gq_err e2 = GQ_ERR_INIT;
        gq_alloc_fail_after(n);
        rc = dynamic_parse(&d, j, &e2);
        gq_alloc_fail_after(-1);
        if (rc != 0) {
            CHECK_MSG(rc == GQ_ENOMEM, "allocation %ld: rc %d (%s)", n, rc, e2.msg);
            CHECK(d == NULL);
        } else {
            CHECK_EQ_INT(match(d, "model.layers.11.mlp.up_proj", NULL), 1);
        }
        dynamic_free(d);
    }
    CHECK_MSG(rc == 0 && n > 1, "never succeeded, or no allocation failed (n = %ld)", n);
    gq_json_free(j);
}

struct worker {
    const dynamic_rules *d;
    int errors;
};

static void *matcher(void *arg)
{
    struct worker *w = arg;
    char name[96];
    for (int k = 0; k < 2000; k++) {
        int layer = k % 40, want = layer >= 10 && layer <= 15 ? 1 : 0;
        struct gptq_override ov;
        snprintf(name, sizeof(name), "model.layers.%d.%s", layer, k % 3 ? "mlp.up_proj" : "moe.w1");
        if (k % 3 == 0)
            want = -1;
        if (dynamic_match(w->d, name, &ov) != want || (want == 1 && ov.bits != 8))
            w->errors++;
    }
    return NULL;
}

/* The same rules matched from four threads at once. */
static void test_dynamic__concurrent_matching(void)
{
    dynamic_rules *d = NULL;
    gq_err e = GQ_ERR_INIT;
    pthread_t th[4];
    struct worker w[4];

    CHECK_OK(parse(&d, "{\"+:.*\\\\.(?:1[0-5])\\\\..*\": {\"bits\": 8}, \"-:.*\\\\.moe\\\\..*\": {}}", &e),
             &e);
    if (!d)
        return;
    for (int i = 0; i < 4; i++) {
        w[i].d = d;
        w[i].errors = 0;
        CHECK(pthread_create(&th[i], NULL, matcher, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].errors, 0);
    }
    dynamic_free(d);
}

int main(void)
{
    t_prog = "test_dynamic";
    RUN(test_dynamic__vllm_example);
    RUN(test_dynamic__negative_first_then_written_order);
    RUN(test_dynamic__anchoring);
    RUN(test_dynamic__unicode_classes);
    RUN(test_dynamic__overrides_parsed);
    RUN(test_dynamic__empty_and_null);
    RUN(test_dynamic__to_json_keeps_spelling_and_order);
    RUN(test_dynamic__errors_named);
    RUN(test_dynamic__out_of_memory);
    RUN(test_dynamic__concurrent_matching);
    return test_report();
}
