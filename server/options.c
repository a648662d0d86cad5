/*
 * options.c - gptqd's options: one table, each entry a flag, its GPTQD_
 * environment twin, a type with limits and a default.  Defaults first, then
 * the environment, then the flags; each value is checked where it is read,
 * and a bad one is an error naming where it came from.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "mem.h"
#include "pipeline.h"

enum opt_type { OPT_STR, OPT_INT, OPT_LONG, OPT_BYTES, OPT_BOOL, OPT_TOKEN };

struct opt {
    const char *flag;       /* "--workers" */
    const char *env;        /* "GPTQD_WORKERS" */
    enum opt_type type;
    long long min, max;
    const char *def;        /* default as text, NULL = none */
    size_t off;             /* offset in struct daemon_config */
    size_t cap;             /* OPT_STR: buffer size */
};

#define F(x) offsetof(struct daemon_config, x)
#define S(x) F(x), sizeof(((struct daemon_config *)0)->x)

static const struct opt opts[] = {
    {"--listen", "GPTQD_LISTEN", OPT_STR, 0, 0, "127.0.0.1:8080", S(listen)},
    {"--db", "GPTQD_DB", OPT_STR, 0, 0, "./var/gptqd.db", S(db_path)},
    {"--data-dir", "GPTQD_DATA_DIR", OPT_STR, 0, 0, "./var", S(data_dir)},
    {"--local-models", "GPTQD_LOCAL_MODELS", OPT_STR, 0, 0, "", S(local_models)},
    {"--calib-dir", "GPTQD_CALIB_DIR", OPT_STR, 0, 0, "", S(calib_dir)},
    {"--workers", "GPTQD_WORKERS", OPT_INT, 1, 64, "1", F(workers), 0},
    {"--memory-budget", "GPTQD_MEMORY_BUDGET", OPT_BYTES, 0, LLONG_MAX, "0", F(memory_budget), 0},
    {"--max-body", "GPTQD_MAX_BODY", OPT_BYTES, 1024, 1LL << 31, "67108864", F(max_body), 0},
    {"--max-attempts", "GPTQD_MAX_ATTEMPTS", OPT_INT, 1, 100, "3", F(max_attempts), 0},
    {"--http-threads", "GPTQD_HTTP_THREADS", OPT_INT, 1, 64, "4", F(http_threads), 0},
    {"--connection-timeout", "GPTQD_CONNECTION_TIMEOUT", OPT_INT, 1, 3600, "30", F(connection_timeout_s), 0},
    {"--max-connections", "GPTQD_MAX_CONNECTIONS", OPT_INT, 1, 100000, "1024", F(max_connections), 0},
    {"--token", "GPTQD_TOKENS", OPT_TOKEN, 0, 0, NULL, 0, 0},
    {"--cors-origin", "GPTQD_CORS_ORIGIN", OPT_STR, 0, 0, "", S(cors_origin)},
    {"--webhook-secret", "GPTQD_WEBHOOK_SECRET", OPT_STR, 0, 0, "", S(webhook_secret)},
    {"--webhook-attempts", "GPTQD_WEBHOOK_ATTEMPTS", OPT_INT, 1, 100, "8", F(webhook_attempts), 0},
    {"--webhook-backoff-ms", "GPTQD_WEBHOOK_BACKOFF_MS", OPT_LONG, 1, 3600000, "1000", F(webhook_backoff_ms), 0},
    {"--webhook-private", "GPTQD_WEBHOOK_PRIVATE", OPT_BOOL, 0, 1, "0", F(webhook_private), 0},
    {"--hub-offline", "GPTQD_HUB_OFFLINE", OPT_BOOL, 0, 1, "0", F(hub_offline), 0},
    {"--hub-connect-timeout-ms", "GPTQD_HUB_CONNECT_TIMEOUT_MS", OPT_LONG, 1, 600000, "10000",
     F(hub_connect_timeout_ms), 0},
    {"--hub-stall-timeout-ms", "GPTQD_HUB_STALL_TIMEOUT_MS", OPT_LONG, 1, 3600000, "10000",
     F(hub_stall_timeout_ms), 0},
    {"--hub-retries", "GPTQD_HUB_RETRIES", OPT_INT, 0, 20, "5", F(hub_retries), 0},
    {"--log-level", "GPTQD_LOG_LEVEL", OPT_STR, 0, 0, "info", S(log_level)},
    {"--port-file", "GPTQD_PORT_FILE", OPT_STR, 0, 0, "", S(port_file)},
};

