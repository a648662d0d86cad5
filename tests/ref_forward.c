/*
 * ref_forward.c - the naive double-precision forward pass (see
 * ref_forward.h), the oracle for core/model.c.
 *
 * DESIGN
 *
 * Each function is one module of transformers' modeling_llama.py (and its
 * Mistral/Qwen2/Qwen3 copies), in the same order and with the same
 * arithmetic, so that a reader can hold the two side by side:
 *
 *   rmsnorm        LlamaRMSNorm: w * (x * rsqrt(mean(x^2) + eps))
 *   linear         nn.Linear: y = W x + b, W (out, in) row-major
 *   ref_fwd_inv_freq + rope
 *                  modeling_rope_utils' inv_freq (float32, see below),
 *                  then LlamaRotaryEmbedding (freqs = pos * inv_freq,
 *                  emb = cat(freqs, freqs)) and apply_rotary_pos_emb
 *                  (x * cos + rotate_half(x) * sin)
 *   attention      LlamaAttention + eager_attention_forward: q/k/v
 *                  projections, Qwen3's q_norm/k_norm over head_dim
 *                  before rope, repeat_kv (query head h reads kv head
 *                  h / (heads / kv_heads)), scores * head_dim^-0.5, the
 *                  mask of masking_utils (causal: j <= i; sliding window
 *                  overlay: j > i - window), softmax, o_proj
 *   mlp            LlamaMLP: down(silu(gate(x)) * up(x))
 *   decoder layer  x += attn(norm1(x)); x += mlp(norm2(x))
 *   head           final norm, lm_head (embed_tokens when tied)
 *
 * The inverse frequencies are computed in float32 with torch's operation
 * order, because the model uses those float32 values; positions times
 * frequencies, cos/sin and everything else are double.  torch computes
 * the angles, cos/sin and attention in float32, which is the float32
 * rounding a fast implementation is allowed and the oracle is not.
 *
 * Also here, for the tests that use the oracle: reading a reference
 * directory (meta.json + logits.f32) and comparing logits (max |diff|,
 * range, argmax).
 *
 * Weights are read one decoder layer at a time (st_tensor_to_f32, widened
 * to double) and freed after the layer ran over every token.  Memory comes
 * from plain malloc, not gq_malloc, so the allocation-failure tests of
 * core/ never see the oracle's allocations.
 */
#include "ref_forward.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* The Linears of a decoder layer, in the order transformers declares them. */
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_COUNT };

static const char *const linear_path[W_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

/* One decoder layer's weights in double; NULL for absent biases / norms. */
struct layer {
    double *input_norm;      /* (hidden) */
    double *post_norm;       /* (hidden) */
    double *q_norm, *k_norm; /* (head_dim), Qwen3 only */
    double *w[W_COUNT];      /* (out, in) */
    double *b[W_COUNT];      /* (out) or NULL */
};

/* ---- loading ---- */

static void shape_text(char *buf, size_t cap, const struct st_tensor *t)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/*
 * *out = tensor `name` as doubles, checked to be (rows, cols), or (rows)
 * when cols is 0.  Caller frees *out.
 */
static int load(double **out, const st_model *st, const char *name, int64_t rows, int64_t cols,
                gq_err *e)
{
    const struct st_tensor *t = st_model_find(st, name);
    float *tmp = NULL;
    double *d = NULL;
    char got[128];
    int rc = 0;

    *out = NULL;
    if (!t)
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s is missing", name);
    if (t->ndim != (cols ? 2 : 1) || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        shape_text(got, sizeof(got), t);
        if (cols)
            return GQ_FAIL(e, GQ_EINVAL, "tensor %s has shape %s, expected [%" PRId64 ", %" PRId64
                           "]", name, got, rows, cols);
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has shape %s, expected [%" PRId64 "]", name, got,
                       rows);
    }
    tmp = malloc(t->numel * sizeof(float) + 1);
    d = malloc(t->numel * sizeof(double) + 1);
    if (!tmp || !d) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory loading %s", name);
        goto done;
    }
    if ((rc = st_tensor_to_f32(tmp, t, e)) < 0)
        goto done;
    for (size_t i = 0; i < t->numel; i++)
        d[i] = tmp[i];
    *out = d;
    d = NULL;
