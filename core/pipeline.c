/*
 * pipeline.c - GPTQ over a whole model; see pipeline.h.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "checkpoint.h"
#include "forward.h"
#include "json.h"
#include "mem.h"
#include "model.h"
#include "quant.h"

#define CHUNK_TOKENS 1024

void quantize_options_default(struct quantize_options *o)
{
    memset(o, 0, sizeof(*o));
    gptq_params_default(&o->gptq);
    o->true_sequential = 1;
    o->format = PACK_GPTQ;
    o->shard_bytes = 4000000000ull;
    o->rtn_baseline = 1;
}

void quantize_report_free(struct quantize_report *r)
{
    if (!r)
        return;
    gq_free(r->modules);
    memset(r, 0, sizeof(*r));
}

/*
 * True-sequential groups: the Linears fed by each capture point, in order,
 * and the pass that feeds them.  Each pass starts where the previous one
 * left the calibration state instead of at the layer input: the q/k/v
 * pass keeps the attention output (with the quantized q/k/v), the o pass
 * starts from it and turns the activations into the residual stream after
 * attention (with the quantized o), the later passes start there.  The
 * arithmetic is that of running the whole layer each time (BLAS may round
 * the last bit differently on other buffers), with about 40% fewer FLOPs.
 * The attention and o passes always run, since later ones need their state.
 */
struct group {
    enum linear_id ids[LIN_COUNT];
    int n;
    enum capture_point start, stop;
    int keeps_state;
};

static const struct group seq_groups[] = {
    {{LIN_Q, LIN_K, LIN_V}, 3, CAP_ATTN_IN, CAP_ATTN_IN, 0},
    {{LIN_O}, 1, CAP_ATTN_IN, CAP_O_IN, 1},
    {{LIN_GATE, LIN_UP}, 2, CAP_O_IN, CAP_MLP_IN, 1},
    {{LIN_DOWN}, 1, CAP_MLP_IN, CAP_DOWN_IN, 0},
};
static const struct group all_group = {{LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN}, 7, CAP_ATTN_IN,
                                       CAP_DOWN_IN, 0};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Remove a flat directory and its files (the temporary output). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < sizeof(path))
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Hessian accumulation from the capture callback. */
struct capture {
    gptq_hessian *h[CAP_COUNT];
    gq_err err;
};

static int capture_cb(enum capture_point point, const float *x, size_t tokens, size_t cols, size_t nseq,
                      void *payload)
{
    struct capture *c = payload;
    if (!c->h[point])
        return 0;
    return gptq_hessian_add(c->h[point], x, tokens, cols, NULL, nseq, &c->err);
}

struct job {
    const struct quantize_options *opt;
    const struct calib *cal;
    model *m;
    const struct model_config *cfg;
    float *acts;          /* (nsamples * seqlen, hidden) */
    float *scratch;       /* one chunk */
    float *eval_acts;     /* (eval_blocks * eval_seqlen, hidden), or NULL */
    float *att;           /* (nsamples * seqlen, q width): true-sequential attention outputs */
    size_t chunk_seqs;
    const atomic_bool *cancel;
    quantize_progress_fn progress;
    void *payload;
    double t0;
    size_t done_modules, total_modules;
    struct quantize_report rep;
    struct ckpt_module *plan;
};

static int cancelled(const struct job *j, gq_err *e)
{
    if (j->cancel && atomic_load(j->cancel))
        return GQ_FAIL(e, GQ_ECANCELED, "quantization cancelled");
    return 0;
}

static void report(struct job *j, enum quantize_stage stage, int layer, const char *module)
{
    struct quantize_progress p;
    if (!j->progress)
        return;
    p.stage = stage;
    p.layer = layer;
    p.layers = j->cfg->num_layers;
    p.module = module;
    p.fraction = j->total_modules ? (double)j->done_modules / (double)j->total_modules : 1.0;
    p.elapsed = now_seconds() - j->t0;
    p.eta_seconds = p.fraction > 0 && p.fraction < 1 ? p.elapsed / p.fraction * (1.0 - p.fraction) : -1.0;
    if (stage == QSTAGE_DONE)
        p.eta_seconds = 0;
    j->progress(&p, j->payload);
}

