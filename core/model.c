/*
 * model.c - a decoder-only Hugging Face model and its float32 forward pass.
 *
 * DESIGN
 *
 * model_open() reads config.json and maps the safetensors; nothing is
 * converted until used.  A decoder layer's weights are converted to
 * float32 by model_layer_load() (and the mapped pages released), so a
 * caller that walks the layers holds one layer at a time.  The forward
 * pass follows transformers' modeling_llama.py and its Mistral / Qwen2 /
 * Qwen3 variants step by step, in float32:
 *
 *   x += o_proj(attn(rope(qk_norm(q_proj(n1))), rope(qk_norm(k_proj(n1))),
 *               v_proj(n1)))                     n1 = rmsnorm(x)
 *   x += down_proj(silu(gate_proj(n2)) * up_proj(n2))    n2 = rmsnorm(x)
 *
 * Every Linear is one GEMM over all tokens of a chunk of sequences.
 * Attention runs one (sequence, head) at a time with two GEMMs (scores and
 * the weighted sum), so its scratch is seqlen^2 floats.  Sequences are
 * processed in chunks of about CHUNK_TOKENS tokens so that activations stay
 * bounded whatever the batch; capture callbacks are therefore called once
 * per chunk.
 *
 * Rotary frequencies are computed in float32 in transformers' order of
 * operations (modeling_rope_utils: default, linear, llama3).
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"
#include "mem.h"

#define CHUNK_TOKENS 4096

struct model {
    struct model_config cfg;
    st_model *st;
    const struct st_tensor *embed;
    float *inv_freq;    /* head_dim / 2 */
    float *final_norm;  /* hidden */
    float *lm_head;     /* (vocab, hidden), converted on first use */
};

struct model_layer {
    int index;
    size_t rows[LIN_COUNT], cols[LIN_COUNT];
    float *w[LIN_COUNT];
    float *b[LIN_COUNT];
    float *in_norm, *post_norm, *q_norm, *k_norm;
};

static const char *const lin_names[LIN_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

const char *linear_name(enum linear_id id)
{
    return (unsigned)id < LIN_COUNT ? lin_names[id] : "unknown";
}

void linear_module_name(char *buf, size_t cap, int layer, enum linear_id id)
{
    snprintf(buf, cap, "model.layers.%d.%s.%s", layer, id <= LIN_O ? "self_attn" : "mlp",
             linear_name(id));
}

enum capture_point linear_capture_point(enum linear_id id)
{
    switch (id) {
    case LIN_Q: case LIN_K: case LIN_V: return CAP_ATTN_IN;
    case LIN_O: return CAP_O_IN;
    case LIN_GATE: case LIN_UP: return CAP_MLP_IN;
    case LIN_DOWN: return CAP_DOWN_IN;
    default: return CAP_NONE;
    }
}

void model_linear_shape(size_t *rows, size_t *cols, const model *m, enum linear_id id)
{
    const struct model_config *c = &m->cfg;
    size_t hidden = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
    size_t q = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    switch (id) {
    case LIN_Q: *rows = q; *cols = hidden; break;
    case LIN_K: case LIN_V: *rows = kv; *cols = hidden; break;
    case LIN_O: *rows = hidden; *cols = q; break;
    case LIN_GATE: case LIN_UP: *rows = inter; *cols = hidden; break;
    default: *rows = hidden; *cols = inter; break;
    }
}

static int linear_has_bias(const struct model_config *c, enum linear_id id)
{
    if (id <= LIN_V)
        return c->attention_bias;
    if (id == LIN_O)
        return c->o_bias;
    return c->mlp_bias;
}

/* Find name, check its shape is (d0[, d1]) and its dtype a float one, convert to float32. */
static int load_tensor(float **out, const model *m, const char *name, int64_t d0, int64_t d1,
                       gq_err *e)
{
    const struct st_tensor *t = st_model_find(m->st, name);
    float *buf;
    int ndim = d1 < 0 ? 1 : 2, rc;

    if (!t)
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s is missing from the checkpoint", name);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        if (ndim == 2)
            return GQ_FAIL(e, GQ_EINVAL, "tensor %s has the wrong shape (expected [%lld, %lld])",
                           name, (long long)d0, (long long)d1);
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has the wrong shape (expected [%lld])", name,
                       (long long)d0);
    }
    buf = gq_malloc_aligned(t->numel * sizeof(float));
    if (!buf)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory loading %s", name);
    if ((rc = st_tensor_to_f32(buf, t, e)) < 0) {
        gq_free(buf);
        return rc;
    }
    st_tensor_release(t);
    *out = buf;
    return 0;
}

