/*
 * fakehub.c - a local Hugging Face Hub for tests (see fakehub.h).
 *
 * DESIGN
 * Two libmicrohttpd daemons, each with its own polling thread and a thread
 * per connection, so that a stalled reply never holds up another request.
 * Everything they serve lives in one struct fakehub under one mutex:
 * repos (each a list of commits and a list of refs), renames, armed faults
 * and the request log.  Commits and their files are immutable once made and
 * freed only by fakehub_stop, after both daemons have stopped, so a reply
 * may point at a file's bytes after the lock is released.
 *
 * A request is answered in three steps.  Under the lock: log it, build the
 * normal reply into a struct reply (status, headers, body), then let the
 * first armed fault that matches change it (STATUS replaces it, MOVE_REF
 * moves a ref after it was built, the others are remembered).  Without the
 * lock: turn the reply into an MHD response; DROP and STALL use a callback
 * response that gives half the body and then ends the connection with
 * MHD_CONTENT_READER_END_WITH_ERROR (STALL first waits on a condition
 * variable that fakehub_stop broadcasts, so stop never waits for a stall).
 *
 * Beyond fakehub.h, and as the real Hub does: resolve answers Range
 * requests for regular files too, and a gated repo's API works without a
 * token (its files answer 401 GatedRepo then).
 */
#include "fakehub.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LFS_MIN_SIZE (1u << 20)
#define MAX_HDRS 12
#define STREAM_BLOCK (32u * 1024)

/* ---- the data ---- */

struct fh_file {            /* one file of a commit; immutable */
    char *path;
    unsigned char *data;
    size_t len;
    int lfs;
    char oid[41];           /* git blob SHA-1 of what git stores: the bytes, or the LFS pointer */
    char sha256[65];
    size_t pointer_size;    /* LFS pointer file length */
};

struct fh_commit {
    char sha[41];
    struct fh_file *files;
    size_t n;
};

struct fh_ref {
    char *name;
    char sha[41];
};

struct fh_repo {
    char *name;
    struct fh_commit **commits;
    size_t ncommits;
    struct fh_ref *refs;
    size_t nrefs;
    int is_private, gated;
};

struct fh_rename {
    char *from, *to;
};

struct fh_fault {           /* a fakehub_fault with its own copies of the strings */
    struct fakehub_fault f;
    char *method, *match, *error_code, *retry_after, *ref, *to_sha;
};

struct fh_logent {
    int cdn;
    char *method, *path;
};

struct fh_server {
    struct fakehub *h;
    struct MHD_Daemon *d;
    int cdn;
    char url[64];
};

struct fakehub {
    pthread_mutex_t *mu;    /* a pointer so that const accessors can lock it */
    pthread_cond_t *cv;     /* stalls wait here; fakehub_stop broadcasts */
    int stopping;
    struct fh_server hub, cdn;
    struct fh_repo **repos;
    size_t nrepos;
    struct fh_rename *renames;
    size_t nrenames;
    struct fh_fault *faults;
    size_t nfaults;
    struct fh_logent *log;
    size_t nlog, caplog;
    int cdn_auth;
    char last_range[256];
    char *token;
    unsigned long counter;  /* commits made, for distinct shas */
};

/* ---- small helpers ---- */

static void hex(char *out, const unsigned char *d, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Hex digest of a then b (nb may be 0); 0 or -1. */
static int digest_hex(char *out, const EVP_MD *md, const void *a, size_t na, const void *b, size_t nb)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, md, NULL) && EVP_DigestUpdate(ctx, a, na) &&
             (!nb || EVP_DigestUpdate(ctx, b, nb)) && EVP_DigestFinal_ex(ctx, d, &n);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    hex(out, d, n);
    return 0;
}

/* git's object id of a blob: SHA-1 over "blob <len>\0" and the bytes. */
static int git_oid(char out[41], const void *data, size_t len)
{
    char prefix[48];
    int n = snprintf(prefix, sizeof(prefix), "blob %zu", len);
    return digest_hex(out, EVP_sha1(), prefix, (size_t)n + 1, data, len);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int is_lfs_name(const char *path, size_t len)
{
    return ends_with(path, ".safetensors") || ends_with(path, ".bin") || ends_with(path, ".model") ||
           ends_with(path, ".gguf") || len > LFS_MIN_SIZE;
}

static int is_sha(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == 40;
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d;
    if (!s)
        return NULL;
    if (!(d = strdup(s)))
        *oom = 1;
    return d;
}

/* A path inside a repo: not empty, not absolute, no empty, "." or ".." segment. */
static int valid_path(const char *p)
{
    const char *seg = p;
    if (!p || !*p || *p == '/')
        return 0;
    for (const char *q = p;; q++) {
        if (*q == '/' || *q == '\0') {
            size_t n = (size_t)(q - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (!*q)
                return 1;
            seg = q + 1;
        } else if ((unsigned char)*q < 0x20) {
            return 0;
        }
    }
}

/* "name" or "org/name". */
static int valid_repo(const char *r)
{
    const char *slash;
    if (!valid_path(r))
        return 0;
    slash = strchr(r, '/');
    return !slash || !strchr(slash + 1, '/');
}

/* ---- repos, commits, refs (callers hold the lock) ---- */

static struct fh_repo *repo_find(const struct fakehub *h, const char *name)
{
    for (size_t i = 0; i < h->nrepos; i++)
        if (!strcmp(h->repos[i]->name, name))
            return h->repos[i];
    return NULL;
}

static struct fh_repo *repo_get(struct fakehub *h, const char *name)
{
    struct fh_repo *r = repo_find(h, name), **grown;
    if (r)
        return r;
    if (!(grown = realloc(h->repos, (h->nrepos + 1) * sizeof(*grown))))
        return NULL;
    h->repos = grown;
    if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(name))) {
        free(r);
        return NULL;
    }
    h->repos[h->nrepos++] = r;
    return r;
}