/*
 * Run layer l on every calibration sequence, a chunk at a time: up to
 * stop (on a copy, feeding the capture) or, with CAP_NONE, in place.
 */
static int run_layer(struct job *j, const model_layer *l, enum capture_point stop, struct capture *cap, gq_err *e)
{
    size_t seqlen = j->cal->seqlen, hidden = (size_t)j->cfg->hidden_size;
    int rc;

    for (size_t s = 0; s < j->cal->nsamples; s += j->chunk_seqs) {
        size_t nseq = j->cal->nsamples - s < j->chunk_seqs ? j->cal->nsamples - s : j->chunk_seqs;
        float *x = j->acts + s * seqlen * hidden;
        if ((rc = cancelled(j, e)) < 0)
            return rc;
        if (stop != CAP_NONE) {
            memcpy(j->scratch, x, nseq * seqlen * hidden * sizeof(float));
            x = j->scratch;
        }
        rc = layer_forward(x, j->m, l, nseq, seqlen, cap ? capture_cb : NULL, cap, stop, e);
        if (rc < 0) {
            if (cap && cap->err.code)
                *e = cap->err;
            return rc;
        }
    }
    return 0;
}

/*
 * A true-sequential pass over every calibration sequence, in place, from
 * start to stop (CAP_NONE: the layer's end), through j->att.
 */
static int run_part(struct job *j, const model_layer *l, enum capture_point start, enum capture_point stop,
                    struct capture *cap, gq_err *e)
{
    size_t seqlen = j->cal->seqlen, hidden = (size_t)j->cfg->hidden_size;
    size_t qd = (size_t)j->cfg->num_heads * (size_t)j->cfg->head_dim;
    int rc;

    for (size_t s = 0; s < j->cal->nsamples; s += j->chunk_seqs) {
        size_t nseq = j->cal->nsamples - s < j->chunk_seqs ? j->cal->nsamples - s : j->chunk_seqs;
        if ((rc = cancelled(j, e)) < 0)
            return rc;
        rc = layer_forward_part(j->acts + s * seqlen * hidden, j->att + s * seqlen * qd, j->m, l, nseq, seqlen,
                                start, cap ? capture_cb : NULL, cap, stop, e);
        if (rc < 0) {
            if (cap && cap->err.code)
                *e = cap->err;
            return rc;
        }
    }
    return 0;
}

/* The module's GPTQ parameters: the base ones with its dynamic overrides. */
static void module_params(struct gptq_params *p, const struct quantize_options *opt, const struct gptq_override *ov)
{
    *p = opt->gptq;
    if (ov->has_bits)
        p->q.bits = ov->bits;
    if (ov->has_group_size)
        p->group_size = ov->group_size;
    if (ov->has_desc_act)
        p->desc_act = ov->desc_act;
    if (ov->has_sym)
        p->q.sym = ov->sym;
    if (ov->has_damp_percent)
        p->damp_percent = ov->damp_percent;
    if (ov->has_static_groups)
        p->static_groups = ov->static_groups;
    if (ov->has_mse) {
        p->q.mse = ov->mse > 0;
        if (ov->mse > 0)
            p->q.mse_norm = (float)ov->mse;
    }
}

/* RTN's relative output error under H, the baseline of the log. */
static int rtn_error(double *rel, const float *W, size_t rows, size_t cols, const float *H,
                     const struct gptq_params *p, gq_err *e)
{
    size_t ngroups = p->group_size < 0 ? 1 : (cols + (size_t)p->group_size - 1) / (size_t)p->group_size;
    uint8_t *q = gq_mallocn(rows, cols);
    float *scales = gq_mallocn(ngroups * rows, sizeof(float)), *wq = gq_mallocn(rows * cols, sizeof(float));
    int32_t *zeros = gq_mallocn(ngroups * rows, sizeof(int32_t));
    double err = 0, ref = 0;
    int rc;

    if (!q || !scales || !wq || !zeros)
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory measuring RTN");
    else if ((rc = quant_rtn(q, scales, zeros, wq, W, rows, cols, p->group_size, &p->q, e)) == 0 &&
             (rc = gptq_output_error(&err, &ref, W, wq, rows, cols, H, e)) == 0)
        *rel = ref > 0 ? err / ref : 0;
    gq_free(q);
    gq_free(scales);
    gq_free(wq);
    gq_free(zeros);
    return rc;
}

