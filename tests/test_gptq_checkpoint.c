/*
 * test_gptq_checkpoint.c - reading GPTQ checkpoints (core/model.c, the
 * quantization config in core/config.c).
 *
 * Each case builds a GPTQ checkpoint in a temp directory from one of the
 * generated fixtures (tests/fixtures/tiny-*): every decoder Linear is
 * quantized with round-to-nearest (quant_rtn) under the case's config,
 * packed by a naive bit-stream packer written here (checked against
 * core/pack.c once, so that reading does not rest on the writer's code
 * alone), and written with st_writer next to a config.json carrying the
 * quantization_config (or a quantize_config.json).  Then model_open +
 * model_layer_load must give exactly the weights a naive dequantization
 * of the test's own codes, scales (as stored) and zeros gives, and the
 * checkpoint's logits and model_nll must equal those of the source model
 * whose Linears were replaced by the same weights (model_layer_set_linear).
 *
 * Configs: 4-bit g32 sym v1 (F16 scales); 3-bit g-1 asym gptq_v2 with
 * GPTQModel's "format" key, BF16 scales and no g_idx; 8-bit g64 asym (F32
 * scales); 2-bit g32 asym with act-order (a permuted g_idx); Qwen3 (q/k/v
 * biases) from quantize_config.json with a "-:" rule leaving k/v_proj as
 * .weight and a "+:" rule putting layer 1 in 8 bits.  Errors: missing
 * qzeros, wrong qweight shape, a bad g_idx value, quant_method awq, bits
 * 5, and the other refusals.  With ../shared, an RTN checkpoint of
 * tiny-qwen2-gcide must give targets.json's RTN perplexity.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_env.h"
#include "config.h"
#include "dtype.h"
#include "json.h"
#include "mem.h"
#include "model.h"
#include "pack.h"
#include "quant.h"
#include "safetensors.h"
#include "test.h"

#define MAXMOD (8 * LIN_COUNT)   /* fixtures have 2 layers; gcide 4 */

/* ---- what a case builds ---- */

struct spec {
    const char *src;             /* fixture directory */
    int bits, group_size, desc_act, sym;
    pack_format fmt;
    const char *format_key;      /* "checkpoint_format" (default) or "format" */
    st_dtype scales;             /* ST_F16, ST_BF16 or ST_F32 */
    int omit_gidx;               /* write no g_idx (desc_act false only) */
    const char *exclude[2];      /* name substrings: modules kept as .weight */
    const char *eight;           /* name substring: modules in 8 bits */
    int eight_gs;                /* and this group size (0: the base one) */
    const char *dynamic;         /* the "dynamic" object as JSON text, or NULL */
    int in_quantize_config;      /* the config in quantize_config.json; config.json plain */
    const char *qc_text;         /* write this quantization config instead of the generated one */
    /* damage */
    const char *drop;            /* leave this tensor out */
    const char *reshape;         /* declare this tensor with one more row */
    const char *bad_gidx;        /* module whose g_idx[5] is set to its group count */
    const char *qweight_too;     /* module written as .weight plus a stray .qweight */
};

/* One module's quantization, as the test produced it (the oracle's input). */
struct qmod {
    int quantized, bits, group_size;
    size_t rows, cols, ngroups;
    uint8_t *q;          /* (rows, cols) codes */
    float *scales;       /* (ngroups, rows), rounded to the stored dtype */
    int32_t *zeros;      /* (ngroups, rows) */
    int32_t *g_idx;      /* (cols) */
};

static void qmods_free(struct qmod *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].q);
        free(m[i].scales);
        free(m[i].zeros);
        free(m[i].g_idx);
    }
    memset(m, 0, n * sizeof(*m));
}

/* The naive dequantization: W[n][k] = s[g][n] * (q[n][k] - z[g][n]), g = g_idx[k]. */
static void oracle(float *W, const struct qmod *m)
{
    for (size_t n = 0; n < m->rows; n++)
        for (size_t k = 0; k < m->cols; k++) {
            size_t g = (size_t)m->g_idx[k];
            W[n * m->cols + k] = m->scales[g * m->rows + n] *
                                 (float)((int32_t)m->q[n * m->cols + k] - m->zeros[g * m->rows + n]);
        }
}

/*
 * GPTQ-NOTES.md §2.3/§2.4 written out: the 32 values of a unit fill `bits`
 * words LSB-first, value i at stream bit bits*i, spilling into the next
 * word when it straddles.  qweight [cols/32*bits, rows]: units along k;
 * qzeros [ngroups, rows/32*bits]: units along n, v1 storing (z - 1) mod 2^bits.
 */
static void naive_put(uint32_t *words, size_t stride, size_t idx, uint32_t v, int bits)
{
    size_t bit = (size_t)bits * (idx % 32), w = (idx / 32) * (size_t)bits + bit / 32, off = bit % 32;
    words[w * stride] |= v << off;
    if (off + (size_t)bits > 32)
        words[(w + 1) * stride] |= v >> (32 - off);
}

static void naive_qweight(uint32_t *qw, const uint8_t *q, size_t rows, size_t cols, int bits)
{
    memset(qw, 0, cols / 32 * (size_t)bits * rows * sizeof(uint32_t));
    for (size_t n = 0; n < rows; n++)
        for (size_t k = 0; k < cols; k++)
            naive_put(qw + n, rows, k, q[n * cols + k], bits);
}

static void naive_qzeros(uint32_t *qz, const int32_t *z, size_t ngroups, size_t rows, int bits, pack_format fmt)
{
    const size_t qcols = rows / 32 * (size_t)bits;
    const uint32_t maxq = (1u << bits) - 1;
    memset(qz, 0, ngroups * qcols * sizeof(uint32_t));
    for (size_t g = 0; g < ngroups; g++)
        for (size_t n = 0; n < rows; n++) {
            uint32_t v = (uint32_t)z[g * rows + n];
            naive_put(qz + g * qcols, 1, n, fmt == PACK_GPTQ ? (v - 1) & maxq : v, bits);
        }
}

/* ---- building a checkpoint ---- */

struct otensor {
    char name[128];
    st_dtype dtype;
    int ndim;
    int64_t shape[2];
    const void *data;
    void *own;
    size_t nbytes;
};

