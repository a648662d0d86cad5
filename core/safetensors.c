/*
 * safetensors.c - reading and writing Hugging Face safetensors checkpoints.
 *
 * DESIGN.  Reading maps the whole file read-only (MAP_PRIVATE) and never
 * copies tensor data: a tensor is a pointer into the mapping, so the page
 * cache holds what was touched, and st_tensor_release() hands those pages
 * back (MADV_DONTNEED; they are re-read from the file if used again).
 * Only the header is parsed, through core/json.h; names and __metadata__
 * strings are copied into one slab and the JSON tree is freed before
 * st_file_open returns.  Tensors are listed in data order (the order a
 * streaming reader wants) and found by name with a binary search.
 *
 * Validation follows the reference Rust library, with messages that name
 * the file and the tensor: header length 1..100,000,000 and inside the
 * file; strict UTF-8 without NUL bytes; a JSON object whose members are
 * tensors {dtype, shape, data_offsets} (other fields ignored, repeated ones
 * refused) plus an optional __metadata__ object of strings; shapes of
 * non-negative integers whose byte size does not overflow and equals
 * end - begin; and, sorted by offset, ranges that tile the data section
 * exactly (first at 0, each where the previous ended, last at the end): no
 * overlap, no hole, no unindexed tail.  Zero-size tensors are empty ranges.
 * Duplicate names (which cJSON keeps) are refused.
 *
 * A checkpoint directory is model.safetensors when it exists (as in
 * transformers), else model.safetensors.index.json and its shards.  The
 * index is the table of contents: its weight_map names every tensor and
 * its shard, a plain file name in the directory; tensors a shard holds but
 * the index does not name are ignored.
 *
 * Writing streams.  All tensors are declared first, so the shards and each
 * shard's header are known before the first byte is written; then each
 * tensor's bytes go from the caller's buffer straight to the file with
 * write(2), in declaration order, so the writer never holds tensor data.
 * Shards are filled greedily in declaration order up to max_shard_bytes of
 * tensor data.  Each is written as ".<name>.tmp-<pid>" and fsync'ed when
 * complete; st_writer_finish renames the shards, then the index, into
 * place, removes the other layout's entry point (a stale model.safetensors
 * would shadow a new index) and fsyncs the directory.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "json.h"
#include "mem.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "tensor data is used in place: the host must be little-endian");

#define MAX_HEADER 100000000ull     /* the reference library's limit */
#define MAX_INDEX (64ull << 20)     /* model.safetensors.index.json */
#define MAX_INT 9007199254740992ull /* 2^53: JSON numbers are doubles */
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};

/* ---- helpers ---- */


/* GQ_EINVAL with "FILE: tensor "NAME": <message>". */
__attribute__((format(printf, 4, 5)))
static int tensor_fail(gq_err *e, const char *file, const char *tensor, const char *fmt, ...)
{
    char msg[200], qf[64], qt[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return GQ_FAIL(e, GQ_EINVAL, "%s: tensor \"%s\": %s", gq_err_quote(qf, sizeof(qf), file),
                   gq_err_quote(qt, sizeof(qt), tensor), msg);
}

/* A JSON value for "(got ...)": the number, the quoted string, or the type ("missing"). */
static const char *describe(char *dst, size_t cap, const gq_json *j)
{
    char tmp[40];
    if (gq_json_type_of(j) == GQ_JSON_NUMBER)
        snprintf(dst, cap, "%.17g", gq_json_number(j));
    else if (gq_json_type_of(j) == GQ_JSON_STRING)
        snprintf(dst, cap, "\"%s\"", gq_err_quote(tmp, sizeof(tmp), gq_json_string(j)));
    else
        snprintf(dst, cap, "%s", gq_json_type_name(gq_json_type_of(j)));
    return dst;
}

/* An integer in [0, 2^53], or -1. */
static int json_u64(uint64_t *out, const gq_json *j)
{
    double v = gq_json_number(j);
    if (!(v >= 0 && v <= (double)MAX_INT && v == (double)(uint64_t)v))
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* "4 x 3", or "scalar". */
static const char *shape_str(char *dst, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = 0;
    snprintf(dst, cap, "scalar");
    for (int i = 0; i < ndim && k < cap; i++) {
        int w = snprintf(dst + k, cap - k, i ? " x %lld" : "%lld", (long long)shape[i]);
        k += w > 0 ? (size_t)w : 0;
    }
    return dst;
}

/* 0, or -1 with *bad the offset of the first byte that is NUL or not strict UTF-8. */
static int utf8_check(size_t *bad, const unsigned char *s, size_t n)
{
    size_t i = 0, len, k;
    while (i < n) {
        unsigned c = s[i], lo = 0x80, hi = 0xBF;
        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            lo = c == 0xE0 ? 0xA0 : lo;   /* overlong */
            hi = c == 0xED ? 0x9F : hi;   /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            lo = c == 0xF0 ? 0x90 : lo;   /* overlong */
            hi = c == 0xF4 ? 0x8F : hi;   /* past U+10FFFF */
        } else {
            break;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            break;
        for (k = 2; k < len && (s[i + k] & 0xC0) == 0x80; k++)
            ;
        if (k < len)
            break;
        i += len;
    }
    *bad = i;
    return i == n ? 0 : -1;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort names in place; the first name that appears twice, or NULL. */
static const char *first_dup(const char **names, size_t n)
{
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    return NULL;
}

/* A formatted string from gq_malloc, or NULL when out of memory. */
__attribute__((format(printf, 1, 2)))
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    char *p;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(p = gq_malloc((size_t)n + 1)))
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

/* Map a regular file of at most max bytes read-only; *map is NULL when it is empty. */
static int map_file(unsigned char **map, size_t *len, const char *path, uint64_t max, gq_err *e)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    *map = NULL;
    *len = 0;
    if (fd < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a regular file", path);
    } else if ((uint64_t)sb.st_size > max) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: %llu bytes is more than the %llu allowed", path,
                     (unsigned long long)sb.st_size, (unsigned long long)max);
    } else if (sb.st_size > 0) {
        *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*map == MAP_FAILED) {
            *map = NULL;
            rc = GQ_FAIL(e, GQ_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
    }
    if (rc == 0)
        *len = (size_t)sb.st_size;
    close(fd);
    return rc;
}

