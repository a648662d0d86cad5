/*
 * test_safetensors.c - the safetensors reader and writer: the shared
 * Qwen2 fixture, write/read round trips for every dtype (scalars and
 * zero-size tensors included), conversion to float32 from unaligned data,
 * sharded checkpoints and their index, one hand-made corrupt file per
 * validation rule, writer misuse, abort, and allocation failures.
 *
 * Every case works in its own directory under /tmp, removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "mem.h"
#include "safetensors.h"
#include "test.h"

/* ---- helpers ---- */

static char *tmp_dir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/test_safetensors_XXXXXX");
    return mkdtemp(buf);
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    if (!d)
        return (size_t)-1;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int file_exists(const char *dir, const char *name)
{
    char path[512];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &sb) == 0;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int ok = fd >= 0 && write(fd, p, n) == (ssize_t)n;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* A safetensors file: length n_field, the header text, data_size bytes of data. */
static int write_st_raw(const char *path, uint64_t n_field, const char *hdr, size_t hlen,
                        size_t data_size)
{
    size_t total = 8 + hlen + data_size;
    unsigned char *buf = calloc(1, total);
    int rc;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(n_field >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    for (size_t i = 0; i < data_size; i++)
        buf[8 + hlen + i] = (unsigned char)(i * 7 + 1);
    rc = write_bytes(path, buf, total);
    free(buf);
    return rc;
}

static int write_st(const char *path, const char *hdr, size_t data_size)
{
    return write_st_raw(path, strlen(hdr), hdr, strlen(hdr), data_size);
}

/* Deterministic bytes for tensor k. */
static void fill(unsigned char *p, size_t n, unsigned k)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + k * 17 + 3);
}

/* ---- the fixture ---- */

static void test_safetensors__fixture(void)
{
    const char *shared = test_shared_dir();
    char dir[4200], path[4300];
    gq_err e = GQ_ERR_INIT;
    st_model *m = NULL;
    st_file *f = NULL;
    const struct st_tensor *t;
    float *w = NULL;
    size_t nonzero = 0, finite = 0;

    if (!shared)
        SKIP("../shared is absent (set GPTQ_SHARED)");
    snprintf(dir, sizeof(dir), "%s/fixtures/tiny-qwen2-gcide/model", shared);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    CHECK_OK(st_file_open(&f, path, &e), &e);
    if (!m || !f)
        goto done;
    CHECK_EQ_INT(st_model_count(m), 50);
    CHECK_EQ_INT(st_file_count(f), 50);
    CHECK_EQ_INT(st_model_total_bytes(m), 10499760 - 8 - 5288);
    CHECK(st_file_metadata(f, "format") && strcmp(st_file_metadata(f, "format"), "pt") == 0);
    CHECK(st_file_metadata(f, "nope") == NULL);
    for (size_t i = 0; i < st_model_count(m); i++)
        CHECK_EQ_INT(st_model_tensor(m, i)->dtype, ST_F16);
    CHECK(st_model_tensor(m, 50) == NULL);

    t = st_model_find(m, "model.embed_tokens.weight");
    CHECK(t != NULL && t == st_model_tensor(m, 0));   /* data order: it comes first */
    if (!t)
        goto done;
    CHECK_EQ_INT(t->ndim, 2);
    CHECK_EQ_INT(t->shape[0], 8192);
    CHECK_EQ_INT(t->shape[1], 256);
    CHECK_EQ_INT(t->numel, 8192 * 256);
    CHECK_EQ_INT(t->nbytes, 8192 * 256 * 2);
    CHECK(strcmp(t->file, "model.safetensors") == 0);
    w = gq_mallocn(t->numel, sizeof(float));
    CHECK_OK(st_tensor_to_f32(w, t, &e), &e);
    for (size_t i = 0; w && i < t->numel; i++) {
        finite += isfinite(w[i]) && fabsf(w[i]) < 100;
        nonzero += w[i] != 0;
    }
    CHECK_EQ_INT(finite, t->numel);
    CHECK(nonzero > t->numel / 2);
    /* the first element, by hand */
    if (w) {
        uint16_t h;
        memcpy(&h, t->data, 2);
        CHECK(w[0] == gq_f16_to_f32(h));
    }
    /* released pages come back with the same bytes */
    if (w) {
        unsigned char before[64];
        memcpy(before, t->data, sizeof(before));
        st_tensor_release(t);
        CHECK(memcmp(before, t->data, sizeof(before)) == 0);
    }

    t = st_model_find(m, "model.layers.0.self_attn.k_proj.bias");
    CHECK(t && t->ndim == 1 && t->shape[0] == 128 && t->nbytes == 256);
    t = st_model_find(m, "model.layers.3.mlp.down_proj.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 256 && t->shape[1] == 768);
    CHECK(st_file_find(f, "model.layers.3.mlp.down_proj.weight") != NULL);
    CHECK(st_model_find(m, "lm_head.weight") == NULL);   /* tied */
    t = st_model_find(m, "model.norm.weight");
    CHECK_EQ_INT(st_tensor_to_f32(w, t, &e), 0);
done:
    gq_free(w);
    st_file_close(f);
    st_model_close(m);
}

/* ---- dtypes ---- */

static void test_safetensors__dtype_table(void)
{
    static const char *names[] = {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16",
                                  "I32",  "U32", "F32", "I64", "U64", "F64"};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    gq_err e = GQ_ERR_INIT;
    st_dtype t;

    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        CHECK(strcmp(st_dtype_name((st_dtype)i), names[i]) == 0);
        CHECK_EQ_INT(st_dtype_size((st_dtype)i), sizes[i]);
        CHECK_OK(st_dtype_parse(&t, names[i], &e), &e);
        CHECK_EQ_INT(t, i);
    }
    CHECK_EQ_INT(st_dtype_parse(&t, "f16", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "unknown dtype \"f16\"") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_dtype_parse(&t, "F8_E4M3", &e), GQ_EINVAL);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_COUNT), 0);
}

