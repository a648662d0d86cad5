/*
 * jobs.c - the /v1/jobs handlers: submit (one or a batch, idempotent),
 * list with filters and a cursor, get, cancel, delete, events, the
 * artifact's metadata and its files (with Range).
 *
 * Handlers run on HTTP threads and never wait for a job: a submission is
 * a queued row plus pool_notify.  Each uses the calling thread's own store
 * connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "options.h"
#include "handlers.h"
#include "jobspec.h"
#include "mem.h"
#include "model.h"
#include "pool.h"
#include "runner.h"

#define MAX_BATCH 100

size_t api_ctx_max_body(const struct api_ctx *ctx)
{
    return ctx->cfg->max_body;
}

static store *db(const struct api_req *rq, struct api_resp *rs)
{
    gq_err e = GQ_ERR_INIT;
    store *s = rq->ctx->thread_store(rq->ctx->payload, &e);
    if (!s)
        api_error(rs, 503, "unavailable", NULL, "the database is not available");
    return s;
}

static int json_body(cJSON **out, const struct api_req *rq, struct api_resp *rs)
{
    const char *ct = rq->content_type;
    const char *end = NULL;
    *out = NULL;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';' && ct[16] != ' '))
        return api_error(rs, 415, "unsupported_media_type", NULL, "the body must be application/json (got %s)",
                         ct ? ct : "no Content-Type");
    if (!rq->body || rq->body_len == 0)
        return api_error(rs, 400, "invalid_request", NULL, "the body is empty");
    *out = cJSON_ParseWithLengthOpts(rq->body, rq->body_len, &end, 0);
    if (!*out) {
        size_t at = end && end >= rq->body ? (size_t)(end - rq->body) : 0;
        return api_error(rs, 400, "invalid_json", NULL, "malformed JSON at byte %zu", at);
    }
    /* trailing bytes after the value */
    while (end && (size_t)(end - rq->body) < rq->body_len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end && (size_t)(end - rq->body) < rq->body_len) {
        cJSON_Delete(*out);
        *out = NULL;
        return api_error(rs, 400, "invalid_json", NULL, "malformed JSON: trailing bytes at byte %zu",
                         (size_t)(end - rq->body));
    }
    return 0;
}

/* The model's dimensions when they can be known without the network (a local model, or a cached snapshot). */
static void model_dims(int *hidden, int *inter, int *vocab, const cJSON *spec, const struct daemon_config *cfg)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(spec, "model")->valuestring;
    const char *rev = cJSON_GetObjectItemCaseSensitive(spec, "revision")->valuestring;
    char path[8800], sha[64] = "";
    struct model_config mc;
    gq_err e = GQ_ERR_INIT;
    *hidden = *inter = *vocab = 0;
    if (!strncmp(name, "local:", 6)) {
        snprintf(path, sizeof(path), "%s/%s/config.json", cfg->local_models, name + 6);
    } else {
        char dir[4400];
        size_t n = (size_t)snprintf(dir, sizeof(dir), "%s/models--", cfg->hub_cache);
        FILE *f;
        for (const char *p = name; *p && n + 3 < sizeof(dir); p++) {
            if (*p == '/')
                dir[n++] = '-', dir[n++] = '-';
            else
                dir[n++] = *p;
        }
        dir[n] = '\0';
        snprintf(path, sizeof(path), "%s/refs/%s", dir, rev);
        if ((f = fopen(path, "r"))) {
            if (!fgets(sha, sizeof(sha), f))
                sha[0] = '\0';
            fclose(f);
            sha[strcspn(sha, "\r\n")] = '\0';
        } else {
            snprintf(sha, sizeof(sha), "%.40s", rev);
        }
        snprintf(path, sizeof(path), "%s/snapshots/%s/config.json", dir, sha);
    }
    if (model_config_load(&mc, path, &e) == 0)
        *hidden = mc.hidden_size, *inter = mc.intermediate_size, *vocab = mc.vocab_size;
}

/*
 * Validate one submission into j (fields allocated; job_free), with the
 * field prefix for batches.  Returns 0 or the status already put in rs.
 */