struct olist {
    struct otensor v[256];
    size_t n;
};

static struct otensor *oadd(struct olist *o, const char *name, st_dtype dt, int ndim, int64_t d0, int64_t d1)
{
    struct otensor *t = &o->v[o->n++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->nbytes = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1) * st_dtype_size(dt);
    return t;
}

static void olist_free(struct olist *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->v[i].own);
    o->n = 0;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[600];
    FILE *f;
    int ok;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "w")))
        return -1;
    ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int module_excluded(const struct spec *sp, const char *mod)
{
    for (int i = 0; i < 2; i++)
        if (sp->exclude[i] && strstr(mod, sp->exclude[i]))
            return 1;
    return 0;
}

/* The quantization config text the spec implies. */
static void qc_text(char *buf, size_t cap, const struct spec *sp)
{
    if (sp->qc_text) {
        snprintf(buf, cap, "%s", sp->qc_text);
        return;
    }
    snprintf(buf, cap,
             "{\"quant_method\": \"gptq\", \"bits\": %d, \"group_size\": %d, \"desc_act\": %s, \"sym\": %s, "
             "\"%s\": \"%s\", \"lm_head\": false, \"damp_percent\": 0.01, \"pack_dtype\": \"int32\"%s%s, "
             "\"meta\": {\"quantizer\": [\"test:0\"]}}",
             sp->bits, sp->group_size, sp->desc_act ? "true" : "false", sp->sym ? "true" : "false",
             sp->format_key ? sp->format_key : "checkpoint_format", sp->fmt == PACK_GPTQ_V2 ? "gptq_v2" : "gptq",
             sp->dynamic ? ", \"dynamic\": " : "", sp->dynamic ? sp->dynamic : "");
}

/* config.json (+ quantize_config.json) for the spec. */
static int write_configs(const char *dir, const struct spec *sp)
{
    char path[600], qc[2048];
    char *src = NULL, *out = NULL;
    gq_json *root = NULL, *q = NULL;
    gq_err e = GQ_ERR_INIT;
    size_t len = 0;
    int rc = -1;

    qc_text(qc, sizeof(qc), sp);
    snprintf(path, sizeof(path), "%s/config.json", sp->src);
    if (!(src = test_read_file(path, &len)) || gq_json_parse(&root, src, len, &e) < 0)
        goto done;
    if (sp->in_quantize_config) {
        rc = write_text(dir, "quantize_config.json", qc);
    } else {
        if (gq_json_parse(&q, qc, strlen(qc), &e) < 0 || gq_json_add(root, "quantization_config", q) < 0)
            goto done;
        rc = 0;
    }
    if (rc == 0) {
        out = gq_json_print(root, 2);
        rc = out ? write_text(dir, "config.json", out) : -1;
    }
done:
    if (rc < 0)
        fprintf(stderr, "  write_configs: %s\n", e.msg);
    gq_json_free_text(out);
    gq_json_free(root);
    free(src);
    return rc;
}

/* Quantize one Linear W (rows, cols) under the module's settings into m, and its tensors into o. */
static int quantize_module(struct qmod *m, struct olist *o, const char *mod, const float *W, size_t rows,
                           size_t cols, int bits, int gs, const struct spec *sp, unsigned long long seed)
{
    const size_t ng = gs < 0 ? 1 : (cols + (size_t)gs - 1) / (size_t)gs;
    struct quant_config qc;
    size_t *perm = malloc(cols * sizeof(size_t));
    float *Wp = malloc(rows * cols * sizeof(float)), *sc = malloc(ng * rows * sizeof(float));
    uint8_t *qp = malloc(rows * cols);
    struct otensor *t;
    char name[160];
    gq_err e = GQ_ERR_INIT;
    int rc = -1;

    memset(m, 0, sizeof(*m));
    m->quantized = 1;
    m->bits = bits;
    m->group_size = gs;
    m->rows = rows;
    m->cols = cols;
    m->ngroups = ng;
    m->q = malloc(rows * cols);
    m->scales = malloc(ng * rows * sizeof(float));
    m->zeros = malloc(ng * rows * sizeof(int32_t));
    m->g_idx = malloc(cols * sizeof(int32_t));
    if (!perm || !Wp || !sc || !qp || !m->q || !m->scales || !m->zeros || !m->g_idx)
        goto done;
    /* act-order: columns quantized in a shuffled order, groups of gs in that order */
    for (size_t k = 0; k < cols; k++)
        perm[k] = k;
    for (size_t k = cols - 1; sp->desc_act && k > 0; k--) {
        size_t j = (size_t)(test_rand_u64(&seed) % (k + 1)), tmp = perm[k];
        perm[k] = perm[j];
        perm[j] = tmp;
    }
    for (size_t n = 0; n < rows; n++)
        for (size_t i = 0; i < cols; i++)
            Wp[n * cols + i] = W[n * cols + perm[i]];
    quant_config_default(&qc);
    qc.bits = bits;
    qc.sym = sp->sym;
    if (quant_rtn(qp, sc, m->zeros, NULL, Wp, rows, cols, gs, &qc, &e) < 0) {
        fprintf(stderr, "  quant_rtn %s: %s\n", mod, e.msg);
        goto done;
    }
    for (size_t i = 0; i < cols; i++) {
        m->g_idx[perm[i]] = (int32_t)(gs < 0 ? 0 : i / (size_t)gs);
        for (size_t n = 0; n < rows; n++)
            m->q[n * cols + perm[i]] = qp[n * cols + i];
    }

    snprintf(name, sizeof(name), "%s.qweight", mod);
    t = oadd(o, name, ST_I32, 2, (int64_t)(cols / 32 * (size_t)bits), (int64_t)rows);
    if (sp->reshape && !strcmp(sp->reshape, name))
        t->shape[0]++, t->nbytes += rows * 4;
    if (!(t->own = calloc(1, t->nbytes)))
        goto done;
    naive_qweight(t->own, m->q, rows, cols, bits);
    snprintf(name, sizeof(name), "%s.qzeros", mod);
    t = oadd(o, name, ST_I32, 2, (int64_t)ng, (int64_t)(rows / 32 * (size_t)bits));
    if (!(t->own = malloc(t->nbytes)))
        goto done;
    naive_qzeros(t->own, m->zeros, ng, rows, bits, sp->fmt);
    snprintf(name, sizeof(name), "%s.scales", mod);
    t = oadd(o, name, sp->scales, 2, (int64_t)ng, (int64_t)rows);
    if (!(t->own = malloc(t->nbytes)))
        goto done;
    for (size_t i = 0; i < ng * rows; i++) {
        if (sp->scales == ST_F16) {
            ((uint16_t *)t->own)[i] = gq_f32_to_f16(sc[i]);
            m->scales[i] = gq_f16_to_f32(gq_f32_to_f16(sc[i]));
        } else if (sp->scales == ST_BF16) {
            ((uint16_t *)t->own)[i] = gq_f32_to_bf16(sc[i]);
            m->scales[i] = gq_bf16_to_f32(gq_f32_to_bf16(sc[i]));
        } else {
            ((float *)t->own)[i] = sc[i];
            m->scales[i] = sc[i];
        }
    }
    if (!sp->omit_gidx) {
        snprintf(name, sizeof(name), "%s.g_idx", mod);
        t = oadd(o, name, ST_I32, 1, (int64_t)cols, 0);
        if (!(t->own = malloc(t->nbytes)))
            goto done;
        memcpy(t->own, m->g_idx, t->nbytes);
        if (sp->bad_gidx && !strcmp(sp->bad_gidx, mod))
            ((int32_t *)t->own)[5] = (int32_t)ng;
    }
    rc = 0;
done:
    free(perm);
    free(Wp);
    free(sc);
    free(qp);
    return rc;
}

