/*
 * test_ref_forward.c - the forward-pass oracle (tests/ref_forward.c) on
 * its own: against transformers' own logits for the shared Qwen2 fixture,
 * its rope frequencies against the formulas written out in double, the
 * sliding-window boundary, partial runs, and its errors.
 */
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "ref_forward.h"
#include "test.h"

/* The oracle's bar against transformers (float32 compute): of the logit range. */
#define TOL_VS_TRANSFORMERS 1e-3
/* Float32 rounding noise of a 4-layer forward, of the logit range (measured: 4e-7). */
#define TOL_F32_NOISE 4e-6

static const char *const LLAMA_DIR = "tests/fixtures/tiny-llama";
static const char *const MISTRAL_DIR = "tests/fixtures/tiny-mistral";

/* config and tensors of a fixture directory; 0 or the error code */
static int open_dir(struct model_config *c, st_model **st, const char *dir, gq_err *e)
{
    char path[4200];
    int rc;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((rc = model_config_load(c, path, e)) < 0)
        return rc;
    return st_model_open(st, dir, e);
}

/*
 * The oracle against transformers' float32 logits for the shared Qwen2
 * fixture.  f16_rope: round the rope frequencies through float16 first.
 * That reproduces the run that produced the reference (its inv_freq
 * buffer had been cast to the checkpoint's float16 and back, as
 * model.half().float() does), and then the two agree to float32 noise, a
 * far tighter bar than TOL_VS_TRANSFORMERS.  With float32 frequencies (what
 * from_pretrained keeps) the logits drift with position by ~1e-4 of the
 * range.
 */