/* ---- writing and reading back ---- */

struct decl {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[3];
};

/* Write decls into dir (data from fill), with max_shard_bytes. */
static int write_model(const char *dir, const struct decl *d, size_t n, uint64_t max, gq_err *e)
{
    st_writer *w = NULL;
    unsigned char *buf = NULL;
    int rc;

    if ((rc = st_writer_open(&w, dir, max, e)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = st_writer_declare(w, d[i].name, d[i].dtype, d[i].ndim, d[i].shape, e)) < 0)
            goto fail;
    for (size_t i = 0; i < n; i++) {
        size_t nb = st_dtype_size(d[i].dtype);
        for (int k = 0; k < d[i].ndim; k++)
            nb *= (size_t)d[i].shape[k];
        buf = malloc(nb ? nb : 1);
        fill(buf, nb, (unsigned)i);
        rc = st_writer_write(w, d[i].name, buf, nb, e);
        free(buf);
        if (rc < 0)
            goto fail;
    }
    return st_writer_finish(w, e);
fail:
    st_writer_abort(w);
    return rc;
}

/* Each decl is in m (or f) with its shape and the bytes fill() gave it. */
static void check_model(const st_model *m, const st_file *f, const struct decl *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct st_tensor *t = m ? st_model_find(m, d[i].name) : st_file_find(f, d[i].name);
        size_t numel = 1;
        unsigned char *want;
        CHECK_MSG(t != NULL, "%s missing", d[i].name);
        if (!t)
            continue;
        CHECK_EQ_INT(t->dtype, d[i].dtype);
        CHECK_EQ_INT(t->ndim, d[i].ndim);
        for (int k = 0; k < d[i].ndim; k++) {
            CHECK_EQ_INT(t->shape[k], d[i].shape[k]);
            numel *= (size_t)d[i].shape[k];
        }
        CHECK_EQ_INT(t->numel, numel);
        CHECK_EQ_INT(t->nbytes, numel * st_dtype_size(d[i].dtype));
        want = malloc(t->nbytes + 1);
        fill(want, t->nbytes, (unsigned)i);
        CHECK_MSG(memcmp(want, t->data, t->nbytes) == 0, "%s bytes differ", d[i].name);
        free(want);
    }
}

static const struct decl every_dtype[] = {
    {"t.bool", ST_BOOL, 1, {5}},      {"t.u8", ST_U8, 2, {3, 3}},
    {"t.i8", ST_I8, 1, {7}},          {"t.i16", ST_I16, 2, {2, 3}},
    {"t.u16", ST_U16, 1, {3}},        {"t.f16", ST_F16, 3, {2, 2, 3}},
    {"t.bf16", ST_BF16, 2, {5, 1}},   {"t.i32", ST_I32, 1, {9}},
    {"t.u32", ST_U32, 1, {1}},        {"t.f32", ST_F32, 2, {4, 3}},
    {"t.i64", ST_I64, 1, {3}},        {"t.u64", ST_U64, 2, {1, 2}},
    {"t.f64", ST_F64, 1, {2}},        {"t.scalar", ST_F32, 0, {0}},
    {"t.empty", ST_F16, 2, {0, 3}},   {"t.empty2", ST_I64, 3, {2, 0, 4}},
    {"t.scalar_i8", ST_I8, 0, {0}},   {"t.last", ST_U8, 1, {3}},
};
#define N_EVERY (sizeof(every_dtype) / sizeof(every_dtype[0]))

static void test_safetensors__round_trip_every_dtype(void)
{
    char dir[64], path[128], *bytes;
    gq_err e = GQ_ERR_INIT;
    st_file *f = NULL;
    st_model *m = NULL;
    size_t len = 0, n = 0;
    uint64_t prev_end = 0;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    CHECK_OK(write_model(dir, every_dtype, N_EVERY, 0, &e), &e);
    CHECK_EQ_INT(count_files(dir), 1);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    CHECK_OK(st_file_open(&f, path, &e), &e);
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    if (f && m) {
        CHECK_EQ_INT(st_file_count(f), N_EVERY);
        check_model(NULL, f, every_dtype, N_EVERY);
        check_model(m, NULL, every_dtype, N_EVERY);
        CHECK(st_file_metadata(f, "format") && strcmp(st_file_metadata(f, "format"), "pt") == 0);
        /* data order is declaration order, and the ranges tile the data */
        for (size_t i = 0; i < N_EVERY; i++) {
            const struct st_tensor *t = st_file_tensor(f, i);
            CHECK(strcmp(t->name, every_dtype[i].name) == 0);
            if (i > 0)
                CHECK((const unsigned char *)t->data ==
                      (const unsigned char *)st_file_tensor(f, 0)->data + prev_end);
            prev_end += t->nbytes;
        }
        CHECK_EQ_INT(st_model_total_bytes(m), prev_end);
    }
    /* the header: 8-aligned, compact, __metadata__ first, space padding */
    bytes = test_read_file(path, &len);
    if (bytes && len >= 8) {
        for (int i = 7; i >= 0; i--)
            n = n << 8 | (unsigned char)bytes[i];
        CHECK_EQ_INT(n % 8, 0);
        CHECK(n + 8 + prev_end == len);
        CHECK(strncmp(bytes + 8, "{\"__metadata__\":{\"format\":\"pt\"},\"t.bool\":{\"dtype\":"
                      "\"BOOL\",\"shape\":[5],\"data_offsets\":[0,5]},", 88) == 0);
        CHECK(strstr(bytes + 8, "\"t.scalar\":{\"dtype\":\"F32\",\"shape\":[],") != NULL);
        for (size_t i = 8; i < 8 + n && bytes[i] != '\0'; i++)
            if (i > 8 && bytes[i - 1] == '}' && bytes[i] == ' ') {
                for (size_t k = i; k < 8 + n; k++)
                    CHECK(bytes[k] == ' ');
                break;
            }
    }
    free(bytes);
    st_file_close(f);
    st_model_close(m);
    rm_dir(dir);
}