/* ---- dtypes ---- */

const char *st_dtype_name(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

size_t st_dtype_size(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtypes[t].size : 0;
}

int st_dtype_parse(st_dtype *out, const char *name, gq_err *e)
{
    char q[40];
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        if (strcmp(name, dtypes[t].name) == 0) {
            *out = (st_dtype)t;
            return 0;
        }
    }
    return GQ_FAIL(e, GQ_EINVAL, "unknown dtype \"%s\"", gq_err_quote(q, sizeof(q), name));
}

/* ---- header validation ---- */

struct ent {
    struct st_tensor t;         /* name into the JSON tree; no data or file yet */
    uint64_t begin, end;
    size_t doc;                 /* position in the header: a stable tie-break */
};

struct hdr {
    gq_json *root;
    const gq_json *meta;        /* __metadata__, or NULL */
    struct ent *ents;           /* sorted by (begin, end, doc) */
    size_t n;
};

static void hdr_free(struct hdr *h)
{
    gq_json_free(h->root);
    gq_free(h->ents);
    memset(h, 0, sizeof(*h));
}

static int check_metadata(const gq_json *meta, const char *qf, gq_err *e)
{
    const char **keys = NULL, *dup;
    char qk[64], got[64];
    size_t n = 0;
    int rc = 0;

    if (gq_json_type_of(meta) != GQ_JSON_OBJECT)
        return GQ_FAIL(e, GQ_EINVAL, "%s: __metadata__ must be an object of strings (got %s)", qf,
                       describe(got, sizeof(got), meta));
    if (!(keys = gq_mallocn(gq_json_size(meta), sizeof(*keys))))
        return GQ_FAIL(e, GQ_ENOMEM, "%s: out of memory checking __metadata__", qf);
    for (const gq_json *m = gq_json_first(meta); m; m = gq_json_next(m)) {
        keys[n++] = gq_json_key(m);
        if (gq_json_type_of(m) != GQ_JSON_STRING) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: __metadata__ value of \"%s\" must be a string (got %s)",
                         qf, gq_err_quote(qk, sizeof(qk), gq_json_key(m)), describe(got, sizeof(got), m));
            goto done;
        }
    }
    if ((dup = first_dup(keys, n)) != NULL)
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: __metadata__ key \"%s\" appears more than once", qf,
                     gq_err_quote(qk, sizeof(qk), dup));
done:
    gq_free(keys);
    return rc;
}

/* One header member: the tensor's own fields, checked against the data size. */
static int parse_entry(struct ent *en, const gq_json *m, uint64_t data_size, const char *file,
                       gq_err *e)
{
    const gq_json *dt = NULL, *sh = NULL, *off = NULL, *x;
    struct st_tensor *t = &en->t;
    const char *name = gq_json_key(m);
    char got[64], dims[128];
    uint64_t numel = 1, d;
    size_t k;

    t->name = name;
    if (gq_json_type_of(m) != GQ_JSON_OBJECT)
        return tensor_fail(e, file, name, "entry must be an object (got %s)",
                           describe(got, sizeof(got), m));
    for (const gq_json *f = gq_json_first(m); f; f = gq_json_next(f)) {
        const char *key = gq_json_key(f);
        const gq_json **slot = strcmp(key, "dtype") == 0          ? &dt
                               : strcmp(key, "shape") == 0        ? &sh
                               : strcmp(key, "data_offsets") == 0 ? &off
                                                                  : NULL;
        if (!slot)
            continue;   /* the reference library ignores unknown fields too */
        if (*slot)
            return tensor_fail(e, file, name, "field \"%s\" appears more than once", key);
        *slot = f;
    }

    if (!gq_json_string(dt))
        return tensor_fail(e, file, name, "dtype must be a string (got %s)",
                           describe(got, sizeof(got), dt));
    if (st_dtype_parse(&t->dtype, gq_json_string(dt), NULL) < 0)
        return tensor_fail(e, file, name, "unknown dtype %s", describe(got, sizeof(got), dt));

    if (gq_json_type_of(sh) != GQ_JSON_ARRAY)
        return tensor_fail(e, file, name, "shape must be an array (got %s)",
                           describe(got, sizeof(got), sh));
    if (gq_json_size(sh) > ST_MAX_DIMS)
        return tensor_fail(e, file, name, "shape has %zu dimensions, at most %d are supported",
                           gq_json_size(sh), ST_MAX_DIMS);
    for (x = gq_json_first(sh), k = 0; x; x = gq_json_next(x), k++) {
        if (json_u64(&d, x) < 0)
            return tensor_fail(e, file, name, "shape[%zu] must be a non-negative integer (got %s)",
                               k, describe(got, sizeof(got), x));
        t->shape[t->ndim++] = (int64_t)d;
        if (d && numel > UINT64_MAX / d)
            return tensor_fail(e, file, name, "shape %s overflows 64 bits",
                               shape_str(dims, sizeof(dims), t->shape, t->ndim));
        numel *= d;
    }
    if (numel > SIZE_MAX / dtypes[t->dtype].size)
        return tensor_fail(e, file, name, "shape %s of %s overflows the byte size",
                           shape_str(dims, sizeof(dims), t->shape, t->ndim), dtypes[t->dtype].name);
    t->numel = (size_t)numel;
    t->nbytes = t->numel * dtypes[t->dtype].size;

    if (gq_json_type_of(off) != GQ_JSON_ARRAY || gq_json_size(off) != 2)
        return tensor_fail(e, file, name, "data_offsets must be an array of two integers (got %s)",
                           gq_json_type_of(off) == GQ_JSON_ARRAY ? "another length"
                                                                 : describe(got, sizeof(got), off));
    for (x = gq_json_first(off), k = 0; x; x = gq_json_next(x), k++)
        if (json_u64(k ? &en->end : &en->begin, x) < 0)
            return tensor_fail(e, file, name,
                               "data_offsets[%zu] must be a non-negative integer (got %s)", k,
                               describe(got, sizeof(got), x));
    if (en->begin > en->end)
        return tensor_fail(e, file, name, "data_offsets [%llu, %llu): begin is after end",
                           (unsigned long long)en->begin, (unsigned long long)en->end);
    if (en->end > data_size)
        return tensor_fail(e, file, name, "data_offsets [%llu, %llu) end past the data section "
                           "(%llu bytes)", (unsigned long long)en->begin,
                           (unsigned long long)en->end, (unsigned long long)data_size);
    if (en->end - en->begin != t->nbytes)
        return tensor_fail(e, file, name, "data_offsets [%llu, %llu) do not match %s %s (%zu bytes)",
                           (unsigned long long)en->begin, (unsigned long long)en->end,
                           shape_str(dims, sizeof(dims), t->shape, t->ndim),
                           dtypes[t->dtype].name, t->nbytes);
    return 0;
}