/*
 * Build the spec's checkpoint into a new temp dir (dir, cap >= 64); mods
 * (MAXMOD, layer-major) get each module's quantization.  0 or -1.
 */
static int build(char *dir, size_t cap, const struct spec *sp, struct qmod *mods)
{
    model *src = NULL;
    model_layer *l = NULL;
    st_model *st = NULL;
    st_writer *w = NULL;
    struct olist *o = calloc(1, sizeof(*o));
    const struct model_config *c;
    gq_err e = GQ_ERR_INIT;
    int rc = -1;

    memset(mods, 0, MAXMOD * sizeof(*mods));
    snprintf(dir, cap, "/tmp/gptq-test-ckpt-XXXXXX");
    if (!o || !mkdtemp(dir))
        goto done;
    if (model_open(&src, sp->src, &e) < 0 || st_model_open(&st, sp->src, &e) < 0)
        goto done;
    c = model_config_of(src);
    /* every tensor outside the decoder Linears, as it is */
    for (size_t i = 0; i < st_model_count(st); i++) {
        const struct st_tensor *t = st_model_tensor(st, i);
        struct otensor *ot;
        int lin = 0;
        for (int id = 0; id < LIN_COUNT && !lin; id++) {
            char suffix[64];
            snprintf(suffix, sizeof(suffix), ".%s.weight", linear_name((enum linear_id)id));
            lin = strlen(t->name) > strlen(suffix) && !strcmp(t->name + strlen(t->name) - strlen(suffix), suffix);
        }
        if (lin || (sp->drop && !strcmp(sp->drop, t->name)))
            continue;
        ot = oadd(o, t->name, t->dtype, t->ndim, t->shape[0], t->ndim > 1 ? t->shape[1] : 0);
        ot->data = t->data;
    }
    for (int i = 0; i < c->num_layers; i++) {
        if (model_layer_load(&l, src, i, &e) < 0)
            goto done;
        for (int id = 0; id < LIN_COUNT; id++) {
            struct qmod *m = &mods[(size_t)i * LIN_COUNT + (size_t)id];
            char mod[96], name[128];
            size_t rows, cols;
            linear_module_name(mod, sizeof(mod), i, (enum linear_id)id);
            model_linear_shape(&rows, &cols, src, (enum linear_id)id);
            if (module_excluded(sp, mod) || (sp->qweight_too && !strcmp(sp->qweight_too, mod))) {
                const struct st_tensor *t;
                struct otensor *ot;
                snprintf(name, sizeof(name), "%s.weight", mod);
                t = st_model_find(st, name);
                ot = oadd(o, name, t->dtype, 2, t->shape[0], t->shape[1]);
                ot->data = t->data;
                if (sp->qweight_too && !strcmp(sp->qweight_too, mod)) {
                    snprintf(name, sizeof(name), "%s.qweight", mod);
                    ot = oadd(o, name, ST_I32, 2, (int64_t)(cols / 8), (int64_t)rows);
                    if (!(ot->own = calloc(1, ot->nbytes)))
                        goto done;
                }
                continue;
            }
            int eight = sp->eight && strstr(mod, sp->eight);
            if (quantize_module(m, o, mod, model_layer_linear(l, (enum linear_id)id), rows, cols,
                                eight ? 8 : sp->bits, eight && sp->eight_gs ? sp->eight_gs : sp->group_size, sp,
                                0x1234ULL + (unsigned long long)(i * LIN_COUNT + id)) < 0)
                goto done;
        }
        model_layer_free(l);
        l = NULL;
    }
    /* leave out the dropped packed tensor */
    for (size_t i = 0; sp->drop && i < o->n; i++)
        if (!strcmp(o->v[i].name, sp->drop)) {
            free(o->v[i].own);
            memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof(o->v[0]));
            o->n--;
            break;
        }
    if (st_writer_open(&w, dir, 0, &e) < 0)
        goto done;
    for (size_t i = 0; i < o->n; i++)
        if (st_writer_declare(w, o->v[i].name, o->v[i].dtype, o->v[i].ndim, o->v[i].shape, &e) < 0)
            goto done;
    for (size_t i = 0; i < o->n; i++)
        if (st_writer_write(w, o->v[i].name, o->v[i].own ? o->v[i].own : o->v[i].data, o->v[i].nbytes, &e) < 0)
            goto done;
    rc = st_writer_finish(w, &e);
    w = NULL;
    if (rc == 0)
        rc = write_configs(dir, sp);
done:
    if (rc < 0)
        fprintf(stderr, "  build %s: %s\n", sp->src, e.msg);
    st_writer_abort(w);
    model_layer_free(l);
    model_close(src);
    st_model_close(st);
    if (o)
        olist_free(o);
    free(o);
    return rc;
}