done:
    free(tmp);
    free(d);
    return rc;
}

static void layer_free(struct layer *l)
{
    free(l->input_norm);
    free(l->post_norm);
    free(l->q_norm);
    free(l->k_norm);
    for (int i = 0; i < W_COUNT; i++) {
        free(l->w[i]);
        free(l->b[i]);
    }
    memset(l, 0, sizeof(*l));
}

static int layer_load(struct layer *l, const struct model_config *c, const st_model *st, int i,
                      gq_err *e)
{
    const int64_t hidden = c->hidden_size, inter = c->intermediate_size;
    const int64_t qdim = (int64_t)c->num_heads * c->head_dim;
    const int64_t kvdim = (int64_t)c->num_kv_heads * c->head_dim;
    /* (out, in) of each Linear, and whether the config gives it a bias */
    const int64_t rows[W_COUNT] = { qdim, kvdim, kvdim, hidden, inter, inter, hidden };
    const int64_t cols[W_COUNT] = { hidden, hidden, hidden, qdim, hidden, hidden, inter };
    const int bias[W_COUNT] = { c->attention_bias, c->attention_bias, c->attention_bias, c->o_bias,
                                c->mlp_bias, c->mlp_bias, c->mlp_bias };
    char name[256];
    int rc;

    memset(l, 0, sizeof(*l));
    snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", i);
    if ((rc = load(&l->input_norm, st, name, hidden, 0, e)) < 0)
        goto fail;
    snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", i);
    if ((rc = load(&l->post_norm, st, name, hidden, 0, e)) < 0)
        goto fail;
    if (c->arch->qk_norm) {
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", i);
        if ((rc = load(&l->q_norm, st, name, c->head_dim, 0, e)) < 0)
            goto fail;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", i);
        if ((rc = load(&l->k_norm, st, name, c->head_dim, 0, e)) < 0)
            goto fail;
    }
    for (int k = 0; k < W_COUNT; k++) {
        snprintf(name, sizeof(name), "model.layers.%d.%s.weight", i, linear_path[k]);
        if ((rc = load(&l->w[k], st, name, rows[k], cols[k], e)) < 0)
            goto fail;
        if (!bias[k])
            continue;
        snprintf(name, sizeof(name), "model.layers.%d.%s.bias", i, linear_path[k]);
        if ((rc = load(&l->b[k], st, name, rows[k], 0, e)) < 0)
            goto fail;
    }
    return 0;
fail:
    layer_free(l);
    return rc;
}

/* ---- the modules ---- */

/* LlamaRMSNorm over n values: y = w * (x * rsqrt(mean(x^2) + eps)); y may be x. */
static void rmsnorm(double *y, const double *x, const double *w, size_t n, double eps)
{
    double ss = 0.0, r;
    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    r = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++)
        y[i] = w[i] * (x[i] * r);
}

/* nn.Linear: y (rows) = W (rows, cols) x (cols) + b (rows, or NULL). */
static void linear(double *y, const double *W, const double *b, const double *x, size_t rows,
                   size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        double acc = 0.0;
        for (size_t k = 0; k < cols; k++)
            acc += W[r * cols + k] * x[k];
        y[r] = acc + (b ? b[r] : 0.0);
    }
}

static double silu(double x)
{
    return x / (1.0 + exp(-x));
}

/*
 * modeling_rope_utils, in float32 step by step.  A Python number meeting a
 * float32 tensor is rounded to float32; `a / t` is t.reciprocal() * a
 * (torch Tensor.__rtruediv__); `1 - t` is rsub.
 */