static int cmp_offsets(const void *pa, const void *pb)
{
    const struct ent *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return a->doc < b->doc ? -1 : a->doc > b->doc;
}

/* Parse and validate a header into h (left empty on error): see st_check_header. */
static int parse_header(struct hdr *h, const char *header, size_t hlen, uint64_t data_size,
                        const char *file, gq_err *e)
{
    const char **names = NULL, *dup;
    char qf[64], qt[96], got[64];
    uint64_t pos = 0;
    size_t bad;
    int rc = 0;

    memset(h, 0, sizeof(*h));
    gq_err_quote(qf, sizeof(qf), file);
    if (hlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "%s: header length is 0", qf);
    if (hlen > MAX_HEADER)
        return GQ_FAIL(e, GQ_EINVAL, "%s: header length %zu is over the limit of %llu bytes", qf,
                       hlen, MAX_HEADER);
    if (utf8_check(&bad, (const unsigned char *)header, hlen) < 0)
        return GQ_FAIL(e, GQ_EINVAL, "%s: header is not valid UTF-8 (%s at byte %zu)", qf,
                       header[bad] ? "bad sequence" : "NUL", bad);
    if ((rc = gq_json_parse(&h->root, header, hlen, e)) < 0) {
        gq_err_prefix(e, "%s: header", qf);
        return rc;
    }
    if (gq_json_type_of(h->root) != GQ_JSON_OBJECT) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: header must be a JSON object (got %s)", qf,
                     describe(got, sizeof(got), h->root));
        goto done;
    }
    h->ents = gq_calloc(gq_json_size(h->root), sizeof(*h->ents));
    names = gq_mallocn(gq_json_size(h->root), sizeof(*names));
    if (!h->ents || !names) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "%s: out of memory reading the header", qf);
        goto done;
    }
    for (const gq_json *m = gq_json_first(h->root); m; m = gq_json_next(m)) {
        if (strcmp(gq_json_key(m), "__metadata__") == 0) {
            if (h->meta) {
                rc = GQ_FAIL(e, GQ_EINVAL, "%s: __metadata__ appears more than once", qf);
                goto done;
            }
            if ((rc = check_metadata(m, qf, e)) < 0)
                goto done;
            h->meta = m;
            continue;
        }
        if ((rc = parse_entry(&h->ents[h->n], m, data_size, file, e)) < 0)
            goto done;
        h->ents[h->n].doc = h->n;
        names[h->n] = gq_json_key(m);
        h->n++;
    }
    if ((dup = first_dup(names, h->n)) != NULL) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: tensor \"%s\" appears more than once in the header", qf,
                     gq_err_quote(qt, sizeof(qt), dup));
        goto done;
    }

    /* Sorted by offset, the ranges must tile [0, data_size) exactly. */
    if (h->n > 1)
        qsort(h->ents, h->n, sizeof(*h->ents), cmp_offsets);
    for (size_t i = 0; i < h->n; i++) {
        const struct ent *t = &h->ents[i];
        if (t->begin < pos) {
            rc = tensor_fail(e, file, t->t.name, "data_offsets [%llu, %llu) overlap tensor \"%s\" "
                             "[%llu, %llu)", (unsigned long long)t->begin,
                             (unsigned long long)t->end, gq_err_quote(qt, 64, t[-1].t.name),
                             (unsigned long long)t[-1].begin, (unsigned long long)t[-1].end);
            goto done;
        }
        if (t->begin > pos) {
            rc = tensor_fail(e, file, t->t.name, "hole in the data: bytes [%llu, %llu) before it "
                             "belong to no tensor", (unsigned long long)pos,
                             (unsigned long long)t->begin);
            goto done;
        }
        pos = t->end;
    }
    if (pos != data_size && h->n == 0)
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: no tensors but the data section has %llu bytes", qf,
                     (unsigned long long)data_size);
    else if (pos != data_size)
        rc = tensor_fail(e, file, h->ents[h->n - 1].t.name, "hole in the data: bytes [%llu, %llu) "
                         "after it belong to no tensor", (unsigned long long)pos,
                         (unsigned long long)data_size);
done:
    gq_free(names);
    if (rc < 0)
        hdr_free(h);
    return rc;
}

int st_check_header(size_t *count, const char *header, size_t hlen, uint64_t data_size,
                    const char *filename, gq_err *e)
{
    struct hdr h;
    int rc = parse_header(&h, header, hlen, data_size, filename ? filename : "header", e);
    if (rc == 0 && count)
        *count = h.n;
    hdr_free(&h);
    return rc;
}

/* ---- one file ---- */

