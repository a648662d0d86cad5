/*
 * test_cli_inspect.c - `gptq inspect` and `gptq eval` on GPTQ checkpoints
 * and on texts (server/cli.c), run as a program through $GPTQ_BIN (make
 * test sets it; the cases skip visibly without it).
 *
 * Setup: tests/fixtures/tiny-llama copied into a mkdtemp directory with a
 * small byte-level BPE tokenizer.json (ids 0..6, worked out by hand in
 * test_cli_tokenize.c), then `gptq quantize` makes a GPTQ checkpoint of it
 * with dynamic rules (down_proj left as .weight, layer 0 in 8 bits).  What
 * inspect prints is checked against the files themselves (config.json,
 * quant_config.json, the safetensors headers read in-process); eval's
 * numbers against model_nll in-process, --texts against tokenizing and
 * blocking in-process and against --blocks of the same ids.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calib.h"
#include "json.h"
#include "mem.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"
#include "tokenizer.h"

static const char small_tokenizer[] =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
    " \"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false,\n"
    "   \"rstrip\": false, \"normalized\": false, \"special\": true}],\n"
    " \"normalizer\": null,\n"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true,\n"
    "   \"use_regex\": true},\n"
    " \"post_processor\": {\"type\": \"TemplateProcessing\",\n"
    "   \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n"
    "   \"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},\n"
    "     {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n"
    "   \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [6], \"tokens\": [\"<s>\"]}}},\n"
    " \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
    " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,\n"
    "   \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,\n"
    "   \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120a\": 4, \"\\u010a\": 5},\n"
    "   \"merges\": [\"a b\", \"\\u0120 a\"]}}\n";

/* texts made of the tokenizer's alphabet; "\n\n" joins them */
static const char texts_jsonl[] =
    "{\"text\": \"ab a b ab\"}\n"
    "\"a a ab b\\nab\"\n"
    "\n"
    "{\"text\": \"b b a ab ab a a b\", \"id\": 3}\n"
    "{\"text\": \"ab ab ab ab a\"}\n";

static char g_dir[] = "/tmp/gptq-cli-inspect-XXXXXX";
static char g_model[128], g_q[128], g_ids[128];
static const char *g_bin;
static int g_ready;

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* The stderr a command left in g_dir/err. */
static const char *last_stderr(void)
{
    static char buf[4096];
    char path[160];
    char *s;
    snprintf(path, sizeof(path), "%s/err", g_dir);
    s = test_read_file(path, NULL);
    snprintf(buf, sizeof(buf), "%s", s ? s : "");
    free(s);
    return buf;
}

/* Compact JSON text of a node (caller frees with gq_json_free_text). */
static char *compact(const gq_json *j)
{
    return j ? gq_json_print(j, 0) : NULL;
}

static int same_json(const gq_json *a, const gq_json *b)
{
    char *x = compact(a), *y = compact(b);
    int same = x && y && !strcmp(x, y);
    gq_json_free_text(x);
    gq_json_free_text(y);
    return same;
}

static gq_json *json_file(const char *path)
{
    size_t len = 0;
    char *text = test_read_file(path, &len);
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    if (text && gq_json_parse(&j, text, len, &e) < 0)
        j = NULL;
    free(text);
    return j;
}

/* Every tensor of dir's safetensors, as inspect --json lists them. */
static void check_tensors(const gq_json *root, const char *dir)
{
    st_model *st = NULL;
    gq_err e = GQ_ERR_INIT;
    const gq_json *t;
    size_t i = 0;

    CHECK_OK(st_model_open(&st, dir, &e), &e);
    if (!st)
        return;
    CHECK_EQ_INT(gq_json_number(gq_json_get(root, "tensor_count")), st_model_count(st));
    CHECK(gq_json_number(gq_json_get(root, "total_bytes")) == (double)st_model_total_bytes(st));
    CHECK_EQ_INT(gq_json_size(gq_json_get(root, "tensors")), st_model_count(st));
    for (t = gq_json_first(gq_json_get(root, "tensors")); t && i < st_model_count(st); t = gq_json_next(t), i++) {
        const struct st_tensor *s = st_model_tensor(st, i);
        const gq_json *shape = gq_json_get(t, "shape");
        const char *name = gq_json_string(gq_json_get(t, "name")), *dt = gq_json_string(gq_json_get(t, "dtype"));
        int d = 0;
        CHECK_MSG(name && !strcmp(name, s->name), "tensor %zu: %s, want %s", i, name ? name : "?", s->name);
        CHECK(dt && !strcmp(dt, st_dtype_name(s->dtype)));
        CHECK_EQ_INT(gq_json_size(shape), s->ndim);
        for (const gq_json *x = gq_json_first(shape); x && d < s->ndim; x = gq_json_next(x), d++)
            CHECK(gq_json_number(x) == (double)s->shape[d]);
    }
    st_model_close(st);
}

