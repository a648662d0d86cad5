/*
 * calib.c - calibration data: texts in, a token-id matrix and its digest out.
 *
 * DESIGN.  Three ways to a matrix: texts (read from a file, joined with
 * "\n\n", tokenized once), a token stream already tokenized, or ready-made
 * blocks.  The first two sample windows from the stream by the rule in
 * calib.h, with their own splitmix64 generator (state on the stack, no
 * global RNG, so any thread may build a matrix); all three end in the same
 * digest, SHA-256 over a canonical byte form that does not depend on the
 * host's byte order, so a matrix can be named and compared across runs and
 * machines without keeping the texts.
 *
 * Reading texts streams the file in 64 KiB chunks and assembles lines of
 * any length in a growing buffer (nothing is cut at a fixed line length);
 * each non-empty JSONL line is parsed on its own, so an error names the
 * line.  Texts are checked here for what would otherwise fail later, far
 * from its cause: raw NUL bytes and \u0000 escapes (a C string would cut
 * the text there), and invalid UTF-8 (the tokenizer refuses it, naming an
 * offset in the joined stream that nobody can find in the file).
 */
#include "calib.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "buf.h"
#include "json.h"
#include "mem.h"

#define CALIB_MAX_FILE (4ull << 30)   /* calibration text files: 4 GiB */
#define CHUNK 65536

void calib_free(struct calib *c)
{
    if (!c)
        return;
    gq_free(c->ids);
    memset(c, 0, sizeof(*c));
}

void calib_texts_free(char **texts, size_t n)
{
    if (!texts)
        return;
    for (size_t i = 0; i < n; i++)
        gq_free(texts[i]);
    gq_free(texts);
}

/* ---- reading texts ---- */

/* A file read in chunks; lines are handed out one at a time. */
struct reader {
    int fd;
    const char *path;
    size_t pos, end;
    int eof;
    char chunk[CHUNK];
};

static int reader_fill(struct reader *r, gq_err *e)
{
    ssize_t k;

    if (r->pos < r->end || r->eof)
        return 0;
    do
        k = read(r->fd, r->chunk, sizeof(r->chunk));
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return GQ_FAIL(e, GQ_EIO, "%s: read failed: %s", r->path, strerror(errno));
    r->pos = 0;
    r->end = (size_t)k;
    r->eof = k == 0;
    return 0;
}

/*
 * The next line, without its '\n', into line (cleared first); *got is 0 at
 * the end of the file.  A last line without '\n' is still a line.
 */
static int reader_line(gq_buf *line, int *got, struct reader *r, gq_err *e)
{
    int rc;

    gq_buf_clear(line);
    *got = 0;
    for (;;) {
        const char *p, *nl;
        size_t take;

        if ((rc = reader_fill(r, e)) < 0)
            return rc;
        if (r->eof)
            return 0;
        p = r->chunk + r->pos;
        nl = memchr(p, '\n', r->end - r->pos);
        take = nl ? (size_t)(nl - p) : r->end - r->pos;
        if ((rc = gq_buf_append(line, p, take, e)) < 0)
            return rc;
        *got = 1;
        r->pos += take + (nl != NULL);
        if (nl)
            return 0;
    }
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Offset of the first invalid UTF-8 byte of s[0, len), or len. */
static size_t utf8_bad(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k;
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k < 0)
            return i;
        i += (size_t)k;
    }
    return len;
}

/* cJSON cuts strings at \u0000: 1 when the JSON text has that escape. */
static int has_nul_escape(const char *s, size_t len)
{
    for (size_t i = 0; i + 5 < len; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
            return 1;
        i++;   /* the escaped character is not an escape itself */
    }
    return 0;
}

struct texts {
    char **v;
    size_t n, cap;
};