static struct fh_commit *commit_find(const struct fh_repo *r, const char *sha)
{
    for (size_t i = 0; i < r->ncommits; i++)
        if (!strcmp(r->commits[i]->sha, sha))
            return r->commits[i];
    return NULL;
}

static struct fh_ref *ref_find(const struct fh_repo *r, const char *name)
{
    for (size_t i = 0; i < r->nrefs; i++)
        if (!strcmp(r->refs[i].name, name))
            return &r->refs[i];
    return NULL;
}

/* A branch, a tag or a commit sha of the repo, or NULL. */
static struct fh_commit *rev_resolve(const struct fh_repo *r, const char *rev)
{
    const struct fh_ref *ref = ref_find(r, rev);
    if (ref)
        return commit_find(r, ref->sha);
    return is_sha(rev) ? commit_find(r, rev) : NULL;
}

static int ref_set(struct fh_repo *r, const char *name, const char *sha)
{
    struct fh_ref *ref = ref_find(r, name), *grown;
    if (!ref) {
        if (!(grown = realloc(r->refs, (r->nrefs + 1) * sizeof(*grown))))
            return -1;
        r->refs = grown;
        ref = &r->refs[r->nrefs];
        if (!(ref->name = strdup(name)))
            return -1;
        r->nrefs++;
    }
    memcpy(ref->sha, sha, 41);
    return 0;
}

static struct fh_file *file_find(const struct fh_commit *c, const char *path)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->files[i].path, path))
            return &c->files[i];
    return NULL;
}

/* Any file of any commit with this SHA-256 (what the CDN serves). */
static struct fh_file *blob_find(const struct fakehub *h, const char *sha256)
{
    for (size_t i = 0; i < h->nrepos; i++)
        for (size_t j = 0; j < h->repos[i]->ncommits; j++) {
            const struct fh_commit *c = h->repos[i]->commits[j];
            for (size_t k = 0; k < c->n; k++)
                if (c->files[k].lfs && !strcmp(c->files[k].sha256, sha256))
                    return &c->files[k];
        }
    return NULL;
}

static void commit_free(struct fh_commit *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->files[i].path);
        free(c->files[i].data);
    }
    free(c->files);
    free(c);
}

/* Copy one file in, with its hashes; 0 or -1. */
static int file_make(struct fh_file *f, const struct fakehub_file *src)
{
    char pointer[200];
    int n;
    if (!valid_path(src->path) || (src->len && !src->data))
        return -1;
    if (!(f->path = strdup(src->path)) || !(f->data = malloc(src->len ? src->len : 1)))
        return -1;
    if (src->len)
        memcpy(f->data, src->data, src->len);
    f->len = src->len;
    f->lfs = is_lfs_name(src->path, src->len);
    if (digest_hex(f->sha256, EVP_sha256(), f->data, f->len, NULL, 0) < 0)
        return -1;
    if (!f->lfs)
        return git_oid(f->oid, f->data, f->len);
    /* what git stores for an LFS file: the pointer, which has its own oid */
    n = snprintf(pointer, sizeof(pointer), "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %zu\n",
                 f->sha256, f->len);
    f->pointer_size = (size_t)n;
    return git_oid(f->oid, pointer, (size_t)n);
}

/* ---- the request log and faults (callers hold the lock) ---- */

static void log_request(struct fakehub *h, int cdn, const char *method, const char *path)
{
    struct fh_logent *grown;
    if (h->nlog == h->caplog) {
        size_t cap = h->caplog ? 2 * h->caplog : 64;
        if (!(grown = realloc(h->log, cap * sizeof(*grown))))
            return;
        h->log = grown;
        h->caplog = cap;
    }
    h->log[h->nlog].cdn = cdn;
    h->log[h->nlog].method = strdup(method);
    h->log[h->nlog].path = strdup(path);
    if (!h->log[h->nlog].method || !h->log[h->nlog].path) {
        free(h->log[h->nlog].method);
        free(h->log[h->nlog].path);
        return;
    }
    h->nlog++;
}

static void fault_free(struct fh_fault *f)
{
    free(f->method);
    free(f->match);
    free(f->error_code);
    free(f->retry_after);
    free(f->ref);
    free(f->to_sha);
}

/* The first armed fault matching this request, counted down; or NULL. */
static struct fh_fault *fault_take(struct fakehub *h, int cdn, const char *method, const char *path)
{
    for (size_t i = 0; i < h->nfaults; i++) {
        struct fh_fault *f = &h->faults[i];
        if (f->f.times == 0 || f->f.cdn != cdn || (f->method && strcmp(f->method, method)) ||
            (f->match && !strstr(path, f->match)))
            continue;
        if (f->f.times > 0)
            f->f.times--;
        return f;
    }
    return NULL;
}

/* ---- replies ---- */

struct reply {
    unsigned status;
    int nhdrs;
    struct {
        char name[32];
        char value[2048];
    } hdrs[MAX_HDRS];
    const char *ctype;
    unsigned char *body;    /* points at a file's bytes (persistent) or at own */
    size_t len;
    unsigned char *own;     /* malloc'd body */
};

