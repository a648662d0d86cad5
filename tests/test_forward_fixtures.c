/*
 * test_forward_fixtures.c - the fast float32 forward (core/model.c)
 * against the generated fixtures of tests/fixtures/ (see
 * tests/fixtures/gen_fixtures.c) and the shared tiny-qwen2-gcide.
 *
 * Per fixture: model_open reports the expected config (architecture,
 * dtype, tensor count, sharding, rope, window, biases, tying); the fast
 * forward (model_embed, model_layer_load + layer_forward per layer,
 * model_logits) matches reference/logits.f32 to TOL_FAST of the logit
 * range with the same argmax everywhere; the oracle run now still gives
 * the stored logits (a stale fixture fails here, not in a confusing fast
 * path failure); and the feature each fixture exists for moves the logits
 * far beyond TOL_FAST, so a forward that ignored it could not pass.
 *
 * Fixture paths are relative to the repository root, where make test runs.
 */
#include <string.h>
#include <unistd.h>

#include "blas_env.h"
#include "model.h"
#include "ref_forward.h"
#include "test.h"

/* fast float32 forward vs the double oracle (or transformers), of the logit range */
#define TOL_FAST 1e-3
/* the oracle now vs the float32 logits it stored, of the logit range */
#define TOL_STALE 1e-6
/* a fixture's feature switched off must move the logits by at least this, of the range */
#define MIN_FEATURE_EFFECT 0.05

struct expect {
    const char *name;           /* tests/fixtures/<name> */
    const char *arch;
    const char *dtype;          /* config dtype */
    st_dtype tensor_dtype;
    size_t tensors;
    int shards;                 /* 0: a single model.safetensors */
    int hidden, heads, kv_heads, head_dim, layers, vocab;
    int sliding_window, tied, attention_bias, o_bias;
    enum rope_type rope;
    double rope_theta, rope_factor;
};

static const struct expect LLAMA = {
    .name = "tiny-llama", .arch = "LlamaForCausalLM", .dtype = "bfloat16",
    .tensor_dtype = ST_BF16, .tensors = 21, .shards = 3,
    .hidden = 64, .heads = 4, .kv_heads = 2, .head_dim = 16, .layers = 2, .vocab = 320,
    .sliding_window = 0, .tied = 0, .attention_bias = 0, .o_bias = 0,
    .rope = ROPE_LLAMA3, .rope_theta = 500000.0, .rope_factor = 8.0,
};

static const struct expect MISTRAL = {
    .name = "tiny-mistral", .arch = "MistralForCausalLM", .dtype = "float16",
    .tensor_dtype = ST_F16, .tensors = 21, .shards = 0,
    .hidden = 96, .heads = 6, .kv_heads = 2, .head_dim = 16, .layers = 2, .vocab = 384,
    .sliding_window = 16, .tied = 0, .attention_bias = 0, .o_bias = 0,
    .rope = ROPE_DEFAULT, .rope_theta = 10000.0, .rope_factor = 0.0,
};

static const struct expect QWEN3 = {
    .name = "tiny-qwen3", .arch = "Qwen3ForCausalLM", .dtype = "float16",
    .tensor_dtype = ST_F16, .tensors = 32, .shards = 0,
    .hidden = 64, .heads = 4, .kv_heads = 2, .head_dim = 24, .layers = 2, .vocab = 256,
    .sliding_window = 0, .tied = 1, .attention_bias = 1, .o_bias = 1,
    .rope = ROPE_LINEAR, .rope_theta = 1000000.0, .rope_factor = 2.0,
};

static void fixture_dir(char *buf, size_t cap, const struct expect *x)
{
    snprintf(buf, cap, "tests/fixtures/%s", x->name);
}

