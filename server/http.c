/*
 * http.c - libmicrohttpd to api/ and back.
 *
 * The access handler is a three-phase state machine around one struct
 * http_req per request (STYLE.md §11): the first call matches the route,
 * checks Content-Length against the route's body limit and allocates; the
 * upload calls append to the body (or only drain it once over the limit);
 * the final call answers 413 / 401 / CORS preflight itself, or builds an
 * api_req and dispatches.  NOTIFY_COMPLETED frees the struct.
 *
 * Store connections: one per HTTP thread, opened on first use and closed
 * by the thread-key destructor when MHD's threads exit.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "buf.h"
#include "options.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"

struct http_server {
    struct MHD_Daemon *d;
    const struct daemon_config *cfg;
    struct api_ctx *ctx;
};

struct http_req {
    gq_buf body;
    size_t max;
    int too_big;
    double t0;
};

static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;
static const char *store_path;   /* set by http_start before any thread runs */

static void close_store(void *s)
{
    store_close(s);
}

static void make_key(void)
{
    pthread_key_create(&store_key, close_store);
}

store *http_thread_store(void *payload, gq_err *e)
{
    store *s;
    (void)payload;
    pthread_once(&store_once, make_key);
    if ((s = pthread_getspecific(store_key)))
        return s;
    if (store_open(&s, store_path, e) < 0) {
        gq_log(GQ_LOG_ERROR, "http: cannot open the database: %s", e->msg);
        return NULL;
    }
    pthread_setspecific(store_key, s);
    return s;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void add_common(struct MHD_Response *r, const struct http_server *h)
{
    if (h->cfg->cors_origin[0]) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", h->cfg->cors_origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", "Location, Content-Range, Idempotent-Replayed");
        if (strcmp(h->cfg->cors_origin, "*"))
            MHD_add_response_header(r, "Vary", "Origin");
    }
}

/* The one place a response is sent. */
static enum MHD_Result send_resp(struct MHD_Connection *c, const struct http_server *h, struct api_resp *rs)
{
    struct MHD_Response *r = NULL;
    enum MHD_Result ok;
    int status = rs->status ? rs->status : 500;

    if (rs->file_fd >= 0) {
        r = MHD_create_response_from_fd_at_offset64(rs->file_len, rs->file_fd, rs->file_offset);
        if (r)
            rs->file_fd = -1;   /* MHD closes it */
    } else if (rs->raw) {
        r = MHD_create_response_from_buffer(rs->raw_len, rs->raw, MHD_RESPMEM_MUST_FREE);
        if (r)
            rs->raw = NULL;
    } else if (rs->static_data) {
        r = MHD_create_response_from_buffer(rs->static_len, (void *)(uintptr_t)rs->static_data,
                                            MHD_RESPMEM_PERSISTENT);
    } else if (rs->body) {
        char *txt = cJSON_PrintUnformatted(rs->body);
        if (txt) {
            size_t n = strlen(txt);
            txt[n] = '\n';   /* replaces the NUL: the buffer is n+1 bytes */
            r = MHD_create_response_from_buffer_with_free_callback(n + 1, txt, cJSON_free);
            if (!r)
                cJSON_free(txt);
        }
        rs->content_type = "application/json";
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        r = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)(uintptr_t)oom, MHD_RESPMEM_PERSISTENT);
        status = 500;
        rs->content_type = "application/json";
        if (!r)
            return MHD_NO;
    }
    if (rs->content_type && status != 204)
        MHD_add_response_header(r, "Content-Type", rs->content_type);
    if (rs->content_type && !strcmp(rs->content_type, "application/json"))
        MHD_add_response_header(r, "Cache-Control", "no-store");
    if (rs->location[0])
        MHD_add_response_header(r, "Location", rs->location);
    if (rs->content_range[0])
        MHD_add_response_header(r, "Content-Range", rs->content_range);
    for (int i = 0; i < 2; i++)
        if (rs->extra_header[i][0][0])
            MHD_add_response_header(r, rs->extra_header[i][0], rs->extra_header[i][1]);
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"gptqd\"");
    add_common(r, h);
    ok = MHD_queue_response(c, (unsigned int)status, r);
    MHD_destroy_response(r);
    return ok;
}

/* Constant-time comparison of the presented token with each configured one. */
static int token_ok(const struct daemon_config *cfg, const char *auth)
{
    int ok = 0;
    size_t n;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    n = strlen(auth);
    for (size_t i = 0; i < cfg->ntokens; i++) {
        const char *t = cfg->tokens[i];
        size_t m = strlen(t);
        unsigned char diff = (unsigned char)(m != n);
        for (size_t k = 0; k < m; k++)
            diff |= (unsigned char)(t[k] ^ (k < n ? auth[k] : 0));
        ok |= diff == 0;
    }
    return ok;
}

