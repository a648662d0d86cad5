/*
 * http.h - the libmicrohttpd glue: one daemon with an internal polling
 * thread pool, each request read into a per-request struct (bodies capped
 * per route: 413), bearer-token auth for /v1 (401 with WWW-Authenticate),
 * CORS, then api_dispatch and one function that sends every response.
 * Every HTTP thread has its own store connection (api_ctx.thread_store).
 */
#ifndef GQ_HTTP_H
#define GQ_HTTP_H

#include "api.h"
#include "err.h"

struct daemon_config;

typedef struct http_server http_server;

/* Listen on cfg->listen_addr:cfg->port; *port gets the bound port (for port 0). ctx must outlive the server. */
int http_start(http_server **out, const struct daemon_config *cfg, struct api_ctx *ctx, int *port, gq_err *e);
/* Stop accepting and close every connection, then free. NULL-safe. */
void http_stop(http_server *h);

/* The thread_store function http_start puts into ctx (exposed for tests that dispatch without sockets). */
store *http_thread_store(void *payload, gq_err *e);

#endif