const char options_usage[] =
    "usage: gptqd [options]\n"
    "\n"
    "The gptqd daemon: a REST API (see GET /openapi.yaml) that queues GPTQ\n"
    "quantization jobs, runs them on a pool of workers and keeps their state\n"
    "in SQLite.  Every option has an environment twin (the flag wins).\n"
    "\n"
    "  --listen ADDR:PORT         GPTQD_LISTEN (127.0.0.1:8080; port 0 = any free port)\n"
    "  --db PATH                  GPTQD_DB (./var/gptqd.db), created and migrated on start\n"
    "  --data-dir DIR             GPTQD_DATA_DIR (./var): artifacts/, work/ and the Hub\n"
    "                             cache hub/ (unless HF_HUB_CACHE is set)\n"
    "  --local-models DIR         GPTQD_LOCAL_MODELS: a job's model may be local:NAME for\n"
    "                             the model directory DIR/NAME (names never leave DIR)\n"
    "  --calib-dir DIR            GPTQD_CALIB_DIR: calibration {\"builtin\": NAME} reads\n"
    "                             DIR/NAME.jsonl or DIR/NAME.txt\n"
    "  --workers N                GPTQD_WORKERS (1): jobs run at once, at most\n"
    "  --memory-budget BYTES      GPTQD_MEMORY_BUDGET (0 = no limit; K/M/G/T suffixes):\n"
    "                             jobs whose estimated peak exceeds it are refused (422);\n"
    "                             running jobs' estimates together stay within it\n"
    "  --max-body BYTES           GPTQD_MAX_BODY (64M): larger request bodies get 413\n"
    "  --max-attempts N           GPTQD_MAX_ATTEMPTS (3): runs of a job a crash may\n"
    "                             interrupt before it is failed\n"
    "  --token T                  GPTQD_TOKENS (comma-separated): bearer tokens; when any\n"
    "                             is set every /v1 route requires one (repeatable)\n"
    "  --cors-origin ORIGIN       GPTQD_CORS_ORIGIN: answer CORS for ORIGIN (or *)\n"
    "  --webhook-secret S         GPTQD_WEBHOOK_SECRET: sign webhooks (HMAC-SHA256)\n"
    "  --webhook-attempts N       GPTQD_WEBHOOK_ATTEMPTS (8)\n"
    "  --webhook-backoff-ms MS    GPTQD_WEBHOOK_BACKOFF_MS (1000), doubling up to 10 min\n"
    "  --webhook-private          GPTQD_WEBHOOK_PRIVATE: let callback_url reach loopback,\n"
    "                             private and link-local addresses (refused by default)\n"
    "  --http-threads N           GPTQD_HTTP_THREADS (4)\n"
    "  --connection-timeout S     GPTQD_CONNECTION_TIMEOUT (30): idle connections closed\n"
    "  --max-connections N        GPTQD_MAX_CONNECTIONS (1024)\n"
    "  --hub-offline              GPTQD_HUB_OFFLINE (or HF_HUB_OFFLINE): the cache only\n"
    "  --hub-connect-timeout-ms   GPTQD_HUB_CONNECT_TIMEOUT_MS (10000)\n"
    "  --hub-stall-timeout-ms     GPTQD_HUB_STALL_TIMEOUT_MS (10000): a download with no\n"
    "                             byte for this long is retried\n"
    "  --hub-retries N            GPTQD_HUB_RETRIES (5)\n"
    "  --log-level L              GPTQD_LOG_LEVEL (info): debug, info, warn, error;\n"
    "                             logs are one JSON object per line on stderr\n"
    "  --port-file PATH           GPTQD_PORT_FILE: write the bound port there\n"
    "  -h, --help                 this text\n"
    "  --version                  the version\n"
    "\n"
    "The Hub: HF_ENDPOINT, HF_TOKEN (or the token file), HF_HUB_CACHE, HF_HOME as\n"
    "huggingface_hub reads them.  SIGTERM/SIGINT: stop accepting, stop running jobs\n"
    "at a block boundary and re-queue them, close the database.  OpenBLAS: generic\n"
    "kernels on an unknown CPU make gptqd re-execute once with OPENBLAS_CORETYPE set\n"
    "(a set one is kept; GQ_BLAS_KEEP=1 turns this off).\n";

