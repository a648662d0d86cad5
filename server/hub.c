/*
 * hub.c - the Hugging Face Hub client (see hub.h).
 *
 * One hub_snapshot() call is a session: one curl easy handle (connections
 * are reused between requests), the pinned sha, the repo's cache directory.
 * Every request goes through one of two retry loops: api_get() for JSON
 * replies kept in memory, fetch_blob() for files streamed into
 * blobs/<etag>.incomplete.  Both classify each attempt the same way
 * (classify()): done, retry after a delay, or fail with an error named by
 * the Hub's X-Error-Code.
 */
#include "hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "log.h"

#define USER_AGENT "gptqd/0.1.0"
#define API_BODY_MAX (64u << 20)    /* model-info replies of huge repos fit easily */
#define ERR_BODY_MAX 4096
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

static int is_hex(const char *s, size_t n)
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

struct hfile {
    char *path;        /* rfilename */
    uint64_t size;
    char etag[129];    /* normalised: SHA-256 (LFS), git blob SHA-1, or the server's */
    int lfs;
    int meta;          /* size and etag known */
};

struct session {
    const struct hub_config *cfg;
    struct hub_snapshot *out;
    CURL *curl;
    const char *repo;
    char repo_dir[4200];     /* <cache>/models--org--name */
    char lock_dir[4200];     /* <cache>/.locks/models--org--name */
    char sha[41];
    struct hfile *files;     /* the repo listing */
    size_t nfiles;
    uint64_t done;           /* progress: bytes of finished files */
    uint64_t total;
    const char *cur;         /* file being fetched */
    long long last_ns;
    uint64_t rng;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_reason(struct session *s, const char *r)
{
    if (!s->out->reason[0])
        snprintf(s->out->reason, sizeof(s->out->reason), "%s", r);
}

static int fail_reason(struct session *s, const char *reason, int rc)
{
    set_reason(s, reason);
    return rc;
}

static int is_cancelled(const struct session *s)
{
    return s->cfg->cancelled && s->cfg->cancelled(s->cfg->payload);
}

static void report(struct session *s, uint64_t in_file, int force)
{
    long long t;
    if (!s->cfg->progress)
        return;
    t = now_ns();
    if (!force && t - s->last_ns < PROGRESS_EVERY_NS)
        return;
    s->last_ns = t;
    s->cfg->progress(s->cfg->payload, s->done + in_file, s->total, s->cur);
}

/* ---- one HTTP exchange ---- */

struct sink {                /* a download into blobs/<etag>.incomplete */
    int fd;
    uint64_t off;            /* bytes in the file */
    uint64_t expected;
    EVP_MD_CTX *md;
    int lfs;
    int started;             /* the first body byte of this reply was seen */
    int overflow;            /* the server sent more than expected */
    int bad_range;           /* a 206 that does not continue at off */
    int io_errno;
};

struct reply {
    struct session *s;
    long status;                         /* of the last hop */
    char error_code[64], error_message[256], retry_after[64], repo_commit[48];
    char etag[160], linked_etag[160], location[2048], content_range[128];
    long long linked_size, content_length;
    gq_buf body;                         /* API reply, or an error body */
    size_t body_max;
    struct sink *sink;
};

static void reply_reset(struct reply *r)
{
    r->status = 0;
    r->error_code[0] = r->error_message[0] = r->retry_after[0] = '\0';
    r->etag[0] = r->linked_etag[0] = r->location[0] = r->content_range[0] = '\0';
    r->linked_size = r->content_length = -1;
}

static void header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct reply *r = ud;
    size_t n = size * nitems;
    const char *colon;
    char name[64], num[32];
    size_t klen;

    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        /* a new response (each redirect hop): its own headers; X-Repo-Commit stays */
        const char *sp = memchr(buf, ' ', n);
        reply_reset(r);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    colon = memchr(buf, ':', n);
    if (!colon || (klen = (size_t)(colon - buf)) >= sizeof(name))
        return n;
    memcpy(name, buf, klen);
    name[klen] = '\0';
    colon++;
#define H(field) header_value(r->field, sizeof(r->field), colon, n - (size_t)(colon - buf))
    if (!strcasecmp(name, "X-Error-Code"))
        H(error_code);
    else if (!strcasecmp(name, "X-Error-Message"))
        H(error_message);
    else if (!strcasecmp(name, "Retry-After"))
        H(retry_after);
    else if (!strcasecmp(name, "X-Repo-Commit"))
        H(repo_commit);
    else if (!strcasecmp(name, "ETag"))
        H(etag);
    else if (!strcasecmp(name, "X-Linked-Etag"))
        H(linked_etag);
    else if (!strcasecmp(name, "Location"))
        H(location);
    else if (!strcasecmp(name, "Content-Range"))
        H(content_range);
    else if (!strcasecmp(name, "X-Linked-Size")) {
        header_value(num, sizeof(num), colon, n - (size_t)(colon - buf));
        r->linked_size = strtoll(num, NULL, 10);
    } else if (!strcasecmp(name, "Content-Length")) {
        header_value(num, sizeof(num), colon, n - (size_t)(colon - buf));
        r->content_length = strtoll(num, NULL, 10);
    }
#undef H
    return n;
}

