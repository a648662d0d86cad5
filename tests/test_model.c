/*
 * test_model.c - the float32 forward pass (core/model.c, core/forward.c).
 *
 * On the shared tiny-qwen2-gcide fixture (skipped when ../shared is
 * absent): logits equal transformers' reference logits to 1e-3 of their
 * range with the same argmax everywhere, and perplexity on the held-out
 * blocks equals targets.json fp_ppl within 0.1%.
 *
 * On synthetic checkpoints written here (always run): each capture point's
 * input is what a naive double recomputation from the previous point's
 * input gives (so the captured inputs are exactly what the Linears see,
 * and the layer output is exactly what they produce), over several
 * attention blocks, with a sliding window, GQA, biases, Qwen3's q/k norms
 * and scaled rope; the whole forward equals the double oracle
 * (tests/ref_forward.c); chunked batches call back once per chunk; replacing
 * a Linear by itself changes nothing and by zeros changes the output;
 * every allocation failing in turn gives GQ_ENOMEM and leaks nothing;
 * missing tensors, wrong shapes, wrong dtypes and out-of-vocabulary ids
 * are clear errors.  Also: the vectorised exp kernel against libm, and
 * the gptq eval CLI (when GPTQ_BIN is set, as make test does).
 *
 * Generated fixtures of tests/fixtures/ are in test_forward_fixtures.c.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blas_env.h"
#include "forward.h"
#include "mem.h"
#include "model.h"
#include "ref_forward.h"
#include "safetensors.h"
#include "test.h"

/* fast forward vs transformers, of the logit range (the task's bar) */
#define TOL_LOGITS 1e-3
/* perplexity vs targets.json fp_ppl, relative */
#define TOL_PPL 1e-3
/* one stage recomputed in double from the same float inputs, relative to the stage's max */
#define TOL_STAGE 2e-5
/* whole synthetic forward vs the double oracle, relative to max |hidden| */
#define TOL_ORACLE 1e-4

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char gcide_dir[4200], gcide_ref[4200];