/* The exact header of a small file. */
static void test_safetensors__header_bytes(void)
{
    static const struct decl d[] = {{"b", ST_F16, 2, {2, 3}}, {"a", ST_I32, 0, {0}}};
    static const char want[] =
        "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],"
        "\"data_offsets\":[0,12]},\"a\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[12,16]}}";
    char dir[64], path[128], *bytes;
    gq_err e = GQ_ERR_INIT;
    size_t len = 0, hl = strlen(want), padded = (hl + 7) / 8 * 8;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    CHECK_OK(write_model(dir, d, 2, 0, &e), &e);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    bytes = test_read_file(path, &len);
    CHECK_EQ_INT(len, 8 + padded + 16);
    if (bytes && len == 8 + padded + 16) {
        CHECK_EQ_INT((unsigned char)bytes[0], padded);
        CHECK(memcmp(bytes + 1, "\0\0\0\0\0\0\0", 7) == 0);
        CHECK(memcmp(bytes + 8, want, hl) == 0);
        CHECK(padded == hl || memcmp(bytes + 8 + hl, "       ", padded - hl) == 0);
    }
    free(bytes);
    rm_dir(dir);
}

/* No tensors at all: a header with only __metadata__. */
static void test_safetensors__empty_checkpoint(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    st_model *m = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    CHECK_OK(write_model(dir, NULL, 0, 0, &e), &e);
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    CHECK(m && st_model_count(m) == 0 && st_model_total_bytes(m) == 0);
    CHECK(m && st_model_find(m, "x") == NULL);
    st_model_close(m);
    rm_dir(dir);
}

/* F32, F16 and BF16 at odd offsets, with more than one conversion chunk. */
static void test_safetensors__to_f32_unaligned(void)
{
    enum { N = 3001 };
    static const struct decl d[] = {{"pad", ST_U8, 1, {1}},   {"f32", ST_F32, 1, {N}},
                                    {"f16", ST_F16, 1, {N}},  {"bf16", ST_BF16, 1, {N}},
                                    {"i32", ST_I32, 1, {2}}};
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    st_writer *w = NULL;
    st_model *m = NULL;
    float *src = malloc(N * sizeof(float)), *out = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * 2), *b = malloc(N * 2);
    unsigned long long seed = 7;
    int32_t iv[2] = {1, 2};
    unsigned char pad = 9;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    for (size_t i = 0; i < N; i++)
        src[i] = (float)(test_rand_normal(&seed) * 10.0);
    src[0] = 65504.0f;
    src[1] = -0.0f;
    src[2] = 5.96e-8f;   /* an f16 subnormal */
    gq_f32_to_f16_n(h, src, N);
    gq_f32_to_bf16_n(b, src, N);
    CHECK_OK(st_writer_open(&w, dir, 0, &e), &e);
    for (size_t i = 0; w && i < 5; i++)
        CHECK_OK(st_writer_declare(w, d[i].name, d[i].dtype, d[i].ndim, d[i].shape, &e), &e);
    if (w) {
        CHECK_OK(st_writer_write(w, "pad", &pad, 1, &e), &e);
        CHECK_OK(st_writer_write(w, "f32", src, N * 4, &e), &e);
        CHECK_OK(st_writer_write(w, "f16", h, N * 2, &e), &e);
        CHECK_OK(st_writer_write(w, "bf16", b, N * 2, &e), &e);
        CHECK_OK(st_writer_write(w, "i32", iv, sizeof(iv), &e), &e);
        CHECK_OK(st_writer_finish(w, &e), &e);
    }
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    if (m) {
        const struct st_tensor *t = st_model_find(m, "f32");
        CHECK(t && ((uintptr_t)t->data & 3) != 0);   /* really unaligned */
        CHECK_OK(st_tensor_to_f32(out, t, &e), &e);
        CHECK(memcmp(out, src, N * 4) == 0);
        CHECK_OK(st_tensor_to_f32(out, st_model_find(m, "f16"), &e), &e);
        for (size_t i = 0; i < N; i++)
            if (out[i] != gq_f16_to_f32(h[i])) {
                CHECK_MSG(0, "f16 element %zu: %g", i, out[i]);
                break;
            }
        CHECK(out[0] == 65504.0f && signbit(out[1]) && out[2] > 0);
        CHECK_OK(st_tensor_to_f32(out, st_model_find(m, "bf16"), &e), &e);
        for (size_t i = 0; i < N; i++)
            if (out[i] != gq_bf16_to_f32(b[i])) {
                CHECK_MSG(0, "bf16 element %zu: %g", i, out[i]);
                break;
            }
        CHECK_EQ_INT(st_tensor_to_f32(out, st_model_find(m, "i32"), &e), GQ_EINVAL);
        CHECK_MSG(strstr(e.msg, "model.safetensors: tensor \"i32\": cannot convert I32") != NULL,
                  "%s", e.msg);
        st_tensor_release(st_model_find(m, "f16"));
        st_tensor_release(st_model_find(m, "pad"));
        CHECK_OK(st_tensor_to_f32(out, st_model_find(m, "f32"), &e), &e);
        CHECK(memcmp(out, src, N * 4) == 0);
    }
    st_model_close(m);
    free(src);
    free(out);
    free(h);
    free(b);
    rm_dir(dir);
}