static int parse_bytes(long long *out, const char *s)
{
    char *end;
    long double v;
    long double mult = 1;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    v = strtold(s, &end);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0L; end++; break;
    case 'm': case 'M': mult = 1024.0L * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0L * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0L * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if ((*end == 'i' || *end == 'B') && mult > 1)
        end += *end == 'i' && end[1] == 'B' ? 2 : 1;
    if (*end || v * mult > (long double)LLONG_MAX)
        return -1;
    *out = (long long)(v * mult);
    return 0;
}

static int add_token(struct daemon_config *c, const char *t, size_t n, const char *where, gq_err *e)
{
    if (n == 0)
        return 0;
    if (c->ntokens == CONFIG_MAX_TOKENS)
        return GQ_FAIL(e, GQ_EINVAL, "%s: at most %d tokens", where, CONFIG_MAX_TOKENS);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 127)
            return GQ_FAIL(e, GQ_EINVAL, "%s: a token holds a space or a control byte", where);
    if (!(c->tokens[c->ntokens] = gq_malloc(n + 1)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    memcpy(c->tokens[c->ntokens], t, n);
    c->tokens[c->ntokens++][n] = '\0';
    return 0;
}

/* Set one option from text; where names the source ("--workers" or "GPTQD_WORKERS"). */
static int set_opt(struct daemon_config *c, const struct opt *o, const char *val, const char *where, gq_err *e)
{
    char *base = (char *)c;
    char q[96];
    long long v = 0;
    char *end;

    switch (o->type) {
    case OPT_STR:
        if (strlen(val) >= o->cap)
            return GQ_FAIL(e, GQ_EINVAL, "%s is too long (%zu bytes, at most %zu)", where, strlen(val), o->cap - 1);
        memcpy(base + o->off, val, strlen(val) + 1);
        return 0;
    case OPT_TOKEN: {
        /* the environment's list is comma-separated; a flag adds one token */
        if (!strcmp(where, o->env)) {
            const char *p = val;
            while (*p) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t)(comma - p) : strlen(p);
                int rc = add_token(c, p, n, where, e);
                if (rc < 0)
                    return rc;
                p += n + (comma != NULL);
            }
            return 0;
        }
        if (!*val)
            return GQ_FAIL(e, GQ_EINVAL, "%s: an empty token", where);
        return add_token(c, val, strlen(val), where, e);
    }
    case OPT_BOOL:
        if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on"))
            v = 1;
        else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off") || !*val)
            v = 0;
        else
            return GQ_FAIL(e, GQ_EINVAL, "%s must be 1 or 0 (got '%s')", where, gq_err_quote(q, sizeof(q), val));
        *(int *)(base + o->off) = (int)v;
        return 0;
    case OPT_BYTES:
        if (parse_bytes(&v, val) < 0 || v < o->min || v > o->max)
            return GQ_FAIL(e, GQ_EINVAL, "%s must be a byte count from %lld (K/M/G/T suffixes; got '%s')", where,
                           o->min, gq_err_quote(q, sizeof(q), val));
        if (o->off == F(max_body))
            c->max_body = (size_t)v;
        else
            *(int64_t *)(base + o->off) = v;
        return 0;
    case OPT_INT:
    case OPT_LONG:
        errno = 0;
        v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < o->min || v > o->max)
            return GQ_FAIL(e, GQ_EINVAL, "%s must be an integer in [%lld, %lld] (got '%s')", where, o->min, o->max,
                           gq_err_quote(q, sizeof(q), val));
        if (o->type == OPT_INT)
            *(int *)(base + o->off) = (int)v;
        else
            *(long *)(base + o->off) = (long)v;
        return 0;
    }
    return GQ_FAIL(e, GQ_EINVAL, "%s: unknown option type", where);
}

