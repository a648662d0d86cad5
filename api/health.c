/*
 * health.c - the operational routes: /healthz (the process answers),
 * /readyz (the database takes a write and every worker runs), /metrics
 * (Prometheus text), /openapi.yaml and the dashboard's static files, all
 * served from what is compiled into the binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "options.h"
#include "embed.h"
#include "handlers.h"
#include "metrics.h"
#include "pipeline.h"
#include "pool.h"

int api_healthz(const struct api_req *rq, struct api_resp *rs)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", GPTQD_VERSION);
    cJSON_AddNumberToObject(o, "uptime_seconds", (double)(store_now_ms() - rq->ctx->started_ms) / 1000.0);
    rs->body = o;
    return o ? 200 : 500;
}

int api_readyz(const struct api_req *rq, struct api_resp *rs)
{
    gq_err e = GQ_ERR_INIT;
    store *s = rq->ctx->thread_store(rq->ctx->payload, &e);
    int db_ok = s && store_ping(s, &e) == 0;
    int workers = pool_alive(rq->ctx->pool), want = rq->ctx->cfg->workers;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", db_ok && workers == want ? "ready" : "not_ready");
    cJSON_AddBoolToObject(o, "database", db_ok);
    cJSON_AddNumberToObject(o, "workers", workers);
    cJSON_AddNumberToObject(o, "workers_configured", want);
    cJSON_AddNumberToObject(o, "jobs_running", pool_running(rq->ctx->pool));
    rs->body = o;
    return db_ok && workers == want ? 200 : 503;
}

int api_metrics(const struct api_req *rq, struct api_resp *rs)
{
    gq_err e = GQ_ERR_INIT;
    int64_t counts[JOB_NSTATUS] = {0};
    store *s = rq->ctx->thread_store(rq->ctx->payload, &e);
    size_t len = 0;
    if (!s || store_counts(counts, s, &e) < 0)
        return api_error(rs, 503, "unavailable", NULL, "the database is not available");
    rs->raw = metrics_render(rq->ctx->metrics, counts, (double)(store_now_ms() - rq->ctx->started_ms) / 1000.0, &len);
    if (!rs->raw)
        return api_error(rs, 500, "internal", NULL, "out of memory");
    rs->raw_len = len;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 200;
}

static const struct embedded_file *embedded(const char *name)
{
    for (size_t i = 0; i < embedded_web_count; i++)
        if (!strcmp(embedded_web[i].name, name))
            return &embedded_web[i];
    return NULL;
}

static const char *mime(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".yaml")) return "application/yaml";
    if (!strcmp(dot, ".json")) return "application/json";
    if (!strcmp(dot, ".png")) return "image/png";
    return "application/octet-stream";
}

static int serve(struct api_resp *rs, const char *name)
{
    const struct embedded_file *f = embedded(name);
    char q[64];
    if (!f)
        return api_error(rs, 404, "not_found", NULL, "no file %s", gq_err_quote(q, sizeof(q), name));
    rs->static_data = f->data;
    rs->static_len = f->len;
    rs->content_type = mime(name);
    return 200;
}

int api_openapi(const struct api_req *rq, struct api_resp *rs)
{
    (void)rq;
    return serve(rs, "openapi.yaml");
}

int api_web(const struct api_req *rq, struct api_resp *rs)
{
    /* "/" is the dashboard; /ui/NAME its other files (never openapi.yaml's twin path games: names only) */
    if (!rq->params[0])
        return serve(rs, "index.html");
    if (!strcmp(rq->params[0], "openapi.yaml"))
        return api_error(rs, 404, "not_found", NULL, "no file openapi.yaml under /ui/ (see /openapi.yaml)");
    return serve(rs, rq->params[0]);
}