static int prepare(struct job *j, const cJSON *body, const struct api_req *rq, struct api_resp *rs,
                   const char *prefix, const char *idem)
{
    const struct daemon_config *cfg = rq->ctx->cfg;
    cJSON *spec = NULL;
    char field[128], full[160];
    gq_err e = GQ_ERR_INIT;
    char *text = NULL, *labels = NULL;
    int hidden, inter, vocab, st = 0;
    const cJSON *cb;

    memset(j, 0, sizeof(*j));
    if (jobspec_parse(&spec, body, cfg, field, sizeof(field), &e) < 0) {
        snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix && *field ? "." : "", field);
        if (e.code == GQ_EINVAL) {
            const char *msg = e.msg;
            return api_error(rs, 400, "invalid_field", full, "%s%s%s", prefix, *prefix ? "." : "", msg);
        }
        return api_error_from(rs, &e, NULL);
    }
    model_dims(&hidden, &inter, &vocab, spec, cfg);
    j->mem_estimate = jobspec_estimate_memory(spec, hidden, inter, vocab);
    if (cfg->memory_budget > 0 && j->mem_estimate > cfg->memory_budget) {
        st = api_error(rs, 422, "over_memory_budget", *prefix ? prefix : "calibration",
                       "%s%sthe job needs an estimated %lld bytes at its peak, more than this server's memory "
                       "budget of %lld bytes (fewer calibration samples or a shorter seq_len would help)",
                       prefix, *prefix ? ": " : "", (long long)j->mem_estimate, (long long)cfg->memory_budget);
        goto done;
    }
    if (!(text = cJSON_PrintUnformatted(spec)) ||
        !(labels = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(spec, "labels")))) {
        st = api_error(rs, 500, "internal", NULL, "out of memory");
        goto done;
    }
    j->model = strdup(cJSON_GetObjectItemCaseSensitive(spec, "model")->valuestring);
    j->revision = strdup(cJSON_GetObjectItemCaseSensitive(spec, "revision")->valuestring);
    j->spec = strdup(text);
    j->labels = strdup(labels);
    j->priority = (int)cJSON_GetObjectItemCaseSensitive(spec, "priority")->valuedouble;
    cb = cJSON_GetObjectItemCaseSensitive(spec, "callback_url");
    if (cJSON_IsString(cb))
        j->callback_url = strdup(cb->valuestring);
    if (idem) {
        j->idempotency_key = strdup(idem);
        jobspec_hash(j->request_hash, text);
    }
    if (!j->model || !j->revision || !j->spec || !j->labels || (cJSON_IsString(cb) && !j->callback_url) ||
        (idem && !j->idempotency_key))
        st = api_error(rs, 500, "internal", NULL, "out of memory");
done:
    cJSON_free(text);
    cJSON_free(labels);
    cJSON_Delete(spec);
    return st;
}