/* inv_freq[head_dim/2] as transformers' modeling_rope_utils computes it, in float32. */
static void rope_inv_freq(float *inv, const struct model_config *c)
{
    size_t half = (size_t)c->head_dim / 2;
    float base = (float)c->rope_theta, dim = (float)c->head_dim;

    for (size_t i = 0; i < half; i++)
        inv[i] = 1.0f / powf(base, (float)(2 * i) / dim);
    if (c->rope_type == ROPE_LINEAR) {
        for (size_t i = 0; i < half; i++)
            inv[i] = inv[i] / (float)c->rope_factor;
    } else if (c->rope_type == ROPE_LLAMA3) {
        double old = (double)c->rope_original_max_position;
        float factor = (float)c->rope_factor, lf = (float)c->rope_low_freq_factor;
        float hf = (float)c->rope_high_freq_factor;
        float low_wavelen = (float)(old / c->rope_low_freq_factor);
        float high_wavelen = (float)(old / c->rope_high_freq_factor);
        for (size_t i = 0; i < half; i++) {
            float wavelen = (float)(2.0 * M_PI) / inv[i];
            float llama = wavelen > low_wavelen ? inv[i] / factor : inv[i];
            float smooth = ((float)old / wavelen - lf) / (hf - lf);
            float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv[i] = medium ? smoothed : llama;
        }
    }
}

int model_open(model **out, const char *dir, gq_err *e)
{
    model *m = NULL;
    char path[4096];
    int rc;

    m = gq_calloc(1, sizeof(*m));
    if (!m)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a model");
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if ((rc = model_config_load(&m->cfg, path, e)) < 0)
        goto done;
    if ((rc = st_model_open(&m->st, dir, e)) < 0)
        goto done;
    m->embed = st_model_find(m->st, "model.embed_tokens.weight");
    if (!m->embed) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: tensor model.embed_tokens.weight is missing", dir);
        goto done;
    }
    if (m->embed->ndim != 2 || m->embed->shape[0] != m->cfg.vocab_size ||
        m->embed->shape[1] != m->cfg.hidden_size ||
        (m->embed->dtype != ST_F16 && m->embed->dtype != ST_BF16 && m->embed->dtype != ST_F32)) {
        rc = GQ_FAIL(e, GQ_EINVAL,
                     "%s: tensor model.embed_tokens.weight must be a float [%d, %d] matrix", dir,
                     m->cfg.vocab_size, m->cfg.hidden_size);
        goto done;
    }
    m->inv_freq = gq_mallocn((size_t)m->cfg.head_dim / 2 + 1, sizeof(float));
    if (!m->inv_freq) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a model");
        goto done;
    }
    rope_inv_freq(m->inv_freq, &m->cfg);
    if ((rc = load_tensor(&m->final_norm, m, "model.norm.weight", m->cfg.hidden_size, -1, e)) < 0)
        goto done;
    *out = m;
    m = NULL;
    rc = 0;
done:
    model_close(m);
    return rc;
}

void model_close(model *m)
{
    if (!m)
        return;
    st_model_close(m->st);
    gq_free(m->inv_freq);
    gq_free(m->final_norm);
    gq_free(m->lm_head);
    gq_free(m);
}

const struct model_config *model_config_of(const model *m)
{
    return &m->cfg;
}