static int sink_hash_reset(struct sink *k)
{
    char prefix[48];
    int n;
    if (!EVP_DigestInit_ex(k->md, k->lfs ? EVP_sha256() : EVP_sha1(), NULL))
        return -1;
    if (k->lfs)
        return 0;
    /* git hashes a blob as "blob <size>\0" followed by the content */
    n = snprintf(prefix, sizeof(prefix), "blob %llu", (unsigned long long)k->expected);
    return EVP_DigestUpdate(k->md, prefix, (size_t)n + 1) ? 0 : -1;
}

/* The first body byte of a 2xx reply: continue the file (206 at off) or
 * start it over (200). */
static int sink_start(struct reply *r, struct sink *k)
{
    k->started = 1;
    if (r->status == 206) {
        unsigned long long a;
        if (sscanf(r->content_range, "bytes %llu-", &a) != 1 || a != k->off) {
            k->bad_range = 1;
            return -1;
        }
        return 0;
    }
    if (k->off > 0) {
        if (ftruncate(k->fd, 0) < 0) {
            k->io_errno = errno;
            return -1;
        }
        k->off = 0;
        if (sink_hash_reset(k) < 0)
            return -1;
    }
    return 0;
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *ud)
{
    struct reply *r = ud;
    struct sink *k = r->sink;
    size_t n = size * nitems;

    if (!k || r->status < 200 || r->status > 299) {
        /* JSON reply or an error body: kept in memory up to a limit */
        size_t room = r->body.len < r->body_max ? r->body_max - r->body.len : 0;
        if (n > room) {
            if (k)   /* an error body is only for the message */
                return gq_buf_append(&r->body, buf, room, NULL) < 0 ? 0 : n;
            return 0;
        }
        return gq_buf_append(&r->body, buf, n, NULL) < 0 ? 0 : n;
    }
    if (!k->started && sink_start(r, k) < 0)
        return 0;
    if (k->off + n > k->expected) {
        k->overflow = 1;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(k->fd, buf + done, n - done, (off_t)(k->off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            k->io_errno = errno;
            return 0;
        }
        done += (size_t)w;
    }
    if (!EVP_DigestUpdate(k->md, buf, n))
        return 0;
    k->off += n;
    report(r->s, k->off, 0);
    return n;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct reply *r = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return is_cancelled(r->s);
}

/* Does url start with the endpoint (scheme://host[:port]/...)? */
static int same_origin(const struct hub_config *cfg, const char *url)
{
    size_t n = strlen(cfg->endpoint);
    return !strncmp(url, cfg->endpoint, n) && (url[n] == '/' || url[n] == '\0');
}

enum req_kind { REQ_API, REQ_HEAD, REQ_BLOB };

/*
 * One request.  The Authorization header goes only to the endpoint; when
 * curl follows a redirect to another host it drops that header itself
 * (custom Authorization headers stay with the original host and port).
 */
static CURLcode perform(struct session *s, enum req_kind kind, const char *url, const char *range,
                        struct reply *r)
{
    const struct hub_config *cfg = s->cfg;
    struct curl_slist *hdrs = NULL, *tmp;
    char auth[1100];
    CURLcode cc;
    CURL *c = s->curl;

    curl_easy_reset(c);
    reply_reset(r);
    r->repo_commit[0] = '\0';
    r->s = s;
    gq_buf_clear(&r->body);
    if (cfg->token[0] && same_origin(cfg, url)) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cfg->token);
        if (!(tmp = curl_slist_append(hdrs, auth)))
            return CURLE_OUT_OF_MEMORY;
        hdrs = tmp;
    }
    if (kind != REQ_API) {
        if (!(tmp = curl_slist_append(hdrs, "Accept-Encoding: identity")))
            goto oom;
        hdrs = tmp;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    if (kind == REQ_API) {
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->metadata_timeout_ms);
    } else if (kind == REQ_HEAD) {
        /* relative redirects are followed by the caller; absolute ones end here */
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->metadata_timeout_ms);
    } else {
        long secs = (cfg->stall_timeout_ms + 999) / 1000;
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, secs > 0 ? secs : 1L);
        if (range)
            curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return cc;
oom:
    curl_slist_free_all(hdrs);
    return CURLE_OUT_OF_MEMORY;
}

/* ---- classifying an attempt ---- */

enum verdict { V_OK, V_RETRY, V_FAIL };

static int retryable_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* Seconds or an HTTP date, as milliseconds from now; -1 when absent. */
static long retry_after_ms(const char *v)
{
    char *end;
    long s;
    time_t t;
    if (!v[0])
        return -1;
    s = strtol(v, &end, 10);
    if (end != v && *end == '\0')
        return s < 0 ? 0 : s > 86400 ? 86400000L : s * 1000;
    t = curl_getdate(v, NULL);
    if (t < 0)
        return -1;
    t -= time(NULL);
    return t <= 0 ? 0 : t > 86400 ? 86400000L : (long)t * 1000;
}