/* The evaluation blocks through the (quantized) layer l, in place. */
static int eval_layer(struct job *j, const model_layer *l, gq_err *e)
{
    size_t es = j->opt->eval_seqlen, hidden = (size_t)j->cfg->hidden_size;
    size_t per = CHUNK_TOKENS / es ? CHUNK_TOKENS / es : 1;
    int rc;
    for (size_t b = 0; b < j->opt->eval_blocks; b += per) {
        size_t nb = j->opt->eval_blocks - b < per ? j->opt->eval_blocks - b : per;
        if ((rc = cancelled(j, e)) < 0 ||
            (rc = layer_forward(j->eval_acts + b * es * hidden, j->m, l, nb, es, NULL, NULL, CAP_NONE, e)) < 0)
            return rc;
    }
    return 0;
}

/* Perplexity of the evaluation blocks from the last layer's outputs (as model_nll). */
static int eval_finish(struct job *j, gq_err *e)
{
    size_t es = j->opt->eval_seqlen, hidden = (size_t)j->cfg->hidden_size, vocab = (size_t)j->cfg->vocab_size;
    size_t n = j->opt->eval_blocks * es, rows = 256;
    float *logits = gq_mallocn(rows * vocab, sizeof(float));
    const int32_t *ids = j->opt->eval_ids;
    double total = 0;
    int rc = 0;

    if (!logits)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for the evaluation logits");
    for (size_t r0 = 0; r0 < n && rc == 0; r0 += rows) {
        size_t k = n - r0 < rows ? n - r0 : rows;
        if ((rc = model_logits(logits, j->m, j->eval_acts + r0 * hidden, k, e)) < 0)
            break;
        for (size_t r = 0; r < k; r++) {
            size_t t = r0 + r;
            const float *z = logits + r * vocab;
            double lse;
            if (t % es == es - 1)
                continue;   /* the last position predicts nothing */
            lse = fwd_logsumexp(z, vocab);
            if (!isfinite(lse) || !isfinite(z[ids[t + 1]])) {
                rc = GQ_FAIL(e, GQ_ENUMERIC, "non-finite logits in the evaluation at block %zu, position %zu",
                             t / es, t % es);
                break;
            }
            total += lse - (double)z[ids[t + 1]];
        }
    }
    gq_free(logits);
    if (rc == 0) {
        j->rep.eval_nll = total;
        j->rep.eval_count = j->opt->eval_blocks * (es - 1);
        j->rep.eval_ppl = exp(total / (double)j->rep.eval_count);
    }
    return rc;
}