struct st_file {
    char *path;
    const char *base;                   /* last component of path, for messages */
    unsigned char *map;
    size_t map_len, n, nmeta;
    struct st_tensor *t;                /* data order */
    const struct st_tensor **by_name;
    char *strings;                      /* names, metadata keys and values */
    const char **meta;                  /* key, value, key, value, ... */
};

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const struct st_tensor *const *)a)->name,
                  (*(const struct st_tensor *const *)b)->name);
}

static const char *put_string(char **p, const char *s)
{
    size_t n = strlen(s) + 1;
    const char *d = memcpy(*p, s, n);
    *p += n;
    return d;
}

/* Copy what the parsed header describes into f; the tree may go afterwards. */
static int file_build(st_file *f, const struct hdr *h, const unsigned char *data, gq_err *e)
{
    size_t total = 1, i;
    char *p;

    for (i = 0; i < h->n; i++)
        total += strlen(h->ents[i].t.name) + 1;
    for (const gq_json *m = gq_json_first(h->meta); m; m = gq_json_next(m), f->nmeta++)
        total += strlen(gq_json_key(m)) + strlen(gq_json_string(m)) + 2;
    f->t = gq_calloc(h->n, sizeof(*f->t));
    f->by_name = gq_mallocn(h->n, sizeof(*f->by_name));
    f->meta = gq_mallocn(2 * f->nmeta, sizeof(*f->meta));
    f->strings = p = gq_malloc(total);
    if (!f->t || !f->by_name || !f->meta || !f->strings)
        return GQ_FAIL(e, GQ_ENOMEM, "%s: out of memory for %zu tensors", f->base, h->n);
    for (i = 0; i < h->n; i++) {
        f->t[i] = h->ents[i].t;
        f->t[i].name = put_string(&p, h->ents[i].t.name);
        f->t[i].data = data + h->ents[i].begin;
        f->t[i].file = f->base;
        f->by_name[i] = &f->t[i];
    }
    i = 0;
    for (const gq_json *m = gq_json_first(h->meta); m; m = gq_json_next(m)) {
        f->meta[i++] = put_string(&p, gq_json_key(m));
        f->meta[i++] = put_string(&p, gq_json_string(m));
    }
    f->n = h->n;
    if (f->n > 1)
        qsort(f->by_name, f->n, sizeof(*f->by_name), cmp_tensor_name);
    return 0;
}

int st_file_open(st_file **out, const char *path, gq_err *e)
{
    st_file *f = NULL;
    struct hdr h = {0};
    uint64_t n = 0;
    size_t size;
    int rc = 0;

    *out = NULL;
    GQ_ASSERT_ARG(e, path != NULL);
    if (!(f = gq_calloc(1, sizeof(*f))) || !(f->path = gq_strdup(path))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening %s", base_name(path));
        goto done;
    }
    f->base = base_name(f->path);
    if ((rc = map_file(&f->map, &f->map_len, path, SIZE_MAX, e)) < 0)
        goto done;
    size = f->map_len;
    if (size < 8) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: file is %zu bytes, too short for a safetensors file "
                     "(at least 8)", f->base, size);
        goto done;
    }
    for (int i = 7; i >= 0; i--)
        n = n << 8 | f->map[i];
    if (n > MAX_HEADER) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: header length %llu is over the limit of %llu bytes",
                     f->base, (unsigned long long)n, MAX_HEADER);
        goto done;
    }
    if (n > size - 8) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: header length %llu is past the end of the file (%zu "
                     "bytes; truncated?)", f->base, (unsigned long long)n, size);
        goto done;
    }
    if ((rc = parse_header(&h, (const char *)f->map + 8, (size_t)n, size - 8 - n, f->base, e)) < 0)
        goto done;
    rc = file_build(f, &h, f->map + 8 + n, e);
done:
    hdr_free(&h);
    if (rc < 0)
        st_file_close(f);
    else
        *out = f;
    return rc;
}

void st_file_close(st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->map_len);
    gq_free(f->t);
    gq_free(f->by_name);
    gq_free(f->meta);
    gq_free(f->strings);
    gq_free(f->path);
    gq_free(f);
}

size_t st_file_count(const st_file *f)
{
    return f->n;
}

