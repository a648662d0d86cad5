/*
 * test_model.c - the float32 forward pass (core/model.c) on the shared
 * tiny-qwen2-gcide fixture: perplexity on the held-out blocks equals the
 * figure transformers gives (targets.json fp_ppl) within 0.1%; capture
 * points come in true-sequential order with the right shapes and stop
 * where asked; replacing a Linear changes the output exactly when it
 * should; bad inputs are clear errors.  Logits against transformers and
 * against the double oracle on generated fixtures are in
 * test_forward_fixtures.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"
#include "model.h"
#include "test.h"

static char model_dir[4200], blocks_path[4200];

static int fixture(void)
{
    const char *shared = test_shared_dir();
    if (!shared)
        return 0;
    snprintf(model_dir, sizeof(model_dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(blocks_path, sizeof(blocks_path), "%s/fixtures/tiny-qwen2-gcide/reference/eval-blocks.i32",
             shared);
    return 1;
}

static void test_model__perplexity_matches_transformers(void)
{
    const double fp_ppl = 14.06674;   /* targets.json "fp_ppl" (transformers, float32) */
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    int32_t *t = malloc(400 * 256 * sizeof(int32_t));
    double nll = 0.0, ppl;
    size_t count = 0;
    FILE *f;

    if (!fixture()) {
        free(t);
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    }
    f = fopen(blocks_path, "rb");
    CHECK(f && t);
    if (!f || !t) {
        free(t);
        return;
    }
    CHECK_EQ_INT(fread(t, sizeof(int32_t), 400 * 256, f), 400 * 256);
    fclose(f);
    CHECK_OK(model_open(&m, model_dir, &e), &e);
    if (m)
        CHECK_OK(model_nll(&nll, &count, m, t, 400, 256, 16, &e), &e);
    CHECK_EQ_INT(count, 400 * 255);
    ppl = exp(nll / (double)(count ? count : 1));
    printf("  perplexity %.5f (transformers %.5f, %.4f%% off)\n", ppl, fp_ppl,
           100.0 * fabs(ppl - fp_ppl) / fp_ppl);
    CHECK(fabs(ppl - fp_ppl) <= 1e-3 * fp_ppl);
    model_close(m);
    free(t);
}

struct trace {
    int n;
    enum capture_point pts[16];
    size_t tokens[16], cols[16], nseq[16];
    float first[16];
};

static int record(enum capture_point p, const float *x, size_t tokens, size_t cols, size_t nseq,
                  void *payload)
{
    struct trace *tr = payload;
    if (tr->n < 16) {
        tr->pts[tr->n] = p;
        tr->tokens[tr->n] = tokens;
        tr->cols[tr->n] = cols;
        tr->nseq[tr->n] = nseq;
        tr->first[tr->n] = x[0];
    }
    tr->n++;
    return 0;
}

static void test_model__capture_order_and_stop(void)
{
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    const struct model_config *c;
    int32_t ids[2 * 8];
    float *h = NULL;
    struct trace tr;

    if (!fixture())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    for (int i = 0; i < 16; i++)
        ids[i] = 100 + 37 * i;
    CHECK_OK(model_open(&m, model_dir, &e), &e);
    if (!m)
        return;
    c = model_config_of(m);
    CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
    h = malloc(16 * (size_t)c->hidden_size * sizeof(float));
    if (!l || !h)
        goto done;
    CHECK_OK(model_embed(h, m, ids, 16, &e), &e);
    memset(&tr, 0, sizeof(tr));
    CHECK_OK(layer_forward(h, m, l, 2, 8, record, &tr, CAP_NONE, &e), &e);
    CHECK_EQ_INT(tr.n, 4);
    for (int i = 0; i < 4 && i < tr.n; i++) {
        CHECK_EQ_INT(tr.pts[i], i);
        CHECK_EQ_INT(tr.tokens[i], 16);
        CHECK_EQ_INT(tr.nseq[i], 2);
    }
    CHECK_EQ_INT(tr.cols[CAP_ATTN_IN], c->hidden_size);
    CHECK_EQ_INT(tr.cols[CAP_O_IN], c->num_heads * c->head_dim);
    CHECK_EQ_INT(tr.cols[CAP_MLP_IN], c->hidden_size);
    CHECK_EQ_INT(tr.cols[CAP_DOWN_IN], c->intermediate_size);

    CHECK_OK(model_embed(h, m, ids, 16, &e), &e);
    memset(&tr, 0, sizeof(tr));
    CHECK_OK(layer_forward(h, m, l, 2, 8, record, &tr, CAP_O_IN, &e), &e);
    CHECK_EQ_INT(tr.n, 2);
done:
    free(h);
    model_layer_free(l);
    model_close(m);
}

/* Output of layer 0 on ids, with Linear `which` replaced by w (or untouched when w is NULL). */
static int layer_out(float *out, model *m, const int32_t *ids, size_t n, enum linear_id which,
                     const float *w, gq_err *e)
{
    model_layer *l = NULL;
    int rc;
    if ((rc = model_layer_load(&l, m, 0, e)) < 0)
        return rc;
    if (w && (rc = model_layer_set_linear(l, which, w, e)) < 0)
        goto done;
    if ((rc = model_embed(out, m, ids, n, e)) < 0)
        goto done;
    rc = layer_forward(out, m, l, 1, n, NULL, NULL, CAP_NONE, e);
done:
    model_layer_free(l);
    return rc;
}