void ref_fwd_inv_freq(float *inv_freq, const struct model_config *c)
{
    const size_t half = (size_t)c->head_dim / 2;
    const float base = (float)c->rope_theta;
    const float dim = (float)c->head_dim;

    /* _compute_default_rope_parameters:
     * 1.0 / (base ** (arange(0, dim, 2).float() / dim)) */
    for (size_t i = 0; i < half; i++) {
        float expo = (float)(2 * i) / dim;
        float p = (float)pow((double)base, (double)expo);
        inv_freq[i] = 1.0f / p;
    }
    if (c->rope_type == ROPE_LINEAR) {
        /* _compute_linear_scaling_rope_parameters: inv_freq /= factor */
        const float factor = (float)c->rope_factor;
        for (size_t i = 0; i < half; i++)
            inv_freq[i] = inv_freq[i] / factor;
    } else if (c->rope_type == ROPE_LLAMA3) {
        /* _compute_llama3_parameters */
        const float factor = (float)c->rope_factor;
        const float low_freq_factor = (float)c->rope_low_freq_factor;
        const double old_context_len = c->rope_original_max_position;
        /* Python floats, compared with a float32 tensor */
        const float low_freq_wavelen = (float)(old_context_len / c->rope_low_freq_factor);
        const float high_freq_wavelen = (float)(old_context_len / c->rope_high_freq_factor);
        const float band = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
        const float two_pi = (float)(2.0 * M_PI);

        for (size_t i = 0; i < half; i++) {
            float f = inv_freq[i];
            /* wavelen = 2 * math.pi / inv_freq */
            float wavelen = (1.0f / f) * two_pi;
            /* torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq) */
            float llama = wavelen > low_freq_wavelen ? f / factor : f;
            /* (old_context_len / wavelen - low_freq_factor) / (high - low) */
            float smooth = ((1.0f / wavelen) * (float)old_context_len - low_freq_factor) / band;
            /* (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama */
            float a = (1.0f - smooth) * llama;
            float smoothed = a / factor + smooth * llama;
            int medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
            inv_freq[i] = medium ? smoothed : llama;
        }
    }
}

/* apply_rotary_pos_emb on one head x (2 * half) at position pos. */
static void rope(double *x, const float *inv_freq, size_t half, size_t pos)
{
    for (size_t i = 0; i < half; i++) {
        /* freqs = inv_freq @ position_ids; emb = cat(freqs, freqs) */
        double angle = (double)pos * (double)inv_freq[i];
        double cs = cos(angle), sn = sin(angle);
        double x1 = x[i], x2 = x[i + half];
        /* x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) */
        x[i] = x1 * cs - x2 * sn;
        x[i + half] = x2 * cs + x1 * sn;
    }
}

/* Scratch for one sequence through one layer. */
struct scratch {
    double *h;      /* (seqlen, hidden) normed input */
    double *q;      /* (seqlen, heads * head_dim) */
    double *k, *v;  /* (seqlen, kv_heads * head_dim) */
    double *att;    /* (seqlen, heads * head_dim) attention output before o_proj */
    double *p;      /* (seqlen) attention weights of one query */
    double *t1, *t2, *t3; /* (max(hidden, intermediate)) */
};