const struct st_tensor *st_file_tensor(const st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

static const struct st_tensor *find_sorted(const struct st_tensor *const *v, size_t n,
                                           const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, v[mid]->name);
        if (c == 0)
            return v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct st_tensor *st_file_find(const st_file *f, const char *name)
{
    return find_sorted(f->by_name, f->n, name);
}

const char *st_file_metadata(const st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ---- tensors ---- */

int st_tensor_to_f32(float *out, const struct st_tensor *t, gq_err *e)
{
    const unsigned char *src = t->data;
    uint16_t tmp[2048];

    if (t->dtype == ST_F32) {
        if (t->numel)
            memcpy(out, src, t->numel * sizeof(float));
        return 0;
    }
    if (t->dtype != ST_F16 && t->dtype != ST_BF16)
        return tensor_fail(e, t->file ? t->file : "?", t->name, "cannot convert %s to float32",
                           st_dtype_name(t->dtype));
    /* The mapping is not 2-byte aligned in general: go through an aligned copy. */
    for (size_t i = 0, k; i < t->numel; i += k) {
        k = t->numel - i < 2048 ? t->numel - i : 2048;
        memcpy(tmp, src + 2 * i, 2 * k);
        if (t->dtype == ST_F16)
            gq_f16_to_f32_n(out + i, tmp, k);
        else
            gq_bf16_to_f32_n(out + i, tmp, k);
    }
    return 0;
}

void st_tensor_release(const struct st_tensor *t)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a, b;
    if (!t || !t->nbytes)
        return;
    /* The mapping starts on a page and its last page is mapped whole, so the
     * rounded range stays inside it; neighbours' pages are re-read on use. */
    a = (uintptr_t)t->data & ~(page - 1);
    b = ((uintptr_t)t->data + t->nbytes + page - 1) & ~(page - 1);
    madvise((void *)a, b - a, MADV_DONTNEED);
}

/* ---- a checkpoint directory ---- */

struct st_model {
    size_t nfiles, n;
    st_file **files;
    const struct st_tensor **t;         /* shard order, then data order */
    const struct st_tensor **by_name;
    uint64_t total;
};

/* One weight_map entry. */
struct wm {
    const char *name, *shard;
    size_t file;                        /* into st_model.files */
    const struct st_tensor *t;
};

static int cmp_wm_shard(const void *pa, const void *pb)
{
    const struct wm *a = pa, *b = pb;
    int c = strcmp(a->shard, b->shard);
    return c ? c : strcmp(a->name, b->name);
}

static int cmp_wm_order(const void *pa, const void *pb)
{
    const struct wm *a = pa, *b = pb;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return a->t < b->t ? -1 : a->t > b->t;
}

/* A plain file name: no directory part, not . or .. */
static int plain_name(const char *s)
{
    return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/') &&
           !strchr(s, '\\');
}

/* The index's weight_map, checked, as entries into the parsed tree. */
static int index_entries(struct wm **out, size_t *n, const gq_json *root, gq_err *e)
{
    const gq_json *map = NULL, *meta = gq_json_get(root, "metadata");
    const char **names = NULL, *dup;
    char q[96], got[64];
    struct wm *v = NULL;
    size_t k = 0;
    int rc = 0;

    if (gq_json_type_of(root) != GQ_JSON_OBJECT)
        return GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": must be a JSON object (got %s)",
                       describe(got, sizeof(got), root));
    for (const gq_json *m = gq_json_first(root); m; m = gq_json_next(m)) {
        if (strcmp(gq_json_key(m), "weight_map") == 0 && map)
            return GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": weight_map appears more than once");
        if (strcmp(gq_json_key(m), "weight_map") == 0)
            map = m;
    }
    if (meta && gq_json_type_of(meta) != GQ_JSON_OBJECT && !gq_json_is_null(meta))
        return GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": metadata must be an object (got %s)",
                       describe(got, sizeof(got), meta));
    if (gq_json_type_of(map) != GQ_JSON_OBJECT || gq_json_size(map) == 0)
        return GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": weight_map must be a non-empty object (got %s)",
                       describe(got, sizeof(got), map));
    v = gq_calloc(gq_json_size(map), sizeof(*v));
    names = gq_mallocn(gq_json_size(map), sizeof(*names));
    if (!v || !names) {
        rc = GQ_FAIL(e, GQ_ENOMEM, INDEX_NAME ": out of memory");
        goto done;
    }
    for (const gq_json *m = gq_json_first(map); m; m = gq_json_next(m), k++) {
        if (!gq_json_string(m) || !plain_name(gq_json_string(m))) {
            rc = GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": tensor \"%s\": shard %s must be a file name "
                         "inside the directory", gq_err_quote(q, sizeof(q), gq_json_key(m)),
                         describe(got, sizeof(got), m));
            goto done;
        }
        v[k].name = names[k] = gq_json_key(m);
        v[k].shard = gq_json_string(m);
    }
    if ((dup = first_dup(names, k)) != NULL) {
        rc = GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": tensor \"%s\" appears more than once in "
                     "weight_map", gq_err_quote(q, sizeof(q), dup));
        goto done;
    }
    *out = v;
    *n = k;
    v = NULL;
done:
    gq_free(v);
    gq_free(names);
    return rc;
}

/* Open the shards the index names and resolve every entry into m. */
static int model_sharded(st_model *m, const char *dir, const char *index_path, gq_err *e)
{
    unsigned char *text = NULL;
    char *path = NULL, q[96], qs[64];
    gq_json *root = NULL;
    struct wm *v = NULL;
    size_t len = 0, nv = 0, i;
    int rc;

    if ((rc = map_file(&text, &len, index_path, MAX_INDEX, e)) < 0)
        goto done;
    if ((rc = gq_json_parse(&root, text ? (const char *)text : "", len, e)) < 0) {
        gq_err_prefix(e, INDEX_NAME);
        goto done;
    }
    if ((rc = index_entries(&v, &nv, root, e)) < 0)
        goto done;
    qsort(v, nv, sizeof(*v), cmp_wm_shard);
    for (i = 0; i < nv; i++)
        m->nfiles += i == 0 || strcmp(v[i].shard, v[i - 1].shard) != 0;
    m->files = gq_calloc(m->nfiles, sizeof(*m->files));
    m->t = gq_mallocn(nv, sizeof(*m->t));
    m->by_name = gq_mallocn(nv, sizeof(*m->by_name));
    if (!m->files || !m->t || !m->by_name) {
        rc = GQ_FAIL(e, GQ_ENOMEM, INDEX_NAME ": out of memory");
        goto done;
    }
    for (i = 0, m->nfiles = 0; i < nv; i++) {
        if (i == 0 || strcmp(v[i].shard, v[i - 1].shard) != 0) {
            gq_free(path);
            if (!(path = str_printf("%s/%s", dir, v[i].shard))) {
                rc = GQ_FAIL(e, GQ_ENOMEM, INDEX_NAME ": out of memory");
                goto done;
            }
            rc = st_file_open(&m->files[m->nfiles], path, e);
            if (rc == GQ_ENOTFOUND)
                rc = GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": shard \"%s\" (of tensor \"%s\") does not "
                             "exist", gq_err_quote(qs, sizeof(qs), v[i].shard),
                             gq_err_quote(q, sizeof(q), v[i].name));
            if (rc < 0)
                goto done;
            m->nfiles++;
        }
        v[i].file = m->nfiles - 1;
        if (!(v[i].t = st_file_find(m->files[v[i].file], v[i].name))) {
            rc = GQ_FAIL(e, GQ_EINVAL, INDEX_NAME ": tensor \"%s\" is not in its shard %s",
                         gq_err_quote(q, sizeof(q), v[i].name), gq_err_quote(qs, sizeof(qs), v[i].shard));
            goto done;
        }
    }
    qsort(v, nv, sizeof(*v), cmp_wm_order);
    for (i = 0; i < nv; i++)
        m->t[i] = v[i].t;
    m->n = nv;