/* Append a copy of s[0, len) (no NUL inside). */
static int texts_push(struct texts *t, const char *s, size_t len, gq_err *e)
{
    char *copy;

    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **v = gq_realloc(t->v, cap * sizeof(*v));
        if (!v)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory for %zu calibration texts", cap);
        t->v = v;
        t->cap = cap;
    }
    if (!(copy = gq_malloc(len + 1)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a calibration text of %zu bytes", len);
    memcpy(copy, s, len);
    copy[len] = '\0';
    t->v[t->n++] = copy;
    return 0;
}

/* One non-blank JSONL line: a JSON string, or an object with a "text" string. */
static int read_record(struct texts *t, const char *line, size_t len, const char *path, size_t lineno, gq_err *e)
{
    gq_json *j = NULL;
    const gq_json *text;
    const char *s;
    size_t slen, bad;
    int rc = 0;

    if (memchr(line, '\0', len)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: contains a NUL byte", path, lineno);
        goto done;
    }
    if (has_nul_escape(line, len)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: contains \\u0000 (NUL), which is not supported", path, lineno);
        goto done;
    }
    if ((rc = gq_json_parse(&j, line, len, e)) < 0) {
        gq_err_prefix(e, "%s: line %zu", path, lineno);
        goto done;
    }
    text = gq_json_type_of(j) == GQ_JSON_OBJECT ? gq_json_get(j, "text") : j;
    if (gq_json_type_of(j) == GQ_JSON_OBJECT && !text) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: the object has no \"text\" member", path, lineno);
        goto done;
    }
    if (!(s = gq_json_string(text))) {
        rc = text != j ? GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: \"text\" must be a string (got %s)", path, lineno,
                                 gq_json_type_name(gq_json_type_of(text)))
                       : GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: expected an object with a \"text\" string, or a "
                                 "string (got %s)", path, lineno, gq_json_type_name(gq_json_type_of(j)));
        goto done;
    }
    slen = strlen(s);
    if ((bad = utf8_bad(s, slen)) != slen) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: line %zu: text is not valid UTF-8 (at byte %zu of the text)", path, lineno,
                     bad);
        goto done;
    }
    rc = texts_push(t, s, slen, e);
done:
    gq_json_free(j);
    return rc;
}

static int read_jsonl(struct texts *t, struct reader *r, gq_err *e)
{
    gq_buf line = GQ_BUF_INIT;
    size_t lineno = 0;
    int got = 1, rc = 0;

    for (;;) {
        const char *s;
        size_t i;

        if ((rc = reader_line(&line, &got, r, e)) < 0 || !got)
            break;
        lineno++;
        s = line.ptr ? line.ptr : "";
        for (i = 0; i < line.len && is_blank(s[i]); i++)
            ;
        if (i < line.len && (rc = read_record(t, s, line.len, r->path, lineno, e)) < 0)
            break;
    }
    gq_buf_free(&line);
    return rc;
}

static int read_plain(struct texts *t, struct reader *r, gq_err *e)
{
    gq_buf all = GQ_BUF_INIT;
    const char *nul;
    size_t bad;
    int rc = 0;

    for (;;) {
        if ((rc = reader_fill(r, e)) < 0 || r->eof)
            break;
        if ((rc = gq_buf_append(&all, r->chunk + r->pos, r->end - r->pos, e)) < 0)
            break;
        r->pos = r->end;
    }
    if (rc < 0 || all.len == 0)   /* empty: the file was cut short since it was first read */
        goto done;
    if ((nul = memchr(all.ptr, '\0', all.len))) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: NUL byte at offset %zu (not a text file)", r->path, (size_t)(nul - all.ptr));
        goto done;
    }
    if ((bad = utf8_bad(all.ptr, all.len)) != all.len) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not valid UTF-8 (at byte %zu)", r->path, bad);
        goto done;
    }
    rc = texts_push(t, all.ptr, all.len, e);
done:
    gq_buf_free(&all);
    return rc;
}

