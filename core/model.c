/*
 * model.c - a decoder-only Hugging Face model: its checkpoint, its weights
 * one layer at a time, logits and perplexity.  The layer arithmetic is in
 * forward.c.
 *
 * DESIGN
 *
 * model_open() reads config.json, maps the safetensors and checks, before
 * anything is converted, that every tensor the config implies is there
 * with the right shape and a float dtype: a bad checkpoint fails at once,
 * not after an hour of work on its first layers.  Nothing else is read.
 *
 * A decoder layer's weights are converted to float32 by
 * model_layer_load() into one slab (q_proj, k_proj and v_proj adjacent, so
 * that forward.c computes all three with one GEMM) and the mapped pages
 * are released afterwards, so a caller that walks the layers holds one
 * layer at a time.  The lm_head (the embedding matrix when tied) is
 * converted once, on first use, and kept.
 *
 * GPTQ checkpoints: model_open() also reads the quantization config
 * (model_gptq_load) and, for every decoder Linear, decides from the config,
 * its dynamic rules and the tensors present whether it is packed or a
 * float .weight, checking the packed tensors' dtypes and shapes
 * (struct qlinear, one per Linear, pointing into the mapping).
 * layer_fill() dequantizes packed Linears straight into the slab, so the
 * forward pass never knows; nothing else in this file changes for them.
 *
 * Rotary inverse frequencies are computed here, once, in float32 exactly
 * as transformers' modeling_rope_utils computes them: torch's `a / t` for a
 * Python number a and a tensor t is reciprocal(t) * a, and the Python
 * floats meet float32 tensors as float32.
 *
 * model_nll() runs blocks in batches: embed, every layer (load, forward,
 * free), final norm and lm_head in row blocks, then a max-subtracted
 * log-softmax per position, accumulated in double.  The workspace and the
 * layer slab are allocated once and reused for every batch and layer.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"
#include "dynamic.h"
#include "forward.h"
#include "mem.h"
#include "pack.h"

/* seqlen bound: keeps every GEMM dimension and workspace size far inside int */
#define MAX_SEQLEN ((size_t)1 << 20)
/* model_nll: logits scratch budget (floats) */
#define LOGITS_FLOATS ((size_t)16 << 20)
/* tensors of one decoder layer: 7 weights, 7 biases, 4 norms */
#define LAYER_SLOTS 18

/* How a GPTQ checkpoint stores one decoder Linear (checked by model_open). */
struct qlinear {
    struct model_gptq_module q;         /* q.quantized 0: a float <prefix>.weight */
    size_t ngroups;                     /* ceil(cols / group_size), 1 for -1 */
    const struct st_tensor *qweight, *qzeros, *scales;
    const struct st_tensor *g_idx;      /* NULL: the trivial k / group_size */
};

struct model {
    struct model_config cfg;            /* cfg.quantized: a GPTQ checkpoint */
    dynamic_rules *dynamic;             /* its dynamic rules, else NULL */
    struct qlinear *qlin;               /* [num_layers * LIN_COUNT] when quantized, else NULL */
    st_model *st;
    const struct st_tensor *embed;
    float *inv_freq;    /* head_dim / 2 */
    float *final_norm;  /* hidden */
    float *lm_head;     /* (vocab, hidden), converted on first use */
};

struct model_layer {
    int index;
    size_t rows[LIN_COUNT], cols[LIN_COUNT];
    float *slab;                        /* every array below points into it */
    float *w[LIN_COUNT], *b[LIN_COUNT];
    float *in_norm, *post_norm, *q_norm, *k_norm;
};

/* One tensor of a layer: its name, expected shape and place in the slab. */
struct slot {
    char name[96];
    int64_t d0, d1;     /* d1 < 0: one-dimensional */
    size_t off;         /* floats from the slab start */
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

static void linear_shape(size_t *rows, size_t *cols, const struct model_config *c,
                         enum linear_id id)
{
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

void model_linear_shape(size_t *rows, size_t *cols, const model *m, enum linear_id id)
{
    linear_shape(rows, cols, &m->cfg, id);
}

static int linear_has_bias(const struct model_config *c, enum linear_id id)
{
    if (id <= LIN_V)
        return c->attention_bias;
    if (id == LIN_O)
        return c->o_bias;
    return c->mlp_bias;
}

/* "[a, b]" or "[a]" */
static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
}

/*
 * The tensor name, checked: present, shape (d0) or (d0, d1) (d1 < 0), a
 * float dtype.  Messages name the tensor and the expected shape.
 */
static int find_tensor(const struct st_tensor **out, const st_model *st, const char *name,
                       int64_t d0, int64_t d1, gq_err *e)
{
    const struct st_tensor *t = st_model_find(st, name);
    const int64_t want[2] = {d0, d1};
    int ndim = d1 < 0 ? 1 : 2;
    char ws[48], gs[160];

    shape_text(ws, sizeof(ws), ndim, want);
    if (!t)
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s is missing from the checkpoint (expected shape %s)",
                       name, ws);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        shape_text(gs, sizeof(gs), t->ndim, t->shape);
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has the wrong shape %s (expected %s)", name, gs, ws);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has dtype %s (expected F32, F16 or BF16)", name,
                       st_dtype_name(t->dtype));
    *out = t;
    return 0;
}