const st_model *model_tensors(const model *m)
{
    return m->st;
}

int model_embed(float *hidden, const model *m, const int32_t *ids, size_t n, gq_err *e)
{
    size_t h = (size_t)m->cfg.hidden_size, es = st_dtype_size(m->embed->dtype);
    const unsigned char *base = m->embed->data;
    uint16_t *row = NULL;

    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= m->cfg.vocab_size)
            return GQ_FAIL(e, GQ_EINVAL, "token id %d at position %zu is outside the vocabulary (%d)",
                           (int)ids[t], t, m->cfg.vocab_size);
    if (es == 2 && !(row = gq_mallocn(h, sizeof(uint16_t))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory embedding tokens");
    for (size_t t = 0; t < n; t++) {
        const unsigned char *src = base + (size_t)ids[t] * h * es;
        if (es == 4) {
            memcpy(hidden + t * h, src, h * sizeof(float));
        } else {
            memcpy(row, src, h * sizeof(uint16_t));   /* the mapping may be unaligned */
            if (m->embed->dtype == ST_F16)
                gq_f16_to_f32_n(hidden + t * h, row, h);
            else
                gq_bf16_to_f32_n(hidden + t * h, row, h);
        }
    }
    gq_free(row);
    return 0;
}

void model_layer_free(model_layer *l)
{
    if (!l)
        return;
    for (int i = 0; i < LIN_COUNT; i++) {
        gq_free(l->w[i]);
        gq_free(l->b[i]);
    }
    gq_free(l->in_norm);
    gq_free(l->post_norm);
    gq_free(l->q_norm);
    gq_free(l->k_norm);
    gq_free(l);
}

int model_layer_load(model_layer **out, const model *m, int idx, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    model_layer *l;
    char name[256], mod[200];
    int rc = 0;

    if (idx < 0 || idx >= c->num_layers)
        return GQ_FAIL(e, GQ_EINVAL, "layer %d does not exist (the model has %d)", idx,
                       c->num_layers);
    l = gq_calloc(1, sizeof(*l));
    if (!l)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory loading layer %d", idx);
    l->index = idx;
    for (int i = 0; i < LIN_COUNT && rc == 0; i++) {
        model_linear_shape(&l->rows[i], &l->cols[i], m, (enum linear_id)i);
        linear_module_name(mod, sizeof(mod), idx, (enum linear_id)i);
        snprintf(name, sizeof(name), "%s.weight", mod);
        rc = load_tensor(&l->w[i], m, name, (int64_t)l->rows[i], (int64_t)l->cols[i], e);
        if (rc == 0 && linear_has_bias(c, (enum linear_id)i)) {
            snprintf(name, sizeof(name), "%s.bias", mod);
            rc = load_tensor(&l->b[i], m, name, (int64_t)l->rows[i], -1, e);
        }
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", idx);
        rc = load_tensor(&l->in_norm, m, name, c->hidden_size, -1, e);
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", idx);
        rc = load_tensor(&l->post_norm, m, name, c->hidden_size, -1, e);
    }
    if (rc == 0 && c->arch->qk_norm) {
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", idx);
        rc = load_tensor(&l->q_norm, m, name, c->head_dim, -1, e);
        if (rc == 0) {
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", idx);
            rc = load_tensor(&l->k_norm, m, name, c->head_dim, -1, e);
        }
    }
    if (rc < 0) {
        model_layer_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

const float *model_layer_linear(const model_layer *l, enum linear_id id)
{
    return (unsigned)id < LIN_COUNT ? l->w[id] : NULL;
}

const float *model_layer_bias(const model_layer *l, enum linear_id id)
{
    return (unsigned)id < LIN_COUNT ? l->b[id] : NULL;
}

int model_layer_set_linear(model_layer *l, enum linear_id id, const float *w, gq_err *e)
{
    if ((unsigned)id >= LIN_COUNT)
        return GQ_FAIL(e, GQ_EINVAL, "no such linear %d", (int)id);
    memcpy(l->w[id], w, l->rows[id] * l->cols[id] * sizeof(float));
    return 0;
}

/* ---- kernels ---- */

/* y (n, d) = rmsnorm of x (n, d) rows with weight w. */
static void rmsnorm(float *y, const float *x, const float *w, size_t n, size_t d, float eps)
{
    for (size_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double ss = 0.0;
        float r;
        for (size_t i = 0; i < d; i++)
            ss += (double)xr[i] * (double)xr[i];
        r = 1.0f / sqrtf((float)(ss / (double)d) + eps);
        for (size_t i = 0; i < d; i++)
            yr[i] = w[i] * (xr[i] * r);
    }
}

/* y (n, rows) = x (n, cols) W^T + b. */
static void linear(float *y, const float *x, const float *w, const float *b, size_t n,
                   size_t rows, size_t cols)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x,
                (int)cols, w, (int)cols, 0.0f, y, (int)rows);
    if (b)
        for (size_t t = 0; t < n; t++)
            for (size_t i = 0; i < rows; i++)
                y[t * rows + i] += b[i];
}

/* Rotate every head of x (n tokens of nheads * hd) at positions t % seqlen. */
static void rope(float *x, const float *cs, const float *sn, size_t n, size_t seqlen,
                 size_t nheads, size_t hd)
{
    size_t half = hd / 2;
    for (size_t t = 0; t < n; t++) {
        const float *c = cs + (t % seqlen) * half, *s = sn + (t % seqlen) * half;
        for (size_t h = 0; h < nheads; h++) {
            float *v = x + (t * nheads + h) * hd;
            for (size_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/*
 * out (nseq*seqlen, H*hd) = softmax(q k^T * scale + mask) v per sequence and
 * head; q (.., H*hd), k and v (.., KV*hd); sc is seqlen^2 scratch.
 */
static void attention(float *out, const float *q, const float *k, const float *v, float *sc,
                      size_t nseq, size_t seqlen, size_t H, size_t KV, size_t hd, size_t window)
{
    float scale = 1.0f / sqrtf((float)hd);
    size_t group = H / KV, ldq = H * hd, ldk = KV * hd;

    for (size_t s = 0; s < nseq; s++) {
        for (size_t h = 0; h < H; h++) {
            const float *qh = q + s * seqlen * ldq + h * hd;
            const float *kh = k + s * seqlen * ldk + (h / group) * hd;
            const float *vh = v + s * seqlen * ldk + (h / group) * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)seqlen, (int)seqlen,
                        (int)hd, scale, qh, (int)ldq, kh, (int)ldk, 0.0f, sc, (int)seqlen);
            for (size_t i = 0; i < seqlen; i++) {
                float *row = sc + i * seqlen, mx = -INFINITY, sum = 0.0f;
                size_t lo = window && i + 1 > window ? i + 1 - window : 0;
                for (size_t j = lo; j <= i; j++)
                    mx = row[j] > mx ? row[j] : mx;
                for (size_t j = lo; j <= i; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                for (size_t j = 0; j < lo; j++)
                    row[j] = 0.0f;
                for (size_t j = lo; j <= i; j++)
                    row[j] /= sum;
                for (size_t j = i + 1; j < seqlen; j++)
                    row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)seqlen, (int)hd,
                        (int)seqlen, 1.0f, sc, (int)seqlen, vh, (int)ldk, 0.0f,
                        out + s * seqlen * ldq + h * hd, (int)ldq);
        }
    }
}

/* One chunk of whole sequences through the layer; see layer_forward. */
static int layer_chunk(float *x, const model *m, const model_layer *l, size_t nseq,
                       size_t seqlen, capture_fn cb, void *payload, enum capture_point stop,
                       float *ws, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    size_t n = nseq * seqlen, d = (size_t)c->hidden_size, hd = (size_t)c->head_dim;
    size_t H = (size_t)c->num_heads, KV = (size_t)c->num_kv_heads;
    size_t inter = (size_t)c->intermediate_size, half = hd / 2;
    float eps = (float)c->rms_norm_eps;
    float *nrm = ws, *q = nrm + n * d, *k = q + n * H * hd, *v = k + n * KV * hd;
    float *att = v + n * KV * hd, *gate = att + n * H * hd, *up = gate + n * inter;
    float *sc = up + n * inter, *cs = sc + seqlen * seqlen, *sn = cs + seqlen * half;
    int rc;

    (void)e;
    rmsnorm(nrm, x, l->in_norm, n, d, eps);
    if (cb && (rc = cb(CAP_ATTN_IN, nrm, n, d, nseq, payload)) != 0)
        return rc;
    if (stop == CAP_ATTN_IN)
        return 0;
    linear(q, nrm, l->w[LIN_Q], l->b[LIN_Q], n, H * hd, d);
    linear(k, nrm, l->w[LIN_K], l->b[LIN_K], n, KV * hd, d);
    linear(v, nrm, l->w[LIN_V], l->b[LIN_V], n, KV * hd, d);
    if (l->q_norm) {
        rmsnorm(q, q, l->q_norm, n * H, hd, eps);
        rmsnorm(k, k, l->k_norm, n * KV, hd, eps);
    }
    for (size_t p = 0; p < seqlen; p++) {
        for (size_t i = 0; i < half; i++) {
            float a = (float)p * m->inv_freq[i];
            cs[p * half + i] = cosf(a);
            sn[p * half + i] = sinf(a);
        }
    }
    rope(q, cs, sn, n, seqlen, H, hd);
    rope(k, cs, sn, n, seqlen, KV, hd);
    attention(att, q, k, v, sc, nseq, seqlen, H, KV, hd, (size_t)c->sliding_window);
    if (cb && (rc = cb(CAP_O_IN, att, n, H * hd, nseq, payload)) != 0)
        return rc;
    if (stop == CAP_O_IN)
        return 0;
    linear(nrm, att, l->w[LIN_O], l->b[LIN_O], n, d, H * hd);
    for (size_t i = 0; i < n * d; i++)
        x[i] += nrm[i];
    rmsnorm(nrm, x, l->post_norm, n, d, eps);
    if (cb && (rc = cb(CAP_MLP_IN, nrm, n, d, nseq, payload)) != 0)
        return rc;
    if (stop == CAP_MLP_IN)
        return 0;
    linear(gate, nrm, l->w[LIN_GATE], l->b[LIN_GATE], n, inter, d);
    linear(up, nrm, l->w[LIN_UP], l->b[LIN_UP], n, inter, d);
    for (size_t i = 0; i < n * inter; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
    if (cb && (rc = cb(CAP_DOWN_IN, gate, n, inter, nseq, payload)) != 0)
        return rc;
    if (stop == CAP_DOWN_IN)
        return 0;
    linear(nrm, gate, l->w[LIN_DOWN], l->b[LIN_DOWN], n, d, inter);
    for (size_t i = 0; i < n * d; i++)
        x[i] += nrm[i];
    return 0;
}

int layer_forward(float *hidden, const model *m, const model_layer *l, size_t nseq, size_t seqlen,
                  capture_fn cb, void *payload, enum capture_point stop_after, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden_size, hd = (size_t)c->head_dim;
    size_t H = (size_t)c->num_heads, KV = (size_t)c->num_kv_heads;
    size_t inter = (size_t)c->intermediate_size;
    size_t per_chunk, n, words;
    float *ws;
    int rc = 0;

    if (nseq == 0 || seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "empty batch (%zu sequences of %zu tokens)", nseq, seqlen);
    per_chunk = CHUNK_TOKENS / seqlen ? CHUNK_TOKENS / seqlen : 1;
    if (per_chunk > nseq)
        per_chunk = nseq;
    n = per_chunk * seqlen;
    words = n * (d + 2 * H * hd + 2 * KV * hd + 2 * inter) + seqlen * seqlen + seqlen * hd;
    ws = gq_malloc_aligned(words * sizeof(float));
    if (!ws)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for the activations of %zu tokens", n);
    for (size_t s0 = 0; s0 < nseq && rc == 0; s0 += per_chunk) {
        size_t k = nseq - s0 < per_chunk ? nseq - s0 : per_chunk;
        rc = layer_chunk(hidden + s0 * seqlen * d, m, l, k, seqlen, cb, payload, stop_after, ws, e);
        if (rc > 0)
            rc = GQ_FAIL(e, GQ_ECANCELED, "stopped by the capture callback");
    }
    gq_free(ws);
    return rc;
}

int model_logits(float *logits, model *m, const float *hidden, size_t n, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden_size, vocab = (size_t)c->vocab_size;
    float *nrm;
    int rc;

    if (!m->lm_head) {
        const char *name = c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        if ((rc = load_tensor(&m->lm_head, m, name, (int64_t)vocab, (int64_t)d, e)) < 0)
            return rc;
    }
    nrm = gq_mallocn(n * d, sizeof(float));
    if (!nrm)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for %zu tokens of logits", n);
    rmsnorm(nrm, hidden, m->final_norm, n, d, (float)c->rms_norm_eps);
    linear(logits, nrm, m->lm_head, NULL, n, vocab, d);
    gq_free(nrm);
    return 0;
}

int model_nll(double *nll, size_t *count, model *m, const int32_t *tokens, size_t nblocks,
              size_t seqlen, size_t batch, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden_size, vocab = (size_t)c->vocab_size, rows = 256;
    float *hidden = NULL, *logits = NULL;
    model_layer *l = NULL;
    double total = 0.0;
    int rc = 0;

    if (seqlen < 2 || nblocks == 0)
        return GQ_FAIL(e, GQ_EINVAL, "perplexity needs blocks of at least 2 tokens");
    if (batch == 0)
        batch = 8;
    if (batch > nblocks)
        batch = nblocks;
    hidden = gq_mallocn(batch * seqlen * d, sizeof(float));
    logits = gq_mallocn(rows * vocab, sizeof(float));
    if (!hidden || !logits) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for a batch of %zu blocks", batch);
        goto done;
    }
    for (size_t b0 = 0; b0 < nblocks; b0 += batch) {
        size_t nb = nblocks - b0 < batch ? nblocks - b0 : batch, n = nb * seqlen;
        const int32_t *ids = tokens + b0 * seqlen;
        if ((rc = model_embed(hidden, m, ids, n, e)) < 0)
            goto done;
        for (int i = 0; i < c->num_layers; i++) {
            if ((rc = model_layer_load(&l, m, i, e)) < 0)
                goto done;
            rc = layer_forward(hidden, m, l, nb, seqlen, NULL, NULL, CAP_NONE, e);
            model_layer_free(l);
            l = NULL;
            if (rc < 0)
                goto done;
        }
        for (size_t r0 = 0; r0 < n; r0 += rows) {
            size_t k = n - r0 < rows ? n - r0 : rows;
            if ((rc = model_logits(logits, m, hidden + r0 * d, k, e)) < 0)
                goto done;
            for (size_t r = 0; r < k; r++) {
                size_t t = r0 + r;
                const float *z = logits + r * vocab;
                float mx = -INFINITY;
                double s = 0.0;
                if (t % seqlen == seqlen - 1)
                    continue;   /* the last position predicts nothing */
                for (size_t j = 0; j < vocab; j++)
                    mx = z[j] > mx ? z[j] : mx;
                for (size_t j = 0; j < vocab; j++)
                    s += (double)expf(z[j] - mx);
                total += log(s) + (double)mx - (double)z[ids[t + 1]];
            }
        }
    }
    *nll = total;
    *count = nblocks * (seqlen - 1);
done:
    model_layer_free(l);
    gq_free(hidden);
    gq_free(logits);
    return rc;
}