/* The fast forward: logits (nseq * seqlen, vocab) of model dir on ids. */
static int fast_logits(float *logits, const char *dir, const int32_t *ids, size_t nseq,
                       size_t seqlen, gq_err *e)
{
    model *m = NULL;
    model_layer *l = NULL;
    float *hidden = NULL;
    const struct model_config *c;
    size_t n = nseq * seqlen;
    int rc;

    if ((rc = model_open(&m, dir, e)) < 0)
        goto done;
    c = model_config_of(m);
    if (!(hidden = malloc(n * (size_t)c->hidden_size * sizeof(float)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = model_embed(hidden, m, ids, n, e)) < 0)
        goto done;
    for (int i = 0; i < c->num_layers; i++) {
        if ((rc = model_layer_load(&l, m, i, e)) < 0)
            goto done;
        if ((rc = layer_forward(hidden, m, l, nseq, seqlen, NULL, NULL, CAP_NONE, e)) < 0)
            goto done;
        model_layer_free(l);
        l = NULL;
    }
    rc = model_logits(logits, m, hidden, n, e);
done:
    model_layer_free(l);
    free(hidden);
    model_close(m);
    return rc;
}

/* Fast forward of dir on refdir's ids vs refdir's logits. */
static void check_fast(const char *label, const char *dir, const char *refdir)
{
    struct ref_fwd_reference ref = { 0 };
    struct ref_fwd_diff d;
    float *lg = NULL;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(ref_fwd_reference_load(&ref, refdir, &e), &e);
    if (!ref.logits)
        return;
    lg = malloc(ref.nseq * ref.seqlen * ref.vocab * sizeof(float));
    CHECK(lg != NULL);
    if (!lg)
        goto done;
    CHECK_OK(fast_logits(lg, dir, ref.ids, ref.nseq, ref.seqlen, &e), &e);
    if (e.code != GQ_OK)
        goto done;
    ref_fwd_compare(&d, lg, ref.logits, ref.nseq * ref.seqlen, ref.vocab);
    printf("  %s: fast forward max |diff| %.3g (%.2e of range %.2f), %zu argmax mismatches\n",
           label, d.max_abs, d.max_abs / d.range, d.range, d.argmax_mismatch);
    CHECK_EQ_INT(d.nonfinite, 0);
    CHECK_MSG(d.max_abs <= TOL_FAST * d.range, "%s: max |diff| %g at row %zu vocab %zu, range %g",
              label, d.max_abs, d.worst / ref.vocab, d.worst % ref.vocab, d.range);
    CHECK_MSG(d.argmax_mismatch == 0, "%s: %zu positions, first %zu", label, d.argmax_mismatch,
              d.first_mismatch);
done:
    free(lg);
    ref_fwd_reference_free(&ref);
}

static void check_fixture_fast(const struct expect *x)
{
    char dir[256], refdir[300];

    fixture_dir(dir, sizeof(dir), x);
    snprintf(refdir, sizeof(refdir), "%s/reference", dir);
    check_fast(x->name, dir, refdir);
}

/* model_open reports what the fixture was generated with. */
static void check_config(const struct expect *x)
{
    char dir[256], path[300];
    model *m = NULL;
    const struct model_config *c;
    const st_model *st;
    gq_err e = GQ_ERR_INIT;
    size_t rows = 0, cols = 0;
    int files = 0;

    fixture_dir(dir, sizeof(dir), x);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (!m)
        return;
    c = model_config_of(m);
    st = model_tensors(m);
    CHECK_MSG(strcmp(c->arch->name, x->arch) == 0, "%s: arch %s", x->name, c->arch->name);
    CHECK_MSG(strcmp(c->dtype, x->dtype) == 0, "%s: dtype '%s'", x->name, c->dtype);
    CHECK_EQ_INT(c->hidden_size, x->hidden);
    CHECK_EQ_INT(c->num_heads, x->heads);
    CHECK_EQ_INT(c->num_kv_heads, x->kv_heads);
    CHECK_EQ_INT(c->head_dim, x->head_dim);
    CHECK_EQ_INT(c->num_layers, x->layers);
    CHECK_EQ_INT(c->vocab_size, x->vocab);
    CHECK_EQ_INT(c->sliding_window, x->sliding_window);
    CHECK_EQ_INT(c->tie_word_embeddings, x->tied);
    CHECK_EQ_INT(c->attention_bias, x->attention_bias);
    CHECK_EQ_INT(c->o_bias, x->o_bias);
    CHECK_EQ_INT(c->mlp_bias, 0);
    CHECK_EQ_INT(c->rope_type, x->rope);
    CHECK_NEAR(c->rope_theta, x->rope_theta, 0);
    CHECK_NEAR(c->rope_factor, x->rope_factor, 0);
    if (x->rope == ROPE_LLAMA3) {
        CHECK_NEAR(c->rope_low_freq_factor, 1.0, 0);
        CHECK_NEAR(c->rope_high_freq_factor, 4.0, 0);
        CHECK_EQ_INT(c->rope_original_max_position, 64);
    }

    /* every tensor, across all shards, in the storage dtype */
    CHECK_EQ_INT(st_model_count(st), x->tensors);
    for (size_t i = 0; i < st_model_count(st); i++)
        CHECK_MSG(st_model_tensor(st, i)->dtype == x->tensor_dtype, "%s: %s is %s", x->name,
                  st_model_tensor(st, i)->name, st_dtype_name(st_model_tensor(st, i)->dtype));
    CHECK_EQ_INT(st_model_find(st, "lm_head.weight") == NULL, x->tied);

    /* the layout on disk */
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    CHECK_EQ_INT(access(path, R_OK) == 0, x->shards == 0);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    CHECK_EQ_INT(access(path, R_OK) == 0, x->shards > 0);
    for (int i = 1; i <= x->shards; i++) {
        snprintf(path, sizeof(path), "%s/model-%05d-of-%05d.safetensors", dir, i, x->shards);
        files += access(path, R_OK) == 0;
    }
    CHECK_EQ_INT(files, x->shards);

    /* Linear shapes follow head_dim, not hidden / heads */
    model_linear_shape(&rows, &cols, m, LIN_Q);
    CHECK_EQ_INT(rows, (size_t)x->heads * (size_t)x->head_dim);
    CHECK_EQ_INT(cols, x->hidden);
    model_linear_shape(&rows, &cols, m, LIN_K);
    CHECK_EQ_INT(rows, (size_t)x->kv_heads * (size_t)x->head_dim);
    model_linear_shape(&rows, &cols, m, LIN_O);
    CHECK_EQ_INT(rows, x->hidden);
    CHECK_EQ_INT(cols, (size_t)x->heads * (size_t)x->head_dim);
    model_close(m);
}

/* The oracle run now reproduces the stored logits. */
static void check_not_stale(const struct expect *x)
{
    char dir[256], refdir[300];
    struct ref_fwd_reference ref = { 0 };
    struct ref_fwd_diff d;
    double *lg = NULL;
    float *lf = NULL;
    gq_err e = GQ_ERR_INIT;
    size_t n;

    fixture_dir(dir, sizeof(dir), x);
    snprintf(refdir, sizeof(refdir), "%s/reference", dir);
    CHECK_OK(ref_fwd_reference_load(&ref, refdir, &e), &e);
    if (!ref.logits)
        return;
    CHECK_EQ_INT(ref.vocab, x->vocab);
    n = ref.nseq * ref.seqlen * ref.vocab;
    lg = malloc(n * sizeof(double));
    lf = malloc(n * sizeof(float));
    CHECK(lg && lf);
    if (!lg || !lf)
        goto done;
    CHECK_OK(ref_fwd_logits(lg, dir, ref.ids, ref.nseq, ref.seqlen, &e), &e);
    for (size_t i = 0; i < n; i++)
        lf[i] = (float)lg[i];
    ref_fwd_compare(&d, lf, ref.logits, ref.nseq * ref.seqlen, ref.vocab);
    CHECK_MSG(d.max_abs <= TOL_STALE * d.range, "%s: stored logits are stale: max |diff| %g, "
              "range %g (regenerate with make fixtures)", x->name, d.max_abs, d.range);
    CHECK_EQ_INT(d.argmax_mismatch, 0);
    /* logits of a useful size: neither all near zero nor huge */
    CHECK_MSG(d.range > 5.0 && d.range < 60.0, "%s: logit range %g", x->name, d.range);
done:
    free(lg);
    free(lf);
    ref_fwd_reference_free(&ref);
}

/*
 * Switch the fixture's feature off in the config and rerun the oracle on
 * the same weights: the logits must move far beyond TOL_FAST.
 */
static void check_feature_matters(const struct expect *x, const char *what,
                                  void (*off)(struct model_config *c))
{
    char dir[256], refdir[300], path[300];
    struct ref_fwd_reference ref = { 0 };
    struct model_config c;
    st_model *st = NULL;
    double *lg = NULL, effect = 0.0, lo = INFINITY, hi = -INFINITY;
    gq_err e = GQ_ERR_INIT;
    size_t n;

    fixture_dir(dir, sizeof(dir), x);
    snprintf(refdir, sizeof(refdir), "%s/reference", dir);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    CHECK_OK(ref_fwd_reference_load(&ref, refdir, &e), &e);
    CHECK_OK(model_config_load(&c, path, &e), &e);
    CHECK_OK(st_model_open(&st, dir, &e), &e);
    if (!ref.logits || !st)
        goto done;
    n = ref.nseq * ref.seqlen * ref.vocab;
    lg = malloc(n * sizeof(double));
    CHECK(lg != NULL);
    if (!lg)
        goto done;
    off(&c);
    CHECK_OK(ref_fwd_run(NULL, lg, &c, st, NULL, ref.ids, ref.nseq, ref.seqlen, -1, &e), &e);
    for (size_t i = 0; i < n; i++) {
        effect = fmax(effect, fabs(lg[i] - ref.logits[i]));
        lo = fmin(lo, ref.logits[i]);
        hi = fmax(hi, ref.logits[i]);
    }
    printf("  %s without the %s: logits move by up to %.3g (%.2e of range)\n", x->name, what,
           effect, effect / (hi - lo));
    CHECK_MSG(effect >= MIN_FEATURE_EFFECT * (hi - lo), "%s: the %s changes the logits by only %g",
              x->name, what, effect);
done:
    free(lg);
    st_model_close(st);
    ref_fwd_reference_free(&ref);
}

static void rope_off(struct model_config *c)
{
    c->rope_type = ROPE_DEFAULT;
}

static void window_off(struct model_config *c)
{
    c->sliding_window = 0;
}

/* ---- the cases ---- */

static void test_forward_fixtures__llama_config(void)
{
    check_config(&LLAMA);
}

static void test_forward_fixtures__mistral_config(void)
{
    check_config(&MISTRAL);
}

static void test_forward_fixtures__qwen3_config(void)
{
    check_config(&QWEN3);
}

static void test_forward_fixtures__llama_fast(void)
{
    check_fixture_fast(&LLAMA);
}

static void test_forward_fixtures__mistral_fast(void)
{
    check_fixture_fast(&MISTRAL);
}

static void test_forward_fixtures__qwen3_fast(void)
{
    check_fixture_fast(&QWEN3);
}

static void test_forward_fixtures__qwen2_gcide_fast(void)
{
    const char *shared = test_shared_dir();
    char dir[4200], refdir[4200];

    if (!shared)
        SKIP("no shared fixtures (../shared or GPTQ_SHARED): tiny-qwen2-gcide not checked");
    snprintf(dir, sizeof(dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(refdir, sizeof(refdir), "%s/fixtures/tiny-qwen2-gcide/reference", shared);
    check_fast("tiny-qwen2-gcide (vs transformers)", dir, refdir);
}

static void test_forward_fixtures__stored_logits_are_current(void)
{
    check_not_stale(&LLAMA);
    check_not_stale(&MISTRAL);
    check_not_stale(&QWEN3);
}

static void test_forward_fixtures__features_are_exercised(void)
{
    check_feature_matters(&LLAMA, "llama3 rope scaling", rope_off);
    check_feature_matters(&MISTRAL, "sliding window", window_off);
    check_feature_matters(&QWEN3, "linear rope scaling", rope_off);
}

/* Qwen3's q_norm / k_norm weights are far from 1, so ignoring them shows. */
static void test_forward_fixtures__qwen3_qk_norm_weights(void)
{
    st_model *st = NULL;
    gq_err e = GQ_ERR_INIT;
    const char *names[] = { "model.layers.0.self_attn.q_norm.weight",
                            "model.layers.1.self_attn.k_norm.weight" };
    float w[24];

    CHECK_OK(st_model_open(&st, "tests/fixtures/tiny-qwen3", &e), &e);
    if (!st)
        return;
    for (int k = 0; k < 2; k++) {
        const struct st_tensor *t = st_model_find(st, names[k]);
        double dev = 0.0;
        CHECK(t && t->numel == 24);
        if (!t || t->numel != 24)
            continue;
        CHECK_OK(st_tensor_to_f32(w, t, &e), &e);
        for (int i = 0; i < 24; i++)
            dev = fmax(dev, fabs(w[i] - 1.0));
        CHECK_MSG(dev > 0.3, "%s is nearly all ones (max |w - 1| %g)", names[k], dev);
    }
    st_model_close(st);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    t_prog = "test_forward_fixtures";
    RUN(test_forward_fixtures__llama_config);
    RUN(test_forward_fixtures__mistral_config);
    RUN(test_forward_fixtures__qwen3_config);
    RUN(test_forward_fixtures__stored_logits_are_current);
    RUN(test_forward_fixtures__features_are_exercised);
    RUN(test_forward_fixtures__qwen3_qk_norm_weights);
    RUN(test_forward_fixtures__llama_fast);
    RUN(test_forward_fixtures__mistral_fast);
    RUN(test_forward_fixtures__qwen3_fast);
    RUN(test_forward_fixtures__qwen2_gcide_fast);
    return test_report();
}