/* Convert a checked tensor into dst and give its pages back. */
static int convert(float *dst, const struct st_tensor *t, gq_err *e)
{
    int rc = st_tensor_to_f32(dst, t, e);
    st_tensor_release(t);
    return rc;
}

/*
 * The tensors of layer idx (names, shapes) and where each goes in the
 * slab; *nslots and *total (floats).  q/k/v weights are adjacent, and so
 * are their biases; every other tensor starts on 64 bytes.
 */
static void layer_plan(struct slot *sl, size_t *nslots, size_t *total, const struct model_config *c,
                       int idx)
{
    static const char *const norms[4] = {"input_layernorm", "post_attention_layernorm",
                                         "self_attn.q_norm", "self_attn.k_norm"};
    char mod[80];
    size_t n = 0, at = 0, rows, cols;

    for (int i = 0; i < LIN_COUNT; i++) {
        linear_shape(&rows, &cols, c, (enum linear_id)i);
        linear_module_name(mod, sizeof(mod), idx, (enum linear_id)i);
        snprintf(sl[n].name, sizeof(sl[n].name), "%s.weight", mod);
        sl[n].d0 = (int64_t)rows;
        sl[n].d1 = (int64_t)cols;
        sl[n].off = at;
        at += rows * cols;
        if (i != LIN_Q && i != LIN_K)
            at = (at + 15) & ~(size_t)15;
        n++;
    }
    for (int i = 0; i < LIN_COUNT; i++) {
        if (!linear_has_bias(c, (enum linear_id)i))
            continue;
        linear_shape(&rows, &cols, c, (enum linear_id)i);
        linear_module_name(mod, sizeof(mod), idx, (enum linear_id)i);
        snprintf(sl[n].name, sizeof(sl[n].name), "%s.bias", mod);
        sl[n].d0 = (int64_t)rows;
        sl[n].d1 = -1;
        sl[n].off = at;
        at += rows;
        if (i != LIN_Q && i != LIN_K)
            at = (at + 15) & ~(size_t)15;
        n++;
    }
    for (int i = 0; i < (c->arch->qk_norm ? 4 : 2); i++) {
        snprintf(sl[n].name, sizeof(sl[n].name), "model.layers.%d.%s.weight", idx, norms[i]);
        sl[n].d0 = i < 2 ? c->hidden_size : c->head_dim;
        sl[n].d1 = -1;
        sl[n].off = at;
        at = (at + (size_t)sl[n].d0 + 15) & ~(size_t)15;
        n++;
    }
    *nslots = n;
    *total = at;
}

/*
 * inv_freq[head_dim / 2] as modeling_rope_utils computes it in float32:
 * default 1 / base^(arange(0, dim, 2) / dim); linear divides by factor;
 * llama3 keeps wavelengths below original_max / high_freq_factor, divides
 * those above original_max / low_freq_factor by factor and blends between.
 * powf comes from a double pow, so it is correctly rounded; torch's may be
 * an ulp away.
 */
static void rope_inv_freq(float *inv, const struct model_config *c)
{
    const size_t half = (size_t)c->head_dim / 2;
    const float base = (float)c->rope_theta, dim = (float)c->head_dim;

    for (size_t i = 0; i < half; i++) {
        float expo = (float)(int64_t)(2 * i) / dim;
        inv[i] = 1.0f / (float)pow((double)base, (double)expo);
    }
    if (c->rope_type == ROPE_LINEAR) {
        /* inv_freq /= factor */
        const float factor = (float)c->rope_factor;
        for (size_t i = 0; i < half; i++)
            inv[i] = inv[i] / factor;
    } else if (c->rope_type == ROPE_LLAMA3) {
        const float factor = (float)c->rope_factor;
        const float low = (float)c->rope_low_freq_factor;
        const float old = (float)c->rope_original_max_position;
        /* Python floats: old_context_len / low_freq_factor etc. */
        const float low_wavelen = (float)(c->rope_original_max_position / c->rope_low_freq_factor);
        const float high_wavelen = (float)(c->rope_original_max_position / c->rope_high_freq_factor);
        const float band = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
        const float two_pi = (float)(2.0 * M_PI);
        for (size_t i = 0; i < half; i++) {
            float f = inv[i];
            float wavelen = (1.0f / f) * two_pi;                    /* 2 * math.pi / inv_freq */
            float llama = wavelen > low_wavelen ? f / factor : f;
            float smooth = ((1.0f / wavelen) * old - low) / band;   /* (old / wavelen - low) / band */
            float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv[i] = medium ? smoothed : llama;
        }
    }
}