/* x (seqlen, hidden) += self_attn(input_layernorm(x)), one sequence. */
static void attention(double *x, const struct model_config *c, const struct layer *l,
                      const float *inv_freq, size_t seqlen, const struct scratch *s)
{
    const size_t H = (size_t)c->hidden_size, hd = (size_t)c->head_dim;
    const size_t nh = (size_t)c->num_heads, nkv = (size_t)c->num_kv_heads;
    const size_t qdim = nh * hd, kvdim = nkv * hd, group = nh / nkv;
    const size_t window = c->sliding_window > 0 ? (size_t)c->sliding_window : 0;
    const double eps = c->rms_norm_eps;
    const double scaling = pow((double)hd, -0.5);

    for (size_t t = 0; t < seqlen; t++) {
        double *h = s->h + t * H, *q = s->q + t * qdim, *k = s->k + t * kvdim;
        rmsnorm(h, x + t * H, l->input_norm, H, eps);
        linear(q, l->w[W_Q], l->b[W_Q], h, qdim, H);
        linear(k, l->w[W_K], l->b[W_K], h, kvdim, H);
        linear(s->v + t * kvdim, l->w[W_V], l->b[W_V], h, kvdim, H);
        /* Qwen3: q_norm / k_norm over head_dim, before rope */
        if (l->q_norm) {
            for (size_t a = 0; a < nh; a++)
                rmsnorm(q + a * hd, q + a * hd, l->q_norm, hd, eps);
            for (size_t a = 0; a < nkv; a++)
                rmsnorm(k + a * hd, k + a * hd, l->k_norm, hd, eps);
        }
        for (size_t a = 0; a < nh; a++)
            rope(q + a * hd, inv_freq, hd / 2, t);
        for (size_t a = 0; a < nkv; a++)
            rope(k + a * hd, inv_freq, hd / 2, t);
    }

    for (size_t i = 0; i < seqlen; i++) {
        /* keys j with j <= i, and j > i - window under a sliding window */
        size_t lo = window && i + 1 > window ? i + 1 - window : 0;
        for (size_t a = 0; a < nh; a++) {
            const double *q = s->q + i * qdim + a * hd;
            size_t g = a / group; /* repeat_kv */
            double mx = -INFINITY, sum = 0.0;
            for (size_t j = lo; j <= i; j++) {
                const double *k = s->k + j * kvdim + g * hd;
                double dot = 0.0;
                for (size_t d = 0; d < hd; d++)
                    dot += q[d] * k[d];
                s->p[j] = dot * scaling;
                if (s->p[j] > mx)
                    mx = s->p[j];
            }
            for (size_t j = lo; j <= i; j++) {
                s->p[j] = exp(s->p[j] - mx);
                sum += s->p[j];
            }
            for (size_t d = 0; d < hd; d++) {
                double acc = 0.0;
                for (size_t j = lo; j <= i; j++)
                    acc += s->p[j] / sum * s->v[j * kvdim + g * hd + d];
                s->att[i * qdim + a * hd + d] = acc;
            }
        }
    }

    for (size_t t = 0; t < seqlen; t++) {
        linear(s->t1, l->w[W_O], l->b[W_O], s->att + t * qdim, H, qdim);
        for (size_t d = 0; d < H; d++)
            x[t * H + d] += s->t1[d];
    }
}

/* x (hidden) += mlp(post_attention_layernorm(x)), one token. */
static void mlp(double *x, const struct model_config *c, const struct layer *l,
                const struct scratch *s)
{
    const size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;

    rmsnorm(s->t1, x, l->post_norm, H, c->rms_norm_eps);
    linear(s->t2, l->w[W_GATE], l->b[W_GATE], s->t1, I, H);
    linear(s->t3, l->w[W_UP], l->b[W_UP], s->t1, I, H);
    for (size_t d = 0; d < I; d++)
        s->t2[d] = silu(s->t2[d]) * s->t3[d];
    linear(s->t1, l->w[W_DOWN], l->b[W_DOWN], s->t2, H, I);
    for (size_t d = 0; d < H; d++)
        x[d] += s->t1[d];
}

/* ---- the model ---- */