static int check_idem(const struct api_req *rq, struct api_resp *rs)
{
    const char *k = rq->idempotency_key;
    if (!k)
        return 0;
    if (!*k || strlen(k) > 200)
        return api_error(rs, 400, "invalid_header", "Idempotency-Key", "Idempotency-Key must be 1-200 characters");
    for (const char *p = k; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return api_error(rs, 400, "invalid_header", "Idempotency-Key",
                             "Idempotency-Key must be printable ASCII without spaces");
    return 0;
}

int api_jobs_create(const struct api_req *rq, struct api_resp *rs)
{
    cJSON *body = NULL;
    struct job j;
    store *s;
    int existing = 0, st;
    gq_err e = GQ_ERR_INIT;

    memset(&j, 0, sizeof(j));
    if ((st = check_idem(rq, rs)) || (st = json_body(&body, rq, rs)))
        return st;
    if ((st = prepare(&j, body, rq, rs, "", rq->idempotency_key)))
        goto done;
    if (!(s = db(rq, rs))) {
        st = rs->status;
        goto done;
    }
    if (store_jobs_insert(s, &j, 1, &existing, &e) < 0) {
        st = e.code == GQ_ECONFLICT ? api_error(rs, 409, "idempotency_conflict", "Idempotency-Key", "%s", e.msg)
                                    : api_error_from(rs, &e, NULL);
        goto done;
    }
    if (!existing)
        pool_notify(rq->ctx->pool);
    rs->body = api_job_json(&j);
    snprintf(rs->location, sizeof(rs->location), "/v1/jobs/%s", j.id);
    if (existing) {
        snprintf(rs->extra_header[0][0], sizeof(rs->extra_header[0][0]), "Idempotent-Replayed");
        snprintf(rs->extra_header[0][1], sizeof(rs->extra_header[0][1]), "true");
    }
    st = rs->body ? (existing ? 200 : 201) : api_error(rs, 500, "internal", NULL, "out of memory");
done:
    job_clear(&j);
    cJSON_Delete(body);
    return st;
}

int api_jobs_batch(const struct api_req *rq, struct api_resp *rs)
{
    cJSON *body = NULL, *arr, *out = NULL, *list;
    const cJSON *item;
    struct job *jobs = NULL;
    int *existing = NULL;
    size_t n = 0, i = 0;
    store *s;
    int st;
    gq_err e = GQ_ERR_INIT;

    if ((st = check_idem(rq, rs)) || (st = json_body(&body, rq, rs)))
        return st;
    arr = cJSON_GetObjectItemCaseSensitive(body, "jobs");
    if (!cJSON_IsObject(body) || !cJSON_IsArray(arr)) {
        st = api_error(rs, 400, "invalid_field", "jobs", "the body must be {\"jobs\": [submission, ...]}");
        goto done;
    }
    if (cJSON_GetArraySize(body) != 1) {
        st = api_error(rs, 400, "invalid_field", NULL, "the batch body holds only \"jobs\"");
        goto done;
    }
    n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0 || n > MAX_BATCH) {
        st = api_error(rs, 400, "invalid_field", "jobs", "a batch holds 1 to %d jobs (got %zu)", MAX_BATCH, n);
        goto done;
    }
    if (!(jobs = gq_calloc(n, sizeof(*jobs))) || !(existing = gq_calloc(n, sizeof(int)))) {
        st = api_error(rs, 500, "internal", NULL, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(item, arr)
    {
        char prefix[32], key[256];
        snprintf(prefix, sizeof(prefix), "jobs[%zu]", i);
        if (rq->idempotency_key)
            snprintf(key, sizeof(key), "%s#%zu", rq->idempotency_key, i);
        if ((st = prepare(&jobs[i], item, rq, rs, prefix, rq->idempotency_key ? key : NULL)))
            goto done;
        i++;
    }
    if (!(s = db(rq, rs))) {
        st = rs->status;
        goto done;
    }
    if (store_jobs_insert(s, jobs, n, existing, &e) < 0) {
        st = e.code == GQ_ECONFLICT ? api_error(rs, 409, "idempotency_conflict", "Idempotency-Key", "%s", e.msg)
                                    : api_error_from(rs, &e, NULL);
        goto done;
    }
    pool_notify(rq->ctx->pool);
    if (!(out = cJSON_CreateObject()) || !(list = cJSON_AddArrayToObject(out, "jobs"))) {
        st = api_error(rs, 500, "internal", NULL, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++)
        cJSON_AddItemToArray(list, api_job_json(&jobs[k]));
    rs->body = out;
    out = NULL;
    st = existing[0] ? 200 : 201;
done:
    for (size_t k = 0; jobs && k < n; k++)
        job_clear(&jobs[k]);
    gq_free(jobs);
    gq_free(existing);
    cJSON_Delete(out);
    cJSON_Delete(body);
    return st;
}

static int parse_i64(int64_t *out, const char *s, int64_t min, int64_t max)
{
    char *end;
    long long v;
    if (!s || !*s || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Cursors are opaque to clients: "c" + the last seq in hex. */
static int parse_cursor(int64_t *out, const char *s)
{
    char *end;
    unsigned long long v;
    if (!s || s[0] != 'c' || !s[1] || strlen(s) > 17)
        return -1;
    errno = 0;
    v = strtoull(s + 1, &end, 16);
    if (errno || *end || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int api_jobs_list(const struct api_req *rq, struct api_resp *rs)
{
    struct job_filter f = {-1, NULL, NULL, NULL, 0, 50};
    const char *v;
    char label[512];
    struct job *jobs = NULL;
    size_t n = 0;
    int more = 0;
    int64_t lim;
    store *s;
    cJSON *out, *arr;
    gq_err e = GQ_ERR_INIT;
    static const char *const known[] = {"status", "label", "model", "limit", "after"};

    for (size_t i = 0; i < rq->nquery; i++) {
        int ok = 0;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            ok |= !strcmp(rq->query[i].key, known[k]);
        if (!ok)
            return api_error(rs, 400, "invalid_query", rq->query[i].key, "unknown query argument %.64s (known: status, "
                             "label, model, limit, after)", rq->query[i].key);
    }
    if ((v = api_query(rq, "status")) && (f.status = job_status_parse(v)) < 0)
        return api_error(rs, 400, "invalid_query", "status", "unknown status %.64s", v);
    f.model = api_query(rq, "model");
    if ((v = api_query(rq, "label"))) {
        char *eq;
        if (!*v || strlen(v) >= sizeof(label))
            return api_error(rs, 400, "invalid_query", "label", "label must be KEY or KEY=VALUE");
        snprintf(label, sizeof(label), "%s", v);
        f.label_key = label;
        if ((eq = strchr(label, '='))) {
            *eq = '\0';
            f.label_value = eq + 1;
        }
    }
    if ((v = api_query(rq, "limit"))) {
        if (parse_i64(&lim, v, 1, 1000) < 0)
            return api_error(rs, 400, "invalid_query", "limit", "limit must be an integer in [1, 1000]");
        f.limit = (size_t)lim;
    }
    if ((v = api_query(rq, "after")) && parse_cursor(&f.after_seq, v) < 0)
        return api_error(rs, 400, "invalid_query", "after", "after must be a cursor from an earlier page's \"next\"");
    if (!(s = db(rq, rs)))
        return rs->status;
    if (store_jobs_list(&jobs, &n, &more, s, &f, &e) < 0)
        return api_error_from(rs, &e, NULL);
    if (!(out = cJSON_CreateObject()) || !(arr = cJSON_AddArrayToObject(out, "jobs"))) {
        cJSON_Delete(out);
        job_array_free(jobs, n);
        return api_error(rs, 500, "internal", NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_job_json(&jobs[i]));
    if (more && n) {
        char c[24];
        snprintf(c, sizeof(c), "c%" PRIx64, (uint64_t)jobs[n - 1].seq);
        cJSON_AddStringToObject(out, "next", c);
    } else {
        cJSON_AddNullToObject(out, "next");
    }
    job_array_free(jobs, n);
    rs->body = out;
    return 200;
}

static int get_job(struct job **j, const struct api_req *rq, struct api_resp *rs, store **sp)
{
    gq_err e = GQ_ERR_INIT;
    store *s = db(rq, rs);
    *j = NULL;
    if (!s)
        return rs->status;
    if (sp)
        *sp = s;
    if (store_job_get(j, s, rq->params[0], &e) < 0) {
        char q[64];
        if (e.code == GQ_ENOTFOUND)
            return api_error(rs, 404, "not_found", NULL, "job %s does not exist", gq_err_quote(q, sizeof(q), rq->params[0]));
        return api_error_from(rs, &e, NULL);
    }
    return 0;
}

int api_jobs_get(const struct api_req *rq, struct api_resp *rs)
{
    struct job *j;
    int st = get_job(&j, rq, rs, NULL);
    if (st)
        return st;
    rs->body = api_job_json(j);
    job_free(j);
    return rs->body ? 200 : api_error(rs, 500, "internal", NULL, "out of memory");
}

int api_jobs_cancel(const struct api_req *rq, struct api_resp *rs)
{
    struct job *j = NULL;
    store *s;
    enum job_status now;
    gq_err e = GQ_ERR_INIT;
    int st = get_job(&j, rq, rs, &s);
    if (st)
        return st;
    job_free(j);
    j = NULL;
    if (store_job_cancel(s, rq->params[0], &now, &e) < 0)
        return e.code == GQ_ECONFLICT ? api_error(rs, 409, "job_finished", NULL, "%s", e.msg)
                                      : api_error_from(rs, &e, NULL);
    if (job_status_running(now))
        pool_cancel(rq->ctx->pool, rq->params[0]);
    if (store_job_get(&j, s, rq->params[0], &e) < 0)
        return api_error_from(rs, &e, NULL);
    rs->body = api_job_json(j);
    job_free(j);
    /* 202: a running job stops at its next block boundary */
    return job_status_running(now) ? 202 : 200;
}

int api_jobs_delete(const struct api_req *rq, struct api_resp *rs)
{
    struct job *j = NULL;
    struct artifact *a = NULL;
    store *s;
    gq_err e = GQ_ERR_INIT;
    int st = get_job(&j, rq, rs, &s);
    if (st)
        return st;
    if (!job_status_terminal(j->status)) {
        st = api_error(rs, 409, "job_not_finished", NULL, "job %s is %s: cancel it first, or wait until it ends",
                       j->id, job_status_name(j->status));
        job_free(j);
        return st;
    }
    job_free(j);
    if (store_artifact_get(&a, s, rq->params[0], &e) < 0 && e.code != GQ_ENOTFOUND)
        return api_error_from(rs, &e, NULL);
    if (store_job_delete(s, rq->params[0], &e) < 0) {
        artifact_free(a);
        return e.code == GQ_ECONFLICT ? api_error(rs, 409, "job_not_finished", NULL, "%s", e.msg)
                                      : api_error_from(rs, &e, NULL);
    }
    /* the row goes first: a crash here leaves a directory that startup removes, never a row without files */
    if (a && runner_rmtree(a->dir) < 0)
        fprintf(stderr, "gptqd: cannot remove %s: %s\n", a->dir, strerror(errno));
    artifact_free(a);
    return 204;
}

int api_jobs_events(const struct api_req *rq, struct api_resp *rs)
{
    struct job *j = NULL;
    struct job_event *ev = NULL;
    size_t n = 0;
    int more = 0, st;
    int64_t after = 0, lim = 100;
    store *s;
    cJSON *out, *arr;
    const char *v;
    gq_err e = GQ_ERR_INIT;

    for (size_t i = 0; i < rq->nquery; i++)
        if (strcmp(rq->query[i].key, "after") && strcmp(rq->query[i].key, "limit"))
            return api_error(rs, 400, "invalid_query", rq->query[i].key,
                             "unknown query argument %.64s (known: after, limit)", rq->query[i].key);
    if ((v = api_query(rq, "after")) && parse_i64(&after, v, 0, INT64_MAX) < 0)
        return api_error(rs, 400, "invalid_query", "after", "after must be an event seq (a non-negative integer)");
    if ((v = api_query(rq, "limit")) && parse_i64(&lim, v, 1, 1000) < 0)
        return api_error(rs, 400, "invalid_query", "limit", "limit must be an integer in [1, 1000]");
    if ((st = get_job(&j, rq, rs, &s)))
        return st;
    job_free(j);
    if (store_events_list(&ev, &n, &more, s, rq->params[0], after, (size_t)lim, &e) < 0)
        return api_error_from(rs, &e, NULL);
    out = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(out, "events");
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject(), *d = ev[i].data ? cJSON_Parse(ev[i].data) : NULL;
        cJSON_AddNumberToObject(o, "seq", (double)ev[i].seq);
        cJSON_AddItemToObject(o, "time", api_time_json(ev[i].ts_ms));
        cJSON_AddStringToObject(o, "kind", ev[i].kind);
        cJSON_AddStringToObject(o, "level", ev[i].level);
        cJSON_AddStringToObject(o, "message", ev[i].message ? ev[i].message : "");
        cJSON_AddItemToObject(o, "data", d ? d : cJSON_CreateNull());
        cJSON_AddItemToArray(arr, o);
    }
    if (n)
        cJSON_AddNumberToObject(out, "next", (double)ev[n - 1].seq);
    else
        cJSON_AddNumberToObject(out, "next", (double)after);
    cJSON_AddBoolToObject(out, "more", more);
    job_event_array_free(ev, n);
    if (!out || !arr) {
        cJSON_Delete(out);
        return api_error(rs, 500, "internal", NULL, "out of memory");
    }
    rs->body = out;
    return 200;
}

static int get_artifact(struct artifact **a, struct job **jo, const struct api_req *rq, struct api_resp *rs)
{
    struct job *j = NULL;
    store *s;
    gq_err e = GQ_ERR_INIT;
    int st = get_job(&j, rq, rs, &s);
    *a = NULL;
    if (st)
        return st;
    if (store_artifact_get(a, s, rq->params[0], &e) < 0) {
        st = e.code == GQ_ENOTFOUND ? api_error(rs, 404, "no_artifact", NULL, "job %s has no artifact (it is %s)",
                                                j->id, job_status_name(j->status))
                                    : api_error_from(rs, &e, NULL);
        job_free(j);
        return st;
    }
    if (jo)
        *jo = j;
    else
        job_free(j);
    return 0;
}

int api_artifact_get(const struct api_req *rq, struct api_resp *rs)
{
    struct artifact *a;
    struct job *j;
    cJSON *out, *files;
    char url[512];
    int st = get_artifact(&a, &j, rq, rs);
    if (st)
        return st;
    out = cJSON_Parse(a->metadata);
    if (!out)
        out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "job_id", j->id);
    cJSON_AddStringToObject(out, "status", job_status_name(j->status));
    cJSON_AddNumberToObject(out, "bytes", (double)a->bytes);
    files = cJSON_AddArrayToObject(out, "files");
    for (size_t i = 0; files && i < a->nfiles; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", a->files[i].name);
        cJSON_AddNumberToObject(f, "size", (double)a->files[i].size);
        cJSON_AddStringToObject(f, "sha256", a->files[i].sha256);
        snprintf(url, sizeof(url), "/v1/jobs/%s/artifact/files/%s", j->id, a->files[i].name);
        cJSON_AddStringToObject(f, "url", url);
        cJSON_AddItemToArray(files, f);
    }
    artifact_free(a);
    job_free(j);
    rs->body = out;
    return out ? 200 : api_error(rs, 500, "internal", NULL, "out of memory");
}

/* One "bytes=" range of a file of size n: 0 ok (*off, *len), -1 unsatisfiable, -2 ignore (not a single range). */
static int parse_range(uint64_t *off, uint64_t *len, const char *h, uint64_t n)
{
    unsigned long long a, b;
    char *end;
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return -2;
    h += 6;
    if (*h == '-') {
        /* the last b bytes */
        errno = 0;
        b = strtoull(h + 1, &end, 10);
        if (errno || *end || end == h + 1 || b == 0)
            return -1;
        if (b > n)
            b = n;
        *off = n - b, *len = b;
        return n ? 0 : -1;
    }
    errno = 0;
    a = strtoull(h, &end, 10);
    if (errno || end == h || *end != '-')
        return -2;
    h = end + 1;
    if (*h == '\0') {
        b = n ? n - 1 : 0;
    } else {
        b = strtoull(h, &end, 10);
        if (errno || *end)
            return -2;
        if (b < a)
            return -2;
        if (b >= n)
            b = n - 1;
    }
    if (a >= n)
        return -1;
    *off = a, *len = b - a + 1;
    return 0;
}

int api_artifact_file(const struct api_req *rq, struct api_resp *rs)
{
    struct artifact *a;
    const struct artifact_file *f = NULL;
    char path[4600], q[80];
    struct stat st_;
    int fd, st = get_artifact(&a, NULL, rq, rs);
    uint64_t off = 0, len;
    if (st)
        return st;
    /* only names the artifact lists: nothing else on disk is reachable */
    for (size_t i = 0; i < a->nfiles; i++)
        if (!strcmp(a->files[i].name, rq->params[1]))
            f = &a->files[i];
    if (!f) {
        st = api_error(rs, 404, "not_found", NULL, "the artifact has no file %s", gq_err_quote(q, sizeof(q), rq->params[1]));
        artifact_free(a);
        return st;
    }
    snprintf(path, sizeof(path), "%s/%s", a->dir, f->name);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st_) < 0 || !S_ISREG(st_.st_mode)) {
        if (fd >= 0)
            close(fd);
        st = api_error(rs, 404, "not_found", NULL, "the artifact file %s is missing on disk", f->name);
        artifact_free(a);
        return st;
    }
    len = (uint64_t)st_.st_size;
    snprintf(rs->extra_header[0][0], sizeof(rs->extra_header[0][0]), "ETag");
    snprintf(rs->extra_header[0][1], sizeof(rs->extra_header[0][1]), "\"%s\"", f->sha256);
    snprintf(rs->extra_header[1][0], sizeof(rs->extra_header[1][0]), "Accept-Ranges");
    snprintf(rs->extra_header[1][1], sizeof(rs->extra_header[1][1]), "bytes");
    st = 200;
    if (rq->range) {
        int r = parse_range(&off, &len, rq->range, (uint64_t)st_.st_size);
        if (r == -1) {
            close(fd);
            snprintf(rs->content_range, sizeof(rs->content_range), "bytes */%llu", (unsigned long long)st_.st_size);
            st = api_error(rs, 416, "range_not_satisfiable", NULL, "range %.40s is outside the file's %llu bytes",
                           rq->range, (unsigned long long)st_.st_size);
            artifact_free(a);
            return st;
        }
        if (r == 0) {
            snprintf(rs->content_range, sizeof(rs->content_range), "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)st_.st_size);
            st = 206;
        } else {
            off = 0, len = (uint64_t)st_.st_size;
        }
    }
    rs->file_fd = fd;
    rs->file_offset = off;
    rs->file_len = len;
    {
        size_t nl = strlen(f->name);
        rs->content_type = nl > 5 && !strcmp(f->name + nl - 5, ".json") ? "application/json" : "application/octet-stream";
    }
    artifact_free(a);
    return st;
}