done:
    gq_free(path);
    gq_free(v);
    gq_json_free(root);
    if (text)
        munmap(text, len);
    return rc;
}

int st_model_open(st_model **out, const char *dir, gq_err *e)
{
    st_model *m = NULL;
    char *single = NULL, *index = NULL;
    struct stat sb;
    int rc = 0;

    *out = NULL;
    GQ_ASSERT_ARG(e, dir != NULL);
    m = gq_calloc(1, sizeof(*m));
    single = str_printf("%s/" SINGLE_NAME, dir);
    index = str_printf("%s/" INDEX_NAME, dir);
    if (!m || !single || !index) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a checkpoint");
        goto done;
    }
    if (stat(single, &sb) == 0 || errno != ENOENT) {
        if (!(m->files = gq_calloc(1, sizeof(*m->files)))) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a checkpoint");
            goto done;
        }
        if ((rc = st_file_open(&m->files[0], single, e)) < 0)
            goto done;
        m->nfiles = 1;
        m->n = st_file_count(m->files[0]);
        m->t = gq_mallocn(m->n, sizeof(*m->t));
        m->by_name = gq_mallocn(m->n, sizeof(*m->by_name));
        if (!m->t || !m->by_name) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a checkpoint");
            goto done;
        }
        for (size_t i = 0; i < m->n; i++)
            m->t[i] = st_file_tensor(m->files[0], i);
    } else if (stat(index, &sb) == 0 || errno != ENOENT) {
        if ((rc = model_sharded(m, dir, index, e)) < 0)
            goto done;
    } else {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "%s: no " SINGLE_NAME " or " INDEX_NAME, dir);
        goto done;
    }
    for (size_t i = 0; i < m->n; i++) {
        m->by_name[i] = m->t[i];
        m->total += m->t[i]->nbytes;
    }
    if (m->n > 1)
        qsort(m->by_name, m->n, sizeof(*m->by_name), cmp_tensor_name);
done:
    gq_free(single);
    gq_free(index);
    if (rc < 0)
        st_model_close(m);
    else
        *out = m;
    return rc;
}

void st_model_close(st_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->files && i < m->nfiles; i++)
        st_file_close(m->files[i]);
    gq_free(m->files);
    gq_free(m->t);
    gq_free(m->by_name);
    gq_free(m);
}

size_t st_model_count(const st_model *m)
{
    return m->n;
}

const struct st_tensor *st_model_tensor(const st_model *m, size_t i)
{
    return i < m->n ? m->t[i] : NULL;
}

const struct st_tensor *st_model_find(const st_model *m, const char *name)
{
    return find_sorted(m->by_name, m->n, name);
}

uint64_t st_model_total_bytes(const st_model *m)
{
    return m->total;
}

/* ---- writing ---- */

struct wt {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes, begin;             /* begin: offset in its shard's data */
    size_t shard;
};

struct wshard {
    char *path, *tmp;                   /* final and temporary paths */
    size_t first, end;                  /* its tensors [first, end) */
    int created;                        /* tmp exists */
};

struct st_writer {
    char *dir, *other;                  /* other: the other layout's entry point */
    char *index_path, *index_tmp;
    uint64_t max_shard, total;
    struct wt *t;
    const struct wt **by_name;
    size_t n, cap, next;                /* next: the tensor st_writer_write expects */
    struct wshard *s;
    size_t ns, cur;                     /* shards, and the one fd is open on */
    int laid_out, failed, fd;
};

static int write_all(int fd, const void *p, size_t n, const char *what, gq_err *e)
{
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n < (1u << 30) ? n : (1u << 30));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return GQ_FAIL(e, GQ_EIO, "%s: write failed: %s", what,
                           k ? strerror(errno) : "no progress");
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Create path as w->fd. */
static int create(st_writer *w, const char *path, gq_err *e)
{
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return w->fd < 0 ? GQ_FAIL(e, GQ_EIO, "%s: cannot create: %s", path, strerror(errno)) : 0;
}

/* fsync and close w->fd. */
static int close_synced(st_writer *w, const char *what, gq_err *e)
{
    int fd = w->fd, bad;
    w->fd = -1;
    bad = fsync(fd) < 0;
    bad |= close(fd) < 0;
    return bad ? GQ_FAIL(e, GQ_EIO, "%s: fsync/close failed: %s", what, strerror(errno)) : 0;
}

static int cmp_wt_name(const void *a, const void *b)
{
    return strcmp((*(const struct wt *const *)a)->name, (*(const struct wt *const *)b)->name);
}

int st_writer_open(st_writer **out, const char *dir, uint64_t max_shard_bytes, gq_err *e)
{
    st_writer *w;
    struct stat sb;

    *out = NULL;
    GQ_ASSERT_ARG(e, dir != NULL);
    if (stat(dir, &sb) < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return GQ_FAIL(e, GQ_EINVAL, "%s: not a directory", dir);
    if (!(w = gq_calloc(1, sizeof(*w))) || !(w->dir = gq_strdup(dir))) {
        gq_free(w);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory opening a safetensors writer");
    }
    w->max_shard = max_shard_bytes;
    w->fd = -1;
    *out = w;
    return 0;
}

int st_writer_declare(st_writer *w, const char *name, st_dtype dtype, int ndim,
                      const int64_t *shape, gq_err *e)
{
    struct wt *t;
    uint64_t numel = 1;
    size_t bad;
    char q[96];

    GQ_ASSERT_ARG(e, w != NULL && name != NULL && (shape != NULL || ndim == 0));
    gq_err_quote(q, sizeof(q), name);
    if (w->laid_out || w->failed)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": declared after writing started", q);
    if (!*name || strcmp(name, "__metadata__") == 0 ||
        utf8_check(&bad, (const unsigned char *)name, strlen(name)) < 0)
        return GQ_FAIL(e, GQ_EINVAL, "tensor name \"%s\" is empty, reserved or not UTF-8", q);
    if ((unsigned)dtype >= ST_DTYPE_COUNT)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": unknown dtype %d", q, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": %d dimensions (0 to %d are supported)", q,
                       ndim, ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > MAX_INT)
            return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": shape[%d] is %lld", q, i,
                           (long long)shape[i]);
        if (shape[i] && numel > MAX_INT / (uint64_t)shape[i])
            return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": shape is too large", q);
        numel *= (uint64_t)shape[i];
    }
    if (numel > (MAX_INT - w->total) / dtypes[dtype].size)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": checkpoint over 2^53 bytes", q);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        struct wt *nt = gq_realloc(w->t, cap * sizeof(*nt));
        if (!nt)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory declaring tensor \"%s\"", q);
        w->t = nt;
        w->cap = cap;
    }
    t = memset(&w->t[w->n], 0, sizeof(*t));
    if (!(t->name = gq_strdup(name)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory declaring tensor \"%s\"", q);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = numel * dtypes[dtype].size;
    w->total += t->nbytes;
    w->n++;
    return 0;
}

