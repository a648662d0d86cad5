/*
 * test_pipeline.c - GPTQ over whole models (core/pipeline.c) into GPTQ
 * checkpoints (core/checkpoint.c), read back by our own loader.
 *
 *   - The shared tiny-qwen2-gcide model, every config of targets.json,
 *     calibrated by its stated protocol (128 x 256 windows of the joined
 *     calibration texts, our own random numbers): the perplexity of the
 *     checkpoint read back from disk on reference/eval-blocks.i32 is at or
 *     below max_ppl and below RTN's; a table of ours, the reference GPTQ
 *     and RTN is printed.  Under the sanitizers only the first config runs.
 *   - The generated Llama model (bf16, three shards, GQA, untied): the
 *     pipeline runs end to end, every module's GPTQ output error is below
 *     RTN's, the output is sharded with an index when asked, carries the
 *     metadata files, and loads.
 *   - The options through the pipeline and back: gptq_v2, act-order,
 *     static groups, MSE, one pass per layer, dynamic overrides (a module
 *     left in float, a layer in 8 bits), each read back as written;
 *     progress monotonic to the end.
 *   - Errors: an existing output directory, cancellation, a calibration id
 *     outside the vocabulary, a group size that does not divide: clear
 *     errors, and nothing left behind (no output, no temporary directory).
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas_env.h"
#include "calib.h"
#include "dynamic.h"
#include "json.h"
#include "mem.h"
#include "model.h"
#include "pipeline.h"
#include "test.h"
#include "tokenizer.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static char tmp[] = "/tmp/gq-pipeline-XXXXXX";

static void remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Number of entries in dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        n += !strncmp(de->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static int file_exists(const char *dir, const char *name)
{
    char p[4400];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static double perplexity(const char *dir, const int32_t *ids, size_t nblocks, size_t seqlen, gq_err *e)
{
    model *m = NULL;
    double nll = 0;
    size_t count = 0;
    int rc = model_open(&m, dir, e);
    if (rc == 0)
        rc = model_nll(&nll, &count, m, ids, nblocks, seqlen, 16, e);
    model_close(m);
    return rc == 0 ? exp(nll / (double)count) : NAN;
}

static void test_pipeline__fixture_quality(void)
{
    const char *shared = test_shared_dir();
    char model_dir[4200], path[4200], out[4400];
    gq_err e = GQ_ERR_INIT;
    tokenizer *tok = NULL;
    char **texts = NULL, *tj = NULL;
    size_t ntexts = 0, tlen = 0, nids = 0, nconf = 0;
    int32_t *eval = NULL;
    gq_json *targets = NULL;
    struct calib cal;

    memset(&cal, 0, sizeof(cal));
    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide");
    snprintf(model_dir, sizeof(model_dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/targets.json", shared);
    CHECK((tj = test_read_file(path, &tlen)) != NULL);
    CHECK_OK(tj ? gq_json_parse(&targets, tj, tlen, &e) : GQ_EIO, &e);
    CHECK_OK(tokenizer_load_dir(&tok, model_dir, &e), &e);
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/calibration.jsonl", shared);
    CHECK_OK(calib_read_texts(&texts, &ntexts, path, &e), &e);
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/reference/eval-blocks.i32", shared);
    CHECK_OK(calib_read_ids(&eval, &nids, path, &e), &e);
    if (!targets || !tok || !texts || !eval)
        goto done;
    CHECK_OK(calib_from_texts(&cal, tok, (const char *const *)texts, ntexts, 128, 256, 0, &e), &e);
    if (!cal.ids)
        goto done;
    printf("  calibration: 128 x 256 of a %zu-token stream, sha256 %s\n", cal.stream_tokens, cal.sha256);
    printf("  %-10s %9s %9s %9s %9s %9s %7s\n", "config", "ours", "in-memory", "ref-gptq", "rtn", "max_ppl", "seconds");
    for (const gq_json *c = gq_json_first(gq_json_get(targets, "configs")); c; c = gq_json_next(c)) {
        const char *name = gq_json_string(gq_json_get(c, "name"));
        double max_ppl = gq_json_number(gq_json_get(c, "max_ppl")), rtn = gq_json_number(gq_json_get(c, "rtn_ppl"));
        double ref = 0, ppl;
        size_t nref = 0;
        struct quantize_options opt;
        struct quantize_report rep;

        if (SANITIZED && nconf == 1)
            break;
        nconf++;
        for (const gq_json *r = gq_json_first(gq_json_get(c, "reference_gptq_ppl")); r; r = gq_json_next(r), nref++)
            ref += gq_json_number(r);
        quantize_options_default(&opt);
        opt.gptq.q.bits = (int)gq_json_number(gq_json_get(c, "bits"));
        opt.gptq.group_size = (int)gq_json_number(gq_json_get(c, "group_size"));
        opt.gptq.desc_act = gq_json_bool(gq_json_get(c, "desc_act")) == 1;
        opt.gptq.q.sym = gq_json_bool(gq_json_get(c, "sym")) == 1;
        opt.gptq.damp_percent = 0.01;
        opt.gptq.block_size = 128;
        opt.source_model_id = "tiny-qwen2-gcide";
        opt.eval_ids = eval;
        opt.eval_blocks = nids / 256;
        opt.eval_seqlen = 256;
        snprintf(out, sizeof(out), "%s/%s", tmp, name);
        if (quantize_model(&rep, model_dir, out, &cal, &opt, NULL, NULL, NULL, &e) < 0) {
            CHECK_MSG(0, "%s: %s", name, e.msg);
            continue;
        }
        ppl = perplexity(out, eval, nids / 256, 256, &e);
        CHECK_MSG(!isnan(ppl), "%s: reading the checkpoint back: %s", name, e.msg);
        printf("  %-10s %9.5f %9.5f %9.5f %9.5f %9.5f %7.2f%s\n", name, ppl, rep.eval_ppl,
               nref ? ref / (double)nref : NAN, rtn, max_ppl, rep.seconds,
               ppl <= max_ppl && ppl < rtn ? "" : "  <-- FAIL");
        /* the files give what the in-memory model gave (scales are stored in fp16) */
        CHECK_MSG(fabs(ppl - rep.eval_ppl) <= 2e-4 * rep.eval_ppl, "%s: read back %.5f, in memory %.5f", name, ppl,
                  rep.eval_ppl);
        CHECK_MSG(ppl <= max_ppl, "%s: perplexity %.5f above max_ppl %.5f", name, ppl, max_ppl);
        CHECK_MSG(ppl < rtn, "%s: perplexity %.5f not below RTN's %.5f", name, ppl, rtn);
        CHECK_EQ_INT(rep.quantized, 28);
        quantize_report_free(&rep);
        remove_tree(out);
    }
    CHECK(nconf == (SANITIZED ? 1u : 7u));