/*
 * What a finished attempt means.  On V_FAIL the error is recorded (with its
 * reason); on V_RETRY *wait_ms is the server's Retry-After (or -1) and
 * why says what went wrong, for the message if retries run out.
 */
static enum verdict classify(struct session *s, CURLcode cc, const struct reply *r, const char *what,
                             long *wait_ms, char *why, size_t whycap, gq_err *e)
{
    char q[160];
    *wait_ms = -1;
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        GQ_FAIL(e, GQ_ECANCELED, "download of %s cancelled", what);
        return set_reason(s, "cancelled"), V_FAIL;
    }
    if (cc != CURLE_OK) {
        snprintf(why, whycap, "%s", curl_easy_strerror(cc));
        if (retryable_curl(cc))
            return V_RETRY;
        GQ_FAIL(e, GQ_ENET, "%s: %s", what, why);
        return set_reason(s, "network"), V_FAIL;
    }
    if (r->status >= 200 && r->status <= 299)
        return V_OK;
    gq_err_quote(q, sizeof(q), r->error_message[0] ? r->error_message : "");
    if (r->status == 408 || r->status == 429 || r->status == 500 || r->status == 502 ||
        r->status == 503 || r->status == 504) {
        snprintf(why, whycap, "HTTP %ld%s%s", r->status, q[0] ? ": " : "", q);
        if (r->status == 429)
            *wait_ms = retry_after_ms(r->retry_after);
        return V_RETRY;
    }
    if (!strcmp(r->error_code, "RepoNotFound") ||
        (r->status == 401 && !r->error_code[0] && !strstr(r->error_message, "Invalid credentials"))) {
        GQ_FAIL(e, GQ_ENOTFOUND, "repository %s not found on %s (HTTP %ld; a private repo needs a token "
                "with access)", s->repo, s->cfg->endpoint, r->status);
        return set_reason(s, "repo_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "RevisionNotFound")) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: revision not found in %s", what, s->repo);
        return set_reason(s, "revision_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "EntryNotFound")) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: no such file in %s at %s", what, s->repo, s->sha);
        return set_reason(s, "entry_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "GatedRepo")) {
        GQ_FAIL(e, GQ_EINVAL, "%s is gated: accept its conditions on the Hub and use a token of an "
                "account with access (HTTP %ld)", s->repo, r->status);
        return set_reason(s, "gated_repo"), V_FAIL;
    }
    if (r->status == 401) {
        GQ_FAIL(e, GQ_EINVAL, "the Hub rejected the token (HTTP 401%s%s)", q[0] ? ": " : "", q);
        return set_reason(s, "unauthorized"), V_FAIL;
    }
    if (r->status == 403) {
        GQ_FAIL(e, GQ_EINVAL, "%s: access forbidden (HTTP 403%s%s)", what, q[0] ? ": " : "", q);
        return set_reason(s, "forbidden"), V_FAIL;
    }
    if (r->status == 404) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: not found (HTTP 404%s%s)", what, q[0] ? ": " : "", q);
        return set_reason(s, "entry_not_found"), V_FAIL;
    }
    GQ_FAIL(e, GQ_ENET, "%s: unexpected HTTP %ld%s%s", what, r->status, q[0] ? ": " : "", q);
    return set_reason(s, "bad_reply"), V_FAIL;
}

static uint64_t next_rand(struct session *s)
{
    /* splitmix64: jitter only */
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * Sleep before retry number `retry` (1-based): exponential backoff with
 * jitter, at least the server's Retry-After; cancellable.  Fails when the
 * retries are spent or the server asks for too long a pause.
 */
static int backoff(struct session *s, int retry, long server_ms, const char *what, const char *why,
                   gq_err *e)
{
    const struct hub_config *cfg = s->cfg;
    long d = cfg->backoff_ms;
    long long until;
    if (retry > cfg->max_retries) {
        int rate = strstr(why, "HTTP 429") != NULL, http = !strncmp(why, "HTTP ", 5);
        GQ_FAIL(e, GQ_ENET, "%s: %s (gave up after %d attempts)", what, why, retry);
        return fail_reason(s, rate ? "rate_limited" : http ? "hub_unavailable" : "network", GQ_ENET);
    }
    if (server_ms > cfg->max_retry_after_ms) {
        GQ_FAIL(e, GQ_ENET, "%s: rate limited, the Hub asks to retry after %ld s (more than the %ld s "
                "allowed)", what, server_ms / 1000, cfg->max_retry_after_ms / 1000);
        return fail_reason(s, "rate_limited", GQ_ENET);
    }
    for (int i = 1; i < retry && d < cfg->backoff_max_ms; i++)
        d *= 2;
    if (d > cfg->backoff_max_ms)
        d = cfg->backoff_max_ms;
    d = d / 2 + (long)(next_rand(s) % (uint64_t)(d / 2 + 1));
    if (server_ms > d)
        d = server_ms;
    gq_log(GQ_LOG_INFO, "hub: %s: %s; retry %d/%d in %ld ms", what, why, retry, cfg->max_retries, d);
    until = now_ns() + (long long)d * 1000000LL;
    for (;;) {
        long long left = until - now_ns();
        struct timespec ts;
        if (is_cancelled(s)) {
            GQ_FAIL(e, GQ_ECANCELED, "%s: cancelled", what);
            return fail_reason(s, "cancelled", GQ_ECANCELED);
        }
        if (left <= 0)
            return 0;
        if (left > 50000000LL)
            left = 50000000LL;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)left;
        nanosleep(&ts, NULL);
    }
}