static void reply_header(struct reply *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_header(struct reply *r, const char *name, const char *fmt, ...)
{
    va_list ap;
    if (r->nhdrs >= MAX_HDRS)
        return;
    snprintf(r->hdrs[r->nhdrs].name, sizeof(r->hdrs[r->nhdrs].name), "%s", name);
    va_start(ap, fmt);
    vsnprintf(r->hdrs[r->nhdrs].value, sizeof(r->hdrs[r->nhdrs].value), fmt, ap);
    va_end(ap);
    r->nhdrs++;
}

static void reply_clear(struct reply *r)
{
    free(r->own);
    memset(r, 0, sizeof(*r));
}

/* The body becomes cJSON's text of j (j is consumed); 500 when out of memory. */
static void reply_json(struct reply *r, unsigned status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    free(r->own);
    r->own = NULL;
    r->body = NULL;
    r->len = 0;
    r->ctype = "application/json";
    r->status = status;
    if (!text) {
        r->status = 500;
        return;
    }
    r->len = strlen(text);
    if ((r->own = malloc(r->len ? r->len : 1)))
        memcpy(r->own, text, r->len);
    else
        r->status = 500, r->len = 0;
    r->body = r->own;
    cJSON_free(text);
}

/* An error as the Hub gives it: X-Error-Code (may be NULL), X-Error-Message, {"error": msg}. */
static void reply_error(struct reply *r, unsigned status, const char *code, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    r->nhdrs = 0;
    if (code)
        reply_header(r, "X-Error-Code", "%s", code);
    reply_header(r, "X-Error-Message", "%s", msg);
    if (j && !cJSON_AddStringToObject(j, "error", msg)) {
        cJSON_Delete(j);
        j = NULL;
    }
    reply_json(r, status, j);
}

/*
 * "bytes=a-", "bytes=a-b" or "bytes=-n" against len: 1 with [*a, *b]
 * (inclusive), -1 unsatisfiable, 0 when absent or not understood (ignored).
 */
static int parse_range(const char *v, size_t len, size_t *a, size_t *b)
{
    char *end;
    unsigned long long x, y;
    if (!v || strncmp(v, "bytes=", 6) || strchr(v, ','))
        return 0;
    v += 6;
    if (*v == '-') {
        y = strtoull(v + 1, &end, 10);
        if (end == v + 1 || *end)
            return 0;
        if (y == 0 || len == 0)
            return -1;
        *a = y >= len ? 0 : len - (size_t)y;
        *b = len - 1;
        return 1;
    }
    x = strtoull(v, &end, 10);
    if (end == v || *end != '-')
        return 0;
    v = end + 1;
    if (*v) {
        y = strtoull(v, &end, 10);
        if (end == v || *end || y < x)
            return 0;
    } else {
        y = len ? len - 1 : 0;
    }
    if (x >= len)
        return -1;
    *a = (size_t)x;
    *b = y >= len ? len - 1 : (size_t)y;
    return 1;
}

/* The bytes of f, whole (200) or the asked range (206 / 416). */
static void reply_bytes(struct reply *r, const struct fh_file *f, const char *range)
{
    size_t a = 0, b = 0;
    int pr = parse_range(range, f->len, &a, &b);
    r->ctype = "application/octet-stream";
    reply_header(r, "Accept-Ranges", "bytes");
    if (pr < 0) {
        r->status = 416;
        reply_header(r, "Content-Range", "bytes */%zu", f->len);
        return;
    }
    if (pr == 0) {
        r->status = 200;
        r->body = f->data;
        r->len = f->len;
        return;
    }
    r->status = 206;
    reply_header(r, "Content-Range", "bytes %zu-%zu/%zu", a, b, f->len);
    r->body = f->data + a;
    r->len = b - a + 1;
}

static void cdn_sig(char out[17], const char *sha256)
{
    char full[41] = "";
    if (digest_hex(full, EVP_sha1(), "fakehub-sig:", 12, sha256, strlen(sha256)) < 0)
        full[0] = '\0';
    memcpy(out, full, 16);
    out[16] = '\0';
}

static cJSON *lfs_json(const struct fh_file *f, const char *hash_key)
{
    cJSON *l = cJSON_CreateObject();
    if (l && (!cJSON_AddStringToObject(l, hash_key, f->sha256) ||
              !cJSON_AddNumberToObject(l, "size", (double)f->len) ||
              !cJSON_AddNumberToObject(l, "pointerSize", (double)f->pointer_size))) {
        cJSON_Delete(l);
        l = NULL;
    }
    return l;
}

/* GET /api/models/{repo}[/revision/{rev}][?blobs=true] */
static void api_model_info(struct reply *r, const struct fh_repo *repo, const struct fh_commit *c, int blobs)
{
    cJSON *o = cJSON_CreateObject(), *sib, *s, *l;
    int ok = o && cJSON_AddStringToObject(o, "id", repo->name) && cJSON_AddStringToObject(o, "modelId", repo->name) &&
             cJSON_AddStringToObject(o, "sha", c->sha) && cJSON_AddBoolToObject(o, "private", repo->is_private) &&
             (repo->gated ? cJSON_AddStringToObject(o, "gated", "manual") != NULL
                          : cJSON_AddFalseToObject(o, "gated") != NULL) &&
             cJSON_AddFalseToObject(o, "disabled") && (sib = cJSON_AddArrayToObject(o, "siblings"));
    for (size_t i = 0; ok && i < c->n; i++) {
        const struct fh_file *f = &c->files[i];
        ok = (s = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(sib, s) &&
             cJSON_AddStringToObject(s, "rfilename", f->path);
        if (ok && blobs) {
            ok = cJSON_AddNumberToObject(s, "size", (double)f->len) && cJSON_AddStringToObject(s, "blobId", f->oid);
            if (ok && f->lfs)
                ok = (l = lfs_json(f, "sha256")) != NULL && cJSON_AddItemToObject(s, "lfs", l);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    reply_json(r, 200, o);
}

/* GET /api/models/{repo}/tree/{rev}[/{dir}]?recursive=true: every file, one page. */
static void api_tree(struct reply *r, const struct fh_commit *c, const char *dir, int recursive)
{
    cJSON *a = cJSON_CreateArray(), *s, *l;
    size_t dn = dir ? strlen(dir) : 0;
    int ok = a != NULL;
    for (size_t i = 0; ok && i < c->n; i++) {
        const struct fh_file *f = &c->files[i];
        const char *rest = f->path;
        if (dn) {
            if (strncmp(f->path, dir, dn) || f->path[dn] != '/')
                continue;
            rest = f->path + dn + 1;
        }
        if (!recursive && strchr(rest, '/'))
            continue;
        ok = (s = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(a, s) &&
             cJSON_AddStringToObject(s, "type", "file") && cJSON_AddStringToObject(s, "oid", f->oid) &&
             cJSON_AddNumberToObject(s, "size", (double)f->len) && cJSON_AddStringToObject(s, "path", f->path);
        if (ok && f->lfs)
            ok = (l = lfs_json(f, "oid")) != NULL && cJSON_AddItemToObject(s, "lfs", l);
    }
    if (!ok) {
        cJSON_Delete(a);
        a = NULL;
    }
    reply_json(r, 200, a);
}

/*
 * rest is "{rev}/{path}" with a rev that may hold '/': the shortest prefix
 * that names a ref or commit wins.  *path_out points into rest.
 */
static struct fh_commit *split_rev(const struct fh_repo *repo, char *rest, const char **path_out)
{
    for (char *p = rest;; p++) {
        if (*p == '/' || *p == '\0') {
            char save = *p;
            struct fh_commit *c;
            *p = '\0';
            c = rev_resolve(repo, rest);
            *p = save;
            if (c) {
                *path_out = save ? p + 1 : p;
                return c;
            }
            if (!save)
                return NULL;
        }
    }
}

static const char *rename_of(const struct fakehub *h, const char *repo)
{
    for (size_t i = 0; i < h->nrenames; i++)
        if (!strcmp(h->renames[i].from, repo))
            return h->renames[i].to;
    return NULL;
}

/* Percent-encode a decoded path for a Location header, keeping '/'. */
static void url_encode(char *out, size_t cap, const char *s)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~/", c)) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = digits[c >> 4];
            out[n++] = digits[c & 15];
        }
    }
    out[n] = '\0';
}

/* GET|HEAD /{repo}/resolve/{rev}/{path} */
static void hub_resolve(struct fakehub *h, struct reply *r, const struct fh_repo *repo, char *rest,
                        int authed, const char *range)
{
    const char *path = NULL;
    struct fh_commit *c;
    struct fh_file *f;
    char msg[600];

    if (repo->gated) {
        snprintf(msg, sizeof(msg), authed ? "Access to model %s is restricted and you are not in the authorized list."
                                          : "Access to model %s is restricted. You must be authenticated to access it.",
                 repo->name);
        reply_error(r, authed ? 403 : 401, "GatedRepo", msg);
        return;
    }
    if (!(c = split_rev(repo, rest, &path))) {
        snprintf(msg, sizeof(msg), "Invalid rev id: %.*s", (int)(strcspn(rest, "/") < 200 ? strcspn(rest, "/") : 200),
                 rest);
        reply_error(r, 404, "RevisionNotFound", msg);
        return;
    }
    if (!*path || !(f = file_find(c, path))) {
        snprintf(msg, sizeof(msg), "Entry not found: %.300s", path);
        reply_error(r, 404, "EntryNotFound", msg);
        reply_header(r, "X-Repo-Commit", "%s", c->sha);
        return;
    }
    reply_header(r, "X-Repo-Commit", "%s", c->sha);
    reply_header(r, "ETag", "\"%s\"", f->oid);
    if (f->lfs) {
        char sig[17];
        cdn_sig(sig, f->sha256);
        r->status = 302;
        reply_header(r, "Location", "%s/blobs/%s?sig=%s", h->cdn.url, f->sha256, sig);
        reply_header(r, "X-Linked-Etag", "\"%s\"", f->sha256);
        reply_header(r, "X-Linked-Size", "%zu", f->len);
        return;
    }
    reply_bytes(r, f, range);
}

/* Everything the Hub port answers; *repo_out is the request's repo, if any. */
static void hub_route(struct fakehub *h, struct reply *r, struct MHD_Connection *conn, const char *url,
                      struct fh_repo **repo_out)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    int authed = h->token && auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, h->token);
    char name[512], *copy = NULL, msg[700], loc[4096];
    const char *mark, *to;
    struct fh_repo *repo;
    int api = !strncmp(url, "/api/models/", 12);

    *repo_out = NULL;
    if (h->token && auth && !authed) {
        reply_error(r, 401, NULL, "Invalid credentials in Authorization header");
        return;
    }
    if (h->token && !auth) {
        reply_error(r, 401, NULL, "Invalid username or password.");
        return;
    }
    /* the repo id, then what follows it */
    if (api) {
        const char *base = url + 12, *t = strstr(base, "/tree/"), *v = strstr(base, "/revision/");
        mark = t && (!v || t < v) ? t : v;
        snprintf(name, sizeof(name), "%.*s", (int)(mark ? (size_t)(mark - base) : strlen(base)), base);
    } else {
        if (!(mark = strstr(url, "/resolve/")) || mark == url) {
            reply_error(r, 404, NULL, "Not Found");
            return;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(mark - url - 1), url + 1);
        if ((to = rename_of(h, name))) {
            char enc[3000];
            url_encode(enc, sizeof(enc), mark);
            snprintf(loc, sizeof(loc), "/%s%s", to, enc);
            r->status = 307;
            reply_header(r, "Location", "%s", loc);
            return;
        }
    }
    if (!(repo = repo_find(h, name))) {
        snprintf(msg, sizeof(msg), "Repository Not Found for url: %s/%.500s.", h->hub.url, url + 1);
        reply_error(r, 404, "RepoNotFound", msg);
        return;
    }
    *repo_out = repo;
    if (repo->is_private && !authed) {
        reply_error(r, 401, NULL, "Invalid username or password.");
        return;
    }
    if (!(copy = strdup(mark ? mark : ""))) {
        reply_error(r, 500, NULL, "out of memory");
        return;
    }
    if (!api) {
        hub_resolve(h, r, repo, copy + strlen("/resolve/"), authed, range);
    } else if (!strncmp(copy, "/tree/", 6)) {
        const char *dir = NULL, *rec = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "recursive");
        struct fh_commit *c = split_rev(repo, copy + 6, &dir);
        if (!c) {
            snprintf(msg, sizeof(msg), "Invalid rev id: %.200s", copy + 6);
            reply_error(r, 404, "RevisionNotFound", msg);
        } else {
            api_tree(r, c, dir, rec && (!strcmp(rec, "true") || !strcmp(rec, "1")));
        }
    } else {
        const char *rev = mark ? copy + strlen("/revision/") : "main";
        const char *blobs = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "blobs");
        struct fh_commit *c = rev_resolve(repo, rev);
        if (!c) {
            snprintf(msg, sizeof(msg), "Invalid rev id: %.200s", rev);
            reply_error(r, 404, "RevisionNotFound", msg);
        } else {
            api_model_info(r, repo, c, blobs && (!strcmp(blobs, "true") || !strcmp(blobs, "1")));
        }
    }
    free(copy);
}