static int quantize_layer(struct job *j, ckpt_writer *w, int layer, gq_err *e)
{
    const struct group *groups = j->opt->true_sequential ? seq_groups : &all_group;
    int ngroups = j->opt->true_sequential ? 4 : 1, rc = 0;
    struct gptq_result res[LIN_COUNT];
    const struct gptq_result *out[LIN_COUNT] = {NULL};
    model_layer *l = NULL;
    struct capture cap;

    memset(res, 0, sizeof(res));
    memset(&cap, 0, sizeof(cap));
    if ((rc = model_layer_load(&l, j->m, layer, e)) < 0)
        return rc;
    for (int g = 0; g < ngroups; g++) {
        const struct group *gr = &groups[g];
        int any = 0;
        memset(&cap, 0, sizeof(cap));
        for (int k = 0; k < gr->n; k++) {
            enum linear_id id = gr->ids[k];
            enum capture_point pt = linear_capture_point(id);
            size_t rows, cols;
            if (!j->plan[(size_t)layer * LIN_COUNT + id].quantized || cap.h[pt])
                continue;
            model_linear_shape(&rows, &cols, j->m, id);
            if ((rc = gptq_hessian_new(&cap.h[pt], cols, e)) < 0)
                goto done;
            any = 1;
        }
        if (j->opt->true_sequential) {
            if ((any || gr->keeps_state) && (rc = run_part(j, l, gr->start, gr->stop, any ? &cap : NULL, e)) < 0)
                goto done;
        } else if (any && (rc = run_layer(j, l, gr->stop, &cap, e)) < 0) {
            goto done;
        }
        for (int k = 0; k < gr->n; k++) {
            enum linear_id id = gr->ids[k];
            const struct ckpt_module *cm = &j->plan[(size_t)layer * LIN_COUNT + id];
            struct module_log *ml = &j->rep.modules[j->rep.nmodules++];
            struct gptq_override ov;
            struct gptq_params p;
            gptq_hessian *h = cap.h[linear_capture_point(id)];
            const float *H;
            size_t rows, cols;

            memset(ml, 0, sizeof(*ml));
            linear_module_name(ml->name, sizeof(ml->name), layer, id);
            model_linear_shape(&rows, &cols, j->m, id);
            ml->rows = rows;
            ml->cols = cols;
            j->done_modules++;
            if (!cm->quantized) {
                report(j, QSTAGE_QUANTIZING, layer, ml->name);
                continue;
            }
            if (dynamic_match(j->opt->dynamic, ml->name, &ov) < 0)
                memset(&ov, 0, sizeof(ov));
            module_params(&p, j->opt, &ov);
            if ((rc = gptq_hessian_matrix(&H, h, e)) < 0 ||
                (rc = gptq_quantize(&res[id], model_layer_linear(l, id), rows, cols, H,
                                    (double)gptq_hessian_nsamples(h), &p, j->cancel, e)) < 0) {
                gq_err_prefix(e, "%s", ml->name);
                goto done;
            }
            if (j->opt->rtn_baseline &&
                (rc = rtn_error(&ml->rtn_out_rel, model_layer_linear(l, id), rows, cols, H, &p, e)) < 0)
                goto done;
            if ((rc = model_layer_set_linear(l, id, res[id].wq, e)) < 0)
                goto done;
            gq_free(res[id].wq);   /* the layer has its copy; the checkpoint needs the codes */
            res[id].wq = NULL;
            out[id] = &res[id];
            ml->quantized = 1;
            ml->bits = p.q.bits;
            ml->group_size = p.group_size;
            ml->desc_act = p.desc_act;
            ml->sym = p.q.sym;
            ml->damp_percent = res[id].damp_percent;
            ml->damp_retries = res[id].damp_retries;
            ml->avg_loss = res[id].avg_loss;
            ml->out_rel = res[id].out_rel;
            ml->seconds = res[id].seconds;
            j->rep.quantized++;
            report(j, QSTAGE_QUANTIZING, layer, ml->name);
        }
        for (int pt = 0; pt < CAP_COUNT; pt++) {
            gptq_hessian_free(cap.h[pt]);
            cap.h[pt] = NULL;
        }
    }
    /* the quantized layer's outputs are the next layer's inputs */
    if (layer + 1 < j->cfg->num_layers &&
        (rc = j->opt->true_sequential ? run_part(j, l, CAP_MLP_IN, CAP_NONE, NULL, e)
                                      : run_layer(j, l, CAP_NONE, NULL, e)) < 0)
        goto done;
    if (j->eval_acts && (rc = eval_layer(j, l, e)) < 0)
        goto done;
    report(j, QSTAGE_WRITING, layer, NULL);
    rc = ckpt_write_layer(w, layer, out, e);
done:
    for (int pt = 0; pt < CAP_COUNT; pt++)
        gptq_hessian_free(cap.h[pt]);
    for (int id = 0; id < LIN_COUNT; id++)
        gptq_result_free(&res[id]);
    model_layer_free(l);
    return rc;
}

/* ---- metadata ---- */

