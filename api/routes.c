/*
 * routes.c - the route table (mirrored one for one by openapi.yaml), the
 * dispatcher, the error envelope and the one gq_code -> status table.
 *
 * A pattern is matched segment by segment; "{x}" takes one non-empty
 * segment into rq->params in order.  No path match: 404; a path match
 * with another method: 405 with the methods allowed.  HEAD is GET.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "handlers.h"

struct route {
    const char *method;
    const char *pattern;
    api_handler *handler;
    int body;          /* 1: takes a JSON body (up to the configured limit) */
};

static const struct route routes[] = {
    {"POST", "/v1/jobs", api_jobs_create, 1},
    {"GET", "/v1/jobs", api_jobs_list, 0},
    {"POST", "/v1/jobs:batch", api_jobs_batch, 1},
    {"GET", "/v1/jobs/{id}", api_jobs_get, 0},
    {"DELETE", "/v1/jobs/{id}", api_jobs_delete, 0},
    {"POST", "/v1/jobs/{id}/cancel", api_jobs_cancel, 0},
    {"GET", "/v1/jobs/{id}/events", api_jobs_events, 0},
    {"GET", "/v1/jobs/{id}/artifact", api_artifact_get, 0},
    {"GET", "/v1/jobs/{id}/artifact/files/{name}", api_artifact_file, 0},
    {"GET", "/healthz", api_healthz, 0},
    {"GET", "/readyz", api_readyz, 0},
    {"GET", "/metrics", api_metrics, 0},
    {"GET", "/openapi.yaml", api_openapi, 0},
    {"GET", "/", api_web, 0},
    {"GET", "/ui/{name}", api_web, 0},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

void api_resp_init(struct api_resp *rs)
{
    memset(rs, 0, sizeof(*rs));
    rs->file_fd = -1;
    rs->route = "";
}

void api_resp_clear(struct api_resp *rs)
{
    cJSON_Delete(rs->body);
    free(rs->raw);
    if (rs->file_fd >= 0)
        close(rs->file_fd);
    api_resp_init(rs);
}

const char *api_query(const struct api_req *rq, const char *key)
{
    for (size_t i = 0; i < rq->nquery; i++)
        if (!strcmp(rq->query[i].key, key))
            return rq->query[i].value ? rq->query[i].value : "";
    return NULL;
}

int api_status_of(int code)
{
    switch (code) {
    case GQ_OK: return 200;
    case GQ_EINVAL: return 400;
    case GQ_ENOTFOUND: return 404;
    case GQ_ECONFLICT: return 409;
    case GQ_EBUSY: return 503;
    default: return 500;
    }
}

static const char *code_word(int status)
{
    switch (status) {
    case 400: return "invalid_request";
    case 401: return "unauthorized";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "body_too_large";
    case 415: return "unsupported_media_type";
    case 416: return "range_not_satisfiable";
    case 422: return "unprocessable";
    case 503: return "unavailable";
    default: return "internal";
    }
}

int api_error(struct api_resp *rs, int status, const char *code, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    cJSON *root, *err;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON_Delete(rs->body);
    rs->body = NULL;
    rs->status = status;
    if (!(root = cJSON_CreateObject()) || !(err = cJSON_AddObjectToObject(root, "error")) ||
        !cJSON_AddStringToObject(err, "code", code ? code : code_word(status)) ||
        !cJSON_AddStringToObject(err, "message", msg) ||
        (field && *field && !cJSON_AddStringToObject(err, "field", field))) {
        cJSON_Delete(root);
        return status;
    }
    rs->body = root;
    return status;
}

int api_error_from(struct api_resp *rs, const gq_err *e, const char *field)
{
    int status = api_status_of(e->code);
    /* internal failures do not leak file paths or SQL: a generic line, the detail goes to the log */
    return api_error(rs, status, status == 500 ? "internal" : code_word(status), field, "%s",
                     status == 500 ? "internal error (see the server log)" : e->msg);
}

/* Match path against pattern, capturing {x} segments (pointers into buf). */
static int match(const char *pattern, const char *path, char *buf, size_t cap, const char **params)
{
    const char *p = pattern, *s = path;
    size_t used = 0;
    int np = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (n == 0 || used + n + 1 > cap || np == API_MAX_PARAMS)
                return 0;
            memcpy(buf + used, s, n);
            buf[used + n] = '\0';
            params[np++] = buf + used;
            used += n + 1;
            s += n;
            p = strchr(p, '}') + 1;
        } else if (*p == *s) {
            p++, s++;
        } else {
            return 0;
        }
    }
    return *p == '\0' && *s == '\0';
}