/* GET|HEAD /blobs/<sha256>?sig=... on the CDN port. */
static void cdn_route(struct fakehub *h, struct reply *r, struct MHD_Connection *conn, const char *url)
{
    const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    const char *sig = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sig");
    char want[17];
    struct fh_file *f;

    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))
        h->cdn_auth++;
    snprintf(h->last_range, sizeof(h->last_range), "%s", range ? range : "");
    if (strncmp(url, "/blobs/", 7) || !(f = blob_find(h, url + 7))) {
        reply_error(r, 404, NULL, "NoSuchKey");
        r->nhdrs = 0;
        return;
    }
    cdn_sig(want, f->sha256);
    if (!sig || strcmp(sig, want)) {
        reply_error(r, 403, NULL, "AccessDenied: bad signature");
        r->nhdrs = 0;
        return;
    }
    reply_bytes(r, f, range);
}

/* ---- sending ---- */

struct stream {             /* a body that ends early (DROP, STALL) */
    struct fakehub *h;
    unsigned char *data;    /* not owned unless own */
    unsigned char *own;
    size_t cut;             /* bytes given before the end */
    long stall_ms;          /* > 0: wait this long (or until stop) first */
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    if (pos < s->cut) {
        size_t n = s->cut - (size_t)pos < max ? s->cut - (size_t)pos : max;
        memcpy(buf, s->data + pos, n);
        return (ssize_t)n;
    }
    if (s->stall_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += s->stall_ms / 1000;
        until.tv_nsec += (s->stall_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_mutex_lock(s->h->mu);
        while (!s->h->stopping && pthread_cond_timedwait(s->h->cv, s->h->mu, &until) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(s->h->mu);
    }
    return MHD_CONTENT_READER_END_WITH_ERROR;   /* closes the connection */
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    free(s->own);
    free(s);
}

/* Turn r (consumed) into a queued MHD response, with the fault's body change. */
static enum MHD_Result send_reply(struct fakehub *h, struct MHD_Connection *conn, struct reply *r, int kind,
                                  long stall_ms)
{
    struct MHD_Response *rsp = NULL;
    enum MHD_Result ret;

    if (kind == FAKEHUB_TRUNCATE) {
        r->len /= 3;
    } else if (kind == FAKEHUB_CORRUPT && r->len > 0) {
        unsigned char *c = malloc(r->len);
        if (c) {
            memcpy(c, r->body, r->len);
            c[r->len / 2] ^= 0x5a;
            free(r->own);
            r->own = r->body = c;
        }
    }
    if (kind == FAKEHUB_DROP || kind == FAKEHUB_STALL) {
        struct stream *s = calloc(1, sizeof(*s));
        if (s) {
            s->h = h;
            s->data = r->body;
            s->own = r->own;
            r->own = NULL;
            s->cut = r->len / 2;
            s->stall_ms = kind == FAKEHUB_STALL ? stall_ms : 0;
            if (!(rsp = MHD_create_response_from_callback(r->len, STREAM_BLOCK, stream_read, s, stream_free)))
                stream_free(s);
        }
    } else if (r->own) {
        if ((rsp = MHD_create_response_from_buffer(r->len, r->own, MHD_RESPMEM_MUST_FREE)))
            r->own = NULL;
    } else {
        rsp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_PERSISTENT);
    }
    if (!rsp) {
        reply_clear(r);
        return MHD_NO;
    }
    for (int i = 0; i < r->nhdrs; i++)
        MHD_add_response_header(rsp, r->hdrs[i].name, r->hdrs[i].value);
    if (r->ctype)
        MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    ret = MHD_queue_response(conn, r->status, rsp);
    MHD_destroy_response(rsp);
    reply_clear(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    static int seen;   /* marks the first call of a request */
    struct fh_server *srv = cls;
    struct fakehub *h = srv->h;
    struct reply *r;
    struct fh_fault *f;
    struct fh_repo *repo = NULL;
    int kind = 0;
    long stall_ms = 0;

    (void)version, (void)upload_data;
    if (!*req_cls) {
        *req_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!(r = calloc(1, sizeof(*r))))
        return MHD_NO;
    pthread_mutex_lock(h->mu);
    log_request(h, srv->cdn, method, url);
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        reply_error(r, 405, NULL, "Method Not Allowed");
        r->nhdrs = 0;
    } else if (srv->cdn) {
        cdn_route(h, r, conn, url);
    } else {
        hub_route(h, r, conn, url, &repo);
    }
    if ((f = fault_take(h, srv->cdn, method, url))) {
        kind = (int)f->f.kind;
        stall_ms = f->f.stall_ms;
        if (kind == FAKEHUB_STATUS) {
            char msg[128];
            snprintf(msg, sizeof(msg), "fakehub: injected HTTP %d", f->f.status);
            reply_error(r, (unsigned)f->f.status, f->error_code, msg);
            if (f->retry_after)
                reply_header(r, "Retry-After", "%s", f->retry_after);
        } else if (kind == FAKEHUB_MOVE_REF && repo && commit_find(repo, f->to_sha)) {
            ref_set(repo, f->ref, f->to_sha);
        }
    }
    pthread_mutex_unlock(h->mu);
    {
        enum MHD_Result ret = send_reply(h, conn, r, kind, stall_ms);
        free(r);
        return ret;
    }
}

/* ---- the API ---- */

static int server_start(struct fh_server *s, struct fakehub *h, int cdn)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->h = h;
    s->cdn = cdn;
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                            on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!s->d) {
        fprintf(stderr, "fakehub: cannot start the %s server on 127.0.0.1\n", cdn ? "CDN" : "Hub");
        return -1;
    }
    if (!(info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)) || !info->port) {
        fprintf(stderr, "fakehub: cannot read the %s server's port\n", cdn ? "CDN" : "Hub");
        return -1;
    }
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u", (unsigned)info->port);
    return 0;
}