static int gcide(void)
{
    const char *shared = test_shared_dir();
    if (!shared)
        return 0;
    snprintf(gcide_dir, sizeof(gcide_dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(gcide_ref, sizeof(gcide_ref), "%s/fixtures/tiny-qwen2-gcide/reference", shared);
    return 1;
}

/* ---- synthetic checkpoints ---- */

/* A small model to write: config values and what to break on purpose. */
struct synth {
    const char *arch;
    int hidden, inter, heads, kv_heads, head_dim, layers, vocab;
    int window;            /* Mistral sliding_window; 0 writes null */
    int bias;              /* attention_bias (Llama: mlp_bias too) */
    int tie;
    const char *rope;      /* extra config keys (rope_scaling), or "" */
    const char *omit;      /* a tensor not to write, or NULL */
    const char *misshape;  /* a tensor to write one row too long, or NULL */
    const char *as_int;    /* a tensor to write as I32, or NULL */
};

static const struct synth MISTRAL = {
    "MistralForCausalLM", 64, 96, 4, 2, 16, 2, 101, 40, 0, 0, "", NULL, NULL, NULL,
};
static const struct synth QWEN3 = {
    "Qwen3ForCausalLM", 48, 80, 4, 2, 24, 1, 97, 0, 1, 1,
    ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", NULL, NULL, NULL,
};
static const struct synth LLAMA = {
    "LlamaForCausalLM", 64, 112, 4, 4, 16, 1, 89, 0, 1, 0,
    ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
    "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}", NULL, NULL, NULL,
};
static const struct synth QWEN2 = {
    "Qwen2ForCausalLM", 32, 64, 2, 1, 16, 1, 67, 0, 1, 1, "", NULL, NULL, NULL,
};

struct tensor_spec {
    char name[96];
    int64_t d0, d1;        /* d1 < 0: 1-D */
    int kind;              /* 0 weight, 1 bias, 2 norm, 3 embedding */
};

static int synth_has(const struct synth *s, const char *what)
{
    int qwen2 = strstr(s->arch, "Qwen2") != NULL, qwen3 = strstr(s->arch, "Qwen3") != NULL;
    int llama = strstr(s->arch, "Llama") != NULL;
    if (!strcmp(what, "qkv_bias"))
        return qwen2 || ((qwen3 || llama) && s->bias);
    if (!strcmp(what, "o_bias"))
        return (qwen3 || llama) && s->bias;
    if (!strcmp(what, "mlp_bias"))
        return llama && s->bias;
    return qwen3;   /* "qk_norm" */
}

/* The tensors of s, in transformers' names, independently of core/model.c. */
static size_t synth_tensors(struct tensor_spec *t, const struct synth *s)
{
    static const char *const lin[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                       "mlp.down_proj"};
    const int64_t q = (int64_t)s->heads * s->head_dim, kv = (int64_t)s->kv_heads * s->head_dim;
    const int64_t rows[7] = {q, kv, kv, s->hidden, s->inter, s->inter, s->hidden};
    const int64_t cols[7] = {s->hidden, s->hidden, s->hidden, q, s->hidden, s->hidden, s->inter};
    size_t n = 0;

    snprintf(t[n].name, sizeof(t[n].name), "model.embed_tokens.weight");
    t[n].d0 = s->vocab, t[n].d1 = s->hidden, t[n++].kind = 3;
    for (int l = 0; l < s->layers; l++) {
        snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.input_layernorm.weight", l);
        t[n].d0 = s->hidden, t[n].d1 = -1, t[n++].kind = 2;
        snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.post_attention_layernorm.weight", l);
        t[n].d0 = s->hidden, t[n].d1 = -1, t[n++].kind = 2;
        for (int i = 0; i < 7; i++) {
            int bias = i < 3 ? synth_has(s, "qkv_bias") : i == 3 ? synth_has(s, "o_bias")
                                                                 : synth_has(s, "mlp_bias");
            snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.%s.weight", l, lin[i]);
            t[n].d0 = rows[i], t[n].d1 = cols[i], t[n++].kind = 0;
            if (bias) {
                snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.%s.bias", l, lin[i]);
                t[n].d0 = rows[i], t[n].d1 = -1, t[n++].kind = 1;
            }
        }
        if (synth_has(s, "qk_norm")) {
            snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.self_attn.q_norm.weight", l);
            t[n].d0 = s->head_dim, t[n].d1 = -1, t[n++].kind = 2;
            snprintf(t[n].name, sizeof(t[n].name), "model.layers.%d.self_attn.k_norm.weight", l);
            t[n].d0 = s->head_dim, t[n].d1 = -1, t[n++].kind = 2;
        }
    }
    snprintf(t[n].name, sizeof(t[n].name), "model.norm.weight");
    t[n].d0 = s->hidden, t[n].d1 = -1, t[n++].kind = 2;
    if (!s->tie) {
        snprintf(t[n].name, sizeof(t[n].name), "lm_head.weight");
        t[n].d0 = s->vocab, t[n].d1 = s->hidden, t[n++].kind = 0;
    }
    return n;
}

/* Write s as a checkpoint directory (config.json + model.safetensors, F32) into a new temp dir. */
static int synth_write(char *dir, size_t cap, const struct synth *s)
{
    struct tensor_spec t[64];
    size_t n = synth_tensors(t, s);
    unsigned long long seed = 0x5eedULL;
    char path[600], win[16];
    st_writer *w = NULL;
    gq_err e = GQ_ERR_INIT;
    FILE *f;

    snprintf(dir, cap, "/tmp/gptq-test-model-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (!(f = fopen(path, "w")))
        return -1;
    if (s->window)
        snprintf(win, sizeof(win), "%d", s->window);
    else
        snprintf(win, sizeof(win), "null");
    fprintf(f, "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d, "
               "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
               "\"head_dim\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
               "\"hidden_act\": \"silu\", \"max_position_embeddings\": 4096, "
               "\"tie_word_embeddings\": %s, \"attention_bias\": %s, \"mlp_bias\": %s, "
               "\"sliding_window\": %s, \"torch_dtype\": \"float32\"%s}\n",
            s->arch, s->hidden, s->inter, s->layers, s->heads, s->kv_heads, s->head_dim, s->vocab,
            s->tie ? "true" : "false", s->bias ? "true" : "false", s->bias ? "true" : "false", win,
            s->rope);
    fclose(f);
    if (st_writer_open(&w, dir, 0, &e) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        int64_t shape[2] = {t[i].d0, t[i].d1};
        if (s->omit && !strcmp(t[i].name, s->omit))
            continue;
        if (s->misshape && !strcmp(t[i].name, s->misshape))
            shape[0]++;
        if (st_writer_declare(w, t[i].name, s->as_int && !strcmp(t[i].name, s->as_int) ? ST_I32 : ST_F32,
                              t[i].d1 < 0 ? 1 : 2, shape, &e) < 0)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        size_t rows = (size_t)t[i].d0 + (s->misshape && !strcmp(t[i].name, s->misshape));
        size_t cols = t[i].d1 < 0 ? 1 : (size_t)t[i].d1, cnt = rows * cols;
        float *v;
        int rc;
        if (s->omit && !strcmp(t[i].name, s->omit))
            continue;
        if (!(v = malloc(cnt * sizeof(float))))
            goto fail;
        for (size_t j = 0; j < cnt; j++) {
            double u = 2.0 * test_rand_unit(&seed) - 1.0;
            v[j] = t[i].kind == 0   ? (float)(u * sqrt(3.0 / (double)cols))
                   : t[i].kind == 1 ? (float)(0.2 * u)
                   : t[i].kind == 2 ? (float)(1.0 + 0.3 * u)
                                    : (float)test_rand_normal(&seed);
        }
        rc = st_writer_write(w, t[i].name, v, cnt * sizeof(float), &e);
        free(v);
        if (rc < 0)
            goto fail;
    }
    return st_writer_finish(w, &e) < 0 ? -1 : 0;
fail:
    fprintf(stderr, "  synth_write: %s\n", e.msg);
    st_writer_abort(w);
    return -1;
}

static void rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void fill_ids(int32_t *ids, size_t n, int vocab, unsigned long long seed)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)(test_rand_u64(&seed) % (unsigned long long)vocab);
}

/* max |a - b| / max(max |b|, 1e-30) */
static double rel_diff(const float *a, const double *b, size_t n)
{
    double d = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return d / m;
}

/* ---- capture recording ---- */

struct capture {
    size_t seqlen, ntok;
    float *buf[CAP_COUNT];      /* (ntok, cols) each, filled chunk by chunk */
    size_t cols[CAP_COUNT], filled[CAP_COUNT];
    int calls, bad_order, bad_shape;
    size_t chunk_nseq[64];
    int expect;                 /* the capture point due next */
};

static int capture_store(enum capture_point p, const float *x, size_t tokens, size_t cols,
                         size_t nseq, void *payload)
{
    struct capture *c = payload;
    if ((int)p != c->expect)
        c->bad_order++;
    c->expect = (c->expect + 1) % CAP_COUNT;
    if (c->calls < 64)
        c->chunk_nseq[c->calls] = nseq;
    c->calls++;
    if (tokens != nseq * c->seqlen || (c->cols[p] && c->cols[p] != cols) ||
        c->filled[p] + tokens > c->ntok) {
        c->bad_shape++;
        return 0;
    }
    if (!c->buf[p] && !(c->buf[p] = malloc(c->ntok * cols * sizeof(float))))
        return GQ_ENOMEM;
    c->cols[p] = cols;
    memcpy(c->buf[p] + c->filled[p] * cols, x, tokens * cols * sizeof(float));
    c->filled[p] += tokens;
    return 0;
}

static void capture_free(struct capture *c)
{
    for (int i = 0; i < CAP_COUNT; i++)
        free(c->buf[i]);
}

/* ---- naive double recomputation of each stage ---- */

/* A tensor of m's checkpoint in float32 (malloc), or NULL when absent. */
static float *tensor_f32(const model *m, const char *name)
{
    const struct st_tensor *t = st_model_find(model_tensors(m), name);
    gq_err e = GQ_ERR_INIT;
    float *v;
    if (!t || !(v = malloc(t->numel * sizeof(float))))
        return NULL;
    if (st_tensor_to_f32(v, t, &e) < 0) {
        free(v);
        return NULL;
    }
    return v;
}

/* y (n, d) = rmsnorm(x) * w in double */
static void ref_rmsnorm(double *y, const double *x, const float *w, size_t n, size_t d, double eps)
{
    for (size_t t = 0; t < n; t++) {
        double ss = 0.0;
        for (size_t i = 0; i < d; i++)
            ss += x[t * d + i] * x[t * d + i];
        ss = 1.0 / sqrt(ss / (double)d + eps);
        for (size_t i = 0; i < d; i++)
            y[t * d + i] = (double)w[i] * (x[t * d + i] * ss);
    }
}

/* y (n, rows) = x (n, cols) W^T + b in double; x float or double */
static void ref_linear(double *y, const float *xf, const double *xd, const float *w, const float *b,
                       size_t n, size_t rows, size_t cols)
{
    for (size_t t = 0; t < n; t++)
        for (size_t r = 0; r < rows; r++) {
            double s = b ? (double)b[r] : 0.0;
            for (size_t k = 0; k < cols; k++)
                s += (xf ? (double)xf[t * cols + k] : xd[t * cols + k]) * (double)w[r * cols + k];
            y[t * rows + r] = s;
        }
}

/*
 * Attention of captured input xa (nseq * seqlen, hidden) in double, from
 * the layer's own weights: q/k/v projections, Qwen3 norms, rope, masked
 * GQA softmax.  out (nseq * seqlen, heads * head_dim).
 */
static void ref_attention(double *out, const model *m, const model_layer *l, const float *qn,
                          const float *kn, const float *xa, size_t nseq, size_t seqlen)
{
    const struct model_config *c = model_config_of(m);
    const size_t n = nseq * seqlen, d = (size_t)c->hidden_size, hd = (size_t)c->head_dim;
    const size_t H = (size_t)c->num_heads, KV = (size_t)c->num_kv_heads, half = hd / 2;
    const size_t window = (size_t)c->sliding_window;
    double *q = malloc(n * H * hd * sizeof(double)), *k = malloc(n * KV * hd * sizeof(double));
    double *v = malloc(n * KV * hd * sizeof(double)), *p = malloc(seqlen * sizeof(double));
    float *inv = malloc(half * sizeof(float));

    if (!q || !k || !v || !p || !inv)
        goto done;
    ref_fwd_inv_freq(inv, c);
    ref_linear(q, xa, NULL, model_layer_linear(l, LIN_Q), model_layer_bias(l, LIN_Q), n, H * hd, d);
    ref_linear(k, xa, NULL, model_layer_linear(l, LIN_K), model_layer_bias(l, LIN_K), n, KV * hd, d);
    ref_linear(v, xa, NULL, model_layer_linear(l, LIN_V), model_layer_bias(l, LIN_V), n, KV * hd, d);
    if (qn) {
        ref_rmsnorm(q, q, qn, n * H, hd, c->rms_norm_eps);
        ref_rmsnorm(k, k, kn, n * KV, hd, c->rms_norm_eps);
    }
    for (size_t t = 0; t < n; t++) {
        size_t pos = t % seqlen;
        for (size_t h = 0; h < H + KV; h++) {
            double *x = h < H ? q + (t * H + h) * hd : k + (t * KV + h - H) * hd;
            for (size_t i = 0; i < half; i++) {
                double a = (double)pos * (double)inv[i], x1 = x[i], x2 = x[i + half];
                x[i] = x1 * cos(a) - x2 * sin(a);
                x[i + half] = x2 * cos(a) + x1 * sin(a);
            }
        }
    }
    for (size_t s = 0; s < nseq; s++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < seqlen; i++) {
                const double *qi = q + ((s * seqlen + i) * H + h) * hd;
                double mx = -INFINITY, sum = 0.0;
                size_t lo = window && i + 1 > window ? i + 1 - window : 0;
                for (size_t j = lo; j <= i; j++) {
                    const double *kj = k + ((s * seqlen + j) * KV + h / (H / KV)) * hd;
                    double dot = 0.0;
                    for (size_t u = 0; u < hd; u++)
                        dot += qi[u] * kj[u];
                    p[j] = dot / sqrt((double)hd);
                    mx = fmax(mx, p[j]);
                }
                for (size_t j = lo; j <= i; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (size_t u = 0; u < hd; u++) {
                    double acc = 0.0;
                    for (size_t j = lo; j <= i; j++)
                        acc += p[j] / sum * v[((s * seqlen + j) * KV + h / (H / KV)) * hd + u];
                    out[(s * seqlen + i) * H * hd + h * hd + u] = acc;
                }
            }
done:
    free(q);
    free(k);
    free(v);
    free(p);
    free(inv);
}

/*
 * Layer `layer` of m on ids (nseq, seqlen), its captures checked stage by
 * stage against double recomputations from the previous stage's captured
 * (float) input, and its output against h0 + attention + MLP.  Returns the
 * worst relative difference seen (also printed).
 */
static double check_capture_chain(const char *label, const model *m, int layer,
                                  const int32_t *ids, size_t nseq, size_t seqlen)
{
    const struct model_config *c = model_config_of(m);
    const size_t n = nseq * seqlen, d = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
    const size_t qd = (size_t)c->num_heads * (size_t)c->head_dim;
    gq_err e = GQ_ERR_INIT;
    model_layer *l = NULL;
    struct capture cap;
    float *h0 = malloc(n * d * sizeof(float)), *h = malloc(n * d * sizeof(float));
    float *win = NULL, *wpost = NULL, *qn = NULL, *kn = NULL;
    double *r1 = malloc(n * (d > qd ? d : qd) * sizeof(double)), *hmid = malloc(n * d * sizeof(double));
    double *g = malloc(n * inter * sizeof(double)), *u = malloc(n * inter * sizeof(double));
    double worst = 0.0, diff[5] = {0};
    char name[128];

    memset(&cap, 0, sizeof(cap));
    cap.seqlen = seqlen;
    cap.ntok = n;
    snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", layer);
    win = tensor_f32(m, name);
    snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", layer);
    wpost = tensor_f32(m, name);
    if (c->arch->qk_norm) {
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", layer);
        qn = tensor_f32(m, name);
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", layer);
        kn = tensor_f32(m, name);
        CHECK(qn && kn);
    }
    CHECK(h0 && h && r1 && hmid && g && u && win && wpost);
    if (!h0 || !h || !r1 || !hmid || !g || !u || !win || !wpost || (c->arch->qk_norm && (!qn || !kn)))
        goto done;
    CHECK_OK(model_layer_load(&l, m, layer, &e), &e);
    CHECK_OK(model_embed(h0, m, ids, n, &e), &e);
    if (!l)
        goto done;
    memcpy(h, h0, n * d * sizeof(float));
    CHECK_OK(layer_forward(h, m, l, nseq, seqlen, capture_store, &cap, CAP_NONE, &e), &e);
    CHECK_EQ_INT(cap.bad_order, 0);
    CHECK_EQ_INT(cap.bad_shape, 0);
    for (int p = 0; p < CAP_COUNT; p++)
        CHECK_EQ_INT(cap.filled[p], n);
    if (cap.bad_shape || cap.filled[0] != n || cap.filled[1] != n || cap.filled[2] != n ||
        cap.filled[3] != n)
        goto done;
    CHECK_EQ_INT(cap.cols[CAP_ATTN_IN], d);
    CHECK_EQ_INT(cap.cols[CAP_O_IN], qd);
    CHECK_EQ_INT(cap.cols[CAP_MLP_IN], d);
    CHECK_EQ_INT(cap.cols[CAP_DOWN_IN], inter);

    /* 1. attention input = rmsnorm(h0) * w_in */
    for (size_t i = 0; i < n * d; i++)
        hmid[i] = (double)h0[i];
    ref_rmsnorm(r1, hmid, win, n, d, c->rms_norm_eps);
    diff[0] = rel_diff(cap.buf[CAP_ATTN_IN], r1, n * d);
    /* 2. o_proj input = attention(q_proj(x), k_proj(x), v_proj(x)) of the captured x */
    ref_attention(r1, m, l, qn, kn, cap.buf[CAP_ATTN_IN], nseq, seqlen);
    diff[1] = rel_diff(cap.buf[CAP_O_IN], r1, n * qd);
    /* 3. mlp input = rmsnorm(h0 + o_proj(captured o input)) * w_post */
    ref_linear(hmid, cap.buf[CAP_O_IN], NULL, model_layer_linear(l, LIN_O),
               model_layer_bias(l, LIN_O), n, d, qd);
    for (size_t i = 0; i < n * d; i++)
        hmid[i] += (double)h0[i];
    ref_rmsnorm(r1, hmid, wpost, n, d, c->rms_norm_eps);
    diff[2] = rel_diff(cap.buf[CAP_MLP_IN], r1, n * d);
    /* 4. down_proj input = silu(gate(x)) * up(x) of the captured mlp input */
    ref_linear(g, cap.buf[CAP_MLP_IN], NULL, model_layer_linear(l, LIN_GATE),
               model_layer_bias(l, LIN_GATE), n, inter, d);
    ref_linear(u, cap.buf[CAP_MLP_IN], NULL, model_layer_linear(l, LIN_UP),
               model_layer_bias(l, LIN_UP), n, inter, d);
    for (size_t i = 0; i < n * inter; i++)
        g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    diff[3] = rel_diff(cap.buf[CAP_DOWN_IN], g, n * inter);
    /* 5. output = h0 + attention + down_proj(captured down input) */
    ref_linear(r1, cap.buf[CAP_DOWN_IN], NULL, model_layer_linear(l, LIN_DOWN),
               model_layer_bias(l, LIN_DOWN), n, d, inter);
    for (size_t i = 0; i < n * d; i++)
        r1[i] += hmid[i];
    diff[4] = rel_diff(h, r1, n * d);
    for (int i = 0; i < 5; i++) {
        CHECK_MSG(diff[i] <= TOL_STAGE, "%s stage %d: relative difference %.3g", label, i + 1,
                  diff[i]);
        worst = fmax(worst, diff[i]);
    }
    printf("  %s layer %d, %zu x %zu tokens: captures and output vs double recomputation, "
           "worst %.2e\n", label, layer, nseq, seqlen, worst);
done:
    capture_free(&cap);
    model_layer_free(l);
    free(h0);
    free(h);
    free(r1);
    free(hmid);
    free(g);
    free(u);
    free(win);
    free(wpost);
    free(qn);
    free(kn);
    return worst;
}

/* All layers of m on ids, float32, residual stream in hidden (n, hidden). */
static int fast_hidden(float *hidden, const model *m, const int32_t *ids, size_t nseq,
                       size_t seqlen, gq_err *e)
{
    model_layer *l = NULL;
    int rc;
    if ((rc = model_embed(hidden, m, ids, nseq * seqlen, e)) < 0)
        return rc;
    for (int i = 0; i < model_config_of(m)->num_layers; i++) {
        if ((rc = model_layer_load(&l, m, i, e)) < 0)
            return rc;
        rc = layer_forward(hidden, m, l, nseq, seqlen, NULL, NULL, CAP_NONE, e);
        model_layer_free(l);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- tests on the shared fixture ---- */

static void test_model__logits_match_transformers(void)
{
    struct ref_fwd_reference ref;
    struct ref_fwd_diff d;
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    float *hidden = NULL, *logits = NULL;

    memset(&ref, 0, sizeof(ref));
    if (!gcide())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    CHECK_OK(ref_fwd_reference_load(&ref, gcide_ref, &e), &e);
    CHECK_OK(model_open(&m, gcide_dir, &e), &e);
    if (!m || !ref.ids)
        goto done;
    CHECK_EQ_INT(ref.nseq, 2);
    CHECK_EQ_INT(ref.seqlen, 64);
    CHECK_EQ_INT(ref.vocab, 8192);
    hidden = malloc(ref.nseq * ref.seqlen * 256 * sizeof(float));
    logits = malloc(ref.nseq * ref.seqlen * ref.vocab * sizeof(float));
    if (!hidden || !logits)
        goto done;
    CHECK_OK(fast_hidden(hidden, m, ref.ids, ref.nseq, ref.seqlen, &e), &e);
    CHECK_OK(model_logits(logits, m, hidden, ref.nseq * ref.seqlen, &e), &e);
    ref_fwd_compare(&d, logits, ref.logits, ref.nseq * ref.seqlen, ref.vocab);
    printf("  logits vs transformers: max |diff| %.3g (%.2e of the range %.2f), %zu argmax "
           "mismatches\n", d.max_abs, d.max_abs / d.range, d.range, d.argmax_mismatch);
    CHECK(d.max_abs <= TOL_LOGITS * d.range);
    CHECK_EQ_INT(d.argmax_mismatch, 0);
    CHECK_EQ_INT(d.nonfinite, 0);
done:
    free(hidden);
    free(logits);
    model_close(m);
    ref_fwd_reference_free(&ref);
}

static void test_model__perplexity_matches_transformers(void)
{
    const double fp_ppl = 14.06674;   /* targets.json "fp_ppl" (transformers, float32) */
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    int32_t *t = NULL;
    double nll = 0.0, ppl, t0;
    size_t count = 0;
    char path[4300];
    FILE *f;

    if (!gcide())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    snprintf(path, sizeof(path), "%s/eval-blocks.i32", gcide_ref);
    t = malloc(400 * 256 * sizeof(int32_t));
    f = fopen(path, "rb");
    CHECK(f && t);
    if (!f || !t) {
        if (f)
            fclose(f);
        free(t);
        return;
    }
    CHECK_EQ_INT(fread(t, sizeof(int32_t), 400 * 256, f), 400 * 256);
    fclose(f);
    CHECK_OK(model_open(&m, gcide_dir, &e), &e);
    t0 = now();
    if (m)
        CHECK_OK(model_nll(&nll, &count, m, t, 400, 256, 16, &e), &e);
    t0 = now() - t0;
    CHECK_EQ_INT(count, 400 * 255);
    ppl = exp(nll / (double)(count ? count : 1));
    printf("  perplexity %.5f over %zu tokens (transformers %.5f, %.4f%% off), %.2f s\n", ppl,
           count, fp_ppl, 100.0 * fabs(ppl - fp_ppl) / fp_ppl, t0);
    CHECK(fabs(ppl - fp_ppl) <= TOL_PPL * fp_ppl);
    model_close(m);
    free(t);
}

static void test_model__capture_chain_gcide(void)
{
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    int32_t ids[2 * 100];

    if (!gcide())
        SKIP("../shared is absent: no tiny-qwen2-gcide fixture");
    CHECK_OK(model_open(&m, gcide_dir, &e), &e);
    if (!m)
        return;
    fill_ids(ids, 200, 8192, 11);
    check_capture_chain("tiny-qwen2-gcide", m, 1, ids, 2, 100);
    model_close(m);
}

/* ---- tests on synthetic checkpoints ---- */

/* Stage-by-stage captures and the whole forward vs the oracle, for one synthetic family. */
static void synthetic_family(const struct synth *s, size_t nseq, size_t seqlen)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    st_model *st = NULL;
    struct model_config c;
    int32_t *ids = malloc(nseq * seqlen * sizeof(int32_t));
    float *fast = malloc(nseq * seqlen * (size_t)s->hidden * sizeof(float));
    double *want = malloc(nseq * seqlen * (size_t)s->hidden * sizeof(double)), diff;

    CHECK(ids && fast && want);
    if (!ids || !fast || !want || synth_write(dir, sizeof(dir), s) < 0) {
        CHECK(0);
        goto out;
    }
    fill_ids(ids, nseq * seqlen, s->vocab, 3);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (!m)
        goto done;
    for (int l = 0; l < s->layers; l++)
        check_capture_chain(s->arch, m, l, ids, nseq, seqlen);
    /* the whole forward against the independent double oracle */
    c = *model_config_of(m);
    CHECK_OK(st_model_open(&st, dir, &e), &e);
    CHECK_OK(fast_hidden(fast, m, ids, nseq, seqlen, &e), &e);
    if (st)
        CHECK_OK(ref_fwd_run(want, NULL, &c, st, NULL, ids, nseq, seqlen, s->layers, &e), &e);
    diff = rel_diff(fast, want, nseq * seqlen * (size_t)s->hidden);
    printf("  %s: %d layers vs the double oracle, %.2e of max |hidden|\n", s->arch, s->layers, diff);
    CHECK(diff <= TOL_ORACLE);
done:
    st_model_close(st);
    model_close(m);
    rm_rf(dir);
out:
    free(ids);
    free(fast);
    free(want);
}

static void test_model__synthetic_mistral_window(void)
{
    /* 150 tokens: three query blocks of 64, window 40 < block: every bound is exercised */
    synthetic_family(&MISTRAL, 2, 150);
}

static void test_model__synthetic_qwen3(void)
{
    synthetic_family(&QWEN3, 2, 70);
}

static void test_model__synthetic_llama(void)
{
    synthetic_family(&LLAMA, 1, 130);
}

static void test_model__synthetic_qwen2(void)
{
    synthetic_family(&QWEN2, 3, 9);
}

/* Capture points in order with their shapes, once per chunk; stop_after stops there. */
static void test_model__capture_chunks_and_stop(void)
{
    /* 4096-token chunks: seqlen 1500 gives 2 sequences per chunk, so 3 sequences make 2 chunks */
    const size_t nseq = 3, seqlen = 1500, n = nseq * seqlen;
    struct synth s = QWEN2;
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    struct capture cap;
    int32_t *ids = malloc(n * sizeof(int32_t));
    float *h = malloc(n * (size_t)s.hidden * sizeof(float));
    float *full = malloc(n * (size_t)s.hidden * sizeof(float));

    memset(&cap, 0, sizeof(cap));
    if (!ids || !h || !full || synth_write(dir, sizeof(dir), &s) < 0) {
        CHECK(0);
        goto out;
    }
    fill_ids(ids, n, s.vocab, 5);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m)
        CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
    if (!l)
        goto done;
    cap.seqlen = seqlen;
    cap.ntok = n;
    CHECK_OK(model_embed(h, m, ids, n, &e), &e);
    CHECK_OK(layer_forward(h, m, l, nseq, seqlen, capture_store, &cap, CAP_NONE, &e), &e);
    CHECK_EQ_INT(cap.calls, 8);
    CHECK_EQ_INT(cap.bad_order, 0);
    CHECK_EQ_INT(cap.bad_shape, 0);
    CHECK_EQ_INT(cap.chunk_nseq[0], 2);
    CHECK_EQ_INT(cap.chunk_nseq[3], 2);
    CHECK_EQ_INT(cap.chunk_nseq[4], 1);
    CHECK_EQ_INT(cap.chunk_nseq[7], 1);
    CHECK_EQ_INT(cap.cols[CAP_ATTN_IN], s.hidden);
    CHECK_EQ_INT(cap.cols[CAP_O_IN], s.heads * s.head_dim);
    CHECK_EQ_INT(cap.cols[CAP_MLP_IN], s.hidden);
    CHECK_EQ_INT(cap.cols[CAP_DOWN_IN], s.inter);
    for (int p = 0; p < CAP_COUNT; p++)
        CHECK_EQ_INT(cap.filled[p], n);
    memcpy(full, h, n * (size_t)s.hidden * sizeof(float));

    /* chunks are independent: the same sequences one at a time give the same output */
    CHECK_OK(model_embed(h, m, ids, n, &e), &e);
    for (size_t q = 0; q < nseq; q++)
        CHECK_OK(layer_forward(h + q * seqlen * (size_t)s.hidden, m, l, 1, seqlen, NULL, NULL,
                               CAP_NONE, &e), &e);
    {
        double diff = 0.0, mx = 0.0;
        for (size_t i = 0; i < n * (size_t)s.hidden; i++) {
            diff = fmax(diff, fabs((double)h[i] - full[i]));
            mx = fmax(mx, fabs((double)full[i]));
        }
        CHECK_MSG(diff <= 1e-6 * mx, "one sequence at a time vs chunked: %g of %g", diff, mx);
    }

    /* stop_after: each point ends every chunk right after its callback */
    for (int stop = 0; stop < CAP_COUNT; stop++) {
        capture_free(&cap);
        memset(&cap, 0, sizeof(cap));
        cap.seqlen = seqlen;
        cap.ntok = n;
        CHECK_OK(model_embed(h, m, ids, n, &e), &e);
        CHECK_OK(layer_forward(h, m, l, nseq, seqlen, capture_store, &cap, (enum capture_point)stop,
                               &e), &e);
        CHECK_EQ_INT(cap.calls, 2 * (stop + 1));
        CHECK_EQ_INT(cap.filled[stop], n);
        if (stop + 1 < CAP_COUNT)
            CHECK_EQ_INT(cap.filled[stop + 1], 0);
    }
done:
    capture_free(&cap);
    model_layer_free(l);
    model_close(m);
    rm_rf(dir);
out:
    free(ids);
    free(h);
    free(full);
}

static int stop_at_mlp(enum capture_point p, const float *x, size_t tokens, size_t cols, size_t nseq,
                       void *payload)
{
    (void)x, (void)tokens, (void)cols, (void)nseq;
    ++*(int *)payload;
    return p == CAP_MLP_IN ? 1 : p == CAP_O_IN && *(int *)payload > 10 ? GQ_EIO : 0;
}

/* A callback's positive return cancels, a negative one is returned as is. */
static void test_model__callback_stops(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    int32_t ids[16];
    float h[16 * 64];
    int calls = 0;

    if (synth_write(dir, sizeof(dir), &MISTRAL) < 0) {
        CHECK(0);
        return;
    }
    fill_ids(ids, 16, MISTRAL.vocab, 9);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m)
        CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
    if (l) {
        CHECK_OK(model_embed(h, m, ids, 16, &e), &e);
        CHECK_EQ_INT(layer_forward(h, m, l, 2, 8, stop_at_mlp, &calls, CAP_NONE, &e), GQ_ECANCELED);
        CHECK_EQ_INT(calls, 3);
        CHECK(strstr(e.msg, "mlp input") != NULL);
        calls = 100;
        CHECK_EQ_INT(layer_forward(h, m, l, 2, 8, stop_at_mlp, &calls, CAP_NONE, &e), GQ_EIO);
        CHECK_EQ_INT(calls, 102);
        CHECK_EQ_INT(layer_forward(h, m, l, 0, 8, NULL, NULL, CAP_NONE, &e), GQ_EINVAL);
        CHECK_EQ_INT(layer_forward(h, m, l, 2, 0, NULL, NULL, CAP_NONE, &e), GQ_EINVAL);
        CHECK_EQ_INT(layer_forward(h, m, l, 1, (size_t)1 << 21, NULL, NULL, CAP_NONE, &e), GQ_EINVAL);
        CHECK(strstr(e.msg, "too large") != NULL);
    }
    model_layer_free(l);
    model_close(m);
    rm_rf(dir);
}

/* Output of layer 0 on ids (1 sequence), with Linear `which` replaced by w (or not, w NULL). */
static int layer_out(float *out, const model *m, const int32_t *ids, size_t n, enum linear_id which,
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

/* Every Linear: replaced by itself the output is bit-identical, by zeros it moves. */
static void test_model__set_linear(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    int32_t ids[12];
    size_t rows, cols, d = (size_t)QWEN3.hidden;
    float *a = malloc(12 * d * sizeof(float)), *b = malloc(12 * d * sizeof(float)), *w = NULL;

    if (!a || !b || synth_write(dir, sizeof(dir), &QWEN3) < 0) {
        CHECK(0);
        goto out;
    }
    fill_ids(ids, 12, QWEN3.vocab, 17);
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m)
        CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
    if (!l)
        goto done;
    CHECK_OK(layer_out(a, m, ids, 12, LIN_Q, NULL, &e), &e);
    for (int id = 0; id < LIN_COUNT; id++) {
        double diff_same = 0.0, diff_zero = 0.0;
        model_linear_shape(&rows, &cols, m, (enum linear_id)id);
        free(w);
        if (!(w = malloc(rows * cols * sizeof(float))))
            break;
        memcpy(w, model_layer_linear(l, (enum linear_id)id), rows * cols * sizeof(float));
        CHECK_OK(layer_out(b, m, ids, 12, (enum linear_id)id, w, &e), &e);
        for (size_t i = 0; i < 12 * d; i++)
            diff_same = fmax(diff_same, fabs((double)a[i] - b[i]));
        memset(w, 0, rows * cols * sizeof(float));
        CHECK_OK(layer_out(b, m, ids, 12, (enum linear_id)id, w, &e), &e);
        for (size_t i = 0; i < 12 * d; i++)
            diff_zero = fmax(diff_zero, fabs((double)a[i] - b[i]));
        CHECK_MSG(diff_same == 0.0, "%s by itself: %g", linear_name((enum linear_id)id), diff_same);
        CHECK_MSG(diff_zero > 1e-3, "%s by zeros: %g", linear_name((enum linear_id)id), diff_zero);
    }
    CHECK_EQ_INT(model_layer_set_linear(l, LIN_COUNT, a, &e), GQ_EINVAL);
done:
    model_layer_free(l);
    model_close(m);
    rm_rf(dir);
out:
    free(a);
    free(b);
    free(w);
}

/* Ids outside the vocabulary, bad layer indices, bad perplexity arguments. */
static void test_model__bad_arguments(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    model_layer *l = NULL;
    float h[4 * 64];
    int32_t ids[3 * 4];
    double nll = -1.0;
    size_t count = 7;

    CHECK_EQ_INT(model_open(&m, "/nonexistent-model-dir", &e), GQ_ENOTFOUND);
    CHECK(m == NULL);
    if (synth_write(dir, sizeof(dir), &MISTRAL) < 0) {
        CHECK(0);
        return;
    }
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (!m)
        goto done;
    fill_ids(ids, 12, MISTRAL.vocab, 1);
    ids[2] = MISTRAL.vocab;
    CHECK_EQ_INT(model_embed(h, m, ids, 4, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "token id 101") && strstr(e.msg, "outside the vocabulary"), "%s", e.msg);
    ids[2] = -1;
    CHECK_EQ_INT(model_embed(h, m, ids, 4, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "token id -1") != NULL);
    ids[2] = 0;
    ids[9] = INT32_MAX;
    CHECK_EQ_INT(model_nll(&nll, &count, m, ids, 3, 4, 2, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "block 2, position 1") != NULL, "%s", e.msg);
    CHECK(nll == -1.0 && count == 7);
    ids[9] = 5;
    CHECK_EQ_INT(model_nll(&nll, &count, m, ids, 3, 1, 2, &e), GQ_EINVAL);
    CHECK_EQ_INT(model_nll(&nll, &count, m, ids, 0, 4, 2, &e), GQ_EINVAL);
    CHECK_OK(model_nll(&nll, &count, m, ids, 3, 4, 0, &e), &e);
    CHECK_EQ_INT(count, 9);
    CHECK(nll > 0.0 && isfinite(nll));
    CHECK_EQ_INT(model_layer_load(&l, m, 2, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "layer 2") != NULL);
    CHECK_EQ_INT(model_layer_load(&l, m, -1, &e), GQ_EINVAL);
    CHECK(l == NULL);
done:
    model_close(m);
    rm_rf(dir);
}

/* A checkpoint that disagrees with its config fails at model_open, naming the tensor. */
static void checkpoint_error(const struct synth *s, const char *want1, const char *want2)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;

    if (synth_write(dir, sizeof(dir), s) < 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(model_open(&m, dir, &e), GQ_EINVAL);
    CHECK(m == NULL);
    CHECK_MSG(strstr(e.msg, want1) && strstr(e.msg, want2), "message: %s", e.msg);
    model_close(m);
    rm_rf(dir);
}

static void test_model__checkpoint_errors(void)
{
    struct synth s = LLAMA;

    s.omit = "model.layers.0.mlp.up_proj.weight";
    checkpoint_error(&s, "tensor model.layers.0.mlp.up_proj.weight is missing",
                     "expected shape [112, 64]");
    s.omit = "model.layers.0.self_attn.o_proj.bias";
    checkpoint_error(&s, "tensor model.layers.0.self_attn.o_proj.bias is missing", "[64]");
    s.omit = "lm_head.weight";
    checkpoint_error(&s, "tensor lm_head.weight is missing", "[89, 64]");
    s.omit = "model.embed_tokens.weight";
    checkpoint_error(&s, "model.embed_tokens.weight", "missing");
    s.omit = NULL;
    s.misshape = "model.layers.0.self_attn.k_proj.weight";
    checkpoint_error(&s, "tensor model.layers.0.self_attn.k_proj.weight has the wrong shape [65, 64]",
                     "expected [64, 64]");
    s.misshape = "model.norm.weight";
    checkpoint_error(&s, "tensor model.norm.weight has the wrong shape [65]", "expected [64]");
    s.misshape = NULL;
    s.as_int = "model.layers.0.input_layernorm.weight";
    checkpoint_error(&s, "model.layers.0.input_layernorm.weight has dtype I32",
                     "F32, F16 or BF16");
    s = QWEN3;
    s.omit = "model.layers.0.self_attn.k_norm.weight";
    checkpoint_error(&s, "self_attn.k_norm.weight is missing", "[24]");
}

/* Every allocation of open, load, forward, logits and perplexity failing in turn. */
static int oom_run(const char *dir, const int32_t *ids, gq_err *e)
{
    model *m = NULL;
    model_layer *l = NULL;
    float h[2 * 9 * 32], lg[2 * 67];
    double nll;
    size_t count;
    int rc;

    if ((rc = model_open(&m, dir, e)) < 0)
        return rc;
    if ((rc = model_layer_load(&l, m, 0, e)) < 0 || (rc = model_embed(h, m, ids, 18, e)) < 0 ||
        (rc = layer_forward(h, m, l, 2, 9, NULL, NULL, CAP_NONE, e)) < 0 ||
        (rc = model_logits(lg, m, h, 2, e)) < 0 ||
        (rc = model_nll(&nll, &count, m, ids, 2, 9, 1, e)) < 0)
        goto done;
done:
    model_layer_free(l);
    model_close(m);
    return rc;
}

static void test_model__out_of_memory(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    int32_t ids[18];
    size_t before;
    int rc = -1;
    long n;

    if (synth_write(dir, sizeof(dir), &QWEN2) < 0) {
        CHECK(0);
        return;
    }
    fill_ids(ids, 18, QWEN2.vocab, 2);
    before = gq_mem_current();
    for (n = 0; n < 1000 && rc != 0; n++) {
        gq_alloc_fail_after(n);
        rc = oom_run(dir, ids, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "after %ld allocations: %d %s", n, rc, e.msg);
        CHECK_EQ_INT(gq_mem_current(), before);
    }
    CHECK_EQ_INT(rc, 0);
    printf("  %ld allocations, each failing in turn: GQ_ENOMEM, nothing leaked\n", n - 1);
    rm_rf(dir);
}

/* ---- kernels ---- */

/* fwd_exp against libm in double, over the whole range; special values; logsumexp. */
static void test_model__exp_kernel(void)
{
    const size_t n = 400001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), z[300];
    const float special[6] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f};
    float ys[6];
    double worst = 0.0, lse, want = 0.0, mx = -INFINITY;

    if (!x || !y) {
        CHECK(0);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(-110.0 + 200.0 * (double)i / (double)(n - 1));
    fwd_exp(y, x, n);
    for (size_t i = 0; i < n; i++) {
        double ex = exp((double)x[i]);
        float c = (float)ex;
        if (isinf(c)) {
            CHECK_MSG(isinf(y[i]) && y[i] > 0, "exp(%g) = %g, want inf", x[i], y[i]);
        } else if (c < 1.17549435e-38f) {
            CHECK_MSG(fabs((double)y[i] - ex) <= 1.5e-45, "exp(%g) = %g, want %g", x[i], y[i], ex);
        } else {
            double ulp = (double)nextafterf(c, INFINITY) - (double)c;
            worst = fmax(worst, fabs((double)y[i] - ex) / ulp);
        }
    }
    printf("  fwd_exp: worst error %.3f ulp over [-110, 90]\n", worst);
    CHECK(worst <= 2.0);
    fwd_exp(ys, special, 6);
    CHECK(isnan(ys[0]));
    CHECK(isinf(ys[1]) && ys[1] > 0);
    CHECK(ys[2] == 0.0f && ys[4] == 0.0f);
    CHECK(isinf(ys[3]));
    CHECK(ys[5] == 1.0f);
    /* logsumexp: 300 values (blocks of 256 + a tail), against double */
    for (size_t i = 0; i < 300; i++) {
        z[i] = (float)(20.0 * sin((double)i * 0.37) - (double)i * 0.01);
        mx = fmax(mx, z[i]);
    }
    for (size_t i = 0; i < 300; i++)
        want += exp((double)z[i] - mx);
    want = log(want) + mx;
    lse = fwd_logsumexp(z, 300);
    CHECK_NEAR(lse, want, 1e-5);
    z[7] = NAN;
    CHECK(isnan(fwd_logsumexp(z, 300)));
done:
    free(x);
    free(y);
}