static void rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* ---- checking a checkpoint ---- */

static double max_abs(const float *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fabs((double)a[i]) > m ? fabs((double)a[i]) : m;
    return m;
}

/* NLL (summed in double) of next-token prediction from logits (nseq * seqlen, vocab). */
static double nll_of(const float *logits, const int32_t *ids, size_t nseq, size_t seqlen, size_t vocab)
{
    double total = 0.0;
    for (size_t s = 0; s < nseq; s++)
        for (size_t t = 0; t + 1 < seqlen; t++) {
            const float *z = logits + (s * seqlen + t) * vocab;
            double mx = z[0], sum = 0.0;
            for (size_t v = 1; v < vocab; v++)
                mx = z[v] > mx ? z[v] : mx;
            for (size_t v = 0; v < vocab; v++)
                sum += exp((double)z[v] - mx);
            total += mx + log(sum) - (double)z[ids[s * seqlen + t + 1]];
        }
    return total;
}

/*
 * The checkpoint in dir against the spec and the test's own quantization:
 * the config read, every Linear's storage and weight (exact), biases and
 * norms, then logits and model_nll against the source model with the
 * same weights set in.
 */
static void check_checkpoint(const char *dir, const struct spec *sp, const struct qmod *mods)
{
    enum { NSEQ = 2, SEQLEN = 16 };
    model *qm = NULL, *sm = NULL;
    model_layer *lq = NULL, *ls = NULL;
    const struct model_config *c;
    int32_t ids[NSEQ * SEQLEN];
    float *hq = NULL, *hs = NULL, *zq = NULL, *zs = NULL, *W = NULL;
    size_t hidden, vocab, count = 0, nquant = 0, nfloat = 0;
    double nll = 0.0, want, nll_float = 0.0;
    gq_err e = GQ_ERR_INIT;
    unsigned long long seed = 99;

    CHECK_OK(model_open(&qm, dir, &e), &e);
    CHECK_OK(model_open(&sm, sp->src, &e), &e);
    if (!qm || !sm)
        goto done;
    c = model_config_of(qm);
    CHECK(c->quantized == 1);
    CHECK_EQ_INT(c->gptq.bits, sp->bits);
    CHECK_EQ_INT(c->gptq.group_size, sp->group_size);
    CHECK_EQ_INT(c->gptq.desc_act, sp->desc_act);
    CHECK_EQ_INT(c->gptq.sym, sp->sym);
    CHECK_EQ_INT(c->gptq.format, sp->fmt);
    CHECK_MSG(!strcmp(c->gptq.source, sp->in_quantize_config ? "quantize_config.json" : "config.json"),
              "source %s", c->gptq.source);
    CHECK(model_dynamic(qm) != NULL);
    CHECK(model_config_of(sm)->quantized == 0 && model_dynamic(sm) == NULL);
    hidden = (size_t)c->hidden_size;
    vocab = (size_t)c->vocab_size;
    for (size_t i = 0; i < NSEQ * SEQLEN; i++)
        ids[i] = (int32_t)(test_rand_u64(&seed) % vocab);
    hq = malloc(NSEQ * SEQLEN * hidden * sizeof(float));
    hs = malloc(NSEQ * SEQLEN * hidden * sizeof(float));
    zq = malloc(NSEQ * SEQLEN * vocab * sizeof(float));
    zs = malloc(NSEQ * SEQLEN * vocab * sizeof(float));
    W = malloc((size_t)c->intermediate_size * hidden * 4 * sizeof(float));
    if (!hq || !hs || !zq || !zs || !W)
        goto done;
    CHECK_OK(model_embed(hq, qm, ids, NSEQ * SEQLEN, &e), &e);
    CHECK_OK(model_embed(hs, sm, ids, NSEQ * SEQLEN, &e), &e);

    for (int i = 0; i < c->num_layers; i++) {
        CHECK_OK(model_layer_load(&lq, qm, i, &e), &e);
        CHECK_OK(model_layer_load(&ls, sm, i, &e), &e);
        if (!lq || !ls)
            goto done;
        for (int id = 0; id < LIN_COUNT; id++) {
            const struct qmod *m = &mods[(size_t)i * LIN_COUNT + (size_t)id];
            struct model_gptq_module mq;
            size_t rows, cols, bad = 0;
            const float *got = model_layer_linear(lq, (enum linear_id)id);
            const float *bq = model_layer_bias(lq, (enum linear_id)id), *bs = model_layer_bias(ls, (enum linear_id)id);
            char mod[96];

            linear_module_name(mod, sizeof(mod), i, (enum linear_id)id);
            model_linear_shape(&rows, &cols, qm, (enum linear_id)id);
            CHECK_MSG(model_linear_quant(&mq, qm, i, (enum linear_id)id) == m->quantized, "%s", mod);
            if (m->quantized) {
                nquant++;
                CHECK_MSG(mq.bits == m->bits && mq.group_size == m->group_size, "%s: %d-bit g%d, want %d-bit g%d",
                          mod, mq.bits, mq.group_size, m->bits, m->group_size);
                oracle(W, m);
                for (size_t k = 0; k < rows * cols; k++)
                    bad += got[k] != W[k];
                CHECK_MSG(bad == 0, "%s: %zu of %zu weights differ from the naive dequantization", mod, bad,
                          rows * cols);
                /* and it is not the float weight: the quantization did something */
                CHECK(memcmp(got, model_layer_linear(ls, (enum linear_id)id), rows * cols * sizeof(float)) != 0);
                CHECK_OK(model_layer_set_linear(ls, (enum linear_id)id, W, &e), &e);
            } else {
                nfloat++;
                CHECK_MSG(!memcmp(got, model_layer_linear(ls, (enum linear_id)id), rows * cols * sizeof(float)),
                          "%s: the unquantized weight differs", mod);
            }
            CHECK(!bq == !bs);
            if (bq && bs)
                CHECK(!memcmp(bq, bs, rows * sizeof(float)));
        }
        CHECK_OK(layer_forward(hq, qm, lq, NSEQ, SEQLEN, NULL, NULL, CAP_NONE, &e), &e);
        CHECK_OK(layer_forward(hs, sm, ls, NSEQ, SEQLEN, NULL, NULL, CAP_NONE, &e), &e);
        model_layer_free(lq);
        model_layer_free(ls);
        lq = ls = NULL;
    }
    CHECK_OK(model_logits(zq, qm, hq, NSEQ * SEQLEN, &e), &e);
    CHECK_OK(model_logits(zs, sm, hs, NSEQ * SEQLEN, &e), &e);
    {
        double diff = 0.0, scale = max_abs(zs, NSEQ * SEQLEN * vocab);
        for (size_t k = 0; k < NSEQ * SEQLEN * vocab; k++)
            diff = fabs((double)zq[k] - zs[k]) > diff ? fabs((double)zq[k] - zs[k]) : diff;
        CHECK_MSG(diff <= 1e-6 * scale, "logits differ by %g (max |logit| %g)", diff, scale);
    }
    want = nll_of(zs, ids, NSEQ, SEQLEN, vocab);
    CHECK_OK(model_nll(&nll, &count, qm, ids, NSEQ, SEQLEN, 1, &e), &e);
    CHECK_EQ_INT(count, NSEQ * (SEQLEN - 1));
    CHECK_NEAR(nll, want, 1e-5 * fabs(want));
    /* the float model gives another value: the comparison above can fail */
    CHECK_OK(model_nll(&nll_float, &count, sm, ids, NSEQ, SEQLEN, 2, &e), &e);
    CHECK_MSG(fabs(nll_float - nll) > 1e-8 * fabs(want), "quantized nll %.9g == float nll %.9g", nll, nll_float);
    printf("  %s %d-bit g%d%s%s: %zu packed + %zu float Linears exact, nll %.6f (float %.6f, via layers %.6f)\n",
           sp->src, sp->bits, sp->group_size, sp->desc_act ? " act-order" : "", sp->fmt == PACK_GPTQ_V2 ? " v2" : "",
           nquant, nfloat, nll, nll_float, want);
done:
    model_layer_free(lq);
    model_layer_free(ls);
    model_close(qm);
    model_close(sm);
    free(hq);
    free(hs);
    free(zq);
    free(zs);
    free(W);
}