/* ---- API calls ---- */

static int api_get(struct session *s, const char *url, const char *what, gq_buf *body, gq_err *e)
{
    struct reply r = { 0 };
    char why[200] = "";
    int rc = 0;
    r.body_max = API_BODY_MAX;
    for (int attempt = 0;; attempt++) {
        long wait;
        CURLcode cc = perform(s, REQ_API, url, NULL, &r);
        enum verdict v = classify(s, cc, &r, what, &wait, why, sizeof(why), e);
        if (v == V_OK)
            break;
        if (v == V_FAIL) {
            rc = e->code;
            goto done;
        }
        if ((rc = backoff(s, attempt + 1, wait, what, why, e)) < 0)
            goto done;
    }
    *body = r.body;
    r.body = (gq_buf)GQ_BUF_INIT;
done:
    gq_buf_free(&r.body);
    return rc;
}

/* Append path to u with each '/'-separated segment URL-escaped. */
static int append_escaped(struct session *s, gq_buf *u, const char *path, gq_err *e)
{
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, "/");
        char *seg = curl_easy_escape(s->curl, p, (int)n);
        int rc;
        if (!seg)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        rc = gq_buf_printf(u, e, "%s%s", seg, p[n] ? "/" : "");
        curl_free(seg);
        if (rc < 0)
            return rc;
        p += n + (p[n] ? 1 : 0);
    }
    return 0;
}

/* {endpoint}/{repo}/resolve/{sha}/{path}, always by the pinned sha. */
static int resolve_url(struct session *s, gq_buf *u, const char *path, gq_err *e)
{
    int rc;
    gq_buf_clear(u);
    if ((rc = gq_buf_printf(u, e, "%s/", s->cfg->endpoint)) < 0 || (rc = append_escaped(s, u, s->repo, e)) < 0 ||
        (rc = gq_buf_printf(u, e, "/resolve/%s/", s->sha)) < 0)
        return rc;
    return append_escaped(s, u, path, e);
}

static void files_free(struct session *s)
{
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->files[i].path);
    free(s->files);
    s->files = NULL;
    s->nfiles = 0;
}

/* Strip W/ and quotes. */
static void normalise_etag(char *dst, size_t cap, const char *v)
{
    size_t n;
    if (!strncmp(v, "W/", 2))
        v += 2;
    n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* A blob name we are willing to create: hex, or [A-Za-z0-9._-] not starting with '.'. */
static int safe_etag(const char *t)
{
    if (!t[0] || t[0] == '.' || strlen(t) > 128)
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
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
        if (!sha || !is_hex(sha, 64))
            return GQ_FAIL(e, GQ_EINVAL, "hub reply: siblings[%zu].lfs.sha256 is not 64 hex digits", i);
        if ((rc = gq_json_int(&v, gq_json_get(lfs, "size"), 0, LLONG_MAX, "hub reply: lfs.size", e)) < 0)
            return rc;
        memcpy(f->etag, sha, 65);
        f->size = (uint64_t)v;
        f->lfs = f->meta = 1;
    } else if (blob && size) {
        if (!is_hex(blob, 40))
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
    if ((rc = api_get(s, url.ptr, what, &body, e)) < 0)
        goto done;
    if ((rc = gq_json_parse(&root, body.ptr ? body.ptr : "", body.len, e)) < 0) {
        gq_err_prefix(e, "hub reply for %s", what);
        goto bad;
    }
    sha = gq_json_string(gq_json_get(root, "sha"));
    if (!sha || !is_hex(sha, 40)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "hub reply for %s: \"sha\" is not a 40-hex commit", what);
        goto bad;
    }
    if (is_hex(revision, 40) && strcmp(sha, revision)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "hub reply for %s names commit %s", what, sha);
        goto bad;
    }
    if (gq_json_bool(gq_json_get(root, "disabled")) == 1) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s is disabled on the Hub", s->repo);
        set_reason(s, "forbidden");
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
    set_reason(s, "bad_reply");
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

/*
 * Size and etag of a file the listing did not describe (a mirror that
 * ignores ?blobs=true): HEAD on its resolve URL, following relative
 * redirects only and reading the headers of the first absolute one.
 */
