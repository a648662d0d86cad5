/*
 * hub.c - the Hugging Face Hub client (see hub.h).
 *
 * One hub_snapshot() call is a session: one curl easy handle (connections
 * are reused between requests), the pinned sha, the repo's cache directory.
 * Every request goes through one of two retry loops: hub_api_get() for JSON
 * replies kept in memory, hub_fetch_blob() for files streamed into
 * blobs/<etag>.incomplete.  Both classify each attempt the same way
 * (classify()): done, retry after a delay, or fail with an error named by
 * the Hub's X-Error-Code.
 *
 * The parts (hub_int.h): this file holds the configuration, the name
 * checks, the session, the model-info reply and the choice of files;
 * hub_http.c the requests, retries and verified downloads; hub_cache.c
 * the huggingface_hub cache layout on disk.
 */
#include "hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hub_int.h"
#include "json.h"

#define PROGRESS_EVERY_NS 100000000LL

/* ---- configuration ---- */

static int env_seconds(long *ms, const char *name, gq_err *e)
{
    const char *v = getenv(name);
    char *end;
    double s;
    if (!v || !*v)
        return 0;
    errno = 0;
    s = strtod(v, &end);
    if (errno || *end || !(s > 0) || s > 86400)
        return GQ_FAIL(e, GQ_EINVAL, "%s: expected seconds in (0, 86400], got \"%.40s\"", name, v);
    *ms = (long)(s * 1000 + 0.5);
    return 0;
}

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"));
}

static int copy_str(char *dst, size_t cap, const char *src, const char *what, gq_err *e)
{
    size_t n = strlen(src);
    if (n >= cap)
        return GQ_FAIL(e, GQ_EINVAL, "%s is too long (%zu bytes, at most %zu)", what, n, cap - 1);
    memcpy(dst, src, n + 1);
    return 0;
}

/* The first line of the token file, trimmed; a missing file is no token. */
static int read_token_file(char *dst, size_t cap, const char *path, gq_err *e)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f)
        return 0;
    if (!fgets(dst, (int)cap, f))
        dst[0] = '\0';
    fclose(f);
    n = strcspn(dst, "\r\n");
    dst[n] = '\0';
    while (n > 0 && isspace((unsigned char)dst[n - 1]))
        dst[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x21 || dst[i] == 0x7f) {
            dst[0] = '\0';
            return GQ_FAIL(e, GQ_EINVAL, "token file %s holds a control or space character", path);
        }
    return 0;
}

int hub_config_init(struct hub_config *cfg, gq_err *e)
{
    const char *ep = getenv("HF_ENDPOINT"), *home = getenv("HF_HOME"), *cache = getenv("HF_HUB_CACHE");
    const char *tok = getenv("HF_TOKEN"), *tok_path = getenv("HF_TOKEN_PATH");
    char hf_home[4096], path[4200];
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    cfg->symlinks = 1;
    cfg->connect_timeout_ms = 10000;
    cfg->metadata_timeout_ms = 10000;
    cfg->stall_timeout_ms = 10000;
    cfg->max_retries = 5;
    cfg->backoff_ms = 1000;
    cfg->backoff_max_ms = 30000;
    cfg->max_retry_after_ms = 300000;

    if ((rc = copy_str(cfg->endpoint, sizeof(cfg->endpoint), ep && *ep ? ep : "https://huggingface.co",
                       "HF_ENDPOINT", e)) < 0)
        return rc;
    for (size_t n = strlen(cfg->endpoint); n > 0 && cfg->endpoint[n - 1] == '/'; n--)
        cfg->endpoint[n - 1] = '\0';
    if (strncmp(cfg->endpoint, "http://", 7) && strncmp(cfg->endpoint, "https://", 8))
        return GQ_FAIL(e, GQ_EINVAL, "HF_ENDPOINT must start with http:// or https://");

    if (home && *home) {
        if ((rc = copy_str(hf_home, sizeof(hf_home), home, "HF_HOME", e)) < 0)
            return rc;
    } else {
        const char *h = getenv("HOME");
        snprintf(hf_home, sizeof(hf_home), "%s/.cache/huggingface", h && *h ? h : ".");
    }
    if (cache && *cache)
        rc = copy_str(cfg->cache_dir, sizeof(cfg->cache_dir), cache, "HF_HUB_CACHE", e);
    else
        rc = snprintf(cfg->cache_dir, sizeof(cfg->cache_dir), "%s/hub", hf_home) >= (int)sizeof(cfg->cache_dir)
                 ? GQ_FAIL(e, GQ_EINVAL, "HF_HOME is too long")
                 : 0;
    if (rc < 0)
        return rc;

    if (tok && *tok) {
        if ((rc = copy_str(cfg->token, sizeof(cfg->token), tok, "HF_TOKEN", e)) < 0)
            return rc;
    } else {
        snprintf(path, sizeof(path), "%s/token", hf_home);
        if ((rc = read_token_file(cfg->token, sizeof(cfg->token),
                                  tok_path && *tok_path ? tok_path : path, e)) < 0)
            return rc;
    }
    cfg->offline = env_true("HF_HUB_OFFLINE");
    cfg->symlinks = !env_true("HF_HUB_DISABLE_SYMLINKS");
    if ((rc = env_seconds(&cfg->metadata_timeout_ms, "HF_HUB_ETAG_TIMEOUT", e)) < 0 ||
        (rc = env_seconds(&cfg->stall_timeout_ms, "HF_HUB_DOWNLOAD_TIMEOUT", e)) < 0 ||
        (rc = env_seconds(&cfg->connect_timeout_ms, "GPTQD_HUB_CONNECT_TIMEOUT", e)) < 0)
        return rc;
    return 0;
}