/* ---- the CLI ---- */

/* Run cmd, its first stdout line into out; the exit status, or -1. */
static int run_cli(char *out, size_t cap, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    int status;
    out[0] = '\0';
    if (!p)
        return -1;
    if (!fgets(out, (int)cap, p))
        out[0] = '\0';
    while (fgetc(p) != EOF)
        ;
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_model__cli_eval(void)
{
    const char *bin = getenv("GPTQ_BIN");
    char cmd[1400], out[512];
    const char *ids_path = "/tmp/gptq-test-model-cli.i32", *odd_path = "/tmp/gptq-test-model-odd.i32";
    double ppl = 0.0, ppl2 = 0.0, want_ppl;
    unsigned long tokens = 0;
    int32_t ids[40];
    double nll = 0.0;
    size_t count = 0;
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    FILE *f;

    if (!bin || !*bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    /* 2 blocks of 20 ids inside tiny-mistral's vocabulary (384) */
    for (int i = 0; i < 40; i++)
        ids[i] = (i * 37 + 11) % 384;
    f = fopen(ids_path, "wb");
    CHECK(f && fwrite(ids, sizeof(ids), 1, f) == 1);
    if (f)
        fclose(f);
    f = fopen(odd_path, "wb");
    CHECK(f && fwrite(ids, sizeof(int32_t), 39, f) == 39);
    if (f)
        fclose(f);

    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --blocks %s --seqlen 20 --json",
             bin, ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 0);
    CHECK_MSG(sscanf(out, "{\"ppl\": %lf, \"tokens\": %lu}", &ppl, &tokens) == 2, "output: %s", out);
    CHECK_EQ_INT(tokens, 38);
    CHECK_OK(model_open(&m, "tests/fixtures/tiny-mistral", &e), &e);
    if (m)
        CHECK_OK(model_nll(&nll, &count, m, ids, 2, 20, 8, &e), &e);
    model_close(m);
    want_ppl = exp(nll / (double)(count ? count : 1));
    CHECK_NEAR(ppl, want_ppl, 1e-5 * want_ppl);
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --seqlen 20 --batch 1 --blocks %s",
             bin, ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 0);
    CHECK_MSG(sscanf(out, "perplexity %lf over %lu tokens", &ppl2, &tokens) == 2, "output: %s", out);
    CHECK_EQ_INT(tokens, 38);
    CHECK_NEAR(ppl2, want_ppl, 1e-4 * want_ppl);

    /* runtime errors: exit 1, "gptq: error: ..." on stderr */
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --seqlen 20 --blocks %s 2>&1",
             bin, odd_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(out, "gptq: error:") && strstr(out, "multiple of --seqlen 20"), "%s", out);
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --seqlen 2 --blocks /nonexistent "
             "2>&1", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(out, "gptq: error:") && strstr(out, "/nonexistent"), "%s", out);
    snprintf(cmd, sizeof(cmd), "%s eval /nonexistent-model --seqlen 20 --blocks %s 2>&1", bin,
             ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 1);
    /* usage errors: exit 2 */
    snprintf(cmd, sizeof(cmd), "%s eval --bogus 2>&1", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    CHECK_MSG(strstr(out, "unknown option '--bogus'") != NULL, "%s", out);
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --blocks %s 2>/dev/null", bin,
             ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --blocks %s --seqlen 2x "
             "2>/dev/null", bin, ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s eval tests/fixtures/tiny-mistral --blocks %s --seqlen 20 "
             "--batch 0 2>/dev/null", bin, ids_path);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s frobnicate 2>/dev/null", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s 2>/dev/null", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 2);
    /* help: exit 0 on stdout */
    snprintf(cmd, sizeof(cmd), "%s --help", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 0);
    CHECK(strncmp(out, "usage: gptq", 11) == 0);
    snprintf(cmd, sizeof(cmd), "%s eval --help", bin);
    CHECK_EQ_INT(run_cli(out, sizeof(out), cmd), 0);
    CHECK(strncmp(out, "usage: gptq eval", 16) == 0);
    unlink(ids_path);
    unlink(odd_path);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    t_prog = "test_model";
    RUN(test_model__logits_match_transformers);
    RUN(test_model__perplexity_matches_transformers);
    RUN(test_model__capture_chain_gcide);
    RUN(test_model__synthetic_mistral_window);
    RUN(test_model__synthetic_qwen3);
    RUN(test_model__synthetic_llama);
    RUN(test_model__synthetic_qwen2);
    RUN(test_model__capture_chunks_and_stop);
    RUN(test_model__callback_stops);
    RUN(test_model__set_linear);
    RUN(test_model__bad_arguments);
    RUN(test_model__checkpoint_errors);
    RUN(test_model__out_of_memory);
    RUN(test_model__exp_kernel);
    RUN(test_model__cli_eval);
    return test_report();
}