int ref_fwd_run(double *hidden, double *logits, const struct model_config *c, const st_model *st,
                const float *inv_freq_in, const int32_t *ids, size_t nseq, size_t seqlen, int layers,
                gq_err *e)
{
    const size_t H = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
    const size_t I = (size_t)c->intermediate_size;
    const size_t qdim = (size_t)c->num_heads * (size_t)c->head_dim;
    const size_t kvdim = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    const size_t T = nseq * seqlen, wide = H > I ? H : I;
    const int nl = layers < 0 || layers > c->num_layers ? c->num_layers : layers;
    double *x = NULL, *emb = NULL, *norm = NULL, *head = NULL;
    float *inv_freq = NULL;
    struct scratch s = { 0 };
    struct layer l = { 0 };
    int rc = 0;

    if (nseq == 0 || seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "reference forward needs tokens (nseq %zu, seqlen %zu)", nseq,
                       seqlen);
    if (logits && nl < c->num_layers)
        return GQ_FAIL(e, GQ_EINVAL, "logits need all %d layers (asked for %d)", c->num_layers,
                       layers);
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || (size_t)ids[t] >= V)
            return GQ_FAIL(e, GQ_EINVAL, "token id %" PRId32 " at %zu is outside the vocabulary "
                           "(size %zu)", ids[t], t, V);

    x = malloc(T * H * sizeof(double));
    inv_freq = malloc((size_t)c->head_dim / 2 * sizeof(float) + 1);
    s.h = malloc(seqlen * H * sizeof(double));
    s.q = malloc(seqlen * qdim * sizeof(double));
    s.k = malloc(seqlen * kvdim * sizeof(double));
    s.v = malloc(seqlen * kvdim * sizeof(double));
    s.att = malloc(seqlen * qdim * sizeof(double));
    s.p = malloc(seqlen * sizeof(double));
    s.t1 = malloc(wide * sizeof(double));
    s.t2 = malloc(wide * sizeof(double));
    s.t3 = malloc(wide * sizeof(double));
    if (!x || !inv_freq || !s.h || !s.q || !s.k || !s.v || !s.att || !s.p || !s.t1 || !s.t2 ||
        !s.t3) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory in the reference forward");
        goto done;
    }

    /* embed_tokens */
    if ((rc = load(&emb, st, "model.embed_tokens.weight", (int64_t)V, (int64_t)H, e)) < 0)
        goto done;
    for (size_t t = 0; t < T; t++)
        memcpy(x + t * H, emb + (size_t)ids[t] * H, H * sizeof(double));

    if (inv_freq_in)
        memcpy(inv_freq, inv_freq_in, (size_t)c->head_dim / 2 * sizeof(float));
    else
        ref_fwd_inv_freq(inv_freq, c);

    for (int i = 0; i < nl; i++) {
        if ((rc = layer_load(&l, c, st, i, e)) < 0)
            goto done;
        for (size_t q = 0; q < nseq; q++) {
            double *xs = x + q * seqlen * H;
            attention(xs, c, &l, inv_freq, seqlen, &s);
            for (size_t t = 0; t < seqlen; t++)
                mlp(xs + t * H, c, &l, &s);
        }
        layer_free(&l);
    }
    if (hidden)
        memcpy(hidden, x, T * H * sizeof(double));

    if (logits) {
        if ((rc = load(&norm, st, "model.norm.weight", (int64_t)H, 0, e)) < 0)
            goto done;
        if (c->tie_word_embeddings) {
            head = emb;
            emb = NULL;
        } else if ((rc = load(&head, st, "lm_head.weight", (int64_t)V, (int64_t)H, e)) < 0) {
            goto done;
        }
        for (size_t t = 0; t < T; t++) {
            rmsnorm(s.t1, x + t * H, norm, H, c->rms_norm_eps);
            linear(logits + t * V, head, NULL, s.t1, V, H);
        }
    }
done:
    layer_free(&l);
    free(x);
    free(emb);
    free(norm);
    free(head);
    free(inv_freq);
    free(s.h);
    free(s.q);
    free(s.k);
    free(s.v);
    free(s.att);
    free(s.p);
    free(s.t1);
    free(s.t2);
    free(s.t3);
    return rc;
}

int ref_fwd_logits(double *logits, const char *dir, const int32_t *ids, size_t nseq, size_t seqlen,
                   gq_err *e)
{
    struct model_config c;
    st_model *st = NULL;
    char path[4096];
    int rc;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((rc = model_config_load(&c, path, e)) < 0)
        return rc;
    if ((rc = st_model_open(&st, dir, e)) < 0)
        return rc;
    if ((rc = ref_fwd_run(NULL, logits, &c, st, NULL, ids, nseq, seqlen, -1, e)) < 0)
        gq_err_prefix(e, "%s", dir);
    st_model_close(st);
    return rc;
}

/* ---- reference files ---- */

/* Whole file into *out (NUL-terminated), *len bytes. */
static int read_all(char **out, size_t *len, const char *path, gq_err *e)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long n;
    int rc = 0;

    *out = NULL;
    if (!fp)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "cannot open %s: %s", path,
                       strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot size %s", path);
        goto done;
    }
    if (!(buf = malloc((size_t)n + 1))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s", path);
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    buf = NULL;
done:
    free(buf);
    fclose(fp);
    return rc;
}

