/*
 * checkpoint.c - streaming a GPTQ checkpoint to disk; see checkpoint.h.
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "mem.h"
#include "safetensors.h"

enum entry_kind { E_COPY, E_GIDX, E_QWEIGHT, E_QZEROS, E_SCALES };

/* One output tensor of a layer. */
struct entry {
    char *name;
    enum entry_kind kind;
    const struct st_tensor *src;   /* E_COPY */
    enum linear_id lin;            /* the others */
};

struct ckpt_writer {
    st_writer *st;
    const model *m;
    int num_layers, next_layer;
    struct ckpt_module *modules;
    pack_format format;
    struct entry **layer;          /* [num_layers] arrays of entries */
    size_t *nlayer;
};

/* The layer a tensor belongs to ("model.layers.<i>."), or -1. */
static int layer_of(const char *name, int num_layers)
{
    static const char prefix[] = "model.layers.";
    const char *p = name + sizeof(prefix) - 1;
    long v = 0;
    if (strncmp(name, prefix, sizeof(prefix) - 1) != 0 || *p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v >= num_layers)
            return -1;
    }
    return *p == '.' ? (int)v : -1;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void free_entries(ckpt_writer *w)
{
    for (int i = 0; w->layer && i < w->num_layers; i++) {
        for (size_t k = 0; w->layer[i] && k < w->nlayer[i]; k++)
            gq_free(w->layer[i][k].name);
        gq_free(w->layer[i]);
    }
    gq_free(w->layer);
    gq_free(w->nlayer);
    gq_free(w->modules);
    gq_free(w);
}

void ckpt_abort(ckpt_writer *w)
{
    if (!w)
        return;
    st_writer_abort(w->st);
    free_entries(w);
}

int ckpt_finish(ckpt_writer *w, gq_err *e)
{
    int rc;
    if (!w)
        return GQ_FAIL(e, GQ_EINVAL, "invalid argument: no checkpoint writer");
    if (w->next_layer != w->num_layers) {
        rc = GQ_FAIL(e, GQ_EINVAL, "checkpoint: %d of %d layers written", w->next_layer, w->num_layers);
        ckpt_abort(w);
        return rc;
    }
    rc = st_writer_finish(w->st, e);
    w->st = NULL;
    free_entries(w);
    return rc;
}