done:
    calib_free(&cal);
    calib_texts_free(texts, ntexts);
    tokenizer_free(tok);
    gq_json_free(targets);
    free(tj);
    gq_free(eval);
}

/* Random calibration ids for a generated model. */
static int random_calib(struct calib *cal, size_t vocab, size_t nsamples, size_t seqlen, gq_err *e)
{
    size_t n = nsamples * seqlen * 2;
    int32_t *ids = gq_mallocn(n, sizeof(int32_t));
    unsigned long long s = 42;
    int rc;
    if (!ids)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)(test_rand_u64(&s) % vocab);
    rc = calib_from_stream(cal, ids, n, nsamples, seqlen, 7, e);
    gq_free(ids);
    return rc;
}

static void test_pipeline__generated_llama(void)
{
    const char *src = "tests/fixtures/tiny-llama";
    char out[256];
    gq_err e = GQ_ERR_INIT;
    struct calib cal;
    struct quantize_options opt;
    struct quantize_report rep, rep2;
    model *m = NULL;
    char path[300];

    memset(&cal, 0, sizeof(cal));
    memset(&rep, 0, sizeof(rep));
    CHECK_OK(random_calib(&cal, 320, 32, 64, &e), &e);
    quantize_options_default(&opt);
    opt.gptq.q.bits = 4;
    opt.gptq.group_size = 32;
    opt.gptq.q.sym = 0;
    opt.shard_bytes = 60000;   /* several shards */
    snprintf(out, sizeof(out), "%s/llama", tmp);
    CHECK_OK(quantize_model(&rep, src, out, &cal, &opt, NULL, NULL, NULL, &e), &e);
    CHECK_EQ_INT(rep.nmodules, 14);
    CHECK_EQ_INT(rep.quantized, 14);
    for (size_t i = 0; i < rep.nmodules; i++)
        CHECK_MSG(rep.modules[i].out_rel < rep.modules[i].rtn_out_rel, "%s: GPTQ %.5g not below RTN %.5g",
                  rep.modules[i].name, rep.modules[i].out_rel, rep.modules[i].rtn_out_rel);
    CHECK(file_exists(out, "model.safetensors.index.json"));
    CHECK(count_entries(out, "model-0000") >= 2);
    CHECK(!file_exists(out, "model.safetensors"));
    CHECK(file_exists(out, "config.json") && file_exists(out, "quantize_config.json") &&
          file_exists(out, "quant_config.json") && file_exists(out, "quant_log.json"));
    CHECK_EQ_INT(count_entries(tmp, "llama.tmp-"), 0);
    CHECK_OK(model_open(&m, out, &e), &e);
    model_close(m);
    /* a GPTQ checkpoint is not a source */
    snprintf(path, sizeof(path), "%s/again", tmp);
    CHECK_EQ_INT(quantize_model(&rep2, out, path, &cal, &opt, NULL, NULL, NULL, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "already a GPTQ checkpoint") != NULL);
    CHECK_EQ_INT(count_entries(tmp, "again"), 0);
    quantize_report_free(&rep);
    calib_free(&cal);
}