static void build_and_check(const struct spec *sp)
{
    static struct qmod mods[MAXMOD];
    char dir[64];
    if (build(dir, sizeof(dir), sp, mods) == 0)
        check_checkpoint(dir, sp, mods);
    else
        CHECK_MSG(0, "could not build the checkpoint");
    qmods_free(mods, MAXMOD);
    rm_rf(dir);
}

/* ---- cases ---- */

/* The test's naive packer is the layout core/pack.c writes (v1 and v2, every width). */
static void test_gptq_checkpoint__naive_packer_matches_pack(void)
{
    enum { ROWS = 64, COLS = 96, NG = 3 };
    static const int widths[] = {2, 3, 4, 8};
    uint8_t q[ROWS * COLS];
    int32_t z[NG * ROWS], a[COLS / 32 * 8 * ROWS], b[COLS / 32 * 8 * ROWS];
    unsigned long long seed = 7;
    gq_err e = GQ_ERR_INIT;

    for (size_t w = 0; w < 4; w++) {
        const int bits = widths[w];
        for (size_t i = 0; i < ROWS * COLS; i++)
            q[i] = (uint8_t)(test_rand_u64(&seed) & ((1u << bits) - 1));
        for (size_t i = 0; i < NG * ROWS; i++)
            z[i] = (int32_t)(test_rand_u64(&seed) & ((1u << bits) - 1));
        naive_qweight((uint32_t *)a, q, ROWS, COLS, bits);
        CHECK_OK(pack_qweight(b, q, ROWS, COLS, bits, &e), &e);
        CHECK_MSG(!memcmp(a, b, COLS / 32 * (size_t)bits * ROWS * 4), "qweight, %d bits", bits);
        for (int f = PACK_GPTQ; f <= PACK_GPTQ_V2; f++) {
            naive_qzeros((uint32_t *)a, z, NG, ROWS, bits, (pack_format)f);
            CHECK_OK(pack_qzeros(b, z, NG, ROWS, bits, (pack_format)f, &e), &e);
            CHECK_MSG(!memcmp(a, b, NG * ROWS / 32 * (size_t)bits * 4), "qzeros, %d bits, %s", bits,
                      pack_format_name((pack_format)f));
        }
    }
    /* the documented sym words: 4-bit zero 8 is 0x77777777 in v1 */
    for (size_t i = 0; i < NG * ROWS; i++)
        z[i] = 8;
    naive_qzeros((uint32_t *)a, z, NG, ROWS, 4, PACK_GPTQ);
    CHECK((uint32_t)a[0] == 0x77777777u);
}

static void test_gptq_checkpoint__llama_4bit_g32_sym_v1(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-llama", .bits = 4, .group_size = 32, .sym = 1, .fmt = PACK_GPTQ,
                      .scales = ST_F16};
    build_and_check(&sp);
}

/* GPTQModel's "format" key, v2 zeros (asym zeros of 0 included), BF16 scales, no g_idx. */
static void test_gptq_checkpoint__llama_3bit_gm1_asym_v2(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-llama", .bits = 3, .group_size = -1, .sym = 0, .fmt = PACK_GPTQ_V2,
                      .format_key = "format", .scales = ST_BF16, .omit_gidx = 1};
    build_and_check(&sp);
}

static void test_gptq_checkpoint__mistral_8bit_g64_asym_f32_scales(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-mistral", .bits = 8, .group_size = 64, .sym = 0, .fmt = PACK_GPTQ,
                      .scales = ST_F32};
    build_and_check(&sp);
}

/* act-order: groups formed in a shuffled column order, g_idx maps each column to its group. */
static void test_gptq_checkpoint__mistral_2bit_g32_desc_act(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-mistral", .bits = 2, .group_size = 32, .desc_act = 1, .sym = 0,
                      .fmt = PACK_GPTQ, .scales = ST_F16};
    build_and_check(&sp);
}

/*
 * Qwen3 (biases on q/k/v/o, tied embeddings), the config in
 * quantize_config.json: k_proj and v_proj (48 rows, not packable) kept as
 * .weight by a "-:" rule, layer 1 in 8 bits and groups of 64 by a "+:"
 * rule (o_proj's 96 columns: a partial last group).
 */