static void test_cli_inspect__float_model(void)
{
    static char out[1 << 16];
    char cmd[1024];
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    const gq_json *lin;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    snprintf(cmd, sizeof(cmd), "%s inspect tests/fixtures/tiny-mistral --json", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_OK(gq_json_parse(&j, out, strlen(out), &e), &e);
    if (!j)
        return;
    CHECK(gq_json_is_null(gq_json_get(j, "quantization")));
    CHECK(gq_json_is_null(gq_json_get(j, "provenance")));
    CHECK(!strcmp(gq_json_string(gq_json_get(j, "architecture")), "MistralForCausalLM"));
    CHECK(gq_json_number(gq_json_get(j, "num_layers")) == 2);
    CHECK(gq_json_bool(gq_json_get(j, "valid")) == 1 && gq_json_is_null(gq_json_get(j, "error")));
    lin = gq_json_get(j, "linears");
    CHECK(gq_json_number(gq_json_get(lin, "total")) == 14 && gq_json_number(gq_json_get(lin, "quantized")) == 0 &&
          gq_json_number(gq_json_get(lin, "unquantized")) == 14);
    for (const gq_json *m = gq_json_first(gq_json_get(lin, "modules")); m; m = gq_json_next(m))
        CHECK(!strcmp(gq_json_string(gq_json_get(m, "stored")), "float") && !gq_json_get(m, "bits"));
    check_tensors(j, "tests/fixtures/tiny-mistral");
    gq_json_free(j);

    snprintf(cmd, sizeof(cmd), "%s inspect tests/fixtures/tiny-mistral", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(strstr(out, "quantization: none (a float checkpoint)") && strstr(out, "linears: 14 (0 packed, 14 float)") &&
              strstr(out, "model.layers.1.mlp.down_proj.weight") && strstr(out, "check: ok\n"), "%s", out);
    CHECK(!strstr(out, "provenance"));
}

/* The quantized checkpoint: config, rules, provenance and modules as the files say. */
static void test_cli_inspect__gptq_checkpoint(void)
{
    static char out[1 << 17];
    char cmd[1024], path[256];
    gq_json *j = NULL, *cfg = NULL, *prov = NULL;
    const gq_json *q, *qc, *lin;
    gq_err e = GQ_ERR_INIT;
    size_t i = 0;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!g_ready)
        SKIP("no quantized checkpoint (gptq quantize failed in setup)");
    snprintf(cmd, sizeof(cmd), "%s inspect %s --json", g_bin, g_q);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_OK(gq_json_parse(&j, out, strlen(out), &e), &e);
    snprintf(path, sizeof(path), "%s/config.json", g_q);
    cfg = json_file(path);
    snprintf(path, sizeof(path), "%s/quant_config.json", g_q);
    prov = json_file(path);
    CHECK(cfg && prov);
    if (!j || !cfg || !prov)
        goto done;
    q = gq_json_get(j, "quantization");
    qc = gq_json_get(cfg, "quantization_config");
    CHECK(!strcmp(gq_json_string(gq_json_get(q, "source")), "config.json"));
    CHECK(gq_json_number(gq_json_get(q, "bits")) == gq_json_number(gq_json_get(qc, "bits")));
    CHECK(gq_json_number(gq_json_get(q, "group_size")) == gq_json_number(gq_json_get(qc, "group_size")));
    CHECK(gq_json_bool(gq_json_get(q, "desc_act")) == gq_json_bool(gq_json_get(qc, "desc_act")));
    CHECK(gq_json_bool(gq_json_get(q, "sym")) == gq_json_bool(gq_json_get(qc, "sym")));
    CHECK(!strcmp(gq_json_string(gq_json_get(q, "format")), gq_json_string(gq_json_get(qc, "checkpoint_format"))));
    /* the rules as written, in their order */
    CHECK_MSG(same_json(gq_json_get(q, "dynamic"), gq_json_get(qc, "dynamic")), "dynamic differs");
    /* the provenance, every key as it is */
    CHECK_MSG(same_json(gq_json_get(j, "provenance"), prov), "provenance differs from quant_config.json");
    CHECK(gq_json_string(gq_json_get(prov, "calibration_sha256")) != NULL);
    /* modules: down_proj float (the "-:" rule), layer 0 in 8 bits (the "+:" rule), layer 1 in 4 */
    lin = gq_json_get(j, "linears");
    CHECK(gq_json_number(gq_json_get(lin, "quantized")) == 12 && gq_json_number(gq_json_get(lin, "unquantized")) == 2 &&
          gq_json_number(gq_json_get(lin, "missing")) == 0);
    for (const gq_json *m = gq_json_first(gq_json_get(lin, "modules")); m; m = gq_json_next(m), i++) {
        char want[96];
        int down = (i % LIN_COUNT) == LIN_DOWN;
        linear_module_name(want, sizeof(want), (int)(i / LIN_COUNT), (enum linear_id)(i % LIN_COUNT));
        CHECK(!strcmp(gq_json_string(gq_json_get(m, "name")), want));
        CHECK_MSG(!strcmp(gq_json_string(gq_json_get(m, "stored")), down ? "float" : "packed"), "%s", want);
        if (!down)
            CHECK_MSG(gq_json_number(gq_json_get(m, "bits")) == (i < LIN_COUNT ? 8 : 4) &&
                      gq_json_number(gq_json_get(m, "group_size")) == 32, "%s", want);
    }
    CHECK_EQ_INT(i, 14);
    check_tensors(j, g_q);
    CHECK(gq_json_bool(gq_json_get(j, "valid")) == 1);

    snprintf(cmd, sizeof(cmd), "%s inspect %s", g_bin, g_q);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(strstr(out, "quantization: gptq, from config.json (quantization_config)") &&
              strstr(out, "bits 4, group_size 32, desc_act false, sym true, format gptq") &&
              strstr(out, "dynamic rules: 2") && strstr(out, "-:.*down_proj  {}") &&
              strstr(out, "provenance (quant_config.json):") && strstr(out, "  calibration_sample_count: 6\n") &&
              strstr(out, "  source_model_id: ") && strstr(out, "linears: 14 (12 packed, 2 float)") &&
              strstr(out, "  8-bit g32: 6\n") && strstr(out, "  4-bit g32: 6\n") &&
              strstr(out, "  model.layers.1.mlp.down_proj: float\n") &&
              strstr(out, "model.layers.0.self_attn.q_proj.qweight") && strstr(out, "I32  [16, 64]") &&
              strstr(out, "check: ok\n"), "%s", out);
done:
    gq_json_free(j);
    gq_json_free(cfg);
    gq_json_free(prov);
}

/* A checkpoint whose config and tensors disagree: everything printed, the failure named, exit 1. */
static void test_cli_inspect__broken_checkpoint(void)
{
    static char out[1 << 17];
    char cmd[1024], path[256], bad[160];
    gq_json *cfg = NULL, *j = NULL;
    char *text = NULL;
    gq_err e = GQ_ERR_INIT;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!g_ready)
        SKIP("no quantized checkpoint (gptq quantize failed in setup)");
    snprintf(bad, sizeof(bad), "%s/bad", g_dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", bad, g_q, bad);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof(path), "%s/config.json", bad);
    cfg = json_file(path);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    /* 2 bits claimed for what was packed in 4 (layer 1; layer 0's 8 bits come from its rule) */
    CHECK_OK(gq_json_add(gq_json_get(cfg, "quantization_config"), "bits", gq_json_new_number(2)), &e);
    text = gq_json_print(cfg, 2);
    CHECK(text && write_file(path, text, strlen(text)) == 0);
    snprintf(cmd, sizeof(cmd), "%s inspect %s --json 2>%s/err", g_bin, bad, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_OK(gq_json_parse(&j, out, strlen(out), &e), &e);
    CHECK(gq_json_bool(gq_json_get(j, "valid")) == 0);
    CHECK_MSG(strstr(gq_json_string(gq_json_get(j, "error")) ? gq_json_string(gq_json_get(j, "error")) : "",
                     "model.layers.1.self_attn.q_proj.qweight has the wrong shape [8, 64] (expected [4, 64], 2 bits"),
              "%s", gq_json_string(gq_json_get(j, "error")));
    CHECK(gq_json_number(gq_json_get(gq_json_get(j, "quantization"), "bits")) == 2);
    CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), "wrong shape"), "%s", last_stderr());
    snprintf(cmd, sizeof(cmd), "%s inspect %s 2>/dev/null", g_bin, bad);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(out, "check: FAILED: ") && strstr(out, "tensors: 57"), "%s", out);
    /* eval refuses the same checkpoint with the same message */
    snprintf(cmd, sizeof(cmd), "%s eval %s --blocks %s --seqlen 32 2>%s/err", g_bin, bad, g_ids, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "wrong shape [8, 64]"), "%s", last_stderr());
    gq_json_free(j);
    j = NULL;
    gq_json_free_text(text);
    text = NULL;

    /* another quant method: nothing to inspect */
    CHECK_OK(gq_json_add(cfg, "quantization_config", gq_json_new_object()), &e);
    CHECK_OK(gq_json_add(gq_json_get(cfg, "quantization_config"), "quant_method", gq_json_new_string("awq")), &e);
    text = gq_json_print(cfg, 2);
    CHECK(text && write_file(path, text, strlen(text)) == 0);
    snprintf(cmd, sizeof(cmd), "%s inspect %s 2>%s/err", g_bin, bad, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "quant_method 'awq' is not supported (only gptq)"), "%s", last_stderr());
    gq_json_free_text(text);
    gq_json_free(cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bad);
    CHECK(system(cmd) == 0);
}