/* ---- names ---- */

int hub_is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return 1;
}

int hub_valid_repo_id(const char *repo, gq_err *e)
{
    char q[80];
    size_t n = repo ? strlen(repo) : 0, slashes = 0;
    if (n == 0)
        return GQ_FAIL(e, GQ_EINVAL, "repo id is empty");
    if (n > 96)
        return GQ_FAIL(e, GQ_EINVAL, "repo id \"%s\" is longer than 96 characters",
                       gq_err_quote(q, sizeof(q), repo));
    for (size_t i = 0; i < n; i++) {
        char c = repo[i];
        if (c == '/') {
            if (++slashes > 1 || i == 0 || i == n - 1)
                goto bad;
        } else if (!isalnum((unsigned char)c) && c != '-' && c != '_' && c != '.') {
            goto bad;
        }
    }
    if (strstr(repo, "--") || strstr(repo, "..") || repo[0] == '-' || repo[0] == '.' ||
        repo[n - 1] == '-' || repo[n - 1] == '.')
        goto bad;
    return 0;
bad:
    return GQ_FAIL(e, GQ_EINVAL,
                   "repo id \"%s\" is not a Hub repo id (\"name\" or \"org/name\": letters, digits, "
                   "'-', '_', '.', no \"--\" or \"..\")", gq_err_quote(q, sizeof(q), repo));
}

/* A relative path inside a snapshot: no "", ".", ".." segments, no '\\' or
 * control bytes, not absolute. */
static int valid_rel_path(const char *p)
{
    size_t n = strlen(p);
    const char *seg = p;
    if (n == 0 || n > 1024 || p[0] == '/')
        return 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(p + i - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            seg = p + i + 1;
        } else if (c < 0x20 || c == 0x7f || c == '\\') {
            return 0;
        }
    }
    return 1;
}

int hub_valid_revision(const char *rev, gq_err *e)
{
    char q[80];
    if (!rev || !*rev)
        return GQ_FAIL(e, GQ_EINVAL, "revision is empty");
    if (strlen(rev) > 255 || !valid_rel_path(rev) || strchr(rev, ' ') || strchr(rev, '~') ||
        strchr(rev, '^') || strchr(rev, ':') || strchr(rev, '?') || strchr(rev, '*') || strchr(rev, '['))
        return GQ_FAIL(e, GQ_EINVAL, "revision \"%s\" is not a branch, tag or commit name",
                       gq_err_quote(q, sizeof(q), rev));
    return 0;
}

/* ---- the session ---- */

long long hub_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void hub_set_reason(struct session *s, const char *r)
{
    if (!s->out->reason[0])
        snprintf(s->out->reason, sizeof(s->out->reason), "%s", r);
}

int hub_fail_reason(struct session *s, const char *reason, int rc)
{
    hub_set_reason(s, reason);
    return rc;
}