static int head_meta(struct session *s, struct hfile *f, gq_err *e)
{
    struct reply r = { 0 };
    gq_buf url = GQ_BUF_INIT;
    char why[200] = "", what[1200];
    int rc, hops = 0;

    r.body_max = ERR_BODY_MAX;
    snprintf(what, sizeof(what), "metadata of %s", f->path);
    if ((rc = resolve_url(s, &url, f->path, e)) < 0)
        goto done;
    for (int attempt = 0;;) {
        long wait;
        CURLcode cc = perform(s, REQ_HEAD, url.ptr, NULL, &r);
        enum verdict v;
        if (cc == CURLE_OK && r.status >= 300 && r.status <= 399 && r.location[0] == '/') {
            if (++hops > 10) {
                rc = GQ_FAIL(e, GQ_ENET, "%s: too many redirects", what);
                set_reason(s, "bad_reply");
                goto done;
            }
            gq_buf_clear(&url);
            if ((rc = gq_buf_printf(&url, e, "%s%s", s->cfg->endpoint, r.location)) < 0)
                goto done;
            continue;
        }
        if (cc == CURLE_OK && r.status >= 300 && r.status <= 399)
            break;
        if ((v = classify(s, cc, &r, what, &wait, why, sizeof(why), e)) == V_OK)
            break;
        if (v == V_FAIL) {
            rc = e->code;
            goto done;
        }
        if ((rc = backoff(s, ++attempt, wait, what, why, e)) < 0)
            goto done;
    }
    if (r.linked_etag[0]) {
        normalise_etag(f->etag, sizeof(f->etag), r.linked_etag);
        f->lfs = is_hex(f->etag, 64);
    } else {
        normalise_etag(f->etag, sizeof(f->etag), r.etag);
    }
    if (r.linked_size >= 0)
        f->size = (uint64_t)r.linked_size;
    else if (r.status >= 200 && r.status <= 299 && r.content_length >= 0)
        f->size = (uint64_t)r.content_length;
    else {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub gave no size", what);
        set_reason(s, "bad_reply");
        goto done;
    }
    if (!safe_etag(f->etag)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub gave no usable ETag", what);
        set_reason(s, "bad_reply");
        goto done;
    }
    f->meta = 1;
    rc = 0;
done:
    gq_buf_free(&url);
    gq_buf_free(&r.body);
    return rc;
}

/* ---- the cache on disk ---- */

static int mkdir_p(const char *path, gq_err *e)
{
    char buf[4200];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return GQ_FAIL(e, GQ_EINVAL, "path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return GQ_FAIL(e, GQ_EIO, "cannot create %s: %s", buf, strerror(errno));
        buf[i] = path[i];
    }
    return 0;
}

static int mkdir_parent(const char *path, gq_err *e)
{
    char dir[4200];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 || n >= sizeof(dir))
        return 0;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return mkdir_p(dir, e);
}