int calib_read_texts(char ***texts, size_t *n, const char *path, gq_err *e)
{
    struct reader *r = NULL;
    struct texts t = {NULL, 0, 0};
    struct stat sb;
    int first = -1, fd, rc = 0;   /* first: the first non-blank byte, -1 while none */

    GQ_ASSERT_ARG(e, texts != NULL && n != NULL && path != NULL);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a regular file", path);
        goto done;
    }
    if ((unsigned long long)sb.st_size > CALIB_MAX_FILE) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: %llu bytes is more than the %llu allowed", path,
                     (unsigned long long)sb.st_size, CALIB_MAX_FILE);
        goto done;
    }
    if (!(r = gq_malloc(sizeof(*r)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    r->fd = fd;
    r->path = path;
    r->pos = r->end = 0;
    r->eof = 0;

    /* the first non-blank byte decides the format; then read again from the start */
    while (first < 0) {
        if ((rc = reader_fill(r, e)) < 0)
            goto done;
        if (r->eof)
            break;
        for (; r->pos < r->end && first < 0; r->pos++)
            if (!is_blank(r->chunk[r->pos]))
                first = (unsigned char)r->chunk[r->pos];
    }
    if (first < 0) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: no calibration text (the file is empty or blank)", path);
        goto done;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    r->pos = r->end = 0;
    r->eof = 0;
    rc = first == '{' || first == '"' ? read_jsonl(&t, r, e) : read_plain(&t, r, e);
    if (rc < 0)
        goto done;
    if (t.n == 0) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: no calibration text", path);
        goto done;
    }
    *texts = t.v;
    *n = t.n;
    t.v = NULL;
    t.n = 0;
done:
    calib_texts_free(t.v, t.n);
    gq_free(r);
    close(fd);
    return rc;
}

/* ---- the matrix and its digest ---- */

/* splitmix64 (Steele, Lea, Flood 2014): the generator calib.h names. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/*
 * Uniform in [0, m]: draws below 2^64 mod (m + 1) are rejected, so the
 * accepted ones cover every residue equally often (OpenBSD's
 * arc4random_uniform).
 */
static uint64_t uniform_upto(uint64_t *state, uint64_t m)
{
    uint64_t range, min, x;

    if (m == UINT64_MAX)
        return splitmix64(state);
    range = m + 1;
    min = (0 - range) % range;   /* 2^64 mod range */
    do
        x = splitmix64(state);
    while (x < min);
    return x % range;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* SHA-256 of the canonical form of ids (nsamples, seqlen), as lower-case hex. */
static int digest(char hex[65], const int32_t *ids, size_t nsamples, size_t seqlen, gq_err *e)
{
    static const char xd[] = "0123456789abcdef";
    unsigned char buf[4096], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t total = nsamples * seqlen;   /* the caller holds that many ids */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = 0;

    if (!ctx)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for sha-256");
    put_le64(buf, nsamples);
    put_le64(buf + 8, seqlen);
    /* a built-in digest fails here only when OpenSSL cannot allocate */
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(ctx, buf, 16) != 1)
        goto fail;
    for (size_t i = 0; i < total;) {
        size_t k = total - i < sizeof(buf) / 4 ? total - i : sizeof(buf) / 4;
        for (size_t j = 0; j < k; j++) {
            uint32_t v = (uint32_t)ids[i + j];
            buf[4 * j] = (unsigned char)v;
            buf[4 * j + 1] = (unsigned char)(v >> 8);
            buf[4 * j + 2] = (unsigned char)(v >> 16);
            buf[4 * j + 3] = (unsigned char)(v >> 24);
        }
        if (EVP_DigestUpdate(ctx, buf, 4 * k) != 1)
            goto fail;
        i += k;
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        goto fail;
    for (unsigned int i = 0; i < 32; i++) {
        hex[2 * i] = xd[md[i] >> 4];
        hex[2 * i + 1] = xd[md[i] & 15];
    }
    hex[64] = '\0';
    goto done;
fail:
    rc = GQ_FAIL(e, GQ_ENOMEM, "sha-256 of the calibration matrix failed (openssl)");
done:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Fill out with ids (taken over) and its digest. */
static int finish(struct calib *out, int32_t **ids, size_t nsamples, size_t seqlen, size_t stream_tokens,
                  gq_err *e)
{
    struct calib c = {NULL, nsamples, seqlen, stream_tokens, ""};
    int rc;

    if ((rc = digest(c.sha256, *ids, nsamples, seqlen, e)) < 0)
        return rc;
    c.ids = *ids;
    *ids = NULL;
    *out = c;
    return 0;
}

int calib_from_stream(struct calib *out, const int32_t *ids, size_t n, size_t nsamples, size_t seqlen,
                      uint64_t seed, gq_err *e)
{
    int32_t *m = NULL;
    uint64_t state = seed;
    int rc;

    GQ_ASSERT_ARG(e, out != NULL && (ids != NULL || n == 0));
    if (nsamples == 0 || seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "calibration needs at least one sample of at least one token (got %zu x %zu)",
                       nsamples, seqlen);
    if (n <= seqlen)
        return GQ_FAIL(e, GQ_EINVAL, "calibration stream has %zu tokens; windows of %zu need at least %zu", n,
                       seqlen, seqlen + 1);
    if (seqlen > SIZE_MAX / sizeof(*m) || !(m = gq_mallocn(nsamples, seqlen * sizeof(*m)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for a %zu x %zu calibration matrix", nsamples, seqlen);
        goto done;
    }
    /* starts in [0, n - seqlen - 1], as the reference's randint(0, n - seqlen - 1) */
    for (size_t s = 0; s < nsamples; s++) {
        size_t start = (size_t)uniform_upto(&state, (uint64_t)(n - seqlen - 1));
        memcpy(m + s * seqlen, ids + start, seqlen * sizeof(*m));
    }
    rc = finish(out, &m, nsamples, seqlen, n, e);
done:
    gq_free(m);
    return rc;
}

int calib_tokenize_texts(int32_t **ids, size_t *count, const tokenizer *t, const char *const *texts, size_t n,
                         gq_err *e)
{
    char *joined = NULL, *p;
    size_t len = 0;
    int rc;

    GQ_ASSERT_ARG(e, ids != NULL && count != NULL && t != NULL && (texts != NULL || n == 0));
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(texts[i]) + (i ? 2 : 0);
        if (len > SIZE_MAX - 1 - k)
            return GQ_FAIL(e, GQ_EINVAL, "calibration texts too long to join");
        len += k;
    }
    if (!(joined = gq_malloc(len + 1)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory joining %zu calibration texts (%zu bytes)", n, len);
    p = joined;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(texts[i]);
        if (i) {
            memcpy(p, "\n\n", 2);
            p += 2;
        }
        memcpy(p, texts[i], k);
        p += k;
    }
    *p = '\0';
    if ((rc = tokenizer_encode(ids, count, t, joined, len, 0, e)) < 0)
        gq_err_prefix(e, "tokenizing %zu calibration texts", n);
    gq_free(joined);
    return rc;
}

int calib_from_texts(struct calib *out, const tokenizer *t, const char *const *texts, size_t n,
                     size_t nsamples, size_t seqlen, uint64_t seed, gq_err *e)
{
    int32_t *stream = NULL;
    size_t count = 0;
    int rc;

    GQ_ASSERT_ARG(e, out != NULL && t != NULL && (texts != NULL || n == 0));
    if (nsamples == 0 || seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "calibration needs at least one sample of at least one token (got %zu x %zu)",
                       nsamples, seqlen);
    if ((rc = calib_tokenize_texts(&stream, &count, t, texts, n, e)) == 0)
        rc = calib_from_stream(out, stream, count, nsamples, seqlen, seed, e);
    gq_free(stream);
    return rc;
}

int calib_from_blocks(struct calib *out, const int32_t *ids, size_t nblocks, size_t seqlen, size_t nsamples,
                      gq_err *e)
{
    int32_t *m = NULL;
    size_t take = nsamples ? nsamples : nblocks;
    int rc;

    GQ_ASSERT_ARG(e, out != NULL && (ids != NULL || nblocks == 0));
    if (seqlen == 0)
        return GQ_FAIL(e, GQ_EINVAL, "calibration blocks must have at least one token (seqlen 0)");
    if (nblocks == 0)
        return GQ_FAIL(e, GQ_EINVAL, "no calibration blocks");
    if (take > nblocks)
        return GQ_FAIL(e, GQ_EINVAL, "asked for %zu calibration samples from %zu blocks", nsamples,
                       nblocks);
    if (seqlen > SIZE_MAX / sizeof(*m) || !(m = gq_mallocn(take, seqlen * sizeof(*m)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for a %zu x %zu calibration matrix", take, seqlen);
        goto done;
    }
    memcpy(m, ids, take * seqlen * sizeof(*m));
    rc = finish(out, &m, take, seqlen, 0, e);
done:
    gq_free(m);
    return rc;
}

/* ---- int32 id files ---- */

int calib_read_ids(int32_t **ids, size_t *n, const char *path, gq_err *e)
{
    struct stat sb;
    int32_t *v = NULL;
    unsigned char *b;
    size_t size, got = 0;
    int fd, rc = 0;

    GQ_ASSERT_ARG(e, ids != NULL && n != NULL && path != NULL);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a regular file", path);
        goto done;
    }
    if (sb.st_size % 4) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: size %lld is not a multiple of 4 (int32 ids)", path, (long long)sb.st_size);
        goto done;
    }
    size = (size_t)sb.st_size;
    if ((unsigned long long)sb.st_size != size || !(v = gq_malloc(size))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s (%lld ids)", path, (long long)sb.st_size / 4);
        goto done;
    }
    b = (unsigned char *)v;
    while (got < size) {
        ssize_t k = read(fd, b + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        if (k == 0) {
            rc = GQ_FAIL(e, GQ_EIO, "%s: file shrank while reading (%zu of %zu bytes)", path, got, size);
            goto done;
        }
        got += (size_t)k;
    }
    /* little-endian on disk; this is the identity on little-endian hosts */
    for (size_t i = 0; i < size / 4; i++) {
        const unsigned char *q = b + 4 * i;
        v[i] = (int32_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
    }
    *ids = v;
    *n = size / 4;
    v = NULL;
done:
    gq_free(v);
    close(fd);
    return rc;
}
