/*
 * hub_http.c - the Hub client's requests (see hub_int.h): one HTTP
 * exchange over the session's curl handle, the classification of an
 * attempt, backoff with jitter and Retry-After, the API and HEAD calls,
 * and downloads into blobs/<etag>.incomplete, resumed with Range and
 * verified against the listed size and hash.
 */
#include "hub_int.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define USER_AGENT "gptqd/0.1.0"
#define API_BODY_MAX (64u << 20)    /* model-info replies of huge repos fit easily */
#define ERR_BODY_MAX 4096

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
    hub_report(r->s, k->off, 0);
    return n;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct reply *r = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return hub_is_cancelled(r->s);
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
        return hub_set_reason(s, "cancelled"), V_FAIL;
    }
    if (cc != CURLE_OK) {
        snprintf(why, whycap, "%s", curl_easy_strerror(cc));
        if (retryable_curl(cc))
            return V_RETRY;
        GQ_FAIL(e, GQ_ENET, "%s: %s", what, why);
        return hub_set_reason(s, "network"), V_FAIL;
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
        return hub_set_reason(s, "repo_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "RevisionNotFound")) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: revision not found in %s", what, s->repo);
        return hub_set_reason(s, "revision_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "EntryNotFound")) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: no such file in %s at %s", what, s->repo, s->sha);
        return hub_set_reason(s, "entry_not_found"), V_FAIL;
    }
    if (!strcmp(r->error_code, "GatedRepo")) {
        GQ_FAIL(e, GQ_EINVAL, "%s is gated: accept its conditions on the Hub and use a token of an "
                "account with access (HTTP %ld)", s->repo, r->status);
        return hub_set_reason(s, "gated_repo"), V_FAIL;
    }
    if (r->status == 401) {
        GQ_FAIL(e, GQ_EINVAL, "the Hub rejected the token (HTTP 401%s%s)", q[0] ? ": " : "", q);
        return hub_set_reason(s, "unauthorized"), V_FAIL;
    }
    if (r->status == 403) {
        GQ_FAIL(e, GQ_EINVAL, "%s: access forbidden (HTTP 403%s%s)", what, q[0] ? ": " : "", q);
        return hub_set_reason(s, "forbidden"), V_FAIL;
    }
    if (r->status == 404) {
        GQ_FAIL(e, GQ_ENOTFOUND, "%s: not found (HTTP 404%s%s)", what, q[0] ? ": " : "", q);
        return hub_set_reason(s, "entry_not_found"), V_FAIL;
    }
    GQ_FAIL(e, GQ_ENET, "%s: unexpected HTTP %ld%s%s", what, r->status, q[0] ? ": " : "", q);
    return hub_set_reason(s, "bad_reply"), V_FAIL;
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
        return hub_fail_reason(s, rate ? "rate_limited" : http ? "hub_unavailable" : "network", GQ_ENET);
    }
    if (server_ms > cfg->max_retry_after_ms) {
        GQ_FAIL(e, GQ_ENET, "%s: rate limited, the Hub asks to retry after %ld s (more than the %ld s "
                "allowed)", what, server_ms / 1000, cfg->max_retry_after_ms / 1000);
        return hub_fail_reason(s, "rate_limited", GQ_ENET);
    }
    for (int i = 1; i < retry && d < cfg->backoff_max_ms; i++)
        d *= 2;
    if (d > cfg->backoff_max_ms)
        d = cfg->backoff_max_ms;
    d = d / 2 + (long)(next_rand(s) % (uint64_t)(d / 2 + 1));
    if (server_ms > d)
        d = server_ms;
    gq_log(GQ_LOG_INFO, "hub: %s: %s; retry %d/%d in %ld ms", what, why, retry, cfg->max_retries, d);
    until = hub_now_ns() + (long long)d * 1000000LL;
    for (;;) {
        long long left = until - hub_now_ns();
        struct timespec ts;
        if (hub_is_cancelled(s)) {
            GQ_FAIL(e, GQ_ECANCELED, "%s: cancelled", what);
            return hub_fail_reason(s, "cancelled", GQ_ECANCELED);
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

int hub_api_get(struct session *s, const char *url, const char *what, gq_buf *body, gq_err *e)
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
int hub_resolve_url(struct session *s, gq_buf *u, const char *path, gq_err *e)
{
    int rc;
    gq_buf_clear(u);
    if ((rc = gq_buf_printf(u, e, "%s/", s->cfg->endpoint)) < 0 || (rc = append_escaped(s, u, s->repo, e)) < 0 ||
        (rc = gq_buf_printf(u, e, "/resolve/%s/", s->sha)) < 0)
        return rc;
    return append_escaped(s, u, path, e);
}

/* ---- file metadata ---- */

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


/*
 * Size and etag of a file the listing did not describe (a mirror that
 * ignores ?blobs=true): HEAD on its resolve URL, following relative
 * redirects only and reading the headers of the first absolute one.
 */
int hub_head_meta(struct session *s, struct hfile *f, gq_err *e)
{
    struct reply r = { 0 };
    gq_buf url = GQ_BUF_INIT;
    char why[200] = "", what[1200];
    int rc, hops = 0;

    r.body_max = ERR_BODY_MAX;
    snprintf(what, sizeof(what), "metadata of %s", f->path);
    if ((rc = hub_resolve_url(s, &url, f->path, e)) < 0)
        goto done;
    for (int attempt = 0;;) {
        long wait;
        CURLcode cc = perform(s, REQ_HEAD, url.ptr, NULL, &r);
        enum verdict v;
        if (cc == CURLE_OK && r.status >= 300 && r.status <= 399 && r.location[0] == '/') {
            if (++hops > 10) {
                rc = GQ_FAIL(e, GQ_ENET, "%s: too many redirects", what);
                hub_set_reason(s, "bad_reply");
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
        f->lfs = hub_is_hex(f->etag, 64);
    } else {
        normalise_etag(f->etag, sizeof(f->etag), r.etag);
    }
    if (r.linked_size >= 0)
        f->size = (uint64_t)r.linked_size;
    else if (r.status >= 200 && r.status <= 299 && r.content_length >= 0)
        f->size = (uint64_t)r.content_length;
    else {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub gave no size", what);
        hub_set_reason(s, "bad_reply");
        goto done;
    }
    if (!safe_etag(f->etag)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub gave no usable ETag", what);
        hub_set_reason(s, "bad_reply");
        goto done;
    }
    f->meta = 1;
    rc = 0;
done:
    gq_buf_free(&url);
    gq_buf_free(&r.body);
    return rc;
}

/* ---- downloads ---- */

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
int hub_fetch_blob(struct session *s, const struct hfile *f, const char *url, gq_err *e)
{
    char blob[4400], part[4450], what[1200], why[200] = "", range[32];
    struct reply r = { 0 };
    struct sink k = { 0 };
    int rc = 0, corrupt = 0, mismatches = 0, verify = f->lfs || hub_is_hex(f->etag, 40);
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
    if ((rc = hub_mkdir_parent(blob, e)) < 0)
        goto done;
    for (int attempt = 0;;) {
        long wait = -1;
        CURLcode cc = CURLE_OK;
        enum verdict v = V_OK;
        int asked = 0;

        if (k.fd < 0) {
            if ((k.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || fstat(k.fd, &st) < 0) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot open %s: %s", part, strerror(errno));
                hub_set_reason(s, "io");
                goto done;
            }
            k.off = (uint64_t)st.st_size;
            if (k.off > k.expected) {
                if (ftruncate(k.fd, 0) < 0) {
                    rc = GQ_FAIL(e, GQ_EIO, "cannot truncate %s: %s", part, strerror(errno));
                    hub_set_reason(s, "io");
                    goto done;
                }
                k.off = 0;
            }
            if (sink_hash_existing(&k) < 0) {
                rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", part, strerror(errno));
                hub_set_reason(s, "io");
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
                hub_set_reason(s, "io");
                goto done;
            }
            if (r.repo_commit[0] && strcmp(r.repo_commit, s->sha)) {
                rc = GQ_FAIL(e, GQ_EINVAL, "%s: the Hub served commit %.40s, not the pinned %s", what,
                             r.repo_commit, s->sha);
                hub_set_reason(s, "bad_reply");
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
                    hub_set_reason(s, "checksum_mismatch");
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
        hub_set_reason(s, "io");
        goto done;
    }
    k.fd = -1;
    if (rename(part, blob) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot rename %s: %s", part, strerror(errno));
        hub_set_reason(s, "io");
        goto done;
    }
done:
    if (k.fd >= 0)
        close(k.fd);
    EVP_MD_CTX_free(k.md);
    gq_buf_free(&r.body);
    return rc;
}