struct fakehub *fakehub_start(void)
{
    struct fakehub *h = calloc(1, sizeof(*h));
    pthread_condattr_t ca;

    if (!h || !(h->mu = malloc(sizeof(*h->mu))) || !(h->cv = malloc(sizeof(*h->cv)))) {
        fprintf(stderr, "fakehub: out of memory\n");
        if (h)
            free(h->mu);
        free(h);
        return NULL;
    }
    pthread_mutex_init(h->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(h->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (server_start(&h->hub, h, 0) < 0 || server_start(&h->cdn, h, 1) < 0) {
        fakehub_stop(h);
        return NULL;
    }
    return h;
}

void fakehub_stop(struct fakehub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(h->mu);
    h->stopping = 1;
    pthread_cond_broadcast(h->cv);
    pthread_mutex_unlock(h->mu);
    if (h->hub.d)
        MHD_stop_daemon(h->hub.d);
    if (h->cdn.d)
        MHD_stop_daemon(h->cdn.d);
    for (size_t i = 0; i < h->nrepos; i++) {
        struct fh_repo *r = h->repos[i];
        for (size_t j = 0; j < r->ncommits; j++)
            commit_free(r->commits[j]);
        for (size_t j = 0; j < r->nrefs; j++)
            free(r->refs[j].name);
        free(r->commits);
        free(r->refs);
        free(r->name);
        free(r);
    }
    free(h->repos);
    for (size_t i = 0; i < h->nrenames; i++) {
        free(h->renames[i].from);
        free(h->renames[i].to);
    }
    free(h->renames);
    for (size_t i = 0; i < h->nfaults; i++)
        fault_free(&h->faults[i]);
    free(h->faults);
    for (size_t i = 0; i < h->nlog; i++) {
        free(h->log[i].method);
        free(h->log[i].path);
    }
    free(h->log);
    free(h->token);
    pthread_cond_destroy(h->cv);
    pthread_mutex_destroy(h->mu);
    free(h->cv);
    free(h->mu);
    free(h);
}

const char *fakehub_endpoint(const struct fakehub *h)
{
    return h->hub.url;
}

const char *fakehub_cdn(const struct fakehub *h)
{
    return h->cdn.url;
}

int fakehub_commit(struct fakehub *h, const char *repo, const char *branch, const struct fakehub_file *files,
                   size_t n, char sha_out[41])
{
    struct fh_commit *c = NULL, **grown;
    struct fh_repo *r;
    EVP_MD_CTX *ctx = NULL;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    char counter[32];
    int rc = -1, ok;

    if (!h || !repo || !valid_repo(repo) || !branch || !valid_path(branch) || is_sha(branch) ||
        (n && !files))
        return -1;
    if (!(c = calloc(1, sizeof(*c))) || (n && !(c->files = calloc(n, sizeof(*c->files)))))
        goto done;
    for (size_t i = 0; i < n; i++) {
        c->n = i + 1;
        if (file_make(&c->files[i], &files[i]) < 0)
            goto done;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->files[j].path, c->files[i].path))
                goto done;
    }
    pthread_mutex_lock(h->mu);
    /* the sha: SHA-1 over the repo, a counter and the file list */
    snprintf(counter, sizeof(counter), "%lu", ++h->counter);
    ok = (ctx = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
         EVP_DigestUpdate(ctx, repo, strlen(repo) + 1) && EVP_DigestUpdate(ctx, counter, strlen(counter) + 1);
    for (size_t i = 0; ok && i < c->n; i++)
        ok = EVP_DigestUpdate(ctx, c->files[i].path, strlen(c->files[i].path) + 1) &&
             EVP_DigestUpdate(ctx, c->files[i].oid, 41);
    ok = ok && EVP_DigestFinal_ex(ctx, d, &dn) && dn == 20;
    if (ok) {
        hex(c->sha, d, 20);
        ok = (r = repo_get(h, repo)) != NULL && (grown = realloc(r->commits, (r->ncommits + 1) * sizeof(*grown)));
        if (ok) {
            r->commits = grown;
            r->commits[r->ncommits++] = c;
            if (sha_out)
                memcpy(sha_out, c->sha, 41);
            c = NULL;
            ok = ref_set(r, branch, r->commits[r->ncommits - 1]->sha) == 0;
        }
    }
    pthread_mutex_unlock(h->mu);
    rc = ok ? 0 : -1;
done:
    EVP_MD_CTX_free(ctx);
    commit_free(c);
    return rc;
}

struct dir_list {            /* what walk() found; it owns paths and datas */
    char **paths;
    unsigned char **datas;
    size_t *lens;
    size_t n, cap;
};

static int read_whole(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    unsigned char *buf = NULL;
    int rc = -1;
    if (!f)
        return -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        *data = buf;
        *len = (size_t)n;
        buf = NULL;
        rc = 0;
    }
    free(buf);
    fclose(f);
    return rc;
}