static int split_listen(struct daemon_config *c, gq_err *e)
{
    char q[140];
    const char *colon = strrchr(c->listen, ':');
    char *end;
    long port;
    size_t alen;
    if (!colon || colon == c->listen)
        return GQ_FAIL(e, GQ_EINVAL, "--listen must be ADDR:PORT (got '%s')", gq_err_quote(q, sizeof(q), c->listen));
    alen = (size_t)(colon - c->listen);
    if (c->listen[0] == '[' && alen >= 2 && c->listen[alen - 1] == ']')
        memmove(c->listen_addr, c->listen + 1, alen - 2), c->listen_addr[alen - 2] = '\0';
    else if (alen < sizeof(c->listen_addr))
        memcpy(c->listen_addr, c->listen, alen), c->listen_addr[alen] = '\0';
    else
        return GQ_FAIL(e, GQ_EINVAL, "--listen: the address is too long");
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
        return GQ_FAIL(e, GQ_EINVAL, "--listen: the port must be 0..65535 (got '%s')",
                       gq_err_quote(q, sizeof(q), colon + 1));
    c->port = (int)port;
    if (!strcmp(c->listen_addr, "localhost"))
        snprintf(c->listen_addr, sizeof(c->listen_addr), "127.0.0.1");
    return 0;
}

int options_parse(struct daemon_config *out, int argc, char **argv, gq_err *e)
{
    struct daemon_config *c = out;
    size_t nopts = sizeof(opts) / sizeof(opts[0]);
    const char *hf;
    int rc = 0;
    char q[96];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < nopts; i++)
        if (opts[i].def && (rc = set_opt(c, &opts[i], opts[i].def, opts[i].flag, e)) < 0)
            goto done;
    if ((hf = getenv("HF_HUB_OFFLINE")) && *hf && strcmp(hf, "0") != 0)
        c->hub_offline = 1;
    for (size_t i = 0; i < nopts; i++) {
        const char *v = getenv(opts[i].env);
        if (v && (rc = set_opt(c, &opts[i], v, opts[i].env, e)) < 0)
            goto done;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const struct opt *o = NULL;
        char flag[64];
        const char *eq = strchr(a, '=');
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(options_usage, stdout);
            rc = 1;
            goto done;
        }
        if (!strcmp(a, "--version")) {
            printf("gptqd %s\n", GPTQD_VERSION);
            rc = 1;
            goto done;
        }
        snprintf(flag, sizeof(flag), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        for (size_t k = 0; k < nopts; k++)
            if (!strcmp(flag, opts[k].flag))
                o = &opts[k];
        if (!o) {
            rc = GQ_FAIL(e, GQ_EINVAL, "unknown option '%s' (see --help)", gq_err_quote(q, sizeof(q), a));
            goto done;
        }
        if (eq)
            val = eq + 1;
        else if (o->type == OPT_BOOL)
            val = "1";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s needs a value", o->flag);
            goto done;
        }
        if ((rc = set_opt(c, o, val, o->flag, e)) < 0)
            goto done;
    }
    if ((rc = split_listen(c, e)) < 0)
        goto done;
    if (!c->db_path[0] || !c->data_dir[0]) {
        rc = GQ_FAIL(e, GQ_EINVAL, "--db and --data-dir must not be empty");
        goto done;
    }
    if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") && strcmp(c->log_level, "warn") &&
        strcmp(c->log_level, "error")) {
        rc = GQ_FAIL(e, GQ_EINVAL, "--log-level must be debug, info, warn or error (got '%s')",
                     gq_err_quote(q, sizeof(q), c->log_level));
        goto done;
    }
    if (strcmp(c->cors_origin, "") && strcmp(c->cors_origin, "*") && strncmp(c->cors_origin, "http://", 7) &&
        strncmp(c->cors_origin, "https://", 8)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "--cors-origin must be * or an http(s) origin (got '%s')",
                     gq_err_quote(q, sizeof(q), c->cors_origin));
        goto done;
    }
    snprintf(c->artifacts_dir, sizeof(c->artifacts_dir), "%s/artifacts", c->data_dir);
    snprintf(c->work_dir, sizeof(c->work_dir), "%s/work", c->data_dir);
    if ((hf = getenv("HF_HUB_CACHE")) && *hf)
        snprintf(c->hub_cache, sizeof(c->hub_cache), "%s", hf);
    else
        snprintf(c->hub_cache, sizeof(c->hub_cache), "%s/hub", c->data_dir);
done:
    if (rc != 0)
        options_free(c);
    return rc;
}

void options_free(struct daemon_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ntokens; i++)
        gq_free(c->tokens[i]);
    c->ntokens = 0;
}