/* ---- GPTQ checkpoints ---- */

static size_t ngroups_of(size_t cols, int group_size)
{
    return group_size < 0 ? 1 : (cols + (size_t)group_size - 1) / (size_t)group_size;
}

/*
 * A packed tensor: present, int32 (want ST_I32) or a float dtype (want
 * ST_F32 standing for F16, BF16 or F32), shape (d0[, d1]).  Absent is an
 * error unless optional (*out = NULL).  why says which bits/group size the
 * expected shape comes from.
 */
static int find_packed(const struct st_tensor **out, const st_model *st, const char *name, st_dtype want,
                       int64_t d0, int64_t d1, int optional, const char *why, gq_err *e)
{
    const struct st_tensor *t = st_model_find(st, name);
    const int64_t shape[2] = {d0, d1};
    const int ndim = d1 < 0 ? 1 : 2;
    const char *wants = want == ST_F32 ? "F16, BF16 or F32" : st_dtype_name(want);
    char ws[48], gs[160];

    *out = NULL;
    shape_text(ws, sizeof(ws), ndim, shape);
    if (!t) {
        if (optional)
            return 0;
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s is missing from the checkpoint (expected %s %s, %s)", name,
                       want == ST_F32 ? "F16" : wants, ws, why);
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        shape_text(gs, sizeof(gs), t->ndim, t->shape);
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has the wrong shape %s (expected %s, %s)", name, gs, ws, why);
    }
    if (want == ST_F32 ? t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 : t->dtype != want)
        return GQ_FAIL(e, GQ_EINVAL, "tensor %s has dtype %s (expected %s)", name, st_dtype_name(t->dtype),
                       wants);
    *out = t;
    return 0;
}

/*
 * Decide and check how Linear (layer, id) is stored.  The quantization
 * config and its dynamic rules say what to expect; the checkpoint decides
 * between the two forms a loader can meet: <prefix>.qweight (+ qzeros,
 * scales, g_idx) packed with the module's bits and group size, or a float
 * <prefix>.weight, which is how a module a "-:" rule excludes is stored,
 * and also how transformers' modules_in_block_to_quantize leaves modules
 * unquantized without a rule (vLLM finds those by scanning the headers
 * too).  A .qweight where a "-:" rule says the module is not quantized is
 * a contradiction no loader resolves: an error.
 */
static int qlinear_check(struct qlinear *ql, const model *m, int layer, enum linear_id id, gq_err *e)
{
    const st_model *st = m->st;
    size_t rows, cols;
    char mod[96], name[128], why[64];
    int bits, group, rc;

    linear_shape(&rows, &cols, &m->cfg, id);
    linear_module_name(mod, sizeof(mod), layer, id);
    memset(ql, 0, sizeof(*ql));
    model_gptq_module(&ql->q, &m->cfg.gptq, m->dynamic, mod);
    snprintf(name, sizeof(name), "%s.qweight", mod);
    if (!ql->q.quantized) {
        if (st_model_find(st, name))
            return GQ_FAIL(e, GQ_EINVAL, "tensor %s is in the checkpoint, but a \"-:\" dynamic rule leaves %s "
                           "unquantized (expected %s.weight)", name, mod, mod);
        return 0;
    }
    if (!st_model_find(st, name)) {
        snprintf(name, sizeof(name), "%s.weight", mod);
        if (st_model_find(st, name)) {
            memset(&ql->q, 0, sizeof(ql->q));   /* stored unquantized */
            return 0;
        }
    }
    bits = ql->q.bits;
    group = ql->q.group_size;
    /* AutoGPTQ and GPTQModel size qweight as in/32*bits and qzeros as out/32*bits */
    if (rows % 32 || cols % 32)
        return GQ_FAIL(e, GQ_EINVAL, "%s [%zu, %zu] cannot be read as GPTQ: in and out features must be "
                       "multiples of 32", mod, rows, cols);
    ql->ngroups = ngroups_of(cols, group);
    snprintf(why, sizeof(why), "%d bits, group_size %d", bits, group);
    snprintf(name, sizeof(name), "%s.qweight", mod);
    if ((rc = find_packed(&ql->qweight, st, name, ST_I32, (int64_t)pack_qweight_rows(cols, bits), (int64_t)rows,
                          0, why, e)) < 0)
        return rc;
    snprintf(name, sizeof(name), "%s.qzeros", mod);
    if ((rc = find_packed(&ql->qzeros, st, name, ST_I32, (int64_t)ql->ngroups,
                          (int64_t)pack_qzeros_cols(rows, bits), 0, why, e)) < 0)
        return rc;
    snprintf(name, sizeof(name), "%s.scales", mod);
    if ((rc = find_packed(&ql->scales, st, name, ST_F32, (int64_t)ql->ngroups, (int64_t)rows, 0, why, e)) < 0)
        return rc;
    /* without act-order the loaders' g_idx is k / group_size, so it may be left out */
    snprintf(name, sizeof(name), "%s.g_idx", mod);
    snprintf(why, sizeof(why), "%s", ql->q.desc_act ? "desc_act is true" : "optional");
    return find_packed(&ql->g_idx, st, name, ST_I32, (int64_t)cols, -1, !ql->q.desc_act, why, e);
}