/* Write text to path atomically (a temporary name in the same directory). */
static int write_atomic(const char *path, const char *text, gq_err *e)
{
    char tmp[4700];
    FILE *f;
    int rc;
    if ((rc = mkdir_parent(path, e)) < 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid() ^ (long)pthread_self());
    if (!(f = fopen(tmp, "w")))
        return GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

static int copy_file(const char *src, const char *dst, gq_err *e)
{
    char tmp[4700], buf[1 << 16];
    int in = open(src, O_RDONLY), out = -1, rc = 0;
    ssize_t n;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", dst, (long)getpid() ^ (long)pthread_self());
    if (in < 0 || (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot copy %s: %s", src, strerror(errno));
        goto done;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    if (n < 0 || close(out) < 0 || rename(tmp, dst) < 0) {
        out = -1;
        rc = GQ_FAIL(e, GQ_EIO, "cannot copy %s to %s: %s", src, dst, strerror(errno));
        unlink(tmp);
        goto done;
    }
    out = -1;
done:
    if (in >= 0)
        close(in);
    if (out >= 0) {
        close(out);
        unlink(tmp);
    }
    return rc;
}

/* snapshots/<sha>/<path> -> ../../blobs/<etag> (one more ../ per directory
 * in path), or a copy without symlinks; replaced atomically. */
static int link_snapshot(struct session *s, const struct hfile *f, gq_err *e)
{
    char link[4600], blob[4400], target[4400], tmp[4700], cur[4400];
    size_t n = 0;
    ssize_t got;
    int rc;

    snprintf(link, sizeof(link), "%s/snapshots/%s/%s", s->repo_dir, s->sha, f->path);
    snprintf(blob, sizeof(blob), "%s/blobs/%s", s->repo_dir, f->etag);
    if ((rc = mkdir_parent(link, e)) < 0)
        return rc;
    if (!s->cfg->symlinks) {
        struct stat a, b;
        if (lstat(link, &a) == 0 && S_ISREG(a.st_mode) && stat(blob, &b) == 0 && a.st_size == b.st_size)
            return 0;
        return copy_file(blob, link, e);
    }
    n += (size_t)snprintf(target, sizeof(target), "../../");
    for (const char *p = f->path; (p = strchr(p, '/')); p++)
        n += (size_t)snprintf(target + n, sizeof(target) - n, "../");
    snprintf(target + n, sizeof(target) - n, "blobs/%s", f->etag);
    if ((got = readlink(link, cur, sizeof(cur) - 1)) >= 0) {
        cur[got] = '\0';
        if (!strcmp(cur, target))
            return 0;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", link, (long)getpid() ^ (long)pthread_self());
    unlink(tmp);
    if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot link %s: %s", link, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return 0;
}

static int blob_present(const char *blob, uint64_t size)
{
    struct stat st;
    return stat(blob, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

/* flock the blob's lock file, polling so cancellation still works. */
static int lock_blob(struct session *s, const struct hfile *f, int *fd_out, gq_err *e)
{
    char path[4400];
    int fd, rc;
    *fd_out = -1;
    if ((rc = mkdir_p(s->lock_dir, e)) < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/%s.lock", s->lock_dir, f->etag);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return GQ_FAIL(e, GQ_EIO, "cannot open lock %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        struct timespec ts = { 0, 20000000L };
        if (errno != EWOULDBLOCK && errno != EINTR) {
            close(fd);
            return GQ_FAIL(e, GQ_EIO, "cannot lock %s: %s", path, strerror(errno));
        }
        if (is_cancelled(s)) {
            close(fd);
            GQ_FAIL(e, GQ_ECANCELED, "cancelled while waiting for %s", path);
            return fail_reason(s, "cancelled", GQ_ECANCELED);
        }
        nanosleep(&ts, NULL);
    }
    *fd_out = fd;
    return 0;
}

/* Hash the first k->off bytes already in the file (a resumed download). */
static int sink_hash_existing(struct sink *k)
{
    char buf[1 << 16];
    uint64_t pos = 0;
    if (sink_hash_reset(k) < 0)
        return -1;
    while (pos < k->off) {
        size_t want = k->off - pos < sizeof(buf) ? (size_t)(k->off - pos) : sizeof(buf);
        ssize_t n = pread(k->fd, buf, want, (off_t)pos);
        if (n <= 0)
            return -1;
        if (!EVP_DigestUpdate(k->md, buf, (size_t)n))
            return -1;
        pos += (uint64_t)n;
    }
    return 0;
}

static int digest_matches(struct sink *k, const char *etag)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_DigestFinal_ex(k->md, d, &n))
        return 0;
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return !strcmp(hex, etag);
}

/*
 * Download f into blobs/<etag> (the caller holds the blob's lock): resume
 * an .incomplete file, retry what can be retried, verify, rename.
 */
static int fetch_blob(struct session *s, const struct hfile *f, const char *url, gq_err *e)
{
    char blob[4400], part[4450], what[1200], why[200] = "", range[32];
    struct reply r = { 0 };
    struct sink k = { 0 };
    int rc = 0, corrupt = 0, mismatches = 0, verify = f->lfs || is_hex(f->etag, 40);
    struct stat st;

    snprintf(blob, sizeof(blob), "%s/blobs/%s", s->repo_dir, f->etag);
    snprintf(part, sizeof(part), "%s.incomplete", blob);
    snprintf(what, sizeof(what), "download of %s", f->path);
    r.body_max = ERR_BODY_MAX;
    r.sink = &k;
    k.fd = -1;
    k.expected = f->size;
    k.lfs = f->lfs;
    if (!(k.md = EVP_MD_CTX_new())) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = mkdir_parent(blob, e)) < 0)
        goto done;
    for (int attempt = 0;;) {
        long wait = -1;
        CURLcode cc = CURLE_OK;
        enum verdict v = V_OK;
        int asked = 0;

        if (k.fd < 0) {
            if ((k.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || fstat(k.fd, &st) < 0) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot open %s: %s", part, strerror(errno));
                set_reason(s, "io");
                goto done;
            }
            k.off = (uint64_t)st.st_size;
            if (k.off > k.expected) {
                if (ftruncate(k.fd, 0) < 0) {
                    rc = GQ_FAIL(e, GQ_EIO, "cannot truncate %s: %s", part, strerror(errno));
                    set_reason(s, "io");
                    goto done;
                }
                k.off = 0;
            }
            if (sink_hash_existing(&k) < 0) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", part, strerror(errno));
                set_reason(s, "io");
                goto done;
            }
        }
        if (k.off < k.expected) {
            k.started = k.overflow = k.bad_range = k.io_errno = 0;
            snprintf(range, sizeof(range), "%llu-", (unsigned long long)k.off);
            cc = perform(s, REQ_BLOB, url, k.off > 0 ? range : NULL, &r);
            asked = 1;
            if (k.io_errno) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", part, strerror(k.io_errno));
                set_reason(s, "io");
                goto done;
            }
            if (r.repo_commit[0] && strcmp(r.repo_commit, s->sha)) {
                rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub served commit %.40s, not the pinned %s", what,
                             r.repo_commit, s->sha);
                set_reason(s, "bad_reply");
                goto done;
            }
        }
        if (k.overflow || k.bad_range) {
            snprintf(why, sizeof(why), k.overflow ? "the server sent more than the %llu bytes listed"
                                                  : "the server answered a range request at the wrong offset",
                     (unsigned long long)k.expected);
            v = V_RETRY;
            corrupt = 1;
        } else if (asked) {
            v = classify(s, cc, &r, what, &wait, why, sizeof(why), e);
        }
        if (v == V_FAIL) {
            rc = e->code;
            goto done;
        }
        if (v == V_OK && k.off < k.expected) {
            snprintf(why, sizeof(why), "the body ended after %llu of %llu bytes", (unsigned long long)k.off,
                     (unsigned long long)k.expected);
            v = V_RETRY;
        }
        if (v == V_OK) {
            if (verify && !digest_matches(&k, f->etag)) {
                snprintf(why, sizeof(why), "%s mismatch: the content is not %s",
                         f->lfs ? "SHA-256" : "git blob SHA-1", f->etag);
                corrupt = 1;
                if (++mismatches >= 2) {   /* twice wrong: not a glitch */
                    unlink(part);
                    rc = GQ_FAIL(e, GQ_EIO, "%s: %s", what, why);
                    set_reason(s, "checksum_mismatch");
                    goto done;
                }
            } else {
                break;
            }
        }
        if (corrupt) {   /* start that file over */
            close(k.fd);
            k.fd = -1;
            unlink(part);
            corrupt = 0;
        }
        if ((rc = backoff(s, ++attempt, wait, what, why, e)) < 0)
            goto done;
    }
    if (fdatasync(k.fd) < 0 || close(k.fd) < 0) {
        k.fd = -1;
        rc = GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", part, strerror(errno));
        set_reason(s, "io");
        goto done;
    }
    k.fd = -1;
    if (rename(part, blob) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot rename %s: %s", part, strerror(errno));
        set_reason(s, "io");
        goto done;
    }