int ref_fwd_reference_load(struct ref_fwd_reference *out, const char *refdir, gq_err *e)
{
    struct ref_fwd_reference r = { 0 };
    gq_json *root = NULL;
    const gq_json *ids, *shape, *file, *row, *v;
    char path[4200], *text = NULL, *bytes = NULL;
    long long dims[3], id;
    size_t len = 0, i = 0, n;
    int rc;

    snprintf(path, sizeof(path), "%s/meta.json", refdir);
    if ((rc = read_all(&text, &len, path, e)) < 0)
        goto done;
    if ((rc = gq_json_parse(&root, text, len, e)) < 0) {
        gq_err_prefix(e, "%s", path);
        goto done;
    }
    shape = gq_json_get(root, "logits_shape");
    if (gq_json_size(shape) != 3) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: logits_shape must be [nseq, seqlen, vocab]", path);
        goto done;
    }
    for (v = gq_json_first(shape); v; v = gq_json_next(v), i++)
        if ((rc = gq_json_int(&dims[i], v, 1, 1 << 24, "logits_shape", e)) < 0)
            goto done;
    r.nseq = (size_t)dims[0];
    r.seqlen = (size_t)dims[1];
    r.vocab = (size_t)dims[2];

    ids = gq_json_get(root, "input_ids");
    if (gq_json_size(ids) != r.nseq) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: input_ids has %zu sequences, logits_shape says %zu", path,
                     gq_json_size(ids), r.nseq);
        goto done;
    }
    if (!(r.ids = malloc(r.nseq * r.seqlen * sizeof(int32_t)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    i = 0;
    for (row = gq_json_first(ids); row; row = gq_json_next(row)) {
        if (gq_json_size(row) != r.seqlen) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: an input_ids row has %zu ids, logits_shape says %zu",
                         path, gq_json_size(row), r.seqlen);
            goto done;
        }
        for (v = gq_json_first(row); v; v = gq_json_next(v)) {
            if ((rc = gq_json_int(&id, v, 0, INT32_MAX, "input_ids", e)) < 0)
                goto done;
            r.ids[i++] = (int32_t)id;
        }
    }

    file = gq_json_get(root, "logits_file");
    snprintf(path, sizeof(path), "%s/%s", refdir, gq_json_string(file) ? gq_json_string(file)
                                                                       : "logits.f32");
    if ((rc = read_all(&bytes, &len, path, e)) < 0)
        goto done;
    n = r.nseq * r.seqlen * r.vocab;
    if (len != n * 4) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s has %zu bytes, expected %zu", path, len, n * 4);
        goto done;
    }
    if (!(r.logits = malloc(n * sizeof(float)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    for (i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)bytes + 4 * i;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        memcpy(&r.logits[i], &u, 4);
    }
    *out = r;
    memset(&r, 0, sizeof(r));
done:
    ref_fwd_reference_free(&r);
    gq_json_free(root);
    free(text);
    free(bytes);
    return rc;
}

void ref_fwd_reference_free(struct ref_fwd_reference *r)
{
    if (!r)
        return;
    free(r->ids);
    free(r->logits);
    memset(r, 0, sizeof(*r));
}

static size_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

void ref_fwd_compare(struct ref_fwd_diff *out, const float *got, const float *want, size_t rows,
                     size_t vocab)
{
    double lo = INFINITY, hi = -INFINITY;

    memset(out, 0, sizeof(*out));
    out->first_mismatch = rows;
    for (size_t i = 0; i < rows * vocab; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!isfinite(got[i]))
            out->nonfinite++;
        if (d > out->max_abs || isnan(d)) {
            out->max_abs = isnan(d) ? INFINITY : d;
            out->worst = i;
        }
        lo = fmin(lo, want[i]);
        hi = fmax(hi, want[i]);
    }
    out->range = hi - lo;
    for (size_t r = 0; r < rows; r++)
        if (argmax(got + r * vocab, vocab) != argmax(want + r * vocab, vocab)) {
            if (!out->argmax_mismatch)
                out->first_mismatch = r;
            out->argmax_mismatch++;
        }
}