static int dir_list_grow(struct dir_list *l)
{
    size_t cap = l->cap ? 2 * l->cap : 16;
    char **p;
    unsigned char **d;
    size_t *n;
    if (!(p = realloc(l->paths, cap * sizeof(*p))))
        return -1;
    l->paths = p;
    if (!(d = realloc(l->datas, cap * sizeof(*d))))
        return -1;
    l->datas = d;
    if (!(n = realloc(l->lens, cap * sizeof(*n))))
        return -1;
    l->lens = n;
    l->cap = cap;
    return 0;
}

/* Every regular file under root/rel into l (paths relative to root). */
static int walk(struct dir_list *l, const char *root, const char *rel)
{
    char dirpath[8200], full[8200], relpath[4096];
    DIR *d;
    struct dirent *ent;
    int rc = 0;

    snprintf(dirpath, sizeof(dirpath), "%s%s%s", root, rel[0] ? "/" : "", rel);
    if (!(d = opendir(dirpath)))
        return -1;
    while (rc == 0 && (ent = readdir(d))) {
        struct stat st;
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        snprintf(relpath, sizeof(relpath), "%s%s%s", rel, rel[0] ? "/" : "", ent->d_name);
        snprintf(full, sizeof(full), "%s/%s", root, relpath);
        if (stat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            rc = walk(l, root, relpath);
        } else if (S_ISREG(st.st_mode)) {
            if (l->n == l->cap && dir_list_grow(l) < 0)
                rc = -1;
            else if (!(l->paths[l->n] = strdup(relpath)))
                rc = -1;
            else if (read_whole(full, &l->datas[l->n], &l->lens[l->n]) < 0)
                free(l->paths[l->n]), rc = -1;
            else
                l->n++;
        }
    }
    closedir(d);
    return rc;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct fakehub_file *)a)->path, ((const struct fakehub_file *)b)->path);
}