int hub_is_cancelled(const struct session *s)
{
    return s->cfg->cancelled && s->cfg->cancelled(s->cfg->payload);
}

void hub_report(struct session *s, uint64_t in_file, int force)
{
    long long t;
    if (!s->cfg->progress)
        return;
    t = hub_now_ns();
    if (!force && t - s->last_ns < PROGRESS_EVERY_NS)
        return;
    s->last_ns = t;
    s->cfg->progress(s->cfg->payload, s->done + in_file, s->total, s->cur);
}

/* ---- model info ---- */

static void files_free(struct session *s)
{
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->files[i].path);
    free(s->files);
    s->files = NULL;
    s->nfiles = 0;
}

static int parse_sibling(struct hfile *f, const gq_json *j, size_t i, gq_err *e)
{
    const char *name = gq_json_string(gq_json_get(j, "rfilename"));
    const gq_json *lfs = gq_json_get(j, "lfs"), *size = gq_json_get(j, "size");
    const char *blob = gq_json_string(gq_json_get(j, "blobId"));
    long long v;
    int rc;

    if (!name)
        return GQ_FAIL(e, GQ_EINVAL, "hub reply: siblings[%zu].rfilename is not a string", i);
    if (!(f->path = strdup(name)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    if (lfs && gq_json_type_of(lfs) == GQ_JSON_OBJECT) {
        const char *sha = gq_json_string(gq_json_get(lfs, "sha256"));
        if (!sha || !hub_is_hex(sha, 64))
            return GQ_FAIL(e, GQ_EINVAL, "hub reply: siblings[%zu].lfs.sha256 is not 64 hex digits", i);
        if ((rc = gq_json_int(&v, gq_json_get(lfs, "size"), 0, LLONG_MAX, "hub reply: lfs.size", e)) < 0)
            return rc;
        memcpy(f->etag, sha, 65);
        f->size = (uint64_t)v;
        f->lfs = f->meta = 1;
    } else if (blob && size) {
        if (!hub_is_hex(blob, 40))
            return GQ_FAIL(e, GQ_EINVAL, "hub reply: siblings[%zu].blobId is not 40 hex digits", i);
        if ((rc = gq_json_int(&v, size, 0, LLONG_MAX, "hub reply: siblings[].size", e)) < 0)
            return rc;
        memcpy(f->etag, blob, 41);
        f->size = (uint64_t)v;
        f->meta = 1;
    }
    return 0;
}

/* Model info at the revision: the sha and the file listing. */
static int resolve(struct session *s, const char *revision, gq_err *e)
{
    gq_buf url = GQ_BUF_INIT, body = GQ_BUF_INIT;
    gq_json *root = NULL;
    const gq_json *sib;
    const char *sha;
    char *rev = NULL, what[400];
    int rc;
    size_t i = 0;

    if (!(rev = curl_easy_escape(s->curl, revision, 0))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = gq_buf_printf(&url, e, "%s/api/models/%s/revision/%s?blobs=true", s->cfg->endpoint,
                            s->repo, rev)) < 0)
        goto done;
    snprintf(what, sizeof(what), "model info of %s at %s", s->repo, revision);
    if ((rc = hub_api_get(s, url.ptr, what, &body, e)) < 0)
        goto done;
    if ((rc = gq_json_parse(&root, body.ptr ? body.ptr : "", body.len, e)) < 0) {
        gq_err_prefix(e, "hub reply for %s", what);
        goto bad;
    }
    sha = gq_json_string(gq_json_get(root, "sha"));
    if (!sha || !hub_is_hex(sha, 40)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "hub reply for %s: \"sha\" is not a 40-hex commit", what);
        goto bad;
    }
    if (hub_is_hex(revision, 40) && strcmp(sha, revision)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "hub reply for %s names commit %s", what, sha);
        goto bad;
    }
    if (gq_json_bool(gq_json_get(root, "disabled")) == 1) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s is disabled on the Hub", s->repo);
        hub_set_reason(s, "forbidden");
        goto done;
    }
    memcpy(s->sha, sha, 41);
    sib = gq_json_get(root, "siblings");
    if (gq_json_type_of(sib) != GQ_JSON_ARRAY) {
        rc = GQ_FAIL(e, GQ_EINVAL, "hub reply for %s: \"siblings\" is not an array", what);
        goto bad;
    }
    if (!(s->files = calloc(gq_json_size(sib) + 1, sizeof(*s->files)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    for (const gq_json *j = gq_json_first(sib); j; j = gq_json_next(j), i++) {
        s->nfiles = i + 1;
        if ((rc = parse_sibling(&s->files[i], j, i, e)) < 0) {
            if (rc == GQ_ENOMEM)
                goto done;
            goto bad;
        }
    }
    rc = 0;
    goto done;
bad:
    hub_set_reason(s, "bad_reply");
done:
    gq_json_free(root);
    gq_buf_free(&body);
    gq_buf_free(&url);
    curl_free(rev);
    return rc;
}

static struct hfile *find_file(struct session *s, const char *path)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (!strcmp(s->files[i].path, path))
            return &s->files[i];
    return NULL;
}

/* ---- one file ---- */

/* Bring one listed file into the cache and the snapshot. */
static int get_file(struct session *s, struct hfile *f, gq_err *e)
{
    char blob[4400];
    gq_buf url = GQ_BUF_INIT;
    int lock = -1, rc;

    if (!valid_rel_path(f->path)) {
        char q[80];
        GQ_FAIL(e, GQ_EINVAL, "hub listing names an unsafe path \"%s\"", gq_err_quote(q, sizeof(q), f->path));
        return hub_fail_reason(s, "bad_reply", GQ_EINVAL);
    }
    if (!f->meta && (rc = hub_head_meta(s, f, e)) < 0)
        return rc;
    s->cur = f->path;
    snprintf(blob, sizeof(blob), "%s/blobs/%s", s->repo_dir, f->etag);
    if (hub_blob_present(blob, f->size)) {
        s->out->files_cached++;
        goto link;
    }
    if ((rc = hub_lock_blob(s, f, &lock, e)) < 0)
        goto done;
    if (hub_blob_present(blob, f->size)) {   /* another job brought it meanwhile */
        s->out->files_cached++;
        goto link;
    }
    if ((rc = hub_resolve_url(s, &url, f->path, e)) < 0)
        goto done;
    hub_report(s, 0, 1);
    if ((rc = hub_fetch_blob(s, f, url.ptr, e)) < 0)
        goto done;
    s->out->bytes_downloaded += f->size;
link:
    if ((rc = hub_link_snapshot(s, f, e)) < 0) {
        hub_set_reason(s, "io");
        goto done;
    }
    s->done += f->size;
    hub_report(s, 0, 1);
done:
    if (lock >= 0)
        close(lock);   /* releases the flock */
    gq_buf_free(&url);
    return rc;
}

/* ---- choosing the files ---- */

static const char *const optional_files[] = {
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model",
};

static int has_pickles(struct session *s)
{
    for (size_t i = 0; i < s->nfiles; i++) {
        const char *p = s->files[i].path;
        size_t n = strlen(p);
        if (!strchr(p, '/') && n > 4 && !strcmp(p + n - 4, ".bin") && !strncmp(p, "pytorch_model", 13))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shard names of an index file on disk, sorted and unique. */
static int read_index(char ***names_out, size_t *n_out, const char *path, gq_err *e)
{
    gq_buf text = GQ_BUF_INIT;
    gq_json *root = NULL;
    const gq_json *map;
    char **names = NULL, buf[1 << 16];
    size_t n = 0, cap;
    int rc = 0;
    FILE *f = fopen(path, "rb");
    size_t got;

    *names_out = NULL;
    *n_out = 0;
    if (!f)
        return GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", path, strerror(errno));
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        if ((rc = gq_buf_append(&text, buf, got, e)) < 0)
            break;
    fclose(f);
    if (rc < 0 || (rc = gq_json_parse(&root, text.ptr ? text.ptr : "", text.len, e)) < 0)
        goto done;
    map = gq_json_get(root, "weight_map");
    if (gq_json_type_of(map) != GQ_JSON_OBJECT || gq_json_size(map) == 0) {
        rc = GQ_FAIL(e, GQ_EINVAL, "no \"weight_map\" object");
        goto done;
    }
    cap = gq_json_size(map);
    if (!(names = calloc(cap, sizeof(*names)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    for (const gq_json *m = gq_json_first(map); m; m = gq_json_next(m)) {
        const char *v = gq_json_string(m);
        char q[80];
        if (!v || !valid_rel_path(v)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "weight_map[\"%s\"] is not a file name", gq_err_quote(q, sizeof(q),
                         gq_json_key(m)));
            goto done;
        }
        if (!(names[n++] = strdup(v))) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
            goto done;
        }
    }
    qsort(names, n, sizeof(*names), cmp_str);
    {
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (w > 0 && !strcmp(names[w - 1], names[i]))
                free(names[i]);
            else
                names[w++] = names[i];
        }
        n = w;
    }
    *names_out = names;
    *n_out = n;
    names = NULL;
done:
    if (names) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
    gq_json_free(root);
    gq_buf_free(&text);
    return rc;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void total_of(struct session *s, struct hfile **plan, size_t n)
{
    s->total = 0;
    for (size_t i = 0; i < n; i++)
        s->total += plan[i]->size;
}

/* Online: choose, fetch, link. */
static int fetch_model(struct session *s, gq_err *e)
{
    struct hfile *plan[16 + 1], *cfgf, *index, *single, **shards = NULL;
    char **names = NULL, path[4600];
    size_t np = 0, nnames = 0;
    int rc = 0;

    if (!(cfgf = find_file(s, "config.json"))) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has no config.json: not a transformers model", s->repo, s->sha);
        return hub_fail_reason(s, "not_a_model", rc);
    }
    index = find_file(s, "model.safetensors.index.json");
    single = find_file(s, "model.safetensors");
    if (!index && !single) {
        if (has_pickles(s)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has only pickle weights (pytorch_model*.bin): gptqd does not "
                         "load pickles; use a revision with model.safetensors", s->repo, s->sha);
            return hub_fail_reason(s, "pickle_only", rc);
        }
        rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has no model.safetensors or model.safetensors.index.json",
                     s->repo, s->sha);
        return hub_fail_reason(s, "not_a_model", rc);
    }
    plan[np++] = cfgf;
    if (index)
        plan[np++] = index;
    for (size_t i = 0; i < sizeof(optional_files) / sizeof(*optional_files); i++) {
        struct hfile *f = find_file(s, optional_files[i]);
        if (f)
            plan[np++] = f;
        else if ((rc = hub_mark_absent(s, optional_files[i], e)) < 0)
            return hub_fail_reason(s, "io", rc);
    }
    total_of(s, plan, np);
    if (!index)
        s->total += single->size;
    for (size_t i = 0; i < np; i++)
        if ((rc = get_file(s, plan[i], e)) < 0)
            return rc;
    s->out->files = (int)np;
    if (!index)
        return (rc = get_file(s, single, e)) < 0 ? rc : (s->out->files++, 0);

    /* the shards the index names, each listed in the repo */
    snprintf(path, sizeof(path), "%s/snapshots/%s/model.safetensors.index.json", s->repo_dir, s->sha);
    if ((rc = read_index(&names, &nnames, path, e)) < 0) {
        gq_err_prefix(e, "%s at %s: model.safetensors.index.json", s->repo, s->sha);
        return hub_fail_reason(s, rc == GQ_ENOMEM ? "io" : "not_a_model", rc);
    }
    if (!(shards = calloc(nnames, sizeof(*shards)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nnames; i++) {
        if (!(shards[i] = find_file(s, names[i]))) {
            char q[80];
            rc = GQ_FAIL(e, GQ_EINVAL, "model.safetensors.index.json of %s at %s names shard \"%s\", which "
                         "is not in the repo", s->repo, s->sha, gq_err_quote(q, sizeof(q), names[i]));
            hub_set_reason(s, "not_a_model");
            goto done;
        }
        s->total += shards[i]->size;
    }
    for (size_t i = 0; i < nnames; i++) {
        if ((rc = get_file(s, shards[i], e)) < 0)
            goto done;
        s->out->files++;
    }
done:
    free(shards);
    free_names(names, nnames);
    return rc;
}

/* Offline: the sha from refs/ and every needed file already in the snapshot. */
static int offline_model(struct session *s, const char *revision, gq_err *e)
{
    char path[4600], snap[4400], **names = NULL;
    size_t nnames = 0;
    int rc = 0;
    struct stat st;

    if (hub_is_hex(revision, 40))
        memcpy(s->sha, revision, 41);
    else if ((rc = hub_read_ref(s, revision, e)) < 0)
        return rc;
    snprintf(snap, sizeof(snap), "%s/snapshots/%s", s->repo_dir, s->sha);
#define NEED(name) do { \
        snprintf(path, sizeof(path), "%s/%s", snap, (name)); \
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) { \
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "offline (HF_HUB_OFFLINE): %s of %s at %s is not in the cache " \
                         "(%s)", (name), s->repo, s->sha, path); \
            hub_set_reason(s, "not_in_cache"); \
            goto done; \
        } \
        s->total += (uint64_t)st.st_size; \
        s->out->files++; \
    } while (0)
    NEED("config.json");
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", snap);
    if (stat(path, &st) == 0) {
        NEED("model.safetensors.index.json");
        if ((rc = read_index(&names, &nnames, path, e)) < 0) {
            gq_err_prefix(e, "%s", path);
            hub_set_reason(s, "not_a_model");
            goto done;
        }
        for (size_t i = 0; i < nnames; i++)
            NEED(names[i]);
    } else {
        char pickle[4600];
        snprintf(path, sizeof(path), "%s/model.safetensors", snap);
        snprintf(pickle, sizeof(pickle), "%s/pytorch_model.bin", snap);
        if (stat(path, &st) < 0 && stat(pickle, &st) == 0) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has only pickle weights (pytorch_model.bin): gptqd does "
                         "not load pickles", s->repo, s->sha);
            hub_set_reason(s, "pickle_only");
            goto done;
        }
        NEED("model.safetensors");
    }
    for (size_t i = 0; i < sizeof(optional_files) / sizeof(*optional_files); i++) {
        snprintf(path, sizeof(path), "%s/%s", snap, optional_files[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            s->total += (uint64_t)st.st_size;
            s->out->files++;
        }
    }
#undef NEED
    s->done = s->total;
    s->out->files_cached = s->out->files;
done:
    free_names(names, nnames);
    return rc;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int hub_snapshot(const struct hub_config *cfg, const char *repo, const char *revision,
                 struct hub_snapshot *out, gq_err *e)
{
    struct session s;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.out = out;
    s.repo = repo;
    s.rng = (uint64_t)hub_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s;
    if (!revision)
        revision = "main";
    if ((rc = hub_valid_repo_id(repo, e)) < 0 || (rc = hub_valid_revision(revision, e)) < 0)
        return hub_fail_reason(&s, "invalid", rc);
    if ((rc = hub_cache_dirs(&s, e)) < 0)
        return hub_fail_reason(&s, "invalid", rc);

    if (cfg->offline) {
        if ((rc = offline_model(&s, revision, e)) < 0)
            goto done;
    } else {
        pthread_once(&curl_once, init_curl);
        if (curl_init_rc != CURLE_OK || !(s.curl = curl_easy_init())) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "cannot initialise libcurl");
            hub_set_reason(&s, "io");
            goto done;
        }
        if ((rc = hub_mkdir_p(s.repo_dir, e)) < 0) {
            hub_set_reason(&s, "io");
            goto done;
        }
        hub_write_cachedir_tag(cfg);
        if ((rc = resolve(&s, revision, e)) < 0 || (rc = fetch_model(&s, e)) < 0)
            goto done;
        if (strcmp(revision, s.sha)) {
            if ((rc = hub_write_ref(&s, revision, e)) < 0) {
                hub_set_reason(&s, "io");
                goto done;
            }
        }
    }
    memcpy(out->sha, s.sha, sizeof(out->sha));
    snprintf(out->dir, sizeof(out->dir), "%s/snapshots/%s", s.repo_dir, s.sha);
    out->bytes_total = s.total;
    s.cur = NULL;
    hub_report(&s, 0, 1);
    rc = 0;
done:
    if (rc < 0 && !out->reason[0])
        hub_set_reason(&s, rc == GQ_ECANCELED ? "cancelled" : rc == GQ_ENOMEM || rc == GQ_EIO ? "io" : "invalid");
    files_free(&s);
    if (s.curl)
        curl_easy_cleanup(s.curl);
    return rc;
}