/* Every decoder Linear of a GPTQ checkpoint: m->qlin. */
static int qlinear_plan(model *m, gq_err *e)
{
    const size_t n = (size_t)m->cfg.num_layers * LIN_COUNT;
    int rc;

    if (!(m->qlin = gq_calloc(n, sizeof(*m->qlin))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory planning %zu GPTQ modules", n);
    for (int i = 0; i < m->cfg.num_layers; i++)
        for (int id = 0; id < LIN_COUNT; id++)
            if ((rc = qlinear_check(&m->qlin[(size_t)i * LIN_COUNT + (size_t)id], m, i, (enum linear_id)id,
                                    e)) < 0)
                return rc;
    return 0;
}

/*
 * W (rows, cols) row-major from the packed tensors, as the loaders
 * dequantize (GPTQ-NOTES.md §2.6): W[n][k] = scale[g][n] * (q[k][n] -
 * z[g][n]), g = g_idx[k], z = (stored + 1) & maxq for gptq (v1) and z =
 * stored for gptq_v2 (unpack_qzeros).  The product is taken in float32
 * (the scale widened exactly from its dtype, q - z an exact integer): the
 * weight a float32 evaluation of the loaded model multiplies by.  Every
 * g_idx value is checked to be a group.  Scratch: the codes (rows * cols
 * bytes) and copies of the packed words (the mapping need not be aligned).
 */
static int dequantize(float *W, const struct qlinear *ql, const model *m, int layer, enum linear_id id,
                      gq_err *e)
{
    const size_t ng = ql->ngroups;
    const int bits = ql->q.bits;
    size_t rows, cols;
    uint8_t *q = NULL;
    int32_t *qw = NULL, *qz = NULL, *zeros = NULL, *g_idx = NULL, *zrow = NULL;
    float *scales = NULL, *srow = NULL;
    char mod[96];
    int rc = 0;

    linear_shape(&rows, &cols, &m->cfg, id);
    linear_module_name(mod, sizeof(mod), layer, id);
    q = gq_mallocn(rows, cols);
    qw = gq_malloc(ql->qweight->nbytes);
    qz = gq_malloc(ql->qzeros->nbytes);
    zeros = gq_mallocn(ng, rows * sizeof(int32_t));
    scales = gq_mallocn(ng, rows * sizeof(float));
    g_idx = gq_mallocn(cols, sizeof(int32_t));
    zrow = gq_mallocn(ng, sizeof(int32_t));
    srow = gq_mallocn(ng, sizeof(float));
    if (!q || !qw || !qz || !zeros || !scales || !g_idx || !zrow || !srow) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory dequantizing %s (%zu x %zu)", mod, rows, cols);
        goto done;
    }
    /* safetensors is little-endian, and so is every host this builds for */
    memcpy(qw, ql->qweight->data, ql->qweight->nbytes);
    memcpy(qz, ql->qzeros->data, ql->qzeros->nbytes);
    if (ql->g_idx)
        memcpy(g_idx, ql->g_idx->data, cols * sizeof(int32_t));
    else
        for (size_t k = 0; k < cols; k++)
            g_idx[k] = (int32_t)(ql->q.group_size < 0 ? 0 : k / (size_t)ql->q.group_size);
    for (size_t k = 0; k < cols; k++)
        if (g_idx[k] < 0 || (size_t)g_idx[k] >= ng) {
            rc = GQ_FAIL(e, GQ_EINVAL, "tensor %s.g_idx[%zu] is %d, not a group (0..%zu: %zu groups of %d)", mod,
                         k, (int)g_idx[k], ng - 1, ng, ql->q.group_size);
            goto done;
        }
    if ((rc = unpack_qweight(q, qw, rows, cols, bits, e)) < 0 ||
        (rc = unpack_qzeros(zeros, qz, ng, rows, bits, m->cfg.gptq.format, e)) < 0 ||
        (rc = st_tensor_to_f32(scales, ql->scales, e)) < 0) {
        gq_err_prefix(e, "%s", mod);
        goto done;
    }
    for (size_t n = 0; n < rows; n++) {
        const uint8_t *qn = q + n * cols;
        float *wn = W + n * cols;
        /* row n's scale and zero of every group, so the k loop reads them from cache */
        for (size_t g = 0; g < ng; g++) {
            srow[g] = scales[g * rows + n];
            zrow[g] = zeros[g * rows + n];
        }
        for (size_t k = 0; k < cols; k++) {
            const size_t g = (size_t)g_idx[k];
            wn[k] = srow[g] * (float)((int32_t)qn[k] - zrow[g]);
        }
    }
done:
    st_tensor_release(ql->qweight);
    st_tensor_release(ql->qzeros);
    st_tensor_release(ql->scales);
    if (ql->g_idx)
        st_tensor_release(ql->g_idx);
    gq_free(q);
    gq_free(qw);
    gq_free(qz);
    gq_free(zeros);
    gq_free(scales);
    gq_free(g_idx);
    gq_free(zrow);
    gq_free(srow);
    return rc;
}

/* The quantized Linear (layer, id) of m, or NULL when it is stored as a float .weight. */
static const struct qlinear *qlinear_of(const model *m, int layer, enum linear_id id)
{
    const struct qlinear *ql;
    if (!m->qlin)
        return NULL;
    ql = &m->qlin[(size_t)layer * LIN_COUNT + (size_t)id];
    return ql->q.quantized ? ql : NULL;
}

int model_linear_quant(struct model_gptq_module *out, const model *m, int layer, enum linear_id id)
{
    const struct qlinear *ql = NULL;

    memset(out, 0, sizeof(*out));
    if (layer >= 0 && layer < m->cfg.num_layers && (unsigned)id < LIN_COUNT)
        ql = qlinear_of(m, layer, id);
    if (!ql)
        return 0;
    *out = ql->q;
    return 1;
}

const dynamic_rules *model_dynamic(const model *m)
{
    return m->dynamic;
}

/* Every tensor the config implies, checked without reading any data. */
static int check_checkpoint(const model *m, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    const struct st_tensor *t;
    struct slot sl[LAYER_SLOTS];
    size_t n, total;
    int rc;

    if ((rc = find_tensor(&t, m->st, "model.norm.weight", c->hidden_size, -1, e)) < 0)
        return rc;
    if (!c->tie_word_embeddings &&
        (rc = find_tensor(&t, m->st, "lm_head.weight", c->vocab_size, c->hidden_size, e)) < 0)
        return rc;
    for (int i = 0; i < c->num_layers; i++) {
        layer_plan(sl, &n, &total, c, i);
        for (size_t k = 0; k < n; k++) {
            /* slots 0..LIN_COUNT-1 are the Linear weights; qlinear_check did the packed ones */
            if (k < LIN_COUNT && qlinear_of(m, i, (enum linear_id)k))
                continue;
            if ((rc = find_tensor(&t, m->st, sl[k].name, sl[k].d0, sl[k].d1, e)) < 0)
                return rc;
        }
    }
    return 0;
}

int model_open(model **out, const char *dir, gq_err *e)
{
    model *m = NULL;
    const struct st_tensor *t;
    struct model_gptq gptq;
    char path[4096];
    int quantized = 0, rc;

    if ((size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path))
        return GQ_FAIL(e, GQ_EINVAL, "model directory path is too long (%zu bytes)", strlen(dir));
    m = gq_calloc(1, sizeof(*m));
    if (!m)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a model");
    if ((rc = model_config_load(&m->cfg, path, e)) < 0)
        goto done;
    if ((rc = model_gptq_load(&gptq, &m->dynamic, &quantized, dir, e)) < 0)
        goto done;
    /* config.json may have none while quantize_config.json has one */
    m->cfg.quantized = quantized;
    if (quantized)
        m->cfg.gptq = gptq;
    if ((rc = st_model_open(&m->st, dir, e)) < 0)
        goto done;
    if ((rc = find_tensor(&m->embed, m->st, "model.embed_tokens.weight", m->cfg.vocab_size,
                          m->cfg.hidden_size, e)) < 0)
        goto done;
    if (quantized && (rc = qlinear_plan(m, e)) < 0)
        goto done;
    if ((rc = check_checkpoint(m, e)) < 0)
        goto done;
    m->inv_freq = gq_mallocn((size_t)m->cfg.head_dim / 2, sizeof(float));
    m->final_norm = gq_mallocn((size_t)m->cfg.hidden_size, sizeof(float));
    if (!m->inv_freq || !m->final_norm) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a model");
        goto done;
    }
    rope_inv_freq(m->inv_freq, &m->cfg);
    if ((rc = find_tensor(&t, m->st, "model.norm.weight", m->cfg.hidden_size, -1, e)) < 0 ||
        (rc = convert(m->final_norm, t, e)) < 0)
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
    dynamic_free(m->dynamic);
    gq_free(m->qlin);
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

/* The first id of ids (n) outside the vocabulary, as an error; 0 when all are in. */
static int check_ids(const model *m, const int32_t *ids, size_t n, size_t seqlen, gq_err *e)
{
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= m->cfg.vocab_size) {
            if (seqlen)
                return GQ_FAIL(e, GQ_EINVAL,
                               "token id %d (block %zu, position %zu) is outside the vocabulary "
                               "(0..%d)", (int)ids[t], t / seqlen, t % seqlen,
                               m->cfg.vocab_size - 1);
            return GQ_FAIL(e, GQ_EINVAL,
                           "token id %d at position %zu is outside the vocabulary (0..%d)",
                           (int)ids[t], t, m->cfg.vocab_size - 1);
        }
    return 0;
}