static void test_gptq_checkpoint__qwen3_dynamic_quantize_config(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-qwen3", .bits = 4, .group_size = 32, .sym = 1, .fmt = PACK_GPTQ,
                      .scales = ST_F16, .exclude = {"self_attn.k_proj", "self_attn.v_proj"}, .eight = "layers.1.",
                      .eight_gs = 64,
                      .dynamic = "{\"-:.*\\\\.(k|v)_proj$\": {}, \"+:.*\\\\.layers\\\\.1\\\\..*\": {\"bits\": 8, "
                                 "\"group_size\": 64}}",
                      .in_quantize_config = 1};
    build_and_check(&sp);
}

/*
 * A module stored as a float .weight with no rule saying so (transformers'
 * modules_in_block_to_quantize does this): read as float, like vLLM.
 */
static void test_gptq_checkpoint__unruled_float_module(void)
{
    struct spec sp = {.src = "tests/fixtures/tiny-llama", .bits = 4, .group_size = 64, .sym = 0, .fmt = PACK_GPTQ,
                      .scales = ST_F16, .exclude = {"layers.1.self_attn.o_proj", "mlp.up_proj"}};
    build_and_check(&sp);
}

/* model_open's (or model_layer_load's) error on a damaged checkpoint: GQ_EINVAL naming the problem. */
static void expect_error(const struct spec *sp, int at_load, const char *want1, const char *want2)
{
    static struct qmod mods[MAXMOD];
    char dir[64];
    model *m = NULL;
    model_layer *l = NULL;
    gq_err e = GQ_ERR_INIT;
    int rc;

    if (build(dir, sizeof(dir), sp, mods) < 0) {
        CHECK_MSG(0, "could not build the checkpoint");
        goto done;
    }
    rc = model_open(&m, dir, &e);
    if (at_load) {
        CHECK_OK(rc, &e);
        if (m) {
            CHECK_OK(model_layer_load(&l, m, 0, &e), &e);
            model_layer_free(l);
            l = NULL;
            rc = model_layer_load(&l, m, 1, &e);
            CHECK(l == NULL);
        }
    } else {
        CHECK(m == NULL);
    }
    CHECK_MSG(rc == GQ_EINVAL && strstr(e.msg, want1) && strstr(e.msg, want2), "rc %d, message '%s' (want '%s' and "
              "'%s')", rc, e.msg, want1, want2);
done:
    model_layer_free(l);
    model_close(m);
    qmods_free(mods, MAXMOD);
    rm_rf(dir);
}

static void test_gptq_checkpoint__errors(void)
{
    const struct spec base = {.src = "tests/fixtures/tiny-llama", .bits = 4, .group_size = 32, .sym = 1,
                              .fmt = PACK_GPTQ, .scales = ST_F16};
    struct spec sp;

    sp = base;
    sp.drop = "model.layers.1.mlp.down_proj.qzeros";
    expect_error(&sp, 0, "tensor model.layers.1.mlp.down_proj.qzeros is missing",
                 "(expected I32 [5, 8], 4 bits, group_size 32)");
    sp = base;
    sp.reshape = "model.layers.0.self_attn.k_proj.qweight";
    expect_error(&sp, 0, "tensor model.layers.0.self_attn.k_proj.qweight has the wrong shape [9, 32]",
                 "(expected [8, 32], 4 bits, group_size 32)");
    sp = base;
    sp.bad_gidx = "model.layers.1.mlp.up_proj";
    expect_error(&sp, 1, "tensor model.layers.1.mlp.up_proj.g_idx[5] is 2, not a group", "(0..1: 2 groups of 32)");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 32, \"version\": \"gemm\"}";
    expect_error(&sp, 0, "quantization_config.quant_method 'awq' is not supported", "(only gptq)");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 5, \"group_size\": 32}";
    expect_error(&sp, 0, "quantization_config.bits 5 is not supported", "(2, 3, 4 or 8)");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\"}";
    expect_error(&sp, 0, "'fp8' is not supported", "only gptq");
    /* the same refusals from quantize_config.json name the file */
    sp = base;
    sp.in_quantize_config = 1;
    sp.qc_text = "{\"bits\": 5, \"group_size\": 32}";
    expect_error(&sp, 0, "quantize_config.json: config key bits 5 is not supported", "2, 3, 4 or 8");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"lm_head\": true}";
    expect_error(&sp, 0, "quantization_config.lm_head is true", "quantized lm_head is not supported");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"checkpoint_format\": \"marlin\"}";
    expect_error(&sp, 0, "quantization_config.checkpoint_format 'marlin' is not supported", "gptq or gptq_v2");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"pack_dtype\": \"int16\"}";
    expect_error(&sp, 0, "pack_dtype 'int16' is not supported", "only int32");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"dynamic\": {\"+:(\": {}}}";
    expect_error(&sp, 0, "quantization_config.dynamic: dynamic rule '+:('", "cannot compile the regex");
    /* the config and the tensors disagree */
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": 32}";
    expect_error(&sp, 0, "q_proj.qweight has the wrong shape [8, 64]", "(expected [16, 64], 8 bits, group_size 32)");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"desc_act\": true}";
    sp.omit_gidx = 1;
    expect_error(&sp, 0, "tensor model.layers.0.self_attn.q_proj.g_idx is missing", "desc_act is true");
    sp = base;
    sp.qc_text = "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"dynamic\": {\"-:.*o_proj\": {}}}";
    sp.qweight_too = "model.layers.0.self_attn.o_proj";
    expect_error(&sp, 0, "o_proj.qweight is in the checkpoint", "rule leaves model.layers.0.self_attn.o_proj unquantized");
    sp = base;
    sp.scales = ST_F32;
    sp.qc_text = NULL;
    sp.drop = "model.layers.0.mlp.gate_proj.scales";
    expect_error(&sp, 0, "gate_proj.scales is missing", "(expected F16 [2, 160]");
}

