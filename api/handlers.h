/*
 * handlers.h - the route handlers (api/jobs.c, api/health.c), each a plain
 * function over a request and a response: the return value is the HTTP
 * status, the body goes in rs.  Internal to api/.
 */
#ifndef GQ_HANDLERS_H
#define GQ_HANDLERS_H

#include <stddef.h>

#include "api.h"

typedef int api_handler(const struct api_req *rq, struct api_resp *rs);

api_handler api_jobs_create, api_jobs_batch, api_jobs_list, api_jobs_get, api_jobs_delete, api_jobs_cancel,
    api_jobs_events, api_artifact_get, api_artifact_file;
api_handler api_healthz, api_readyz, api_metrics, api_openapi, api_web;

/* The configured body limit of submissions. */
size_t api_ctx_max_body(const struct api_ctx *ctx);

#endif