static const struct route *find(const char *method, const char *path, char *buf, size_t cap, const char **params,
                                int *path_matched, char *allow, size_t allow_cap)
{
    const char *m = !strcmp(method, "HEAD") ? "GET" : method;
    const struct route *hit = NULL;
    *path_matched = 0;
    if (allow)
        allow[0] = '\0';
    for (size_t i = 0; i < NROUTES; i++) {
        const char *tmp[API_MAX_PARAMS] = {0};
        if (!match(routes[i].pattern, path, buf, cap, tmp))
            continue;
        *path_matched = 1;
        if (allow && strlen(allow) + 10 < allow_cap)
            snprintf(allow + strlen(allow), allow_cap - strlen(allow), "%s%s", allow[0] ? ", " : "",
                     routes[i].method);
        if (!hit && !strcmp(routes[i].method, m)) {
            hit = &routes[i];
            memcpy(params, tmp, sizeof(tmp));
        }
    }
    return hit;
}

size_t api_route_max_body(const char *method, const char *path, const struct api_ctx *ctx)
{
    char buf[1024];
    const char *params[API_MAX_PARAMS];
    int matched;
    const struct route *r = find(method, path, buf, sizeof(buf), params, &matched, NULL, 0);
    return r && r->body ? api_ctx_max_body(ctx) : 0;
}

int api_route_needs_auth(const char *path)
{
    return !strncmp(path, "/v1/", 4) || !strcmp(path, "/v1");
}

int api_dispatch(const struct api_req *rq, struct api_resp *rs)
{
    char buf[2048], allow[64];
    struct api_req r = *rq;
    int matched;
    const struct route *rt;

    memset(r.params, 0, sizeof(r.params));
    rt = find(rq->method, rq->path, buf, sizeof(buf), r.params, &matched, allow, sizeof(allow));
    if (!rt) {
        if (!matched)
            return api_error(rs, 404, "not_found", NULL, "no route for %s", rq->path[0] ? "this path" : "/");
        snprintf(rs->extra_header[0][0], sizeof(rs->extra_header[0][0]), "Allow");
        snprintf(rs->extra_header[0][1], sizeof(rs->extra_header[0][1]), "%s", allow);
        return api_error(rs, 405, "method_not_allowed", NULL, "%s is not allowed here (allowed: %s)", rq->method,
                         allow);
    }
    rs->route = rt->pattern;
    if (rq->query_overflow)
        return api_error(rs, 400, "invalid_request", NULL, "too many query arguments (at most %d)", API_MAX_QUERY);
    rs->status = rt->handler(&r, rs);
    return rs->status;
}

/* ---- the job as the API shows it ---- */

cJSON *api_time_json(int64_t ms)
{
    char buf[80];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0)
        return cJSON_CreateNull();
    gmtime_r(&t, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return cJSON_CreateString(buf);
}