static int add_num(gq_json *o, const char *k, double v)
{
    return gq_json_append(o, k, gq_json_new_number(v));
}

static int add_bool(gq_json *o, const char *k, int v)
{
    return gq_json_append(o, k, gq_json_new_bool(v));
}

static int add_str(gq_json *o, const char *k, const char *v)
{
    return gq_json_append(o, k, v ? gq_json_new_string(v) : gq_json_new_null());
}

/* config.json's quantization_config, also quantize_config.json (GPTQ-NOTES.md §3, §7). */
static int quantization_config(gq_json **out, const struct quantize_options *opt, gq_err *e)
{
    const struct gptq_params *p = &opt->gptq;
    gq_json *o = gq_json_new_object(), *meta = gq_json_new_object(), *quantizer = gq_json_new_array();
    gq_json *dyn = NULL;
    int rc = 0, dyn_failed = 0;

    if (!o || !meta || !quantizer) {
        rc = GQ_ENOMEM;
        goto done;
    }
    rc |= add_str(o, "quant_method", "gptq");
    rc |= add_num(o, "bits", p->q.bits);
    rc |= add_num(o, "group_size", p->group_size);
    rc |= add_bool(o, "desc_act", p->desc_act);
    rc |= add_bool(o, "sym", p->q.sym);
    rc |= add_bool(o, "static_groups", p->static_groups);
    rc |= add_num(o, "damp_percent", p->damp_percent);
    rc |= add_bool(o, "true_sequential", opt->true_sequential);
    rc |= add_str(o, "checkpoint_format", opt->format == PACK_GPTQ_V2 ? "gptq_v2" : "gptq");
    rc |= add_str(o, "pack_dtype", "int32");
    rc |= add_bool(o, "lm_head", 0);
    if (opt->dynamic && dynamic_count(opt->dynamic)) {
        if ((rc = dynamic_to_json(&dyn, opt->dynamic, e)) < 0) {
            dyn_failed = 1;
            goto done;
        }
        rc |= gq_json_append(o, "dynamic", dyn);
    }
    rc |= gq_json_add(quantizer, NULL, gq_json_new_string("gptqd:" GPTQD_VERSION));
    rc |= gq_json_append(meta, "quantizer", quantizer);
    quantizer = NULL;
    rc |= add_num(meta, "damp_percent", p->damp_percent);
    rc |= add_num(meta, "damp_auto_increment", p->damp_auto_increment);
    rc |= add_bool(meta, "static_groups", p->static_groups);
    rc |= add_bool(meta, "true_sequential", opt->true_sequential);
    rc |= add_num(meta, "mse", p->q.mse ? p->q.mse_norm : 0.0);
    rc |= gq_json_append(o, "meta", meta);
    meta = NULL;
done:
    gq_json_free(quantizer);
    gq_json_free(meta);
    if (rc) {
        gq_json_free(o);
        return dyn_failed ? rc : GQ_FAIL(e, GQ_ENOMEM, "out of memory writing the quantization config");
    }
    *out = o;
    return 0;
}

static int write_json(const char *dir, const char *name, const gq_json *j, gq_err *e)
{
    char *text = gq_json_print(j, 2);
    int rc;
    if (!text)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory writing %s", name);
    rc = ckpt_write_file(dir, name, text, strlen(text), e);
    gq_json_free_text(text);
    return rc;
}

static int read_text(gq_buf *b, const char *path, gq_err *e)
{
    FILE *f = fopen(path, "rb");
    char chunk[65536];
    size_t n;
    int rc = 0;
    if (!f)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "cannot open %s: %s", path, strerror(errno));
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = gq_buf_append(b, chunk, n, e);
    if (rc == 0 && ferror(f))
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s", path);
    fclose(f);
    return rc;
}