static void qwen2_vs_transformers(int f16_rope, double tol)
{
    const char *shared = test_shared_dir();
    char dir[4200], refdir[4200], path[4300];
    struct ref_fwd_reference ref = { 0 };
    struct ref_fwd_diff d;
    struct model_config c;
    st_model *st = NULL;
    double *lg = NULL;
    float *lf = NULL, inv_freq[512];
    gq_err e = GQ_ERR_INIT;
    size_t n;

    if (!shared)
        SKIP("no shared fixtures (../shared or GPTQ_SHARED): tiny-qwen2-gcide not checked");
    snprintf(dir, sizeof(dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(refdir, sizeof(refdir), "%s/fixtures/tiny-qwen2-gcide/reference", shared);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    CHECK_OK(ref_fwd_reference_load(&ref, refdir, &e), &e);
    CHECK_OK(model_config_load(&c, path, &e), &e);
    CHECK_OK(st_model_open(&st, dir, &e), &e);
    if (!ref.logits || !st)
        goto done;
    CHECK_EQ_INT(ref.nseq, 2);
    CHECK_EQ_INT(ref.seqlen, 64);
    CHECK_EQ_INT(ref.vocab, 8192);
    CHECK(c.head_dim <= 1024);
    n = ref.nseq * ref.seqlen * ref.vocab;
    lg = malloc(n * sizeof(double));
    lf = malloc(n * sizeof(float));
    CHECK(lg && lf);
    if (!lg || !lf || c.head_dim > 1024)
        goto done;
    ref_fwd_inv_freq(inv_freq, &c);
    for (int i = 0; f16_rope && i < c.head_dim / 2; i++)
        inv_freq[i] = gq_round_f16(inv_freq[i]);
    CHECK_OK(ref_fwd_run(NULL, lg, &c, st, inv_freq, ref.ids, ref.nseq, ref.seqlen, -1, &e), &e);
    for (size_t i = 0; i < n; i++)
        lf[i] = (float)lg[i];
    ref_fwd_compare(&d, lf, ref.logits, ref.nseq * ref.seqlen, ref.vocab);
    printf("  tiny-qwen2-gcide, %s rope frequencies: oracle vs transformers max |diff| %.3g "
           "(%.2e of range %.2f), %zu argmax mismatches\n", f16_rope ? "float16-rounded" : "float32",
           d.max_abs, d.max_abs / d.range, d.range, d.argmax_mismatch);
    CHECK(d.range > 1.0);
    CHECK_EQ_INT(d.nonfinite, 0);
    CHECK_MSG(d.max_abs <= tol * d.range, "max |diff| %g at %zu, range %g", d.max_abs, d.worst,
              d.range);
    CHECK_MSG(d.argmax_mismatch == 0, "%zu positions, first %zu", d.argmax_mismatch,
              d.first_mismatch);
done:
    free(lg);
    free(lf);
    st_model_close(st);
    ref_fwd_reference_free(&ref);
}

static void test_ref_forward__qwen2_gcide_matches_transformers(void)
{
    qwen2_vs_transformers(0, TOL_VS_TRANSFORMERS);
}

static void test_ref_forward__qwen2_gcide_f16_rope_matches_to_float32_noise(void)
{
    qwen2_vs_transformers(1, TOL_F32_NOISE);
}

/* A config with just the rope fields set. */
static struct model_config rope_config(int head_dim, double theta)
{
    struct model_config c;
    memset(&c, 0, sizeof(c));
    c.head_dim = head_dim;
    c.rope_theta = theta;
    c.rope_type = ROPE_DEFAULT;
    return c;
}

static void test_ref_forward__inv_freq_default_and_linear(void)
{
    struct model_config c = rope_config(8, 10000.0);
    float f[4], g[4];

    ref_fwd_inv_freq(f, &c);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(f[i], pow(10000.0, -2.0 * i / 8), 1e-7 * pow(10000.0, -2.0 * i / 8));
    CHECK(f[0] == 1.0f);
    c.rope_type = ROPE_LINEAR;
    c.rope_factor = 2.0;
    ref_fwd_inv_freq(g, &c);
    for (int i = 0; i < 4; i++)
        CHECK(g[i] == f[i] / 2.0f);
}

/*
 * llama3 against the formula in double, for Llama 3.1's own parameters
 * and for tiny-llama's; each band (kept, blended, divided) must occur.
 */
static void check_llama3(int head_dim, double theta, int old_ctx)
{
    struct model_config c = rope_config(head_dim, theta);
    float f[128];
    int kept = 0, blended = 0, divided = 0;

    c.rope_type = ROPE_LLAMA3;
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 4.0;
    c.rope_original_max_position = old_ctx;
    ref_fwd_inv_freq(f, &c);
    for (int i = 0; i < head_dim / 2; i++) {
        double base = pow(theta, -2.0 * i / head_dim), want;
        double wavelen = 2 * M_PI / base;
        if (wavelen < old_ctx / 4.0) {
            want = base;
            kept++;
        } else if (wavelen > old_ctx / 1.0) {
            want = base / 8.0;
            divided++;
        } else {
            double s = (old_ctx / wavelen - 1.0) / (4.0 - 1.0);
            want = (1 - s) * base / 8.0 + s * base;
            blended++;
        }
        CHECK_MSG(fabs(f[i] - want) <= 1e-6 * want, "head_dim %d, i %d: %.9g vs %.9g", head_dim,
                  i, f[i], want);
    }
    CHECK(kept > 0);
    CHECK(blended > 0);
    CHECK(divided > 0);
}

static void test_ref_forward__inv_freq_llama3(void)
{
    check_llama3(128, 500000.0, 8192);
    check_llama3(16, 500000.0, 64);
}

/*
 * Mistral's window: query i sees keys j with i - window < j <= i.  With
 * window 16, positions 0..15 see every earlier key (exactly as with no
 * window) and position 16 is the first to lose one; a window of the whole
 * sequence is no window at all.
 */
static void test_ref_forward__sliding_window_boundary(void)
{
    struct model_config c;
    st_model *st = NULL;
    gq_err e = GQ_ERR_INIT;
    const size_t seqlen = 24;
    int32_t ids[24];
    double *with = NULL, *without = NULL, *whole = NULL;
    size_t H;

    if (access(MISTRAL_DIR, R_OK) != 0) {
        CHECK_MSG(0, "%s is missing (run from the repository root)", MISTRAL_DIR);
        return;
    }
    CHECK_OK(open_dir(&c, &st, MISTRAL_DIR, &e), &e);
    if (!st)
        return;
    CHECK_EQ_INT(c.sliding_window, 16);
    H = (size_t)c.hidden_size;
    for (size_t i = 0; i < seqlen; i++)
        ids[i] = (int32_t)(7 * i + 3);
    with = malloc(seqlen * H * sizeof(double));
    without = malloc(seqlen * H * sizeof(double));
    whole = malloc(seqlen * H * sizeof(double));
    CHECK(with && without && whole);
    if (!with || !without || !whole)
        goto done;
    CHECK_OK(ref_fwd_run(with, NULL, &c, st, NULL, ids, 1, seqlen, 1, &e), &e);
    c.sliding_window = 0;
    CHECK_OK(ref_fwd_run(without, NULL, &c, st, NULL, ids, 1, seqlen, 1, &e), &e);
    c.sliding_window = (int)seqlen;
    CHECK_OK(ref_fwd_run(whole, NULL, &c, st, NULL, ids, 1, seqlen, 1, &e), &e);
    for (size_t t = 0; t < seqlen; t++) {
        double d = 0.0, dw = 0.0;
        for (size_t k = 0; k < H; k++) {
            d = fmax(d, fabs(with[t * H + k] - without[t * H + k]));
            dw = fmax(dw, fabs(whole[t * H + k] - without[t * H + k]));
        }
        CHECK_MSG(dw == 0.0, "position %zu: a window of the whole sequence changed it by %g", t,
                  dw);
        if (t < 16)
            CHECK_MSG(d == 0.0, "position %zu inside the window changed by %g", t, d);
        else
            CHECK_MSG(d > 1e-3, "position %zu beyond the window did not change (%g)", t, d);
    }
done:
    free(with);
    free(without);
    free(whole);
    st_model_close(st);
}

/* layers 0 leaves the embeddings; logits need every layer. */
static void test_ref_forward__partial_runs(void)
{
    struct model_config c;
    st_model *st = NULL;
    gq_err e = GQ_ERR_INIT;
    int32_t ids[6] = { 0, 5, 9, 300, 319, 7 };
    double *h = NULL, lg[6 * 320];
    float *emb = NULL;
    const struct st_tensor *t;
    size_t H;

    CHECK_OK(open_dir(&c, &st, LLAMA_DIR, &e), &e);
    if (!st)
        return;
    CHECK_EQ_INT(c.vocab_size, 320);
    H = (size_t)c.hidden_size;
    t = st_model_find(st, "model.embed_tokens.weight");
    CHECK(t != NULL);
    h = malloc(6 * H * sizeof(double));
    emb = malloc((size_t)c.vocab_size * H * sizeof(float));
    CHECK(h && emb);
    if (!t || !h || !emb)
        goto done;
    CHECK_OK(st_tensor_to_f32(emb, t, &e), &e);
    CHECK_OK(ref_fwd_run(h, NULL, &c, st, NULL, ids, 2, 3, 0, &e), &e);
    for (size_t i = 0; i < 6; i++)
        for (size_t k = 0; k < H; k++)
            if (h[i * H + k] != emb[(size_t)ids[i] * H + k]) {
                CHECK_MSG(0, "token %zu dim %zu is not its embedding", i, k);
                goto done;
            }
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &c, st, NULL, ids, 2, 3, 1, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "logits need all 2 layers") != NULL);
done:
    free(h);
    free(emb);
    st_model_close(st);
}