/* eval on the GPTQ checkpoint: model_nll in-process, and not the float model's number. */
static void test_cli_inspect__eval_gptq_checkpoint(void)
{
    char cmd[1024], out[4096];
    int32_t *ids = NULL;
    size_t n = 0, count = 0;
    double nll = 0.0, ppl = 0.0, want, fppl = 0.0;
    unsigned long tokens = 0;
    model *m = NULL;
    gq_err e = GQ_ERR_INIT;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!g_ready)
        SKIP("no quantized checkpoint (gptq quantize failed in setup)");
    snprintf(cmd, sizeof(cmd), "%s eval %s --blocks %s --seqlen 32 --batch 3 --json", g_bin, g_q, g_ids);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2, "%s", out);
    CHECK_OK(calib_read_ids(&ids, &n, g_ids, &e), &e);
    CHECK_OK(model_open(&m, g_q, &e), &e);
    CHECK(m && model_config_of(m)->quantized);
    if (m && ids)
        CHECK_OK(model_nll(&nll, &count, m, ids, n / 32, 32, 8, &e), &e);
    want = exp(nll / (double)(count ? count : 1));
    CHECK_EQ_INT(tokens, count);
    CHECK_NEAR(ppl, want, 2e-6 * want);
    snprintf(cmd, sizeof(cmd), "%s eval %s --blocks %s --seqlen 32 --json", g_bin, g_model, g_ids);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(sscanf(out, "{\"ppl\": %lf", &fppl) == 1);
    CHECK_MSG(fabs(fppl - ppl) > 1e-4, "quantized %.6f, float %.6f", ppl, fppl);
    model_close(m);
    gq_free(ids);
}

