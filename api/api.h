/*
 * api.h - the REST layer's contract: a request in, a response out, no
 * sockets.  server/http.c turns libmicrohttpd's calls into an api_req,
 * calls api_dispatch, and sends the api_resp; tests can call api_dispatch
 * directly.
 *
 * Handlers are plain functions `int h(const struct api_req *, struct
 * api_resp *)` over the route table in api/routes.c (mirrored one for one
 * by openapi.yaml).  They never block on a job: a submission writes a
 * queued row and wakes the pool; clients poll.
 *
 * What a handler needs from the daemon comes through struct api_ctx, which
 * main() wires up; the store connection is the calling thread's own
 * (api_ctx.thread_store).
 */
#ifndef GQ_API_H
#define GQ_API_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

struct pool;
struct metrics;
struct daemon_config;

struct api_ctx {
    const struct daemon_config *cfg;
    struct pool *pool;
    struct metrics *metrics;
    /* The calling thread's store connection (opened on first use), or NULL with e set. */
    store *(*thread_store)(void *payload, gq_err *e);
    void *payload;
    int64_t started_ms;       /* daemon start, for /healthz */
};

#define API_MAX_PARAMS 2
#define API_MAX_QUERY 16

struct api_kv {
    const char *key, *value;
};

struct api_req {
    const char *method;             /* "GET", ... */
    const char *path;               /* URL path, decoded, without the query */
    const char *params[API_MAX_PARAMS];  /* {id}, {name} captures, in order */
    struct api_kv query[API_MAX_QUERY];
    size_t nquery;
    int query_overflow;             /* more arguments than API_MAX_QUERY */
    const char *body;               /* raw body (NUL-terminated), may be NULL */
    size_t body_len;
    const char *content_type;       /* may be NULL */
    const char *idempotency_key;    /* may be NULL */
    const char *range;              /* the Range header, may be NULL */
    const struct api_ctx *ctx;
};

/* A response is JSON (body), raw bytes (raw), or part of a file (file_fd). */
struct api_resp {
    int status;
    cJSON *body;                    /* owned; sent as application/json */
    char *raw;                      /* owned (free()); sent with content_type */
    size_t raw_len;
    const unsigned char *static_data;   /* not owned (embedded files) */
    size_t static_len;
    const char *content_type;       /* static string */
    int file_fd;                    /* -1 = none; owned, closed by the server */
    uint64_t file_offset, file_len; /* the bytes to send */
    char content_range[96];         /* "bytes a-b/n" for 206/416, "" otherwise */
    char location[256];             /* Location header, "" when none */
    char extra_header[2][2][128];   /* {name, value} pairs, "" when unused */
    const char *route;              /* route pattern for metrics, "" when none matched */
};

void api_resp_init(struct api_resp *rs);
void api_resp_clear(struct api_resp *rs);   /* frees body/raw, closes file_fd */

/* The value of query argument key, or NULL. */
const char *api_query(const struct api_req *rq, const char *key);

/*
 * Fill rs with the error envelope {"error": {"code", "message", "field"?}}
 * and return the status: code names the kind ("invalid_request",
 * "not_found", ...), field may be NULL.
 */
int api_error(struct api_resp *rs, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same from a gq_err, the status from its code (the one table: EINVAL
 * 400, ENOTFOUND 404, ECONFLICT 409, EBUSY 503, anything else 500). */
int api_error_from(struct api_resp *rs, const gq_err *e, const char *field);
int api_status_of(int gq_code);

/* Route the request (404 no path, 405 wrong method with Allow) and run the handler. */
int api_dispatch(const struct api_req *rq, struct api_resp *rs);

/*
 * The largest body a route accepts, for the server's first phase: the
 * configured limit for submissions, 0 for routes without a body.  *known
 * is 0 when no route matches the path (the server answers 404 after
 * draining).
 */
size_t api_route_max_body(const char *method, const char *path, const struct api_ctx *ctx);

/* Does the route need a bearer token when tokens are configured? (/v1/ routes) */
int api_route_needs_auth(const char *path);

/* An RFC 3339 UTC time with milliseconds ("2026-01-02T03:04:05.678Z"), JSON null for ms <= 0. */
cJSON *api_time_json(int64_t ms);

/* A job as the API shows it (spec summarised: texts are counted, not echoed). NULL on OOM. */
cJSON *api_job_json(const struct job *j);

#endif