struct query_walk {
    struct api_req *rq;
};

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct api_req *rq = cls;
    (void)kind;
    if (rq->nquery == API_MAX_QUERY) {
        rq->query_overflow = 1;
        return MHD_NO;
    }
    rq->query[rq->nquery].key = key;
    rq->query[rq->nquery].value = value;
    rq->nquery++;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **req_cls)
{
    struct http_server *h = cls;
    struct http_req *hr = *req_cls;
    struct api_req rq;
    struct api_resp rs;
    enum MHD_Result ok;
    gq_err e = GQ_ERR_INIT;
    (void)version;

    if (!hr) {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!(hr = gq_calloc(1, sizeof(*hr))))
            return MHD_NO;
        hr->t0 = mono_s();
        hr->max = api_route_max_body(method, url, h->ctx);
        if (cl && hr->max && strtoull(cl, NULL, 10) > hr->max)
            hr->too_big = 1;
        *req_cls = hr;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!hr->too_big && hr->max) {
            if (hr->body.len + *upload_size > hr->max)
                hr->too_big = 1;
            else if (gq_buf_append(&hr->body, upload_data, *upload_size, &e) < 0)
                hr->too_big = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }

    api_resp_init(&rs);
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = url;
    rq.ctx = h->ctx;
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        add_common(r, h);
        MHD_add_response_header(r, "Allow", "GET, POST, DELETE, OPTIONS");
        if (h->cfg->cors_origin[0]) {
            MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type, Idempotency-Key, Range");
            MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        }
        ok = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        metrics_http(h->ctx->metrics, method, "OPTIONS", 204, mono_s() - hr->t0);
        return ok;
    }
    if (h->cfg->ntokens && api_route_needs_auth(url) &&
        !token_ok(h->cfg, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))) {
        api_error(&rs, 401, "unauthorized", NULL, "a valid bearer token is required (Authorization: Bearer TOKEN)");
    } else if (hr->too_big) {
        api_error(&rs, 413, "body_too_large", NULL, "the body is larger than this server's limit of %zu bytes",
                  hr->max);
    } else {
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_arg, &rq);
        rq.body = hr->body.ptr;
        rq.body_len = hr->body.len;
        rq.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        rq.idempotency_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
        rq.range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
        api_dispatch(&rq, &rs);
    }
    ok = send_resp(c, h, &rs);
    metrics_http(h->ctx->metrics, method, rs.route && rs.route[0] ? rs.route : NULL, rs.status, mono_s() - hr->t0);
    if (rs.status >= 500)
        gq_log(GQ_LOG_ERROR, "%s %s -> %d", method, url, rs.status);
    api_resp_clear(&rs);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    struct http_req *hr = *req_cls;
    (void)cls, (void)c, (void)toe;
    if (hr) {
        gq_buf_free(&hr->body);
        gq_free(hr);
        *req_cls = NULL;
    }
}

/*
 * URL unescaping as MHD's default does, except that %00 stays as it is: a
 * NUL would cut the decoded path short ("config.json%00.evil" would name
 * config.json), so such a path matches nothing and gets 404.
 */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *r = s, *w = s;
    (void)cls, (void)c;
    while (*r) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2]) && !(r[1] == '0' && r[2] == '0')) {
            char hex[3] = {r[1], r[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    gq_log(GQ_LOG_WARN, "http: %s", msg);
}

int http_start(http_server **out, const struct daemon_config *cfg, struct api_ctx *ctx, int *port, gq_err *e)
{
    struct http_server *h = gq_calloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    socklen_t slen;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

    if (!h)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    memset(&ss, 0, sizeof(ss));
    if (strchr(cfg->listen_addr, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, cfg->listen_addr, &a6->sin6_addr) != 1) {
            gq_free(h);
            return GQ_FAIL(e, GQ_EINVAL, "--listen: %s is not an IPv6 address", cfg->listen_addr);
        }
        slen = sizeof(*a6);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET, cfg->listen_addr, &a4->sin_addr) != 1) {
            gq_free(h);
            return GQ_FAIL(e, GQ_EINVAL, "--listen: %s is not an IPv4 address", cfg->listen_addr);
        }
        slen = sizeof(*a4);
    }
    (void)slen;
    h->cfg = cfg;
    h->ctx = ctx;
    store_path = cfg->db_path;
    pthread_once(&store_once, make_key);
    ctx->thread_store = http_thread_store;
    ctx->payload = h;
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, h, MHD_OPTION_UNESCAPE_CALLBACK, unescape, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->connection_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, h, MHD_OPTION_END);
    if (!h->d) {
        gq_free(h);
        return GQ_FAIL(e, GQ_EIO, "cannot listen on %s (in use, or not an address of this machine)", cfg->listen);
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? (int)info->port : cfg->port;
    *out = h;
    return 0;
}

void http_stop(http_server *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    gq_free(h);
}