/* ---- sharding ---- */

static const struct decl sharded[] = {
    {"z.w", ST_U8, 1, {100}},  {"a.w", ST_F16, 1, {50}},     {"m.w", ST_I32, 1, {25}},
    {"b.big", ST_U8, 2, {3, 100}}, {"c.small", ST_U8, 1, {10}}, {"c.zero", ST_F32, 1, {0}},
};
#define N_SHARDED (sizeof(sharded) / sizeof(sharded[0]))

static void test_safetensors__sharded(void)
{
    static const char want_index[] =
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 610\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"a.w\": \"model-00001-of-00004.safetensors\",\n"
        "    \"b.big\": \"model-00003-of-00004.safetensors\",\n"
        "    \"c.small\": \"model-00004-of-00004.safetensors\",\n"
        "    \"c.zero\": \"model-00004-of-00004.safetensors\",\n"
        "    \"m.w\": \"model-00002-of-00004.safetensors\",\n"
        "    \"z.w\": \"model-00001-of-00004.safetensors\"\n"
        "  }\n"
        "}\n";
    static const char *shard_of[] = {"model-00001-of-00004.safetensors",
                                     "model-00001-of-00004.safetensors",
                                     "model-00002-of-00004.safetensors",
                                     "model-00003-of-00004.safetensors",
                                     "model-00004-of-00004.safetensors",
                                     "model-00004-of-00004.safetensors"};
    char dir[64], path[160], *index;
    gq_err e = GQ_ERR_INIT;
    st_model *m = NULL;
    st_file *f = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    /* 250 bytes: z+a (200), m (100), b.big alone (300 > max), c.small+c.zero */
    CHECK_OK(write_model(dir, sharded, N_SHARDED, 250, &e), &e);
    CHECK_EQ_INT(count_files(dir), 5);
    CHECK(!file_exists(dir, "model.safetensors"));
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    index = test_read_file(path, NULL);
    CHECK_MSG(index && strcmp(index, want_index) == 0, "%s", index ? index : "(none)");
    free(index);

    CHECK_OK(st_model_open(&m, dir, &e), &e);
    if (m) {
        CHECK_EQ_INT(st_model_count(m), N_SHARDED);
        CHECK_EQ_INT(st_model_total_bytes(m), 610);
        check_model(m, NULL, sharded, N_SHARDED);
        for (size_t i = 0; i < N_SHARDED; i++) {
            const struct st_tensor *t = st_model_tensor(m, i);
            CHECK(strcmp(t->name, sharded[i].name) == 0);   /* shard, then data order */
            CHECK(strcmp(t->file, shard_of[i]) == 0);
        }
    }
    /* each shard is a valid file on its own, offsets from 0 */
    snprintf(path, sizeof(path), "%s/model-00003-of-00004.safetensors", dir);
    CHECK_OK(st_file_open(&f, path, &e), &e);
    CHECK(f && st_file_count(f) == 1 && st_file_find(f, "b.big") != NULL);
    st_file_close(f);

    /* writing a single file into the same place removes the stale index */
    CHECK_OK(write_model(dir, sharded, 2, 0, &e), &e);
    CHECK(!file_exists(dir, "model.safetensors.index.json"));
    st_model_close(m);
    m = NULL;
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    CHECK(m && st_model_count(m) == 2);
    st_model_close(m);
    m = NULL;
    /* and the other way round: a stale model.safetensors would shadow the index */
    CHECK_OK(write_model(dir, sharded, N_SHARDED, 250, &e), &e);
    CHECK(!file_exists(dir, "model.safetensors"));
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    CHECK(m && st_model_count(m) == N_SHARDED);
    st_model_close(m);
    rm_dir(dir);
}

/* One shard per tensor when max is 1 byte; two shards names. */
static void test_safetensors__shard_names(void)
{
    char dir[64];
    gq_err e = GQ_ERR_INIT;
    st_model *m = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    CHECK_OK(write_model(dir, every_dtype, N_EVERY, 1, &e), &e);
    /* the zero-size tensors join the shard before them; the scalars do not */
    CHECK(file_exists(dir, "model-00001-of-00016.safetensors"));
    CHECK(file_exists(dir, "model-00016-of-00016.safetensors"));
    CHECK_EQ_INT(count_files(dir), 17);
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    if (m)
        check_model(m, NULL, every_dtype, N_EVERY);
    st_model_close(m);
    rm_dir(dir);
}

/* ---- corrupt files ---- */

struct bad_case {
    const char *header;
    size_t data_size;
    const char *expect;
};