static void test_model__set_linear(void)
{
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    int32_t ids[12];
    size_t rows, cols, d;
    float *a = NULL, *b = NULL, *w = NULL;
    double diff_same = 0.0, diff_zero = 0.0;

    if (!fixture())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    for (int i = 0; i < 12; i++)
        ids[i] = 7 + 101 * i;
    CHECK_OK(model_open(&m, model_dir, &e), &e);
    if (!m)
        return;
    d = (size_t)model_config_of(m)->hidden_size;
    model_linear_shape(&rows, &cols, m, LIN_DOWN);
    a = malloc(12 * d * sizeof(float));
    b = malloc(12 * d * sizeof(float));
    w = malloc(rows * cols * sizeof(float));
    CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
    if (!a || !b || !w || !l)
        goto done;
    memcpy(w, model_layer_linear(l, LIN_DOWN), rows * cols * sizeof(float));
    CHECK_OK(layer_out(a, m, ids, 12, LIN_DOWN, NULL, &e), &e);
    CHECK_OK(layer_out(b, m, ids, 12, LIN_DOWN, w, &e), &e);
    for (size_t i = 0; i < 12 * d; i++)
        diff_same = fmax(diff_same, fabs((double)a[i] - b[i]));
    memset(w, 0, rows * cols * sizeof(float));
    CHECK_OK(layer_out(b, m, ids, 12, LIN_DOWN, w, &e), &e);
    for (size_t i = 0; i < 12 * d; i++)
        diff_zero = fmax(diff_zero, fabs((double)a[i] - b[i]));
    CHECK(diff_same == 0.0);
    CHECK(diff_zero > 1e-3);
done:
    free(a);
    free(b);
    free(w);
    model_layer_free(l);
    model_close(m);
}

static void test_model__errors(void)
{
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    float h[256];
    int32_t bad = 8192;

    CHECK_EQ_INT(model_open(&m, "/nonexistent-model-dir", &e), GQ_ENOTFOUND);
    CHECK(m == NULL);
    if (!fixture())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    CHECK_OK(model_open(&m, model_dir, &e), &e);
    if (!m)
        return;
    CHECK_EQ_INT(model_embed(h, m, &bad, 1, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "outside the vocabulary") != NULL);
    {
        model_layer *l = NULL;
        CHECK_EQ_INT(model_layer_load(&l, m, 4, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "layer 4") != NULL);
    }
    model_close(m);
}

/* A copy of the tiny-mistral fixture whose config says something its tensors do not. */
static void test_model__checkpoint_mismatch(void)
{
    char dir[] = "/tmp/gptq-test-model-XXXXXX", path[256], cmd[600];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    FILE *f;

    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    snprintf(cmd, sizeof(cmd), "cp tests/fixtures/tiny-mistral/model.safetensors '%s'/ && "
             "sed 's/\"intermediate_size\": *[0-9]*/\"intermediate_size\": 200/' "
             "tests/fixtures/tiny-mistral/config.json > '%s'/config.json", dir, dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m) {
        CHECK_EQ_INT(model_layer_load(&l, m, 0, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "mlp.gate_proj.weight") != NULL);
        CHECK(strstr(e.msg, "wrong shape") != NULL);
        model_close(m);
        m = NULL;
    }
    /* a tensor the config needs is absent: o_proj biases */
    snprintf(cmd, sizeof(cmd), "sed 's/\"attention_bias\": *false/\"attention_bias\": true/' "
             "tests/fixtures/tiny-llama/config.json > '%s'/config.json && rm '%s'/model.safetensors && "
             "cp tests/fixtures/tiny-llama/model-0000* tests/fixtures/tiny-llama/model.safetensors.index.json '%s'/",
             dir, dir, dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m) {
        CHECK_EQ_INT(model_layer_load(&l, m, 0, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "q_proj.bias") != NULL && strstr(e.msg, "missing") != NULL);
        model_close(m);
    }
    model_layer_free(l);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    (void)path;
    (void)f;
}

/* The CLI around the same code: gptq eval, its JSON, its usage errors. */
static void test_model__cli_eval(void)
{
    const char *bin = getenv("GPTQ_BIN");
    char cmd[1200], out[256] = "";
    FILE *p;
    double ppl = 0.0;
    unsigned long tokens = 0;
    int status;

    if (!bin || !*bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --seqlen 2 --blocks /nonexistent 2>/dev/null",
             bin);
    status = system(cmd);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    snprintf(cmd, sizeof(cmd), "%s eval --bogus 2>/dev/null", bin);
    status = system(cmd);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    /* 2 blocks of 20 ids inside the fixture's vocabulary (384) */
    {
        int32_t ids[40];
        FILE *f = fopen("/tmp/gptq-cli-ids.i32", "wb");
        for (int i = 0; i < 40; i++)
            ids[i] = (i * 37 + 11) % 384;
        CHECK(f && fwrite(ids, sizeof(ids), 1, f) == 1);
        if (f)
            fclose(f);
    }
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --blocks /tmp/gptq-cli-ids.i32 "
             "--seqlen 20 --json", bin);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p)
        return;
    if (!fgets(out, sizeof(out), p))
        out[0] = '\0';
    status = pclose(p);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_MSG(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2, "output: %s", out);
    CHECK_EQ_INT(tokens, 38);
    CHECK(ppl > 1.0 && isfinite(ppl));
    unlink("/tmp/gptq-cli-ids.i32");
}

int main(void)
{
    t_prog = "test_model";
    RUN(test_model__perplexity_matches_transformers);
    RUN(test_model__capture_order_and_stop);
    RUN(test_model__set_linear);
    RUN(test_model__errors);
    RUN(test_model__checkpoint_mismatch);
    RUN(test_model__cli_eval);
    return test_report();
}