int fakehub_commit_dir(struct fakehub *h, const char *repo, const char *branch, const char *dir, char sha_out[41])
{
    struct dir_list l = { NULL, NULL, NULL, 0, 0 };
    struct fakehub_file *files = NULL;
    int rc;
    if (!h || !dir)
        return -1;
    rc = walk(&l, dir, "");
    if (rc == 0 && !(files = calloc(l.n + 1, sizeof(*files))))
        rc = -1;
    if (rc == 0) {
        for (size_t i = 0; i < l.n; i++) {
            files[i].path = l.paths[i];
            files[i].data = l.datas[i];
            files[i].len = l.lens[i];
        }
        qsort(files, l.n, sizeof(*files), cmp_file);
        rc = fakehub_commit(h, repo, branch, files, l.n, sha_out);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.paths[i]);
        free(l.datas[i]);
    }
    free(l.paths);
    free(l.datas);
    free(l.lens);
    free(files);
    return rc;
}

int fakehub_set_ref(struct fakehub *h, const char *repo, const char *ref, const char *sha)
{
    struct fh_repo *r;
    int rc = -1;
    if (!h || !repo || !ref || !valid_path(ref) || is_sha(ref) || !sha)
        return -1;
    pthread_mutex_lock(h->mu);
    if ((r = repo_find(h, repo)) && commit_find(r, sha))
        rc = ref_set(r, ref, sha);
    pthread_mutex_unlock(h->mu);
    return rc;
}