/* In-process: the texts joined, tokenized without special tokens, cut into blocks; perplexity. */
static double texts_ppl(size_t *tokens, size_t *stream, const char *dir, const char *path, size_t seqlen,
                        int32_t **ids_out, size_t *nblocks_out)
{
    char **texts = NULL, *joined = NULL;
    size_t ntexts = 0, len = 0, n = 0, count = 0;
    int32_t *ids = NULL;
    tokenizer *t = NULL;
    model *m = NULL;
    double nll = 0.0;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(calib_read_texts(&texts, &ntexts, path, &e), &e);
    for (size_t i = 0; i < ntexts; i++)
        len += strlen(texts[i]) + 2;
    joined = calloc(1, len + 1);
    for (size_t i = 0; joined && i < ntexts; i++) {
        if (i)
            strcat(joined, "\n\n");
        strcat(joined, texts[i]);
    }
    CHECK_OK(tokenizer_load_dir(&t, dir, &e), &e);
    if (t && joined)
        CHECK_OK(tokenizer_encode(&ids, &n, t, joined, strlen(joined), 0, &e), &e);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m && ids && n >= seqlen)
        CHECK_OK(model_nll(&nll, &count, m, ids, n / seqlen, seqlen, 8, &e), &e);
    *tokens = count;
    if (stream)
        *stream = n;
    if (ids_out) {
        *ids_out = ids;
        *nblocks_out = n / seqlen;
        ids = NULL;
    }
    model_close(m);
    tokenizer_free(t);
    calib_texts_free(texts, ntexts);
    free(joined);
    gq_free(ids);
    return exp(nll / (double)(count ? count : 1));
}