int model_embed(float *hidden, const model *m, const int32_t *ids, size_t n, gq_err *e)
{
    const size_t h = (size_t)m->cfg.hidden_size, es = st_dtype_size(m->embed->dtype);
    const unsigned char *base = m->embed->data;
    uint16_t *row = NULL;
    int rc;

    if ((rc = check_ids(m, ids, n, 0, e)) < 0)
        return rc;
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
    gq_free(l->slab);
    gq_free(l);
}

/* An empty layer of the model's shape: its slab allocated, pointers set. */
static int layer_alloc(model_layer **out, const model *m, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    struct slot sl[LAYER_SLOTS];
    size_t n, total, k = 0;
    model_layer *l;

    layer_plan(sl, &n, &total, c, 0);
    l = gq_calloc(1, sizeof(*l));
    if (!l)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a decoder layer");
    l->index = -1;
    if (total > SIZE_MAX / sizeof(float) || !(l->slab = gq_malloc_aligned(total * sizeof(float)))) {
        gq_free(l);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a decoder layer (%zu floats)", total);
    }
    /* slots come in layer_plan's order: weights, the biases that exist, norms */
    for (int i = 0; i < LIN_COUNT; i++) {
        linear_shape(&l->rows[i], &l->cols[i], c, (enum linear_id)i);
        l->w[i] = l->slab + sl[k++].off;
    }
    for (int i = 0; i < LIN_COUNT; i++)
        if (linear_has_bias(c, (enum linear_id)i))
            l->b[i] = l->slab + sl[k++].off;
    l->in_norm = l->slab + sl[k++].off;
    l->post_norm = l->slab + sl[k++].off;
    if (c->arch->qk_norm) {
        l->q_norm = l->slab + sl[k++].off;
        l->k_norm = l->slab + sl[k++].off;
    }
    *out = l;
    return 0;
}