/* Names checked, shards, offsets and paths: once, when every tensor is declared. */
static int layout(st_writer *w, gq_err *e)
{
    uint64_t cur = 0;
    size_t s = 0, i;
    char q[96];

    if (!(w->by_name = gq_mallocn(w->n, sizeof(*w->by_name))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory laying out shards");
    for (i = 0; i < w->n; i++)
        w->by_name[i] = &w->t[i];
    if (w->n > 1)
        qsort(w->by_name, w->n, sizeof(*w->by_name), cmp_wt_name);
    for (i = 1; i < w->n; i++)
        if (strcmp(w->by_name[i - 1]->name, w->by_name[i]->name) == 0)
            return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\" declared more than once",
                           gq_err_quote(q, sizeof(q), w->by_name[i]->name));
    /* Greedy: a tensor that does not fit starts the next shard (a zero-size one
     * never does), so one larger than the maximum has a shard of its own. */
    for (i = 0; i < w->n; i++) {
        if (w->max_shard && cur > 0 && w->t[i].nbytes > 0 && cur + w->t[i].nbytes > w->max_shard) {
            s++;
            cur = 0;
        }
        w->t[i].shard = s;
        w->t[i].begin = cur;
        cur += w->t[i].nbytes;
    }
    if (s >= 99999)
        return GQ_FAIL(e, GQ_EINVAL, "%zu shards, more than 99999", s + 1);
    w->s = gq_calloc(s + 1, sizeof(*w->s));
    w->other = str_printf("%s/%s", w->dir, s > 0 ? SINGLE_NAME : INDEX_NAME);
    if (!w->s || !w->other)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory laying out shards");
    w->ns = s + 1;
    for (i = 0; i < w->ns; i++) {
        struct wshard *sh = &w->s[i];
        if (w->ns == 1)
            sh->path = str_printf("%s/" SINGLE_NAME, w->dir);
        else
            sh->path = str_printf("%s/model-%05zu-of-%05zu.safetensors", w->dir, i + 1, w->ns);
        if (!sh->path || !(sh->tmp = str_printf("%s/.%s.tmp-%ld", w->dir, base_name(sh->path),
                                                (long)getpid())))
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory laying out shards");
    }
    for (i = w->n; i-- > 0;)
        w->s[w->t[i].shard].first = i;
    for (i = 0; i < w->ns; i++)
        w->s[i].end = i + 1 < w->ns ? w->s[i + 1].first : w->n;
    w->laid_out = 1;
    return 0;
}

/* {"dtype", "shape", "data_offsets"} of t, or NULL when out of memory. */
static gq_json *tensor_json(const struct wt *t)
{
    gq_json *o = gq_json_new_object(), *shape = gq_json_new_array(), *off = gq_json_new_array();
    int bad = !o;
    for (int i = 0; i < t->ndim; i++)
        bad |= gq_json_add(shape, NULL, gq_json_new_number((double)t->shape[i])) < 0;
    bad |= gq_json_add(off, NULL, gq_json_new_number((double)t->begin)) < 0;
    bad |= gq_json_add(off, NULL, gq_json_new_number((double)(t->begin + t->nbytes))) < 0;
    bad |= gq_json_add(o, "dtype", gq_json_new_string(dtypes[t->dtype].name)) < 0;
    bad |= gq_json_add(o, "shape", shape) < 0;
    bad |= gq_json_add(o, "data_offsets", off) < 0;
    if (bad) {
        gq_json_free(o);
        return NULL;
    }
    return o;
}

/* Create shard s's temporary file and write its header. */
static int shard_begin(st_writer *w, size_t s, gq_err *e)
{
    struct wshard *sh = &w->s[s];
    const char *name = base_name(sh->path);
    gq_json *root = gq_json_new_object(), *meta = gq_json_new_object();
    char *text = NULL;
    unsigned char len8[8];
    size_t len, padded;
    int rc = 0, bad;

    bad = gq_json_add(meta, "format", gq_json_new_string("pt")) < 0;
    bad |= gq_json_add(root, "__metadata__", meta) < 0;
    for (size_t i = sh->first; i < sh->end; i++)
        bad |= gq_json_append(root, w->t[i].name, tensor_json(&w->t[i])) < 0;   /* names are unique */
    if (bad || !(text = gq_json_print(root, 0))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "%s: out of memory writing the header", name);
        goto done;
    }
    len = strlen(text);
    padded = (len + 7) & ~(size_t)7;
    if (padded > MAX_HEADER) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: header of %zu bytes is over the limit", name, padded);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if ((rc = create(w, sh->tmp, e)) < 0)
        goto done;
    sh->created = 1;
    w->cur = s;
    if ((rc = write_all(w->fd, len8, 8, name, e)) < 0 ||
        (rc = write_all(w->fd, text, len, name, e)) < 0)
        goto done;
    rc = write_all(w->fd, "       ", padded - len, name, e);
done:
    gq_json_free_text(text);
    gq_json_free(root);
    return rc;
}