static const struct bad_case bad_headers[] = {
    /* encoding and JSON */
    {"{\"a\xff\":{}}", 0, "not valid UTF-8 (bad sequence at byte 3)"},
    {"{\"a\xc0\x80\":{}}", 0, "not valid UTF-8"},                 /* overlong NUL */
    {"{\"a\xed\xa0\x80\":{}}", 0, "not valid UTF-8"},             /* surrogate */
    {"{\"a\":\"\xf4\x90\x80\x80\"}", 0, "not valid UTF-8"},         /* past U+10FFFF */
    {"{\"a\":{}", 0, "header: invalid JSON"},
    {"{} x", 0, "invalid JSON"},
    {"[1, 2]", 0, "header must be a JSON object (got array)"},
    {"\"x\"", 0, "header must be a JSON object (got \"x\")"},
    /* fields */
    {"{\"w\": 3}", 0, "tensor \"w\": entry must be an object (got 3)"},
    {"{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor \"w\": dtype must be a string (got missing)"},
    {"{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     "tensor \"w\": dtype must be a string (got 4)"},
    {"{\"w\": {\"dtype\": \"F8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
     "tensor \"w\": unknown dtype \"F8\""},
    {"{\"w\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     "unknown dtype \"f32\""},
    {"{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "tensor \"w\": shape must be an array (got missing)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4,
     "shape must be an array (got 1)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
     "tensor \"w\": shape[1] must be a non-negative integer (got -1)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
     "shape[0] must be a non-negative integer (got 1.5)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 4]}}", 4,
     "shape[0] must be a non-negative integer (got \"2\")"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}", 4,
     "shape[0] must be a non-negative integer (got 1.0000000000000001e+300)"},
    {"{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 1,
     "shape has 9 dimensions, at most 8 are supported"},
    {"{\"w\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296, 2], \"data_offsets\": [0, 1]}}",
     1, "tensor \"w\": shape 4294967296 x 4294967296 overflows 64 bits"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4503599627370496, 1024], \"data_offsets\": [0, 4]}}",
     4, "shape 4503599627370496 x 1024 of F32 overflows the byte size"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "tensor \"w\": data_offsets must be an array of two integers (got missing)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 4,
     "data_offsets must be an array of two integers"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0-4\"}}", 4,
     "data_offsets must be an array of two integers (got \"0-4\")"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
     "data_offsets[0] must be a non-negative integer (got -4)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, null]}}", 4,
     "data_offsets[1] must be a non-negative integer (got null)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
     "data_offsets [8, 4): begin is after end"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
     "data_offsets [0, 8) end past the data section (4 bytes)"},
    {"{\"model.layers.0.mlp.up_proj.weight\": {\"dtype\": \"F16\", \"shape\": [4, 3], "
     "\"data_offsets\": [0, 10]}}", 10,
     "bad.safetensors: tensor \"model.layers.0.mlp.up_proj.weight\": data_offsets [0, 10) do not "
     "match 4 x 3 F16 (24 bytes)"},
    {"{\"w\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 8]}}", 8,
     "data_offsets [0, 8) do not match scalar F32 (4 bytes)"},
    {"{\"w\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
     4, "tensor \"w\": field \"dtype\" appears more than once"},
    /* the ranges */
    {"{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
     " \"b\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [4, 12]}}", 12,
     "tensor \"b\": data_offsets [4, 12) overlap tensor \"a\" [0, 8)"},
    {"{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
     " \"b\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]}}", 8,
     "tensor \"b\": data_offsets [0, 8) overlap tensor \"a\" [0, 8)"},
    {"{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
     " \"z\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 8,
     "tensor \"z\": data_offsets [4, 4) overlap tensor \"a\" [0, 8)"},
    {"{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}", 8,
     "tensor \"a\": hole in the data: bytes [0, 4) before it belong to no tensor"},
    {"{\"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [8, 12]},"
     " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 12,
     "tensor \"b\": hole in the data: bytes [4, 8) before it"},
    {"{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 6,
     "tensor \"a\": hole in the data: bytes [4, 6) after it belong to no tensor"},
    {"{\"__metadata__\": {}}", 3, "no tensors but the data section has 3 bytes"},
    {"{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
     " \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 2,
     "tensor \"w\" appears more than once in the header"},
    /* __metadata__ */
    {"{\"__metadata__\": [\"pt\"]}", 0, "__metadata__ must be an object of strings (got array)"},
    {"{\"__metadata__\": {\"format\": 1}}", 0,
     "__metadata__ value of \"format\" must be a string (got 1)"},
    {"{\"__metadata__\": {\"k\": \"a\", \"k\": \"b\"}}", 0,
     "__metadata__ key \"k\" appears more than once"},
    {"{\"__metadata__\": {}, \"__metadata__\": {}}", 0, "__metadata__ appears more than once"},
    /* a control byte in a name is not copied into the message */
    {"{\"a\\u0001b\": {\"dtype\": \"X\", \"shape\": [], \"data_offsets\": [0, 0]}}", 0,
     "tensor \"a?b\": unknown dtype \"X\""},
};