/* Convert layer idx's tensors into l (allocated by layer_alloc for m). */
static int layer_fill(model_layer *l, const model *m, int idx, gq_err *e)
{
    struct slot sl[LAYER_SLOTS];
    const struct st_tensor *t;
    size_t n, total;
    int rc;

    l->index = -1;
    layer_plan(sl, &n, &total, &m->cfg, idx);
    for (size_t k = 0; k < n; k++) {
        const struct qlinear *ql = k < LIN_COUNT ? qlinear_of(m, idx, (enum linear_id)k) : NULL;
        if (ql) {
            if ((rc = dequantize(l->slab + sl[k].off, ql, m, idx, (enum linear_id)k, e)) < 0)
                return rc;
            continue;
        }
        if ((rc = find_tensor(&t, m->st, sl[k].name, sl[k].d0, sl[k].d1, e)) < 0 ||
            (rc = convert(l->slab + sl[k].off, t, e)) < 0)
            return rc;
    }
    /*
     * Release the layer's pages once more: the kernel's fault-around maps
     * neighbouring pages of tensors released earlier while later ones are
     * read, and without this the mapped file grows layer after layer.
     */
    for (size_t k = 0; k < n; k++)
        if ((k >= LIN_COUNT || !qlinear_of(m, idx, (enum linear_id)k)) && (t = st_model_find(m->st, sl[k].name)))
            st_tensor_release(t);
    l->index = idx;
    return 0;
}