int st_writer_write(st_writer *w, const char *name, const void *data, size_t nbytes, gq_err *e)
{
    const struct wt *t;
    char q[96], qx[96];
    int rc;

    GQ_ASSERT_ARG(e, w != NULL && name != NULL && (data != NULL || nbytes == 0));
    gq_err_quote(q, sizeof(q), name);
    if (w->failed)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": the writer failed earlier", q);
    if (!w->laid_out && (rc = layout(w, e)) < 0)
        goto fail;
    if (w->next == w->n || strcmp(name, w->t[w->next].name) != 0) {
        for (size_t i = 0; i < w->n; i++)
            if (strcmp(name, w->t[i].name) == 0)
                return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\" written out of order (expected %s)",
                               q, w->next < w->n ? gq_err_quote(qx, sizeof(qx), w->t[w->next].name)
                                                 : "no more tensors");
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\" was not declared", q);
    }
    t = &w->t[w->next];
    if (nbytes != t->nbytes)
        return GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\": %zu bytes written, %llu declared", q, nbytes,
                       (unsigned long long)t->nbytes);
    if (w->fd < 0 || w->cur != t->shard) {
        if (w->fd >= 0 && (rc = close_synced(w, base_name(w->s[w->cur].path), e)) < 0)
            goto fail;
        if ((rc = shard_begin(w, t->shard, e)) < 0)
            goto fail;
    }
    if ((rc = write_all(w->fd, data, nbytes, base_name(w->s[t->shard].path), e)) < 0)
        goto fail;
    w->next++;
    return 0;
fail:
    w->failed = 1;
    return rc;
}

/* model.safetensors.index.json (keys sorted, indent 2) into its temporary file. */
static int write_index(st_writer *w, gq_err *e)
{
    gq_json *root = gq_json_new_object(), *meta = gq_json_new_object(), *map = gq_json_new_object();
    char *text = NULL;
    int rc, bad;

    bad = gq_json_add(meta, "total_size", gq_json_new_number((double)w->total)) < 0;
    bad |= gq_json_add(root, "metadata", meta) < 0;
    for (size_t i = 0; i < w->n; i++)
        bad |= gq_json_append(map, w->by_name[i]->name,
                           gq_json_new_string(base_name(w->s[w->by_name[i]->shard].path))) < 0;
    bad |= gq_json_add(root, "weight_map", map) < 0;
    w->index_path = str_printf("%s/" INDEX_NAME, w->dir);
    w->index_tmp = str_printf("%s/." INDEX_NAME ".tmp-%ld", w->dir, (long)getpid());
    if (bad || !(text = gq_json_print(root, 2)) || !w->index_path || !w->index_tmp) {
        rc = GQ_FAIL(e, GQ_ENOMEM, INDEX_NAME ": out of memory");
        goto done;
    }
    if ((rc = create(w, w->index_tmp, e)) < 0 ||
        (rc = write_all(w->fd, text, strlen(text), INDEX_NAME, e)) < 0 ||
        (rc = write_all(w->fd, "\n", 1, INDEX_NAME, e)) < 0)
        goto done;
    rc = close_synced(w, INDEX_NAME, e);
done:
    gq_json_free_text(text);
    gq_json_free(root);
    return rc;
}

int st_writer_finish(st_writer *w, gq_err *e)
{
    char q[96];
    int rc = 0, dfd;

    GQ_ASSERT_ARG(e, w != NULL);
    if (w->failed) {
        rc = GQ_FAIL(e, GQ_EINVAL, "safetensors writer failed earlier");
        goto done;
    }
    if (!w->laid_out && (rc = layout(w, e)) < 0)
        goto done;
    if (w->next < w->n) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tensor \"%s\" was declared but not written (%zu of %zu "
                     "written)", gq_err_quote(q, sizeof(q), w->t[w->next].name), w->next, w->n);
        goto done;
    }
    if (w->fd < 0 && (rc = shard_begin(w, 0, e)) < 0)    /* no tensors: a bare header */
        goto done;
    if ((rc = close_synced(w, base_name(w->s[w->cur].path), e)) < 0)
        goto done;
    if (w->ns > 1 && (rc = write_index(w, e)) < 0)
        goto done;
    /* Shards first, the index last: a reader sees the old checkpoint or the new one. */
    for (size_t i = 0; i < w->ns; i++) {
        if (rename(w->s[i].tmp, w->s[i].path) < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "%s: rename failed: %s", w->s[i].path, strerror(errno));
            goto done;
        }
        w->s[i].created = 0;
    }
    if (w->ns > 1 && rename(w->index_tmp, w->index_path) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "%s: rename failed: %s", w->index_path, strerror(errno));
        goto done;
    }
    gq_free(w->index_tmp);
    w->index_tmp = NULL;
    /* The other layout's entry point would shadow or contradict this one. */
    if (unlink(w->other) < 0 && errno != ENOENT) {
        rc = GQ_FAIL(e, GQ_EIO, "%s: cannot remove: %s", w->other, strerror(errno));
        goto done;
    }
    dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        rc = GQ_FAIL(e, GQ_EIO, "%s: cannot sync the directory: %s", w->dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
done:
    st_writer_abort(w);
    return rc;
}

void st_writer_abort(st_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    for (size_t i = 0; i < w->ns; i++) {
        if (w->s[i].created)
            unlink(w->s[i].tmp);
        gq_free(w->s[i].path);
        gq_free(w->s[i].tmp);
    }
    if (w->index_tmp)
        unlink(w->index_tmp);
    for (size_t i = 0; i < w->n; i++)
        gq_free(w->t[i].name);
    gq_free(w->index_tmp);
    gq_free(w->index_path);
    gq_free(w->other);
    gq_free(w->by_name);
    gq_free(w->s);
    gq_free(w->t);
    gq_free(w->dir);
    gq_free(w);
}