static void test_safetensors__corrupt_headers(void)
{
    char dir[64], path[128];
    gq_err e = GQ_ERR_INIT;
    st_file *f = NULL;
    size_t count = 99;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        const struct bad_case *c = &bad_headers[i];
        CHECK(write_st(path, c->header, c->data_size) == 0);
        gq_err_clear(&e);
        CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
        CHECK(f == NULL);
        CHECK_MSG(strstr(e.msg, c->expect) != NULL && strncmp(e.msg, "bad.safetensors", 15) == 0,
                  "case %zu: \"%s\" wanted \"%s\"", i, e.msg, c->expect);
        /* the validator on its own says the same */
        gq_err_clear(&e);
        CHECK_EQ_INT(st_check_header(&count, c->header, strlen(c->header), c->data_size,
                                     "bad.safetensors", &e), GQ_EINVAL);
        CHECK_MSG(strstr(e.msg, c->expect) != NULL, "case %zu: %s", i, e.msg);
    }
    CHECK_EQ_INT(count, 99);
    /* a NUL in the header */
    CHECK_EQ_INT(st_check_header(&count, "{\"a\":\0{}}", 9, 0, "x", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "x: header is not valid UTF-8 (NUL at byte 5)") != NULL, "%s", e.msg);
    /* the validator accepts the good ones, padding included */
    {
        static const char ok[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                                 "\"e\":{\"dtype\":\"F64\",\"shape\":[0, 5],\"data_offsets\":[2,2]}}  ";
        CHECK_OK(st_check_header(&count, ok, strlen(ok), 2, "ok", &e), &e);
    }
    CHECK_EQ_INT(count, 2);
    rm_dir(dir);
}

/* What is wrong with the file around the header. */
static void test_safetensors__corrupt_files(void)
{
    static const char good[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    char dir[64], path[128], sub[128];
    gq_err e = GQ_ERR_INIT;
    st_file *f = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
    CHECK(write_bytes(path, "\x10\0\0\0\0", 5) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "bad.safetensors: file is 5 bytes, too short") != NULL, "%s", e.msg);
    CHECK(write_bytes(path, "", 0) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "file is 0 bytes") != NULL, "%s", e.msg);

    CHECK(write_st_raw(path, 0, "", 0, 4) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "bad.safetensors: header length is 0") != NULL, "%s", e.msg);

    CHECK(write_st_raw(path, 100000001, good, strlen(good), 4) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "header length 100000001 is over the limit of 100000000") != NULL,
              "%s", e.msg);
    CHECK(write_st_raw(path, ~0ull, good, strlen(good), 4) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "is over the limit") != NULL, "%s", e.msg);

    /* truncated in the header, then in the data */
    CHECK(write_st_raw(path, strlen(good), good, 20, 0) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "header length 53 is past the end of the file (28 bytes; truncated?)")
              != NULL, "%s", e.msg);
    CHECK(write_st(path, good, 3) == 0);
    CHECK_EQ_INT(st_file_open(&f, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"a\": data_offsets [0, 4) end past the data section (3 bytes)")
              != NULL, "%s", e.msg);
    CHECK(write_st(path, good, 4) == 0);
    CHECK_OK(st_file_open(&f, path, &e), &e);
    st_file_close(f);
    f = NULL;

    /* not there, not a file */
    snprintf(sub, sizeof(sub), "%s/none.safetensors", dir);
    CHECK_EQ_INT(st_file_open(&f, sub, &e), GQ_ENOTFOUND);
    CHECK_MSG(strstr(e.msg, "none.safetensors: cannot open") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_file_open(&f, dir, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "not a regular file") != NULL, "%s", e.msg);
    CHECK(f == NULL);
    rm_dir(dir);
}

/* A two-shard checkpoint written by hand, then broken one way per case. */
static void test_safetensors__corrupt_index(void)
{
    static const char s1[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    static const char s2[] = "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                             "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}";
    static const struct {
        const char *index, *expect;
    } cases[] = {
        {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"s2.safetensors\"}}",
         "model.safetensors.index.json: tensor \"c\" is not in its shard s2.safetensors"},
        {"{\"weight_map\": {\"a\": \"../s1.safetensors\"}}",
         "tensor \"a\": shard \"../s1.safetensors\" must be a file name inside the directory"},
        {"{\"weight_map\": {\"a\": \"/tmp/s1.safetensors\"}}", "must be a file name inside"},
        {"{\"weight_map\": {\"a\": \"sub/s1.safetensors\"}}", "must be a file name inside"},
        {"{\"weight_map\": {\"a\": \"..\"}}", "must be a file name inside"},
        {"{\"weight_map\": {\"a\": \"\"}}", "must be a file name inside"},
        {"{\"weight_map\": {\"a\": 1}}", "tensor \"a\": shard 1 must be a file name"},
        {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s3.safetensors\"}}",
         "shard \"s3.safetensors\" (of tensor \"b\") does not exist"},
        {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"a\": \"s1.safetensors\"}}",
         "tensor \"a\" appears more than once in weight_map"},
        {"{\"metadata\": {}}", "weight_map must be a non-empty object (got missing)"},
        {"{\"weight_map\": []}", "weight_map must be a non-empty object (got array)"},
        {"{\"weight_map\": {}}", "weight_map must be a non-empty object (got object)"},
        {"{\"weight_map\": {\"a\": \"s1.safetensors\"}, \"weight_map\": {}}",
         "weight_map appears more than once"},
        {"{\"metadata\": 5, \"weight_map\": {\"a\": \"s1.safetensors\"}}",
         "metadata must be an object (got 5)"},
        {"[]", "model.safetensors.index.json: must be a JSON object (got array)"},
        {"{\"weight_map\": ", "model.safetensors.index.json: invalid JSON"},
        {"", "model.safetensors.index.json: invalid JSON: empty document"},
        {"{\"weight_map\": {\"a\": \"bad.safetensors\"}}",
         "bad.safetensors: header is not valid UTF-8"},
    };
    char dir[64], path[128];
    gq_err e = GQ_ERR_INIT;
    st_model *m = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    snprintf(path, sizeof(path), "%s/s1.safetensors", dir);
    CHECK(write_st(path, s1, 4) == 0);
    snprintf(path, sizeof(path), "%s/s2.safetensors", dir);
    CHECK(write_st(path, s2, 3) == 0);
    snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
    CHECK(write_st(path, "{\"\xff\":1}", 0) == 0);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);

    /* the good one first: x is in a shard but not in the index, and is ignored */
    {
        static const char good[] = "{\"metadata\": {\"total_size\": 6}, \"weight_map\": "
                                   "{\"b\": \"s2.safetensors\", \"a\": \"s1.safetensors\"}}";
        CHECK(write_bytes(path, good, strlen(good)) == 0);
    }
    CHECK_OK(st_model_open(&m, dir, &e), &e);
    CHECK(m && st_model_count(m) == 2 && st_model_total_bytes(m) == 6);
    CHECK(m && st_model_find(m, "x") == NULL && st_model_find(m, "b") != NULL);
    CHECK(m && strcmp(st_model_tensor(m, 0)->name, "a") == 0);   /* shards sorted by name */
    st_model_close(m);
    m = NULL;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(write_bytes(path, cases[i].index, strlen(cases[i].index)) == 0);
        gq_err_clear(&e);
        CHECK_EQ_INT(st_model_open(&m, dir, &e), GQ_EINVAL);
        CHECK(m == NULL);
        CHECK_MSG(strstr(e.msg, cases[i].expect) != NULL, "case %zu: \"%s\" wanted \"%s\"", i,
                  e.msg, cases[i].expect);
    }
    unlink(path);
    CHECK_EQ_INT(st_model_open(&m, dir, &e), GQ_ENOTFOUND);
    CHECK_MSG(strstr(e.msg, "no model.safetensors or model.safetensors.index.json") != NULL, "%s",
              e.msg);
    rm_dir(dir);
}