struct progress_log {
    int calls, monotonic, done, max_layer;
    double last;
};

static void log_progress(const struct quantize_progress *p, void *payload)
{
    struct progress_log *l = payload;
    if (l->calls++ && p->fraction < l->last)
        l->monotonic = 0;
    l->last = p->fraction;
    if (p->layer > l->max_layer)
        l->max_layer = p->layer;
    l->done += p->stage == QSTAGE_DONE && p->fraction == 1.0 && p->eta_seconds == 0;
}

/*
 * The options through the whole pipeline and back: gptq_v2 asymmetric,
 * act-order, static groups, MSE, one pass per layer, dynamic overrides
 * (down_proj left in float, layer 0 in 8 bits); each module read back as
 * written, GPTQ below RTN wherever it ran; progress is monotonic and ends.
 */
static void test_pipeline__options_and_dynamic(void)
{
    const char *src = "tests/fixtures/tiny-llama";
    const char *rules = "{\"-:.*down_proj\": {}, \"+:model\\\\.layers\\\\.0\\\\..*\": {\"bits\": 8}}";
    char out[256];
    gq_err e = GQ_ERR_INIT;
    struct calib cal;
    struct quantize_options opt;
    struct quantize_report rep;
    struct progress_log pl = {0, 1, 0, -1, 0};
    gq_json *rj = NULL;
    dynamic_rules *dyn = NULL;
    model *m = NULL;

    memset(&cal, 0, sizeof(cal));
    memset(&rep, 0, sizeof(rep));
    CHECK_OK(random_calib(&cal, 320, 16, 64, &e), &e);
    CHECK_OK(gq_json_parse(&rj, rules, strlen(rules), &e), &e);
    CHECK_OK(dynamic_parse(&dyn, rj, &e), &e);
    quantize_options_default(&opt);
    opt.gptq.q.bits = 4;
    opt.gptq.group_size = 32;
    opt.gptq.q.sym = 0;
    opt.gptq.desc_act = 1;
    opt.gptq.static_groups = 1;
    opt.gptq.q.mse = 1;
    opt.true_sequential = 0;
    opt.format = PACK_GPTQ_V2;
    opt.dynamic = dyn;
    snprintf(out, sizeof(out), "%s/options", tmp);
    CHECK_OK(quantize_model(&rep, src, out, &cal, &opt, log_progress, &pl, NULL, &e), &e);
    CHECK_EQ_INT(rep.nmodules, 14);
    CHECK_EQ_INT(rep.quantized, 12);
    CHECK(pl.calls > 14 && pl.monotonic && pl.done == 1 && pl.max_layer == 1);
    for (size_t i = 0; i < rep.nmodules; i++) {
        const struct module_log *ml = &rep.modules[i];
        int down = strstr(ml->name, "down_proj") != NULL, layer0 = strstr(ml->name, "layers.0.") != NULL;
        CHECK_MSG(ml->quantized == !down, "%s quantized %d", ml->name, ml->quantized);
        if (!ml->quantized)
            continue;
        CHECK_MSG(ml->bits == (layer0 ? 8 : 4), "%s: %d bits", ml->name, ml->bits);
        CHECK_MSG(ml->out_rel < ml->rtn_out_rel, "%s: GPTQ %.5g not below RTN %.5g", ml->name, ml->out_rel,
                  ml->rtn_out_rel);
    }
    CHECK_OK(model_open(&m, out, &e), &e);
    if (m) {
        struct model_gptq_module q;
        CHECK(model_config_of(m)->quantized && model_config_of(m)->gptq.format == PACK_GPTQ_V2);
        CHECK(model_linear_quant(&q, m, 0, LIN_Q) == 1 && q.bits == 8 && q.group_size == 32 && q.desc_act);
        CHECK(model_linear_quant(&q, m, 1, LIN_UP) == 1 && q.bits == 4);
        CHECK(model_linear_quant(&q, m, 1, LIN_DOWN) == 0);
        model_close(m);
    }
    quantize_report_free(&rep);
    dynamic_free(dyn);
    gq_json_free(rj);
    calib_free(&cal);
}