int model_layer_load(model_layer **out, const model *m, int idx, gq_err *e)
{
    model_layer *l = NULL;
    int rc;

    if (idx < 0 || idx >= m->cfg.num_layers)
        return GQ_FAIL(e, GQ_EINVAL, "layer %d does not exist (the model has %d)", idx,
                       m->cfg.num_layers);
    if ((rc = layer_alloc(&l, m, e)) < 0)
        return rc;
    if ((rc = layer_fill(l, m, idx, e)) < 0) {
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
    if (!w)
        return GQ_FAIL(e, GQ_EINVAL, "no weight given for %s", linear_name(id));
    memcpy(l->w[id], w, l->rows[id] * l->cols[id] * sizeof(float));
    return 0;
}

static void shape_of(struct fwd_shape *s, const model *m)
{
    const struct model_config *c = &m->cfg;
    s->hidden = (size_t)c->hidden_size;
    s->inter = (size_t)c->intermediate_size;
    s->heads = (size_t)c->num_heads;
    s->kv_heads = (size_t)c->num_kv_heads;
    s->head_dim = (size_t)c->head_dim;
    s->window = (size_t)c->sliding_window;
    s->eps = (float)c->rms_norm_eps;
    s->inv_freq = m->inv_freq;
}

static void weights_of(struct fwd_weights *w, const model_layer *l)
{
    /* LIN_K and LIN_V follow LIN_Q in the slab, and their biases follow its bias */
    w->qkv = l->w[LIN_Q];
    w->qkv_bias = l->b[LIN_Q];
    w->o = l->w[LIN_O];
    w->o_bias = l->b[LIN_O];
    w->gate = l->w[LIN_GATE];
    w->gate_bias = l->b[LIN_GATE];
    w->up = l->w[LIN_UP];
    w->up_bias = l->b[LIN_UP];
    w->down = l->w[LIN_DOWN];
    w->down_bias = l->b[LIN_DOWN];
    w->in_norm = l->in_norm;
    w->post_norm = l->post_norm;
    w->q_norm = l->q_norm;
    w->k_norm = l->k_norm;
}

/* Workspace for nseq x seqlen through fwd_layer; checks the sizes. */
static int workspace(float **out, const struct fwd_shape *s, size_t nseq, size_t seqlen, gq_err *e)
{
    size_t words;

    if (nseq == 0 || seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "empty batch (%zu sequences of %zu tokens)", nseq, seqlen);
    if (seqlen > MAX_SEQLEN)
        return GQ_FAIL(e, GQ_EINVAL, "sequence length %zu is too large (at most %zu)", seqlen,
                       MAX_SEQLEN);
    words = fwd_workspace_floats(s, nseq, seqlen);
    if (!words || !(*out = gq_malloc_aligned(words * sizeof(float))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for the activations of %zu x %zu tokens",
                       fwd_chunk_seqs(nseq, seqlen), seqlen);
    return 0;
}

int layer_forward_part(float *hidden, float *att, const model *m, const model_layer *l, size_t nseq,
                       size_t seqlen, enum capture_point start, capture_fn cb, void *payload,
                       enum capture_point stop_after, gq_err *e)
{
    struct fwd_shape s;
    struct fwd_weights w;
    float *ws = NULL;
    int rc;

    if (stop_after != CAP_NONE && ((int)stop_after < 0 || stop_after >= CAP_COUNT))
        return GQ_FAIL(e, GQ_EINVAL, "no such capture point %d", (int)stop_after);
    if (start != CAP_ATTN_IN && start != CAP_O_IN && start != CAP_MLP_IN)
        return GQ_FAIL(e, GQ_EINVAL, "a layer pass cannot start at capture point %d", (int)start);
    if (stop_after != CAP_NONE && stop_after < start)
        return GQ_FAIL(e, GQ_EINVAL, "capture point %d comes before the start %d", (int)stop_after, (int)start);
    if (start == CAP_O_IN && !att)
        return GQ_FAIL(e, GQ_EINVAL, "a pass from the o_proj input needs the attention output");
    if (l->index < 0)
        return GQ_FAIL(e, GQ_EINVAL, "decoder layer has no weights");
    for (int i = 0; i < LIN_COUNT; i++) {
        size_t rows, cols;
        linear_shape(&rows, &cols, &m->cfg, (enum linear_id)i);
        if (rows != l->rows[i] || cols != l->cols[i] ||
            !l->b[i] != !linear_has_bias(&m->cfg, (enum linear_id)i) ||
            !l->q_norm != !m->cfg.arch->qk_norm)
            return GQ_FAIL(e, GQ_EINVAL, "decoder layer %d was not loaded from this model",
                           l->index);
    }
    shape_of(&s, m);
    weights_of(&w, l);
    if ((rc = workspace(&ws, &s, nseq, seqlen, e)) < 0)
        return rc;
    rc = fwd_layer_part(hidden, att, &s, &w, nseq, seqlen, start, cb, payload, stop_after, ws, e);
    gq_free(ws);
    return rc;
}

int layer_forward(float *hidden, const model *m, const model_layer *l, size_t nseq, size_t seqlen,
                  capture_fn cb, void *payload, enum capture_point stop_after, gq_err *e)
{
    return layer_forward_part(hidden, NULL, m, l, nseq, seqlen, CAP_ATTN_IN, cb, payload, stop_after, e);
}

/* Convert the lm_head (or the tied embedding) once. */
static int lm_head(model *m, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    const char *name = c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    const struct st_tensor *t;
    float *w;
    int rc;

    if (m->lm_head)
        return 0;
    if ((rc = find_tensor(&t, m->st, name, c->vocab_size, c->hidden_size, e)) < 0)
        return rc;
    w = gq_mallocn(t->numel, sizeof(float));
    if (!w)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory converting %s", name);
    if ((rc = convert(w, t, e)) < 0) {
        gq_free(w);
        return rc;
    }
    m->lm_head = w;
    return 0;
}

int model_logits(float *logits, model *m, const float *hidden, size_t n, gq_err *e)
{
    const size_t d = (size_t)m->cfg.hidden_size, vocab = (size_t)m->cfg.vocab_size;
    float *nrm;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = lm_head(m, e)) < 0)
        return rc;
    if (n > (size_t)INT32_MAX / (d > vocab ? d : vocab))
        return GQ_FAIL(e, GQ_EINVAL, "too many rows of logits at once (%zu)", n);
    nrm = gq_mallocn(n * d, sizeof(float));
    if (!nrm)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for %zu tokens of logits", n);
    fwd_rmsnorm(nrm, hidden, m->final_norm, n, d, (float)m->cfg.rms_norm_eps);
    fwd_linear(logits, nrm, m->lm_head, NULL, n, vocab, d);
    gq_free(nrm);
    return 0;
}