static int add_entry(struct entry **v, size_t *n, size_t *cap, const char *name, const char *suffix,
                     enum entry_kind kind, const struct st_tensor *src, enum linear_id lin, gq_err *e)
{
    size_t len = strlen(name) + (suffix ? strlen(suffix) : 0) + 1;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 32;
        struct entry *p = gq_realloc(*v, c * sizeof(*p));
        if (!p)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory planning the checkpoint");
        *v = p;
        *cap = c;
    }
    if (!((*v)[*n].name = gq_malloc(len)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory planning the checkpoint");
    snprintf((*v)[*n].name, len, "%s%s", name, suffix ? suffix : "");
    (*v)[*n].kind = kind;
    (*v)[*n].src = src;
    (*v)[*n].lin = lin;
    (*n)++;
    return 0;
}

/* The quantized Linear whose ".weight" this is, or LIN_COUNT. */
static enum linear_id quantized_weight(const ckpt_writer *w, int layer, const char *name)
{
    char mod[160];
    for (int id = 0; id < LIN_COUNT; id++) {
        size_t n;
        if (!w->modules[(size_t)layer * LIN_COUNT + (size_t)id].quantized)
            continue;
        linear_module_name(mod, sizeof(mod), layer, (enum linear_id)id);
        n = strlen(mod);
        if (!strncmp(name, mod, n) && !strcmp(name + n, ".weight"))
            return (enum linear_id)id;
    }
    return LIN_COUNT;
}

static int declare(ckpt_writer *w, const struct entry *en, int layer, gq_err *e)
{
    size_t rows, cols, ngroups;
    const struct ckpt_module *cm;
    int64_t shape[2];

    if (en->kind == E_COPY)
        return st_writer_declare(w->st, en->name, en->src->dtype, en->src->ndim, en->src->shape, e);
    cm = &w->modules[(size_t)layer * LIN_COUNT + en->lin];
    model_linear_shape(&rows, &cols, w->m, en->lin);
    ngroups = cm->group_size < 0 ? 1 : (cols + (size_t)cm->group_size - 1) / (size_t)cm->group_size;
    switch (en->kind) {
    case E_GIDX:
        shape[0] = (int64_t)cols;
        return st_writer_declare(w->st, en->name, ST_I32, 1, shape, e);
    case E_QWEIGHT:
        shape[0] = (int64_t)pack_qweight_rows(cols, cm->bits);
        shape[1] = (int64_t)rows;
        return st_writer_declare(w->st, en->name, ST_I32, 2, shape, e);
    case E_QZEROS:
        shape[0] = (int64_t)ngroups;
        shape[1] = (int64_t)pack_qzeros_cols(rows, cm->bits);
        return st_writer_declare(w->st, en->name, ST_I32, 2, shape, e);
    default:
        shape[0] = (int64_t)ngroups;
        shape[1] = (int64_t)rows;
        return st_writer_declare(w->st, en->name, ST_F16, 2, shape, e);
    }
}

int ckpt_open(ckpt_writer **out, const model *m, const char *dir, const struct ckpt_plan *plan, gq_err *e)
{
    const st_model *sm = model_tensors(m);
    const struct model_config *cfg = model_config_of(m);
    size_t nt = st_model_count(sm), *caps = NULL;
    ckpt_writer *w;
    int rc = 0;

    GQ_ASSERT_ARG(e, out && m && dir && plan && plan->modules);
    if (!(w = gq_calloc(1, sizeof(*w))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a checkpoint writer");
    w->m = m;
    w->num_layers = cfg->num_layers;
    w->format = plan->format;
    w->modules = gq_mallocn((size_t)cfg->num_layers * LIN_COUNT, sizeof(*w->modules));
    w->layer = gq_calloc((size_t)cfg->num_layers, sizeof(*w->layer));
    w->nlayer = gq_calloc((size_t)cfg->num_layers, sizeof(*w->nlayer));
    caps = gq_calloc((size_t)cfg->num_layers, sizeof(*caps));
    if (!w->modules || !w->layer || !w->nlayer || !caps) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a checkpoint writer");
        goto done;
    }
    memcpy(w->modules, plan->modules, (size_t)cfg->num_layers * LIN_COUNT * sizeof(*w->modules));
    for (int i = 0; i < cfg->num_layers; i++)
        for (int id = 0; id < LIN_COUNT; id++) {
            const struct ckpt_module *cm = &w->modules[(size_t)i * LIN_COUNT + (size_t)id];
            size_t rows, cols;
            char mod[160];
            if (!cm->quantized)
                continue;
            model_linear_shape(&rows, &cols, m, (enum linear_id)id);
            if ((rc = pack_check(rows, cols, cm->bits, cm->group_size, e)) < 0) {
                linear_module_name(mod, sizeof(mod), i, (enum linear_id)id);
                gq_err_prefix(e, "%s", mod);
                goto done;
            }
        }
    /* the layers' entries, sorted by name */
    for (size_t k = 0; k < nt; k++) {
        const struct st_tensor *t = st_model_tensor(sm, k);
        int layer = layer_of(t->name, w->num_layers);
        enum linear_id lin;
        if (layer < 0)
            continue;
        lin = quantized_weight(w, layer, t->name);
        if (lin == LIN_COUNT) {
            rc = add_entry(&w->layer[layer], &w->nlayer[layer], &caps[layer], t->name, NULL, E_COPY, t, LIN_COUNT, e);
        } else {
            char mod[160];
            linear_module_name(mod, sizeof(mod), layer, lin);
            if ((rc = add_entry(&w->layer[layer], &w->nlayer[layer], &caps[layer], mod, ".g_idx", E_GIDX, NULL, lin, e)) < 0 ||
                (rc = add_entry(&w->layer[layer], &w->nlayer[layer], &caps[layer], mod, ".qweight", E_QWEIGHT, NULL, lin, e)) < 0 ||
                (rc = add_entry(&w->layer[layer], &w->nlayer[layer], &caps[layer], mod, ".qzeros", E_QZEROS, NULL, lin, e)) < 0)
                goto done;
            rc = add_entry(&w->layer[layer], &w->nlayer[layer], &caps[layer], mod, ".scales", E_SCALES, NULL, lin, e);
        }
        if (rc < 0)
            goto done;
    }
    for (int i = 0; i < w->num_layers; i++)
        if (w->nlayer[i])
            qsort(w->layer[i], w->nlayer[i], sizeof(struct entry), cmp_entry);
    if ((rc = st_writer_open(&w->st, dir, plan->shard_bytes, e)) < 0)
        goto done;
    /* declarations: the tensors outside the layers, then the layers */
    for (size_t k = 0; k < nt; k++) {
        const struct st_tensor *t = st_model_tensor(sm, k);
        if (layer_of(t->name, w->num_layers) < 0 &&
            (rc = st_writer_declare(w->st, t->name, t->dtype, t->ndim, t->shape, e)) < 0)
            goto done;
    }
    for (int i = 0; i < w->num_layers; i++)
        for (size_t k = 0; k < w->nlayer[i]; k++)
            if ((rc = declare(w, &w->layer[i][k], i, e)) < 0)
                goto done;
    for (size_t k = 0; k < nt; k++) {
        const struct st_tensor *t = st_model_tensor(sm, k);
        if (layer_of(t->name, w->num_layers) >= 0)
            continue;
        rc = st_writer_write(w->st, t->name, t->data, t->nbytes, e);
        st_tensor_release(t);
        if (rc < 0)
            goto done;
    }
    *out = w;
    w = NULL;
done:
    gq_free(caps);
    if (w)
        ckpt_abort(w);
    return rc;
}

/* The packed tensors of one quantized Linear. */
struct packed {
    int32_t *qweight, *qzeros, *g_idx;
    uint16_t *scales;
    size_t nqweight, nqzeros, ncols, nscales;
};

static void packed_free(struct packed *p)
{
    gq_free(p->qweight);
    gq_free(p->qzeros);
    gq_free(p->g_idx);
    gq_free(p->scales);
}

static int pack_module(struct packed *p, const ckpt_writer *w, int layer, enum linear_id id,
                       const struct gptq_result *r, gq_err *e)
{
    const struct ckpt_module *cm = &w->modules[(size_t)layer * LIN_COUNT + id];
    size_t rows, cols, ngroups;
    char mod[160];
    int rc;

    model_linear_shape(&rows, &cols, w->m, id);
    ngroups = cm->group_size < 0 ? 1 : (cols + (size_t)cm->group_size - 1) / (size_t)cm->group_size;
    linear_module_name(mod, sizeof(mod), layer, id);
    if (!r || r->rows != rows || r->cols != cols || r->ngroups != ngroups)
        return GQ_FAIL(e, GQ_EINVAL, "checkpoint: %s: the result does not fit the plan (%zu x %zu, %zu groups)", mod,
                       rows, cols, ngroups);
    p->nqweight = pack_qweight_rows(cols, cm->bits) * rows;
    p->nqzeros = ngroups * pack_qzeros_cols(rows, cm->bits);
    p->nscales = ngroups * rows;
    p->ncols = cols;
    p->qweight = gq_mallocn(p->nqweight, sizeof(int32_t));
    p->qzeros = gq_mallocn(p->nqzeros, sizeof(int32_t));
    p->scales = gq_mallocn(p->nscales, sizeof(uint16_t));
    p->g_idx = gq_mallocn(cols, sizeof(int32_t));
    if (!p->qweight || !p->qzeros || !p->scales || !p->g_idx)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory packing %s", mod);
    if ((rc = pack_qweight(p->qweight, r->qint, rows, cols, cm->bits, e)) < 0 ||
        (rc = pack_qzeros(p->qzeros, r->zeros, ngroups, rows, cm->bits, w->format, e)) < 0) {
        gq_err_prefix(e, "%s", mod);
        return rc;
    }
    gq_f32_to_f16_n(p->scales, r->scales, p->nscales);
    memcpy(p->g_idx, r->g_idx, cols * sizeof(int32_t));
    return 0;
}

int ckpt_write_layer(ckpt_writer *w, int layer, const struct gptq_result *const res[LIN_COUNT], gq_err *e)
{
    struct packed p[LIN_COUNT];
    int rc = 0;

    GQ_ASSERT_ARG(e, w && res);
    memset(p, 0, sizeof(p));
    if (layer != w->next_layer)
        return GQ_FAIL(e, GQ_EINVAL, "checkpoint: layer %d written out of order (expected %d)", layer, w->next_layer);
    for (int id = 0; id < LIN_COUNT; id++) {
        int q = w->modules[(size_t)layer * LIN_COUNT + (size_t)id].quantized;
        if (!q && res[id]) {
            char mod[160];
            linear_module_name(mod, sizeof(mod), layer, (enum linear_id)id);
            rc = GQ_FAIL(e, GQ_EINVAL, "checkpoint: %s is not quantized in the plan", mod);
        } else if (q) {
            rc = pack_module(&p[id], w, layer, (enum linear_id)id, res[id], e);
        }
        if (rc < 0)
            goto done;
    }
    for (size_t k = 0; k < w->nlayer[layer]; k++) {
        const struct entry *en = &w->layer[layer][k];
        const struct packed *pk = &p[en->lin < LIN_COUNT ? en->lin : 0];
        switch (en->kind) {
        case E_COPY:
            rc = st_writer_write(w->st, en->name, en->src->data, en->src->nbytes, e);
            st_tensor_release(en->src);
            break;
        case E_GIDX:
            rc = st_writer_write(w->st, en->name, pk->g_idx, pk->ncols * sizeof(int32_t), e);
            break;
        case E_QWEIGHT:
            rc = st_writer_write(w->st, en->name, pk->qweight, pk->nqweight * sizeof(int32_t), e);
            break;
        case E_QZEROS:
            rc = st_writer_write(w->st, en->name, pk->qzeros, pk->nqzeros * sizeof(int32_t), e);
            break;
        case E_SCALES:
            rc = st_writer_write(w->st, en->name, pk->scales, pk->nscales * sizeof(uint16_t), e);
            break;
        }
        if (rc < 0)
            goto done;
    }
    w->next_layer++;
done:
    for (int id = 0; id < LIN_COUNT; id++)
        packed_free(&p[id]);
    return rc;
}

int ckpt_write_file(const char *dir, const char *name, const char *text, size_t len, gq_err *e)
{
    char path[4096];
    int fd, rc = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return GQ_FAIL(e, GQ_EINVAL, "%s/%s: path too long", dir, name);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        return GQ_FAIL(e, GQ_EIO, "cannot create %s: %s", path, strerror(errno));
    while (len) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", path, strerror(errno));
            break;
        }
        text += n;
        len -= (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = GQ_FAIL(e, GQ_EIO, "cannot sync %s: %s", path, strerror(errno));
    if (close(fd) < 0 && rc == 0)
        rc = GQ_FAIL(e, GQ_EIO, "cannot close %s: %s", path, strerror(errno));
    return rc;
}

int ckpt_copy_file(const char *src_dir, const char *dst_dir, const char *name, gq_err *e)
{
    char src[4096], dst[4096], buf[65536];
    int in, out, rc = 0;

    if ((size_t)snprintf(src, sizeof(src), "%s/%s", src_dir, name) >= sizeof(src) ||
        (size_t)snprintf(dst, sizeof(dst), "%s/%s", dst_dir, name) >= sizeof(dst))
        return GQ_FAIL(e, GQ_EINVAL, "%s: path too long", name);
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? 0 : GQ_FAIL(e, GQ_EIO, "cannot open %s: %s", src, strerror(errno));
    if ((out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        close(in);
        return GQ_FAIL(e, GQ_EIO, "cannot create %s: %s", dst, strerror(errno));
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf)), off = 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        while (off < n) {
            ssize_t k = write(out, buf + off, (size_t)(n - off));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", dst, strerror(errno));
                break;
            }
            off += k;
        }
        if (rc < 0)
            break;
    }
    if (rc == 0 && fsync(out) < 0)
        rc = GQ_FAIL(e, GQ_EIO, "cannot sync %s: %s", dst, strerror(errno));
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = GQ_FAIL(e, GQ_EIO, "cannot close %s: %s", dst, strerror(errno));
    return rc;
}