/* ---- writer misuse, abort ---- */

static void test_safetensors__writer_errors(void)
{
    static const int64_t s2[] = {2}, neg[] = {3, -1}, big[] = {1ll << 40, 1ll << 40};
    static const int64_t nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    char dir[64], file[128];
    unsigned char buf[8] = {0};
    gq_err e = GQ_ERR_INIT;
    st_writer *w = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    snprintf(file, sizeof(file), "%s/nodir", dir);
    CHECK_EQ_INT(st_writer_open(&w, file, 0, &e), GQ_ENOTFOUND);
    CHECK(write_bytes(file, "x", 1) == 0);
    CHECK_EQ_INT(st_writer_open(&w, file, 0, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "not a directory") != NULL, "%s", e.msg);
    unlink(file);

    CHECK_OK(st_writer_open(&w, dir, 0, &e), &e);
    if (!w)
        goto done;
    CHECK_EQ_INT(st_writer_declare(w, "n", ST_F32, 2, neg, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"n\": shape[1] is -1") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_declare(w, "n", ST_F32, 9, nine, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "n", ST_F32, -1, nine, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "n", ST_F32, 2, big, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "n", ST_DTYPE_COUNT, 1, s2, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "__metadata__", ST_F32, 1, s2, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "", ST_F32, 1, s2, &e), GQ_EINVAL);
    CHECK_EQ_INT(st_writer_declare(w, "bad\xff", ST_F32, 1, s2, &e), GQ_EINVAL);
    CHECK_OK(st_writer_declare(w, "a", ST_U8, 1, s2, &e), &e);
    CHECK_OK(st_writer_declare(w, "b", ST_U16, 1, s2, &e), &e);
    CHECK_OK(st_writer_declare(w, "c", ST_U8, 0, NULL, &e), &e);

    CHECK_EQ_INT(st_writer_write(w, "b", buf, 4, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"b\" written out of order (expected a)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_write(w, "zz", buf, 2, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"zz\" was not declared") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_write(w, "a", buf, 3, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"a\": 3 bytes written, 2 declared") != NULL, "%s", e.msg);
    CHECK_OK(st_writer_write(w, "a", buf, 2, &e), &e);   /* the mistakes changed nothing */
    CHECK_EQ_INT(st_writer_declare(w, "d", ST_U8, 1, s2, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "declared after writing started") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_write(w, "a", buf, 2, &e), GQ_EINVAL);   /* again */
    CHECK_OK(st_writer_write(w, "b", buf, 4, &e), &e);
    /* c never written: finish fails, frees w and leaves nothing */
    CHECK_EQ_INT(st_writer_finish(w, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"c\" was declared but not written (2 of 3 written)") != NULL,
              "%s", e.msg);
    w = NULL;
    CHECK_EQ_INT(count_files(dir), 0);

    /* a name declared twice is found when writing starts; the writer is then dead */
    CHECK_OK(st_writer_open(&w, dir, 0, &e), &e);
    if (!w)
        goto done;
    CHECK_OK(st_writer_declare(w, "a", ST_U8, 1, s2, &e), &e);
    CHECK_OK(st_writer_declare(w, "a", ST_U8, 1, s2, &e), &e);
    CHECK_EQ_INT(st_writer_write(w, "a", buf, 2, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "tensor \"a\" declared more than once") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_write(w, "a", buf, 2, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "failed earlier") != NULL, "%s", e.msg);
    CHECK_EQ_INT(st_writer_finish(w, &e), GQ_EINVAL);
    w = NULL;
    CHECK_EQ_INT(count_files(dir), 0);
done:
    st_writer_abort(w);
    rm_dir(dir);
}