/* model_gptq_parse and model_config_parse on quantization configs; plain configs unchanged. */
static void test_gptq_checkpoint__config_parse(void)
{
    static const char *const bad[][3] = {
        {"{\"bits\": 4}", "quantization_config.group_size is missing", ""},
        {"{\"group_size\": 32}", "quantization_config.bits is missing", ""},
        {"{\"bits\": 4, \"group_size\": 0}", "group_size must be -1 (one group) or positive (got 0)", ""},
        {"{\"bits\": 4, \"group_size\": -2}", "quantization_config.group_size", ""},
        {"{\"bits\": \"4\", \"group_size\": 32}", "quantization_config.bits", ""},
        {"{\"bits\": 4, \"group_size\": 32, \"sym\": 1}", "quantization_config.sym must be true or false", ""},
        {"{\"bits\": 4, \"group_size\": 32, \"bits\": 8}", "quantization_config.bits appears more than once", ""},
        {"{\"bits\": 4, \"group_size\": 32, \"checkpoint_format\": \"gptq\", \"format\": \"gptq_v2\"}",
         "checkpoint_format 'gptq' and quantization_config.format 'gptq_v2' disagree", ""},
        {"{\"bits\": 4, \"group_size\": 32, \"quant_method\": \"gptq\", \"method\": \"awq\"}", "disagree", ""},
        {"{\"bits\": 4, \"group_size\": 32, \"method\": \"awq\"}", "quantization_config.method 'awq'", "not supported"},
        {"{\"bits\": 4, \"group_size\": 32, \"quant_method\": \"bitsandbytes\"}", "'bitsandbytes' is not supported",
         ""},
        {"{\"bits\": 4, \"group_size\": 32, \"dynamic\": {\".*\": {\"bits\": 6}}}", "dynamic rule '.*'",
         "bits must be 2, 3, 4 or 8 (got 6)"},
        {"[4]", "quantization_config must be an object", ""},
    };
    struct model_gptq g;
    struct model_config c1, c2;
    struct model_gptq_module mm;
    dynamic_rules *d = NULL;
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    char *cfg = NULL, text[8192];
    size_t len = 0;

    /* defaults: desc_act false, sym true, format gptq; aliases */
    snprintf(text, sizeof(text), "{\"bits\": 3, \"group_size\": -1}");
    CHECK_OK(gq_json_parse(&j, text, strlen(text), &e), &e);
    CHECK_OK(model_gptq_parse(&g, &d, j, &e), &e);
    CHECK(g.bits == 3 && g.group_size == -1 && g.desc_act == 0 && g.sym == 1 && g.format == PACK_GPTQ);
    CHECK(d != NULL && dynamic_count(d) == 0);
    dynamic_free(d);
    gq_json_free(j);
    d = NULL;
    j = NULL;
    snprintf(text, sizeof(text), "{\"method\": \"gptq\", \"format\": \"gptq_v2\", \"bits\": 8, \"group_size\": 128, "
             "\"desc_act\": true, \"sym\": false, \"dynamic\": {\"-:.*down\": {}, \"+:.*up\": {\"bits\": 2, "
             "\"group_size\": 64, \"sym\": true}}, \"meta\": {\"x\": 1}, \"damp_percent\": 0.05}");
    CHECK_OK(gq_json_parse(&j, text, strlen(text), &e), &e);
    CHECK_OK(model_gptq_parse(&g, &d, j, &e), &e);
    CHECK(g.bits == 8 && g.group_size == 128 && g.desc_act == 1 && g.sym == 0 && g.format == PACK_GPTQ_V2);
    CHECK_EQ_INT(dynamic_count(d), 2);
    model_gptq_module(&mm, &g, d, "model.layers.0.mlp.down");
    CHECK(mm.quantized == 0 && mm.bits == 0);
    model_gptq_module(&mm, &g, d, "model.layers.0.mlp.up");
    CHECK(mm.quantized && mm.bits == 2 && mm.group_size == 64 && mm.sym == 1 && mm.desc_act == 1);
    model_gptq_module(&mm, &g, d, "model.layers.0.mlp.gate");
    CHECK(mm.quantized && mm.bits == 8 && mm.group_size == 128 && mm.sym == 0 && mm.desc_act == 1);
    model_gptq_module(&mm, &g, NULL, "model.layers.0.mlp.down");
    CHECK(mm.quantized && mm.bits == 8);
    dynamic_free(d);
    gq_json_free(j);
    d = NULL;
    j = NULL;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&g, 0x5a, sizeof(g));
        d = (dynamic_rules *)&g;
        CHECK_OK(gq_json_parse(&j, bad[i][0], strlen(bad[i][0]), &e), &e);
        e = (gq_err)GQ_ERR_INIT;
        CHECK_MSG(model_gptq_parse(&g, &d, j, &e) == GQ_EINVAL && strstr(e.msg, bad[i][1]) && strstr(e.msg, bad[i][2]),
                  "%s: '%s'", bad[i][0], e.msg);
        CHECK(d == (dynamic_rules *)&g);   /* set only on success */
        gq_json_free(j);
        j = NULL;
    }

    /* a plain config parses exactly as before; "quantization_config": null is no config */
    cfg = test_read_file("tests/fixtures/tiny-llama/config.json", &len);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    memset(&c1, 0x33, sizeof(c1));
    memset(&c2, 0x33, sizeof(c2));
    CHECK_OK(model_config_parse(&c1, cfg, len, &e), &e);
    CHECK(c1.quantized == 0 && c1.gptq.bits == 0 && c1.gptq.source[0] == '\0');
    snprintf(text, sizeof(text), "{\"quantization_config\": null, %s", strchr(cfg, '{') + 1);
    CHECK_OK(model_config_parse(&c2, text, strlen(text), &e), &e);
    CHECK(!memcmp(&c1, &c2, sizeof(c1)));
    /* a gptq one is read, its rules checked */
    snprintf(text, sizeof(text), "{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 2, \"group_size\": "
             "64, \"dynamic\": {\"-:x\": {}}}, %s", strchr(cfg, '{') + 1);
    CHECK_OK(model_config_parse(&c2, text, strlen(text), &e), &e);
    CHECK(c2.quantized == 1 && c2.gptq.bits == 2 && c2.gptq.group_size == 64 && !strcmp(c2.gptq.source, "config.json"));
    CHECK(c2.hidden_size == c1.hidden_size && c2.rope_type == c1.rope_type && c2.rope_factor == c1.rope_factor);
    snprintf(text, sizeof(text), "{\"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4}, %s",
             strchr(cfg, '{') + 1);
    CHECK(model_config_parse(&c2, text, strlen(text), &e) == GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "quantization_config.quant_method 'awq' is not supported (only gptq)"), "%s", e.msg);
    snprintf(text, sizeof(text), "{\"quantization_config\": {\"bits\": 4, \"group_size\": 32, \"dynamic\": "
             "{\"-:x\": {\"bits\": 4}}}, %s", strchr(cfg, '{') + 1);
    CHECK(model_config_parse(&c2, text, strlen(text), &e) == GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "negative (-:) rule takes no overrides"), "%s", e.msg);
    free(cfg);

    /* model_gptq_load on a float model: nothing found, nothing set */
    {
        int found = 7;
        d = (dynamic_rules *)&g;
        CHECK_OK(model_gptq_load(&g, &d, &found, "tests/fixtures/tiny-mistral", &e), &e);
        CHECK(found == 0 && d == (dynamic_rules *)&g);
        CHECK(model_gptq_load(&g, &d, &found, "/nonexistent-dir", &e) == GQ_ENOTFOUND);
    }
}