static int write_metadata(const char *tmp, const char *src_dir, const struct job *j, gq_err *e)
{
    static const char *const copies[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                         "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                                         "generation_config.json", "chat_template.jinja"};
    const struct quantize_options *opt = j->opt;
    gq_json *qc = NULL, *cfg = NULL, *prov = NULL, *log = NULL, *mods = NULL;
    gq_buf text = GQ_BUF_INIT;
    char path[PATH_MAX], when[32];
    time_t now = time(NULL);
    struct tm tm;
    int rc;

    if ((rc = quantization_config(&qc, opt, e)) < 0)
        goto done;
    /* config.json: the source's, with quantization_config */
    if ((size_t)snprintf(path, sizeof(path), "%s/config.json", src_dir) >= sizeof(path)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: path too long", src_dir);
        goto done;
    }
    if ((rc = read_text(&text, path, e)) < 0 || (rc = gq_json_parse(&cfg, text.ptr ? text.ptr : "", text.len, e)) < 0)
        goto done;
    if ((rc = gq_json_add(cfg, "quantization_config", gq_json_copy(qc))) < 0 ||
        (rc = write_json(tmp, "config.json", cfg, e)) < 0 || (rc = write_json(tmp, "quantize_config.json", qc, e)) < 0)
        goto done;
    /* quant_config.json: provenance */
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!(prov = gq_json_new_object())) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory writing quant_config.json");
        goto done;
    }
    rc |= add_str(prov, "tool", "gptqd");
    rc |= add_str(prov, "tool_version", GPTQD_VERSION);
    rc |= add_str(prov, "created_at", when);
    rc |= add_str(prov, "quant_method", "gptq");
    rc |= add_num(prov, "bits", opt->gptq.q.bits);
    rc |= add_num(prov, "group_size", opt->gptq.group_size);
    rc |= add_bool(prov, "desc_act", opt->gptq.desc_act);
    rc |= add_bool(prov, "sym", opt->gptq.q.sym);
    rc |= add_str(prov, "checkpoint_format", opt->format == PACK_GPTQ_V2 ? "gptq_v2" : "gptq");
    rc |= add_num(prov, "damp_percent", opt->gptq.damp_percent);
    rc |= add_num(prov, "damp_auto_increment", opt->gptq.damp_auto_increment);
    rc |= add_bool(prov, "static_groups", opt->gptq.static_groups);
    rc |= add_bool(prov, "true_sequential", opt->true_sequential);
    rc |= add_num(prov, "block_size", opt->gptq.block_size);
    rc |= add_num(prov, "mse", opt->gptq.q.mse ? opt->gptq.q.mse_norm : 0.0);
    if (gq_json_get(qc, "dynamic"))
        rc |= gq_json_append(prov, "dynamic", gq_json_copy(gq_json_get(qc, "dynamic")));
    rc |= add_str(prov, "scales_dtype", "float16");
    rc |= add_str(prov, "source_model_id", opt->source_model_id ? opt->source_model_id : src_dir);
    rc |= add_str(prov, "source_revision", opt->source_revision ? opt->source_revision : "local");
    rc |= add_num(prov, "calibration_sample_count", (double)j->cal->nsamples);
    rc |= add_num(prov, "calibration_seq_len", (double)j->cal->seqlen);
    rc |= add_str(prov, "calibration_sha256", j->cal->sha256);
    rc |= add_num(prov, "modules_quantized", (double)j->rep.quantized);
    rc |= add_num(prov, "modules_kept", (double)(j->rep.nmodules - j->rep.quantized));
    /* quant_log.json */
    if (!(log = gq_json_new_object()) || !(mods = gq_json_new_array())) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory writing quant_log.json");
        goto done;
    }
    for (size_t i = 0; i < j->rep.nmodules; i++) {
        const struct module_log *ml = &j->rep.modules[i];
        gq_json *o = gq_json_new_object();
        if (!o) {
            rc = GQ_ENOMEM;
            break;
        }
        rc |= add_str(o, "module", ml->name);
        rc |= add_bool(o, "quantized", ml->quantized);
        rc |= add_num(o, "rows", (double)ml->rows);
        rc |= add_num(o, "cols", (double)ml->cols);
        if (ml->quantized) {
            rc |= add_num(o, "bits", ml->bits);
            rc |= add_num(o, "group_size", ml->group_size);
            rc |= add_bool(o, "desc_act", ml->desc_act);
            rc |= add_bool(o, "sym", ml->sym);
            rc |= add_num(o, "damp_percent", ml->damp_percent);
            rc |= add_num(o, "damp_retries", ml->damp_retries);
            rc |= add_num(o, "avg_loss", ml->avg_loss);
            rc |= add_num(o, "out_rel_error", ml->out_rel);
            if (opt->rtn_baseline)
                rc |= add_num(o, "rtn_out_rel_error", ml->rtn_out_rel);
            rc |= add_num(o, "seconds", ml->seconds);
        }
        rc |= gq_json_add(mods, NULL, o);
    }
    rc |= gq_json_append(log, "modules", mods);
    mods = NULL;
    if (rc) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory writing the metadata");
        goto done;
    }
    if ((rc = write_json(tmp, "quant_config.json", prov, e)) < 0 || (rc = write_json(tmp, "quant_log.json", log, e)) < 0)
        goto done;
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++)
        if ((rc = ckpt_copy_file(src_dir, tmp, copies[i], e)) < 0)
            goto done;