static void test_cli_inspect__eval_texts(void)
{
    char cmd[1024], out[4096], out2[4096], tpath[160], plain[160], bpath[160];
    double ppl = 0.0, want;
    unsigned long tokens = 0;
    size_t count = 0, nblocks = 0, n = 0;
    int32_t *ids = NULL;
    char log[200];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!g_ready)
        SKIP("no quantized checkpoint (gptq quantize failed in setup)");
    snprintf(tpath, sizeof(tpath), "%s/texts.jsonl", g_dir);
    CHECK(write_file(tpath, texts_jsonl, strlen(texts_jsonl)) == 0);
    /* on the GPTQ checkpoint (quantize copied the tokenizer) and on the float model */
    for (int k = 0; k < 2; k++) {
        const char *dir = k ? g_model : g_q;
        snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s --seqlen 6 --json 2>%s/err", g_bin, dir, tpath, g_dir);
        CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
        CHECK_MSG(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2, "%s", out);
        want = texts_ppl(&count, &n, dir, tpath, 6, k ? NULL : &ids, &nblocks);
        CHECK_EQ_INT(tokens, count);
        CHECK_EQ_INT(tokens, n / 6 * 5);
        CHECK_MSG(n % 6 != 0, "the texts should leave a remainder (%zu tokens)", n);
        CHECK_NEAR(ppl, want, 2e-6 * want);
        /* the log says what was dropped */
        snprintf(log, sizeof(log), "texts.jsonl: 4 texts, %zu tokens: %zu blocks of 6 (%zu tokens dropped)", n, n / 6,
                 n % 6);
        CHECK_MSG(strstr(last_stderr(), log), "%s, want %s", last_stderr(), log);
    }
    /* the same ids through --blocks print the same line */
    snprintf(bpath, sizeof(bpath), "%s/texts.i32", g_dir);
    CHECK(ids && nblocks > 1 && write_file(bpath, ids, nblocks * 6 * sizeof(int32_t)) == 0);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s --seqlen 6 2>/dev/null", g_bin, g_q, tpath);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s eval %s --blocks %s --seqlen 6", g_bin, g_q, bpath);
    CHECK_EQ_INT(test_run_cmd(out2, sizeof(out2), cmd), 0);
    CHECK_MSG(!strcmp(out, out2) && !strncmp(out, "perplexity ", 11), "--texts: %s--blocks: %s", out, out2);
    /* a plain text file is one text */
    snprintf(plain, sizeof(plain), "%s/plain.txt", g_dir);
    CHECK(write_file(plain, "ab a b ab\n\na a ab b ab ab", 25) == 0);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s --seqlen 4 --json 2>/dev/null", g_bin, g_q, plain);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2);
    want = texts_ppl(&count, NULL, g_q, plain, 4, NULL, NULL);
    CHECK_EQ_INT(tokens, count);
    CHECK_NEAR(ppl, want, 2e-6 * want);
    gq_free(ids);
    unlink(bpath);
    unlink(plain);
}