static void test_safetensors__abort(void)
{
    char dir[64];
    unsigned char buf[300] = {0};
    gq_err e = GQ_ERR_INIT;
    st_writer *w = NULL;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    st_writer_abort(NULL);
    /* declared only */
    CHECK_OK(st_writer_open(&w, dir, 0, &e), &e);
    for (size_t i = 0; w && i < N_SHARDED; i++)
        CHECK_OK(st_writer_declare(w, sharded[i].name, sharded[i].dtype, sharded[i].ndim,
                                   sharded[i].shape, &e), &e);
    st_writer_abort(w);
    CHECK_EQ_INT(count_files(dir), 0);
    /* three of four shards started, one of them still open */
    CHECK_OK(st_writer_open(&w, dir, 250, &e), &e);
    for (size_t i = 0; w && i < N_SHARDED; i++)
        CHECK_OK(st_writer_declare(w, sharded[i].name, sharded[i].dtype, sharded[i].ndim,
                                   sharded[i].shape, &e), &e);
    if (w) {
        CHECK_OK(st_writer_write(w, "z.w", buf, 100, &e), &e);
        CHECK_OK(st_writer_write(w, "a.w", buf, 100, &e), &e);
        CHECK_OK(st_writer_write(w, "m.w", buf, 100, &e), &e);
        CHECK_OK(st_writer_write(w, "b.big", buf, 300, &e), &e);
        CHECK_EQ_INT(count_files(dir), 3);
    }
    st_writer_abort(w);
    CHECK_EQ_INT(count_files(dir), 0);
    rm_dir(dir);
}

/* The fuzzer's seed corpus says what it is: valid-* open, bad-* are refused. */
static void test_safetensors__fuzz_corpus(void)
{
    static const char *dir = "tests/fuzz/corpus_safetensors";
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];
    gq_err e = GQ_ERR_INIT;
    size_t seen = 0;

    if (!d)
        SKIP("%s not found (run from the repository root)", dir);
    while ((de = readdir(d)) != NULL) {
        st_file *f = NULL;
        int rc, valid = strncmp(de->d_name, "valid-", 6) == 0;
        if (!valid && strncmp(de->d_name, "bad-", 4) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        rc = st_file_open(&f, path, &e);
        CHECK_MSG(rc == (valid ? 0 : GQ_EINVAL), "%s: %d %s", de->d_name, rc, e.msg);
        st_file_close(f);
        seen++;
    }
    closedir(d);
    CHECK(seen >= 10);
}

/* ---- allocation failures ---- */

static void test_safetensors__out_of_memory(void)
{
    static const char hdr[] =
        "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
        "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    char dir[64], path[128];
    gq_err e = GQ_ERR_INIT;
    size_t before = gq_mem_current();
    st_file *f = NULL;
    st_model *m = NULL;
    int rc = -1;
    long n;

    if (!tmp_dir(dir, sizeof(dir)))
        SKIP("cannot create a directory under /tmp");
    snprintf(path, sizeof(path), "%s/small.safetensors", dir);
    CHECK(write_st(path, hdr, 8) == 0);
    for (n = 0; n < 100 && rc != 0; n++) {
        gq_alloc_fail_after(n);
        rc = st_file_open(&f, path, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "after %ld allocations: %d %s", n, rc, e.msg);
        CHECK_MSG(rc == 0 || f == NULL, "after %ld allocations", n);
        if (rc == 0) {
            CHECK(st_file_count(f) == 2 && strcmp(st_file_metadata(f, "k"), "v") == 0);
            st_file_close(f);
        }
        CHECK_EQ_INT(gq_mem_current(), before);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK(n > 3);
    unlink(path);

    /* the writer, sharded, and reading the result back */
    rc = -1;
    for (n = 0; n < 400 && rc != 0; n++) {
        gq_alloc_fail_after(n);
        rc = write_model(dir, sharded, N_SHARDED, 250, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "after %ld allocations: %d %s", n, rc, e.msg);
        CHECK_EQ_INT(gq_mem_current(), before);
        CHECK_EQ_INT(count_files(dir), rc == 0 ? 5 : 0);
    }
    CHECK_EQ_INT(rc, 0);
    rc = -1;
    for (n = 0; n < 400 && rc != 0; n++) {
        gq_alloc_fail_after(n);
        rc = st_model_open(&m, dir, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "after %ld allocations: %d %s", n, rc, e.msg);
        if (rc == 0)
            check_model(m, NULL, sharded, N_SHARDED);
        st_model_close(m);
        m = NULL;
        CHECK_EQ_INT(gq_mem_current(), before);
    }
    CHECK_EQ_INT(rc, 0);
    rm_dir(dir);
}

int main(void)
{
    t_prog = "test_safetensors";
    RUN(test_safetensors__fixture);
    RUN(test_safetensors__dtype_table);
    RUN(test_safetensors__round_trip_every_dtype);
    RUN(test_safetensors__header_bytes);
    RUN(test_safetensors__empty_checkpoint);
    RUN(test_safetensors__to_f32_unaligned);
    RUN(test_safetensors__sharded);
    RUN(test_safetensors__shard_names);
    RUN(test_safetensors__corrupt_headers);
    RUN(test_safetensors__corrupt_files);
    RUN(test_safetensors__corrupt_index);
    RUN(test_safetensors__writer_errors);
    RUN(test_safetensors__abort);
    RUN(test_safetensors__fuzz_corpus);
    RUN(test_safetensors__out_of_memory);
    return test_report();
}