void fakehub_set_token(struct fakehub *h, const char *token)
{
    char *t = token ? strdup(token) : NULL;
    pthread_mutex_lock(h->mu);
    free(h->token);
    h->token = t;
    pthread_mutex_unlock(h->mu);
}

static int set_flag(struct fakehub *h, const char *repo, int which, int v)
{
    struct fh_repo *r;
    int rc = -1;
    if (!h || !repo)
        return -1;
    pthread_mutex_lock(h->mu);
    if ((r = repo_find(h, repo))) {
        *(which ? &r->gated : &r->is_private) = v != 0;
        rc = 0;
    }
    pthread_mutex_unlock(h->mu);
    return rc;
}

int fakehub_set_private(struct fakehub *h, const char *repo, int is_private)
{
    return set_flag(h, repo, 0, is_private);
}

int fakehub_set_gated(struct fakehub *h, const char *repo, int gated)
{
    return set_flag(h, repo, 1, gated);
}

int fakehub_rename(struct fakehub *h, const char *old_repo, const char *new_repo)
{
    struct fh_rename *grown;
    char *a, *b;
    int rc = -1;
    if (!h || !old_repo || !new_repo || !valid_repo(old_repo) || !valid_repo(new_repo) ||
        !strcmp(old_repo, new_repo))
        return -1;
    a = strdup(old_repo);
    b = strdup(new_repo);
    pthread_mutex_lock(h->mu);
    if (a && b && (grown = realloc(h->renames, (h->nrenames + 1) * sizeof(*grown)))) {
        h->renames = grown;
        h->renames[h->nrenames].from = a;
        h->renames[h->nrenames].to = b;
        h->nrenames++;
        a = b = NULL;
        rc = 0;
    }
    pthread_mutex_unlock(h->mu);
    free(a);
    free(b);
    return rc;
}

int fakehub_add_fault(struct fakehub *h, const struct fakehub_fault *f)
{
    struct fh_fault c, *grown;
    int oom = 0, rc = -1;

    if (!h || !f || f->kind < FAKEHUB_STATUS || f->kind > FAKEHUB_MOVE_REF || f->times == 0 || f->times < -1 ||
        (f->cdn != 0 && f->cdn != 1))
        return -1;
    if (f->kind == FAKEHUB_STATUS && (f->status < 100 || f->status > 599))
        return -1;
    if (f->kind == FAKEHUB_STALL && f->stall_ms < 0)
        return -1;
    if (f->kind == FAKEHUB_MOVE_REF && (!f->ref || !f->to_sha || !valid_path(f->ref) || !is_sha(f->to_sha)))
        return -1;
    memset(&c, 0, sizeof(c));
    c.f = *f;
    c.method = dup_or_null(f->method, &oom);
    c.match = dup_or_null(f->match, &oom);
    c.error_code = dup_or_null(f->error_code, &oom);
    c.retry_after = dup_or_null(f->retry_after, &oom);
    c.ref = dup_or_null(f->ref, &oom);
    c.to_sha = dup_or_null(f->to_sha, &oom);
    /* the copies stand in for the caller's strings */
    c.f.method = c.f.match = c.f.error_code = c.f.retry_after = c.f.ref = c.f.to_sha = NULL;
    pthread_mutex_lock(h->mu);
    if (!oom && (grown = realloc(h->faults, (h->nfaults + 1) * sizeof(*grown)))) {
        h->faults = grown;
        h->faults[h->nfaults++] = c;
        rc = 0;
    }
    pthread_mutex_unlock(h->mu);
    if (rc < 0)
        fault_free(&c);
    return rc;
}

void fakehub_clear_faults(struct fakehub *h)
{
    pthread_mutex_lock(h->mu);
    for (size_t i = 0; i < h->nfaults; i++)
        fault_free(&h->faults[i]);
    free(h->faults);
    h->faults = NULL;
    h->nfaults = 0;
    pthread_mutex_unlock(h->mu);
}

int fakehub_count(const struct fakehub *h, int cdn, const char *method, const char *match)
{
    int n = 0;
    pthread_mutex_lock(h->mu);
    for (size_t i = 0; i < h->nlog; i++) {
        const struct fh_logent *l = &h->log[i];
        if ((cdn < 0 || l->cdn == cdn) && (!method || !strcmp(l->method, method)) &&
            (!match || strstr(l->path, match)))
            n++;
    }
    pthread_mutex_unlock(h->mu);
    return n;
}

void fakehub_reset_counts(struct fakehub *h)
{
    pthread_mutex_lock(h->mu);
    for (size_t i = 0; i < h->nlog; i++) {
        free(h->log[i].method);
        free(h->log[i].path);
    }
    h->nlog = 0;
    h->cdn_auth = 0;
    h->last_range[0] = '\0';
    pthread_mutex_unlock(h->mu);
}

int fakehub_cdn_auth_seen(const struct fakehub *h)
{
    int n;
    pthread_mutex_lock(h->mu);
    n = h->cdn_auth;
    pthread_mutex_unlock(h->mu);
    return n;
}

void fakehub_last_range(const struct fakehub *h, char *buf, size_t cap)
{
    if (!cap)
        return;
    pthread_mutex_lock(h->mu);
    snprintf(buf, cap, "%s", h->last_range);
    pthread_mutex_unlock(h->mu);
}