static cJSON *str_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* calibration/eval with their data counted, not echoed */
static cJSON *summarise(const cJSON *src)
{
    cJSON *o, *m;
    if (!src || cJSON_IsNull(src))
        return cJSON_CreateNull();
    if (!(o = cJSON_CreateObject()))
        return NULL;
    cJSON_ArrayForEach(m, src)
    {
        if (!strcmp(m->string, "texts")) {
            cJSON_AddStringToObject(o, "source", "texts");
            cJSON_AddNumberToObject(o, "texts", cJSON_GetArraySize(m));
        } else if (!strcmp(m->string, "token_ids")) {
            double n = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, m) n += cJSON_IsArray(x) ? cJSON_GetArraySize(x) : 1;
            cJSON_AddStringToObject(o, "source", "token_ids");
            cJSON_AddNumberToObject(o, "token_ids", n);
        } else if (!strcmp(m->string, "builtin")) {
            cJSON_AddStringToObject(o, "source", "builtin");
            cJSON_AddItemToObject(o, "builtin", cJSON_Duplicate(m, 1));
        } else {
            cJSON_AddItemToObject(o, m->string, cJSON_Duplicate(m, 1));
        }
    }
    return o;
}

cJSON *api_job_json(const struct job *j)
{
    cJSON *o = cJSON_CreateObject(), *spec = cJSON_Parse(j->spec), *p, *links, *err, *labels;
    char buf[128];
    if (!o)
        goto fail;
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "status", job_status_name(j->status));
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddStringToObject(o, "revision", j->revision);
    cJSON_AddItemToObject(o, "source_revision", str_or_null(j->source_revision));
    cJSON_AddNumberToObject(o, "priority", j->priority);
    labels = j->labels ? cJSON_Parse(j->labels) : NULL;
    cJSON_AddItemToObject(o, "labels", labels ? labels : cJSON_CreateObject());
    cJSON_AddItemToObject(o, "callback_url", str_or_null(j->callback_url));
    cJSON_AddItemToObject(o, "quantization", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(spec, "quantization"), 1));
    cJSON_AddItemToObject(o, "calibration", summarise(cJSON_GetObjectItemCaseSensitive(spec, "calibration")));
    cJSON_AddItemToObject(o, "eval", summarise(cJSON_GetObjectItemCaseSensitive(spec, "eval")));
    cJSON_AddItemToObject(o, "output", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(spec, "output"), 1));
    p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddItemToObject(p, "stage", str_or_null(j->stage && !job_status_terminal(j->status) ? j->stage
                                                                                      : job_status_name(j->status)));
    cJSON_AddItemToObject(p, "layer", j->layer >= 0 ? cJSON_CreateNumber(j->layer) : cJSON_CreateNull());
    cJSON_AddItemToObject(p, "layers_total", j->layers_total > 0 ? cJSON_CreateNumber(j->layers_total)
                                                                 : cJSON_CreateNull());
    cJSON_AddNumberToObject(p, "fraction", j->fraction);
    cJSON_AddItemToObject(p, "eta_seconds", j->eta_seconds >= 0 ? cJSON_CreateNumber(j->eta_seconds)
                                                                : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "created_at", api_time_json(j->created_ms));
    cJSON_AddItemToObject(o, "started_at", api_time_json(j->started_ms));
    cJSON_AddItemToObject(o, "finished_at", api_time_json(j->finished_ms));
    cJSON_AddItemToObject(o, "updated_at", api_time_json(j->updated_ms));
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    cJSON_AddBoolToObject(o, "cancel_requested", j->cancel_requested);
    if (j->error_code) {
        err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "code", j->error_code);
        cJSON_AddStringToObject(err, "message", j->error_message ? j->error_message : "");
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    links = cJSON_AddObjectToObject(o, "links");
    snprintf(buf, sizeof(buf), "/v1/jobs/%s", j->id);
    cJSON_AddStringToObject(links, "self", buf);
    snprintf(buf, sizeof(buf), "/v1/jobs/%s/events", j->id);
    cJSON_AddStringToObject(links, "events", buf);
    snprintf(buf, sizeof(buf), "/v1/jobs/%s/artifact", j->id);
    cJSON_AddStringToObject(links, "artifact", buf);
    cJSON_Delete(spec);
    return o;
fail:
    cJSON_Delete(o);
    cJSON_Delete(spec);
    return NULL;
}