done:
    gq_json_free(qc);
    gq_json_free(cfg);
    gq_json_free(prov);
    gq_json_free(log);
    gq_json_free(mods);
    gq_buf_free(&text);
    return rc;
}

int quantize_model(struct quantize_report *rep, const char *src_dir, const char *out_dir, const struct calib *cal,
                   const struct quantize_options *opt, quantize_progress_fn progress, void *payload,
                   const atomic_bool *cancel, gq_err *e)
{
    struct job j;
    struct stat st;
    char tmp[PATH_MAX];
    ckpt_writer *w = NULL;
    struct ckpt_plan plan;
    size_t hidden, ntok;
    int rc, have_tmp = 0;

    GQ_ASSERT_ARG(e, rep && src_dir && out_dir && cal && cal->ids && opt);
    memset(&j, 0, sizeof(j));
    j.opt = opt;
    j.cal = cal;
    j.cancel = cancel;
    j.progress = progress;
    j.payload = payload;
    j.t0 = now_seconds();
    gq_mem_peak_reset();
    if ((rc = gptq_params_check(&opt->gptq, e)) < 0)
        return rc;
    if (cal->nsamples == 0 || cal->seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "no calibration samples");
    if (stat(out_dir, &st) == 0)
        return GQ_FAIL(e, GQ_ECONFLICT, "%s already exists: choose another output directory or remove it", out_dir);
    if ((rc = model_open(&j.m, src_dir, e)) < 0)
        return rc;
    j.cfg = model_config_of(j.m);
    if (j.cfg->quantized) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s is already a GPTQ checkpoint: quantize its full-precision source", src_dir);
        goto done;
    }
    hidden = (size_t)j.cfg->hidden_size;
    ntok = cal->nsamples * cal->seqlen;
    j.total_modules = (size_t)j.cfg->num_layers * LIN_COUNT;
    j.plan = gq_mallocn(j.total_modules, sizeof(*j.plan));
    j.rep.modules = gq_calloc(j.total_modules, sizeof(*j.rep.modules));
    if (!j.plan || !j.rep.modules) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory planning %zu modules", j.total_modules);
        goto done;
    }
    for (int i = 0; i < j.cfg->num_layers; i++)
        for (int id = 0; id < LIN_COUNT; id++) {
            struct ckpt_module *cm = &j.plan[(size_t)i * LIN_COUNT + (size_t)id];
            struct gptq_override ov;
            struct gptq_params p;
            char name[160];
            int match;
            linear_module_name(name, sizeof(name), i, (enum linear_id)id);
            match = dynamic_match(opt->dynamic, name, &ov);
            if (match < 0)
                memset(&ov, 0, sizeof(ov));
            module_params(&p, opt, &ov);
            if ((rc = gptq_params_check(&p, e)) < 0) {
                gq_err_prefix(e, "%s", name);
                goto done;
            }
            cm->quantized = match >= 0;
            cm->bits = p.q.bits;
            cm->group_size = p.group_size;
        }
    /* the calibration activations, and a chunk of scratch */
    j.chunk_seqs = CHUNK_TOKENS / cal->seqlen ? CHUNK_TOKENS / cal->seqlen : 1;
    if (j.chunk_seqs > cal->nsamples)
        j.chunk_seqs = cal->nsamples;
    j.acts = gq_malloc_aligned(ntok * hidden * sizeof(float));
    j.scratch = gq_malloc_aligned(j.chunk_seqs * cal->seqlen * hidden * sizeof(float));
    if (opt->true_sequential &&
        !(j.att = gq_malloc_aligned(ntok * (size_t)j.cfg->num_heads * (size_t)j.cfg->head_dim * sizeof(float)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for the attention outputs (%zu tokens)", ntok);
        goto done;
    }
    if (!j.acts || !j.scratch) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for the calibration activations (%zu tokens x %zu)", ntok, hidden);
        goto done;
    }
    if ((rc = model_embed(j.acts, j.m, cal->ids, ntok, e)) < 0) {
        gq_err_prefix(e, "calibration");
        goto done;
    }
    j.rep.eval_ppl = NAN;
    if (opt->eval_ids && opt->eval_blocks) {
        size_t n = opt->eval_blocks * opt->eval_seqlen;
        if (opt->eval_seqlen < 2) {
            rc = GQ_FAIL(e, GQ_EINVAL, "evaluation blocks need at least 2 tokens each");
            goto done;
        }
        if (!(j.eval_acts = gq_malloc_aligned(n * hidden * sizeof(float)))) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for the evaluation activations (%zu tokens)", n);
            goto done;
        }
        if ((rc = model_embed(j.eval_acts, j.m, opt->eval_ids, n, e)) < 0) {
            gq_err_prefix(e, "evaluation");
            goto done;
        }
    }
    /* the temporary directory next to out_dir */
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", out_dir) >= sizeof(tmp)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: path too long", out_dir);
        goto done;
    }
    if (!mkdtemp(tmp)) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot create a directory next to %s: %s", out_dir, strerror(errno));
        goto done;
    }
    have_tmp = 1;
    plan.modules = j.plan;
    plan.format = opt->format;
    plan.shard_bytes = opt->shard_bytes;
    if ((rc = ckpt_open(&w, j.m, tmp, &plan, e)) < 0)
        goto done;
    report(&j, QSTAGE_QUANTIZING, 0, NULL);
    for (int i = 0; i < j.cfg->num_layers; i++)
        if ((rc = cancelled(&j, e)) < 0 || (rc = quantize_layer(&j, w, i, e)) < 0)
            goto done;
    if (j.eval_acts && (rc = eval_finish(&j, e)) < 0)
        goto done;
    rc = ckpt_finish(w, e);
    w = NULL;
    if (rc < 0 || (rc = write_metadata(tmp, src_dir, &j, e)) < 0 || (rc = cancelled(&j, e)) < 0)
        goto done;
    if (chmod(tmp, 0755) < 0) {   /* mkdtemp made it private */
        rc = GQ_FAIL(e, GQ_EIO, "cannot set the permissions of %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, out_dir) < 0) {
        rc = GQ_FAIL(e, errno == EEXIST || errno == ENOTEMPTY ? GQ_ECONFLICT : GQ_EIO, "cannot rename %s to %s: %s",
                     tmp, out_dir, strerror(errno));
        goto done;
    }
    have_tmp = 0;
    j.rep.seconds = now_seconds() - j.t0;
    j.rep.peak_bytes = gq_mem_peak();
    report(&j, QSTAGE_DONE, j.cfg->num_layers - 1, NULL);
    *rep = j.rep;
    j.rep.modules = NULL;
done:
    ckpt_abort(w);
    if (have_tmp)
        remove_dir(tmp);
    gq_free(j.acts);
    gq_free(j.scratch);
    gq_free(j.eval_acts);
    gq_free(j.att);
    gq_free(j.plan);
    gq_free(j.rep.modules);
    model_close(j.m);
    return rc;
}