/* The shared fixture's real tokenizer on 40 of its held-out texts. */
static void test_cli_inspect__eval_texts_gcide(void)
{
    const char *shared = test_shared_dir();
    char cmd[9000], out[4096], dir[4200], src[4200], sub[160];
    double ppl = 0.0, want;
    unsigned long tokens = 0;
    size_t count = 0;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide");
    snprintf(dir, sizeof(dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(src, sizeof(src), "%s/fixtures/tiny-qwen2-gcide/heldout.jsonl", shared);
    snprintf(sub, sizeof(sub), "%s/heldout40.jsonl", g_dir);
    snprintf(cmd, sizeof(cmd), "head -n 40 '%s' > '%s'", src, sub);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s --seqlen 128 --json 2>/dev/null", g_bin, dir, sub);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2, "%s", out);
    want = texts_ppl(&count, NULL, dir, sub, 128, NULL, NULL);
    CHECK(count > 0);
    CHECK_EQ_INT(tokens, count);
    CHECK_NEAR(ppl, want, 2e-6 * want);
    printf("  40 held-out texts: %lu predicted tokens, perplexity %.4f\n", tokens, ppl);
    unlink(sub);
}

static void test_cli_inspect__errors(void)
{
    static char out[1 << 14];
    char cmd[1024], tiny[160];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    /* usage errors: exit 2 with the usage */
    snprintf(cmd, sizeof(cmd), "%s inspect 2>&1", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK_MSG(strstr(out, "DIR is required") && strstr(out, "usage: gptq inspect"), "%s", out);
    snprintf(cmd, sizeof(cmd), "%s inspect %s --bogus 2>&1", g_bin, g_model);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "unknown option '--bogus'") != NULL);
    snprintf(cmd, sizeof(cmd), "%s inspect a b 2>&1", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts x --blocks y --seqlen 8 2>&1", g_bin, g_model);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "give only one of --blocks and --texts") != NULL);
    snprintf(cmd, sizeof(cmd), "%s eval %s --seqlen 8 2>&1", g_bin, g_model);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "--blocks or --texts is required") != NULL);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts 2>&1", g_bin, g_model);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    /* help: exit 0, on stdout */
    snprintf(cmd, sizeof(cmd), "%s inspect --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(!strncmp(out, "usage: gptq inspect", 19) && strstr(out, "exit status"));
    snprintf(cmd, sizeof(cmd), "%s eval --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "--texts FILE") != NULL);
    snprintf(cmd, sizeof(cmd), "%s --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "  inspect ") != NULL);

    /* runtime errors: exit 1 and a message */
    snprintf(cmd, sizeof(cmd), "%s inspect /nonexistent-model 2>%s/err", g_bin, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), "/nonexistent-model"), "%s",
              last_stderr());
    snprintf(tiny, sizeof(tiny), "%s/tiny.txt", g_dir);
    CHECK(write_file(tiny, "ab a", 4) == 0);
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s --seqlen 50 2>%s/err", g_bin, g_model, tiny, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "tiny.txt gives 2 tokens, fewer than one block of --seqlen 50"), "%s",
              last_stderr());
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --texts %s --seqlen 2 2>%s/err", g_bin, tiny,
             g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "tokenizer"), "%s", last_stderr());
    snprintf(cmd, sizeof(cmd), "%s eval %s --texts %s/none.jsonl --seqlen 2 2>%s/err", g_bin, g_model, g_dir, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "none.jsonl"), "%s", last_stderr());
    unlink(tiny);
}

/* g_model: tiny-llama + the small tokenizer; g_q: its GPTQ checkpoint made by `gptq quantize`. */
static int setup(void)
{
    char cmd[2048], path[256];
    unsigned long long s = 11;
    FILE *f;

    snprintf(g_model, sizeof(g_model), "%s/model", g_dir);
    snprintf(g_q, sizeof(g_q), "%s/q", g_dir);
    snprintf(g_ids, sizeof(g_ids), "%s/ids.i32", g_dir);
    snprintf(cmd, sizeof(cmd), "cp -r tests/fixtures/tiny-llama '%s'", g_model);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/tokenizer.json", g_model);
    if (write_file(path, small_tokenizer, strlen(small_tokenizer)) < 0 || !(f = fopen(g_ids, "wb")))
        return -1;
    for (int i = 0; i < 6 * 32; i++) {
        int32_t v = (int32_t)(test_rand_u64(&s) % 320);
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    if (!g_bin)
        return 0;
    snprintf(cmd, sizeof(cmd),
             "%s quantize %s --out %s --calib-ids %s --calib-samples 6 --calib-seqlen 32 --group-size 32 "
             "--dynamic '{\"-:.*down_proj\": {}, \"+:model\\\\.layers\\\\.0\\\\..*\": {\"bits\": 8}}' "
             "> /dev/null 2>%s/err", g_bin, g_model, g_q, g_ids, g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  setup: %s failed: %s\n", cmd, last_stderr());
        return -1;
    }
    g_ready = 1;
    return 0;
}

int main(void)
{
    char cmd[256];

    t_prog = "test_cli_inspect";
    g_bin = getenv("GPTQ_BIN");
    if (g_bin && !*g_bin)
        g_bin = NULL;
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (setup() < 0)
        t_failed++;
    RUN(test_cli_inspect__float_model);
    RUN(test_cli_inspect__gptq_checkpoint);
    RUN(test_cli_inspect__broken_checkpoint);
    RUN(test_cli_inspect__eval_gptq_checkpoint);
    RUN(test_cli_inspect__eval_texts);
    RUN(test_cli_inspect__eval_texts_gcide);
    RUN(test_cli_inspect__errors);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_report();
}