static void cancel_after_first(const struct quantize_progress *p, void *payload)
{
    if (p->module)
        atomic_store((atomic_bool *)payload, 1);
}

static void test_pipeline__errors_leave_nothing(void)
{
    const char *src = "tests/fixtures/tiny-llama";
    char out[256];
    gq_err e = GQ_ERR_INIT;
    struct calib cal;
    struct quantize_options opt;
    struct quantize_report rep;
    atomic_bool cancel = 0;

    memset(&cal, 0, sizeof(cal));
    CHECK_OK(random_calib(&cal, 320, 8, 32, &e), &e);
    quantize_options_default(&opt);
    opt.gptq.group_size = 32;
    /* the output exists */
    snprintf(out, sizeof(out), "%s", tmp);
    CHECK_EQ_INT(quantize_model(&rep, src, out, &cal, &opt, NULL, NULL, NULL, &e), GQ_ECONFLICT);
    CHECK(strstr(e.msg, "exists") != NULL);
    /* cancelled after the first module */
    snprintf(out, sizeof(out), "%s/cancelled", tmp);
    CHECK_EQ_INT(quantize_model(&rep, src, out, &cal, &opt, cancel_after_first, &cancel, &cancel, &e), GQ_ECANCELED);
    CHECK(!file_exists(tmp, "cancelled"));
    CHECK_EQ_INT(count_entries(tmp, "cancelled.tmp-"), 0);
    /* a group size that does not divide 160 */
    opt.gptq.group_size = 128;
    snprintf(out, sizeof(out), "%s/badgroup", tmp);
    CHECK_EQ_INT(quantize_model(&rep, src, out, &cal, &opt, NULL, NULL, NULL, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "model.layers.0.") != NULL);
    CHECK_EQ_INT(count_entries(tmp, "badgroup"), 0);
    /* a calibration id outside the vocabulary */
    opt.gptq.group_size = 32;
    cal.ids[5] = 5000;
    snprintf(out, sizeof(out), "%s/badid", tmp);
    CHECK_EQ_INT(quantize_model(&rep, src, out, &cal, &opt, NULL, NULL, NULL, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "5000") != NULL);
    CHECK_EQ_INT(count_entries(tmp, "badid"), 0);
    calib_free(&cal);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    t_prog = "test_pipeline";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_pipeline__generated_llama);
    RUN(test_pipeline__options_and_dynamic);
    RUN(test_pipeline__errors_leave_nothing);
    RUN(test_pipeline__fixture_quality);
    remove_tree(tmp);
    return test_report();
}