/* Every allocation of model_open and model_layer_load on a GPTQ checkpoint failing in turn. */
static void test_gptq_checkpoint__out_of_memory(void)
{
    static struct qmod mods[MAXMOD];
    const struct spec sp = {.src = "tests/fixtures/tiny-llama", .bits = 4, .group_size = 32, .sym = 1,
                            .fmt = PACK_GPTQ, .scales = ST_F16, .dynamic = "{\"-:.*o_proj\": {}}",
                            .exclude = {"o_proj"}};
    char dir[64];
    long n;
    int rc = -1;

    if (build(dir, sizeof(dir), &sp, mods) < 0) {
        CHECK_MSG(0, "could not build the checkpoint");
        return;
    }
    for (n = 0; n < 500 && rc != 0; n++) {
        model *m = NULL;
        model_layer *l = NULL;
        gq_err e = GQ_ERR_INIT;
        gq_alloc_fail_after(n);
        rc = model_open(&m, dir, &e);
        if (rc == 0)
            rc = model_layer_load(&l, m, 1, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "allocation %ld: rc %d (%s)", n, rc, e.msg);
        model_layer_free(l);
        model_close(m);
    }
    CHECK_MSG(rc == 0 && n > 5, "n = %ld", n);
    printf("  %ld allocations, each failing in turn: GQ_ENOMEM, nothing leaked\n", n - 1);
    qmods_free(mods, MAXMOD);
    rm_rf(dir);
}

/*
 * The shared fixture's targets.json gives the perplexity of round-to-
 * nearest (the reference quant.py, float32) per config: an RTN checkpoint
 * written in the GPTQ format and read back must give it.  F32 scales keep
 * the weights exactly the reference's; the full 400-block evaluation.
 */
static void test_gptq_checkpoint__gcide_rtn_matches_targets(void)
{
    static struct qmod mods[MAXMOD];
    const char *shared = test_shared_dir();
    char src[4200], blocks[4200], tpath[4200], dir[64];
    struct spec sp = {.bits = 4, .group_size = 128, .sym = 0, .fmt = PACK_GPTQ, .scales = ST_F32};
    gq_json *t = NULL;
    gq_err e = GQ_ERR_INIT;
    model *m = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    size_t len = 0, count = 0;
    double want = 0.0, nll = 0.0, ppl;

    if (!shared)
        SKIP("../shared is absent: no tiny-qwen2-gcide");
#if defined(__SANITIZE_ADDRESS__)
    SKIP("400 blocks of 256 tokens: half a minute more under ASan, for code the other cases run too");
#endif
    snprintf(src, sizeof(src), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(blocks, sizeof(blocks), "%s/fixtures/tiny-qwen2-gcide/reference/eval-blocks.i32", shared);
    snprintf(tpath, sizeof(tpath), "%s/fixtures/tiny-qwen2-gcide/targets.json", shared);
    sp.src = src;
    text = test_read_file(tpath, &len);
    CHECK_OK(text ? gq_json_parse(&t, text, len, &e) : -1, &e);
    for (const gq_json *c = gq_json_first(gq_json_get(t, "configs")); c; c = gq_json_next(c))
        if (!strcmp(gq_json_string(gq_json_get(c, "name")) ? gq_json_string(gq_json_get(c, "name")) : "", "w4g128"))
            want = gq_json_number(gq_json_get(c, "rtn_ppl"));
    CHECK(want > 1.0);
    free(text);
    text = test_read_file(blocks, &len);
    ids = (int32_t *)text;
    CHECK(ids && len == 400 * 256 * 4);
    if (build(dir, sizeof(dir), &sp, mods) < 0) {
        CHECK_MSG(0, "could not build the checkpoint");
        goto done;
    }
    CHECK_OK(model_open(&m, dir, &e), &e);
    if (m && ids && len == 400 * 256 * 4)
        CHECK_OK(model_nll(&nll, &count, m, ids, 400, 256, 8, &e), &e);
    ppl = exp(nll / (double)(count ? count : 1));
    printf("  RTN w4g128 checkpoint: perplexity %.5f, targets.json rtn_ppl %.5f\n", ppl, want);
    CHECK_NEAR(ppl, want, 2e-5 * want);
    rm_rf(dir);
done:
    model_close(m);
    qmods_free(mods, MAXMOD);
    gq_json_free(t);
    free(text);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    t_prog = "test_gptq_checkpoint";
    RUN(test_gptq_checkpoint__naive_packer_matches_pack);
    RUN(test_gptq_checkpoint__llama_4bit_g32_sym_v1);
    RUN(test_gptq_checkpoint__llama_3bit_gm1_asym_v2);
    RUN(test_gptq_checkpoint__mistral_8bit_g64_asym_f32_scales);
    RUN(test_gptq_checkpoint__mistral_2bit_g32_desc_act);
    RUN(test_gptq_checkpoint__qwen3_dynamic_quantize_config);
    RUN(test_gptq_checkpoint__unruled_float_module);
    RUN(test_gptq_checkpoint__errors);
    RUN(test_gptq_checkpoint__config_parse);
    RUN(test_gptq_checkpoint__out_of_memory);
    RUN(test_gptq_checkpoint__gcide_rtn_matches_targets);
    return test_report();
}