done:
    if (k.fd >= 0)
        close(k.fd);
    EVP_MD_CTX_free(k.md);
    gq_buf_free(&r.body);
    return rc;
}

/* Bring one listed file into the cache and the snapshot. */
static int get_file(struct session *s, struct hfile *f, gq_err *e)
{
    char blob[4400];
    gq_buf url = GQ_BUF_INIT;
    int lock = -1, rc;

    if (!valid_rel_path(f->path)) {
        char q[80];
        GQ_FAIL(e, GQ_EINVAL, "hub listing names an unsafe path \"%s\"", gq_err_quote(q, sizeof(q), f->path));
        return fail_reason(s, "bad_reply", GQ_EINVAL);
    }
    if (!f->meta && (rc = head_meta(s, f, e)) < 0)
        return rc;
    s->cur = f->path;
    snprintf(blob, sizeof(blob), "%s/blobs/%s", s->repo_dir, f->etag);
    if (blob_present(blob, f->size)) {
        s->out->files_cached++;
        goto link;
    }
    if ((rc = lock_blob(s, f, &lock, e)) < 0)
        goto done;
    if (blob_present(blob, f->size)) {   /* another job brought it meanwhile */
        s->out->files_cached++;
        goto link;
    }
    if ((rc = resolve_url(s, &url, f->path, e)) < 0)
        goto done;
    report(s, 0, 1);
    if ((rc = fetch_blob(s, f, url.ptr, e)) < 0)
        goto done;
    s->out->bytes_downloaded += f->size;
link:
    if ((rc = link_snapshot(s, f, e)) < 0) {
        set_reason(s, "io");
        goto done;
    }
    s->done += f->size;
    report(s, 0, 1);
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

static int mark_absent(struct session *s, const char *name, gq_err *e)
{
    char path[4600];
    snprintf(path, sizeof(path), "%s/.no_exist/%s/%s", s->repo_dir, s->sha, name);
    return write_atomic(path, "", e);
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
        return fail_reason(s, "not_a_model", rc);
    }
    index = find_file(s, "model.safetensors.index.json");
    single = find_file(s, "model.safetensors");
    if (!index && !single) {
        if (has_pickles(s)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has only pickle weights (pytorch_model*.bin): gptqd does not "
                         "load pickles; use a revision with model.safetensors", s->repo, s->sha);
            return fail_reason(s, "pickle_only", rc);
        }
        rc = GQ_FAIL(e, GQ_EINVAL, "%s at %s has no model.safetensors or model.safetensors.index.json",
                     s->repo, s->sha);
        return fail_reason(s, "not_a_model", rc);
    }
    plan[np++] = cfgf;
    if (index)
        plan[np++] = index;
    for (size_t i = 0; i < sizeof(optional_files) / sizeof(*optional_files); i++) {
        struct hfile *f = find_file(s, optional_files[i]);
        if (f)
            plan[np++] = f;
        else if ((rc = mark_absent(s, optional_files[i], e)) < 0)
            return fail_reason(s, "io", rc);
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
        return fail_reason(s, rc == GQ_ENOMEM ? "io" : "not_a_model", rc);
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
            set_reason(s, "not_a_model");
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

    if (is_hex(revision, 40)) {
        memcpy(s->sha, revision, 41);
    } else {
        FILE *f;
        snprintf(path, sizeof(path), "%s/refs/%s", s->repo_dir, revision);
        if (!(f = fopen(path, "r"))) {
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "offline (HF_HUB_OFFLINE): revision %s of %s is not in the cache %s "
                         "(no refs/%s)", revision, s->repo, s->cfg->cache_dir, revision);
            return fail_reason(s, "not_in_cache", rc);
        }
        if (!fgets(s->sha, sizeof(s->sha), f))
            s->sha[0] = '\0';
        fclose(f);
        if (!is_hex(s->sha, 40)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "offline: %s does not hold a commit sha", path);
            return fail_reason(s, "not_in_cache", rc);
        }
    }
    snprintf(snap, sizeof(snap), "%s/snapshots/%s", s->repo_dir, s->sha);