int model_nll(double *nll, size_t *count, model *m, const int32_t *tokens, size_t nblocks,
              size_t seqlen, size_t batch, gq_err *e)
{
    const struct model_config *c = &m->cfg;
    const size_t d = (size_t)c->hidden_size, vocab = (size_t)c->vocab_size;
    size_t rows = LOGITS_FLOATS / vocab;
    float *hidden = NULL, *ws = NULL, *nrm = NULL, *logits = NULL;
    model_layer *l = NULL;
    struct fwd_shape s;
    struct fwd_weights w;
    double total = 0.0;
    int rc;

    if (seqlen < 2)
        return GQ_FAIL(e, GQ_EINVAL, "perplexity needs blocks of at least 2 tokens (seqlen %zu)",
                       seqlen);
    if (nblocks == 0)
        return GQ_FAIL(e, GQ_EINVAL, "perplexity needs at least one block");
    if (seqlen > MAX_SEQLEN || nblocks > SIZE_MAX / seqlen)
        return GQ_FAIL(e, GQ_EINVAL, "too many tokens (%zu blocks of %zu)", nblocks, seqlen);
    if ((rc = check_ids(m, tokens, nblocks * seqlen, seqlen, e)) < 0)
        return rc;
    if (batch == 0)
        batch = 8;
    if (batch > nblocks)
        batch = nblocks;
    rows = rows < 16 ? 16 : rows > 512 ? 512 : rows;
    shape_of(&s, m);
    if ((rc = lm_head(m, e)) < 0 || (rc = workspace(&ws, &s, batch, seqlen, e)) < 0 ||
        (rc = layer_alloc(&l, m, e)) < 0)
        goto done;
    weights_of(&w, l);
    hidden = gq_mallocn(batch * seqlen, d * sizeof(float));
    nrm = gq_mallocn(rows, d * sizeof(float));
    logits = gq_mallocn(rows, vocab * sizeof(float));
    if (!hidden || !nrm || !logits) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for a batch of %zu blocks of %zu tokens", batch,
                     seqlen);
        goto done;
    }
    for (size_t b0 = 0; b0 < nblocks; b0 += batch) {
        const size_t nb = nblocks - b0 < batch ? nblocks - b0 : batch, n = nb * seqlen;
        const int32_t *ids = tokens + b0 * seqlen;

        if ((rc = model_embed(hidden, m, ids, n, e)) < 0)
            goto done;
        for (int i = 0; i < c->num_layers; i++) {
            if ((rc = layer_fill(l, m, i, e)) < 0 ||
                (rc = fwd_layer(hidden, &s, &w, nb, seqlen, NULL, NULL, CAP_NONE, ws, e)) < 0)
                goto done;
        }
        for (size_t r0 = 0; r0 < n; r0 += rows) {
            const size_t k = n - r0 < rows ? n - r0 : rows;
            fwd_rmsnorm(nrm, hidden + r0 * d, m->final_norm, k, d, (float)c->rms_norm_eps);
            fwd_linear(logits, nrm, m->lm_head, NULL, k, vocab, d);
            for (size_t r = 0; r < k; r++) {
                const size_t t = r0 + r;
                const float *z = logits + r * vocab;
                double lse;
                if (t % seqlen == seqlen - 1)
                    continue;   /* the last position predicts nothing */
                lse = fwd_logsumexp(z, vocab);
                if (!isfinite(lse) || !isfinite(z[ids[t + 1]])) {
                    rc = GQ_FAIL(e, GQ_ENUMERIC, "non-finite logits at block %zu, position %zu",
                                 b0 + t / seqlen, t % seqlen);
                    goto done;
                }
                total += lse - (double)z[ids[t + 1]];
            }
        }
    }
    *nll = total;
    *count = nblocks * (seqlen - 1);
    rc = 0;
done:
    model_layer_free(l);
    gq_free(ws);
    gq_free(hidden);
    gq_free(nrm);
    gq_free(logits);
    return rc;
}