static void test_ref_forward__errors(void)
{
    struct model_config c, bad;
    struct arch_desc qk;
    st_model *st = NULL;
    gq_err e = GQ_ERR_INIT;
    int32_t ids[4] = { 1, 2, 3, 4 };
    double lg[4 * 320];

    CHECK_OK(open_dir(&c, &st, LLAMA_DIR, &e), &e);
    if (!st)
        return;

    ids[2] = 320;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &c, st, NULL, ids, 1, 4, -1, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "token id 320 at 2 is outside the vocabulary (size 320)") != NULL);
    ids[2] = -1;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &c, st, NULL, ids, 1, 4, -1, &e), GQ_EINVAL);
    ids[2] = 3;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &c, st, NULL, ids, 0, 4, -1, &e), GQ_EINVAL);

    /* a config that disagrees with the tensors */
    bad = c;
    bad.intermediate_size = 128;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &bad, st, NULL, ids, 1, 4, -1, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor model.layers.0.mlp.gate_proj.weight has shape [160, 64], "
                     "expected [128, 64]") != NULL, "%s", e.msg);

    /* tensors the config asks for and the checkpoint lacks */
    bad = c;
    qk = *c.arch;
    qk.qk_norm = 1;
    bad.arch = &qk;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &bad, st, NULL, ids, 1, 4, -1, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor model.layers.0.self_attn.q_norm.weight is missing") != NULL,
              "%s", e.msg);
    bad = c;
    bad.o_bias = 1;
    CHECK_EQ_INT(ref_fwd_run(NULL, lg, &bad, st, NULL, ids, 1, 4, -1, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "self_attn.o_proj.bias is missing") != NULL);

    /* the directory wrapper names the directory */
    CHECK_EQ_INT(ref_fwd_logits(lg, "tests/fixtures/no-such-model", ids, 1, 4, &e), GQ_ENOTFOUND);
    st_model_close(st);
}

static void test_ref_forward__reference_files(void)
{
    struct ref_fwd_reference r = { 0 };
    gq_err e = GQ_ERR_INIT;
    struct ref_fwd_diff d;
    float a[6] = { 0, 1, 2, 5, 4, 3 }, b[6] = { 0, 1, 2.5f, 5, 4, 5.5f };

    CHECK_OK(ref_fwd_reference_load(&r, "tests/fixtures/tiny-llama/reference", &e), &e);
    CHECK_EQ_INT(r.nseq, 2);
    CHECK_EQ_INT(r.seqlen, 40);
    CHECK_EQ_INT(r.vocab, 320);
    ref_fwd_reference_free(&r);
    CHECK(r.ids == NULL && r.logits == NULL);
    CHECK_EQ_INT(ref_fwd_reference_load(&r, "tests/fixtures/tiny-llama", &e), GQ_ENOTFOUND);

    ref_fwd_compare(&d, a, b, 2, 3);
    CHECK_NEAR(d.max_abs, 2.5, 0);
    CHECK_EQ_INT(d.worst, 5);
    CHECK_NEAR(d.range, 5.5, 0);
    CHECK_EQ_INT(d.argmax_mismatch, 1);
    CHECK_EQ_INT(d.first_mismatch, 1);
}

int main(void)
{
    t_prog = "test_ref_forward";
    RUN(test_ref_forward__qwen2_gcide_matches_transformers);
    RUN(test_ref_forward__qwen2_gcide_f16_rope_matches_to_float32_noise);
    RUN(test_ref_forward__inv_freq_default_and_linear);
    RUN(test_ref_forward__inv_freq_llama3);
    RUN(test_ref_forward__sliding_window_boundary);
    RUN(test_ref_forward__partial_runs);
    RUN(test_ref_forward__errors);
    RUN(test_ref_forward__reference_files);
    return test_report();
}