#define NEED(name) do { \
        snprintf(path, sizeof(path), "%s/%s", snap, (name)); \
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) { \
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "offline (HF_HUB_OFFLINE): %s of %s at %s is not in the cache " \
                         "(%s)", (name), s->repo, s->sha, path); \
            set_reason(s, "not_in_cache"); \
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
            set_reason(s, "not_a_model");
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
            set_reason(s, "pickle_only");
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

static void write_cachedir_tag(const struct hub_config *cfg)
{
    char path[4200];
    struct stat st;
    gq_err ignored = GQ_ERR_INIT;
    snprintf(path, sizeof(path), "%s/CACHEDIR.TAG", cfg->cache_dir);
    if (stat(path, &st) == 0)
        return;
    write_atomic(path, "Signature: 8a477f597d28d172789f06886806bc55\n"
                       "# This file is a cache directory tag created by gptqd (huggingface_hub layout).\n",
                 &ignored);
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
    size_t n;

    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.out = out;
    s.repo = repo;
    s.rng = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s;
    if (!revision)
        revision = "main";
    if ((rc = hub_valid_repo_id(repo, e)) < 0 || (rc = hub_valid_revision(revision, e)) < 0)
        return fail_reason(&s, "invalid", rc);
    n = (size_t)snprintf(s.repo_dir, sizeof(s.repo_dir), "%s/models--", cfg->cache_dir);
    for (const char *p = repo; *p && n + 3 < sizeof(s.repo_dir); p++) {
        if (*p == '/')
            s.repo_dir[n++] = '-', s.repo_dir[n++] = '-';
        else
            s.repo_dir[n++] = *p;
    }
    s.repo_dir[n] = '\0';
    if (strlen(cfg->cache_dir) + 200 > sizeof(s.repo_dir)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "cache directory path is too long");
        return fail_reason(&s, "invalid", rc);
    }
    snprintf(s.lock_dir, sizeof(s.lock_dir), "%s/.locks/%s", cfg->cache_dir, strrchr(s.repo_dir, '/') + 1);

    if (cfg->offline) {
        if ((rc = offline_model(&s, revision, e)) < 0)
            goto done;
    } else {
        pthread_once(&curl_once, init_curl);
        if (curl_init_rc != CURLE_OK || !(s.curl = curl_easy_init())) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "cannot initialise libcurl");
            set_reason(&s, "io");
            goto done;
        }
        if ((rc = mkdir_p(s.repo_dir, e)) < 0) {
            set_reason(&s, "io");
            goto done;
        }
        write_cachedir_tag(cfg);
        if ((rc = resolve(&s, revision, e)) < 0 || (rc = fetch_model(&s, e)) < 0)
            goto done;
        if (strcmp(revision, s.sha)) {
            char ref[4600];
            snprintf(ref, sizeof(ref), "%s/refs/%s", s.repo_dir, revision);
            if ((rc = write_atomic(ref, s.sha, e)) < 0) {
                set_reason(&s, "io");
                goto done;
            }
        }
    }
    memcpy(out->sha, s.sha, sizeof(out->sha));
    snprintf(out->dir, sizeof(out->dir), "%s/snapshots/%s", s.repo_dir, s.sha);
    out->bytes_total = s.total;
    s.cur = NULL;
    report(&s, 0, 1);
    rc = 0;
done:
    if (rc < 0 && !out->reason[0])
        set_reason(&s, rc == GQ_ECANCELED ? "cancelled" : rc == GQ_ENOMEM || rc == GQ_EIO ? "io" : "invalid");
    files_free(&s);
    if (s.curl)
        curl_easy_cleanup(s.curl);
    return rc;
}
