/*
 * test_cli_quantize.c - `gptq quantize` end to end through $GPTQ_BIN (make
 * test sets it; the cases skip visibly without it): a generated Llama
 * model calibrated from token ids, the JSON summary, the files written,
 * dynamic rules, the perplexity gate (exit 3, checkpoint kept and marked),
 * an existing output (exit 1), usage errors (exit 2), and the shared
 * fixture calibrated from its texts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "test.h"

static char g_dir[] = "/tmp/gq-cliq-XXXXXX";
static const char *g_bin;
static const char *src = "tests/fixtures/tiny-llama";

static int exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* A JSON file's number at key (in a nested object: "a.b"), or NAN. */
static double json_number(const char *path, const char *k1, const char *k2)
{
    size_t len;
    char *text = test_read_file(path, &len);
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    double v = -12345;
    if (text && gq_json_parse(&j, text, len, &e) == 0) {
        const gq_json *n = gq_json_get(j, k1);
        if (k2)
            n = gq_json_get(n, k2);
        v = gq_json_number(n);
    }
    gq_json_free(j);
    free(text);
    return v;
}

static void write_ids(const char *path, size_t n, int vocab)
{
    FILE *f = fopen(path, "wb");
    unsigned long long s = 3;
    for (size_t i = 0; f && i < n; i++) {
        int32_t v = (int32_t)(test_rand_u64(&s) % (unsigned)vocab);
        fwrite(&v, 4, 1, f);
    }
    if (f)
        fclose(f);
}

static void test_cli_quantize__ids_calibration_and_files(void)
{
    char cmd[2048], out[8192], path[512];
    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    snprintf(cmd, sizeof(cmd),
             "%s quantize %s --out %s/q --calib-ids %s/ids.i32 --calib-samples 8 --calib-seqlen 32 --group-size 32 "
             "--asym --json 2>/dev/null", g_bin, src, g_dir, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "\"quantized\":14") != NULL);
    CHECK(strstr(out, "\"calibration_sha256\":\"") != NULL);
    snprintf(path, sizeof(path), "%s/q", g_dir);
    CHECK(exists(path, "config.json") && exists(path, "quantize_config.json") && exists(path, "quant_config.json") &&
          exists(path, "quant_log.json") && exists(path, "model.safetensors"));
    snprintf(path, sizeof(path), "%s/q/config.json", g_dir);
    CHECK(json_number(path, "quantization_config", "bits") == 4);
    CHECK(json_number(path, "quantization_config", "group_size") == 32);
    snprintf(path, sizeof(path), "%s/q/quant_config.json", g_dir);
    CHECK(json_number(path, "calibration_sample_count", NULL) == 8);
    CHECK(json_number(path, "calibration_seq_len", NULL) == 32);
    /* the same output again: refused, nothing touched */
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    /* the checkpoint evaluates */
    snprintf(cmd, sizeof(cmd), "%s eval %s/q --blocks %s/ids.i32 --seqlen 32 --json 2>&1", g_bin, g_dir, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "\"ppl\"") != NULL);
}

static void test_cli_quantize__dynamic_and_gate(void)
{
    char cmd[2048], out[8192], path[512];
    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    /* down_proj left unquantized, layer 0 in 8 bits */
    snprintf(cmd, sizeof(cmd),
             "%s quantize %s --out %s/dyn --calib-ids %s/ids.i32 --calib-samples 8 --calib-seqlen 32 --group-size 32 "
             "--dynamic '{\"-:.*down_proj\": {}, \"+:model\\\\.layers\\\\.0\\\\..*\": {\"bits\": 8}}' --json 2>/dev/null",
             g_bin, src, g_dir, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "\"quantized\":12") != NULL);
    snprintf(path, sizeof(path), "%s/dyn/config.json", g_dir);
    CHECK(json_number(path, "quantization_config", "bits") == 4);
    /* a gate nobody passes: exit 3, the checkpoint kept, eval.json says so */
    snprintf(cmd, sizeof(cmd),
             "%s quantize %s --out %s/gate --calib-ids %s/ids.i32 --calib-samples 8 --calib-seqlen 32 --group-size 32 "
             "--bits 2 --eval-blocks %s/ids.i32 --max-ppl-ratio 1.000001 2>/dev/null", g_bin, src, g_dir, g_dir, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 3);
    CHECK(strstr(out, "GATE FAILED") != NULL);
    snprintf(path, sizeof(path), "%s/gate", g_dir);
    CHECK(exists(path, "model.safetensors") && exists(path, "eval.json"));
    snprintf(path, sizeof(path), "%s/gate/eval.json", g_dir);
    CHECK(json_number(path, "ppl_after", NULL) > json_number(path, "ppl_before", NULL));
}

static void test_cli_quantize__usage_errors(void)
{
    static const char *const bad[] = {
        "--bits 5", "--group-size 0", "--damp -1", "--damp 1.5", "--format awq", "--calib x --calib-ids y",
        "--max-ppl-ratio 1.1", "--frobnicate", "--calib-samples abc",
    };
    char cmd[1024], out[4096];
    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s quantize %s --out %s/never --calib-ids %s/ids.i32 %s 2>&1", g_bin, src, g_dir,
                 g_dir, bad[i]);
        CHECK_MSG(test_run_cmd(out, sizeof(out), cmd) == 2, "'%s' should be a usage error", bad[i]);
        CHECK(strstr(out, "usage: gptq quantize") != NULL);
    }
    snprintf(cmd, sizeof(cmd), "%s quantize %s --calib-ids %s/ids.i32 2>&1", g_bin, src, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "--out") != NULL);
    snprintf(cmd, sizeof(cmd), "%s quantize /nonexistent --out %s/never --calib-ids %s/ids.i32 2>&1", g_bin, g_dir,
             g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK(!exists(g_dir, "never"));
    snprintf(cmd, sizeof(cmd), "%s quantize --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "--dynamic") != NULL && strstr(out, "exit status") != NULL);
}

static void test_cli_quantize__fixture_texts(void)
{
    const char *shared = test_shared_dir();
    char cmd[16384], out[8192];
    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide");
    snprintf(cmd, sizeof(cmd),
             "%s quantize %s/fixtures/tiny-qwen2-gcide/model --out %s/gcide --calib "
             "%s/fixtures/tiny-qwen2-gcide/calibration.jsonl --calib-samples 16 --calib-seqlen 256 --json 2>/dev/null",
             g_bin, shared, g_dir, shared);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "\"quantized\":28") != NULL);
    CHECK(exists(g_dir, "gcide/tokenizer.json"));
}

int main(void)
{
    char ids[128], cmd[256];
    t_prog = "test_cli_quantize";
    g_bin = getenv("GPTQ_BIN");
    if (g_bin && !*g_bin)
        g_bin = NULL;
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ids, sizeof(ids), "%s/ids.i32", g_dir);
    write_ids(ids, 8 * 32 * 4, 320);
    RUN(test_cli_quantize__ids_calibration_and_files);
    RUN(test_cli_quantize__dynamic_and_gate);
    RUN(test_cli_quantize__usage_errors);
    RUN(test_cli_quantize__fixture_texts);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_report();
}
