/*
 * test_daemon.c - gptqd as a black box: the real binary (GPTQD_BIN) on an
 * ephemeral loopback port, driven with libcurl, models from a local model
 * directory and from the fake Hub (tests/fakehub.c).
 *
 * Covers every endpoint and its error paths, idempotency, pagination,
 * cancellation while queued / downloading / quantizing, delete, the
 * artifact and its files (Range, path traversal), auth on and off, CORS,
 * the memory budget, webhooks, 200 concurrent submissions, 50 pollers,
 * kill -9 in the middle of quantizing and the restart that finishes the
 * job, and the SIGTERM drain.
 *
 * GPTQD_TEST_DELAY_MS slows quantization down (runner.c's test hook) so a
 * job on the tiny generated model lasts long enough to be interrupted.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fakehub.h"
#include "test.h"

static const char *g_bin;
static char g_root[256];
static char g_models[300];
static struct fakehub *g_hub;
static char g_hub_sha[41];

struct daemon {
    pid_t pid;
    int port;
    char dir[300];
    char base[64];
    char token[64];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Start gptqd with data in dir (created), extra flags (NULL-terminated
 * list) and environment additions ("K=V" strings, NULL-terminated).
 */
static int daemon_start(struct daemon *d, const char *dir, const char *const *flags, const char *const *envs)
{
    char portfile[400], dbp[400], data[400], models[400];
    const char *argv[64];
    int n = 0;
    double t0;

    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "%s", dir);
    mkdir(dir, 0755);
    snprintf(portfile, sizeof(portfile), "%s/port", dir);
    unlink(portfile);
    snprintf(dbp, sizeof(dbp), "--db=%s/gptqd.db", dir);
    snprintf(data, sizeof(data), "--data-dir=%s/data", dir);
    snprintf(models, sizeof(models), "--local-models=%s", g_models);
    argv[n++] = g_bin;
    argv[n++] = "--listen=127.0.0.1:0";
    argv[n++] = dbp;
    argv[n++] = data;
    argv[n++] = models;
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--log-level=warn";
    for (int i = 0; flags && flags[i]; i++)
        argv[n++] = flags[i];
    argv[n] = NULL;
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        char logp[400];
        int fd;
        snprintf(logp, sizeof(logp), "%s/gptqd.log", dir);
        fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        setenv("HF_ENDPOINT", fakehub_endpoint(g_hub), 1);
        unsetenv("HF_TOKEN");
        unsetenv("HF_HUB_OFFLINE");
        unsetenv("GPTQD_TEST_DELAY_MS");
        for (int i = 0; envs && envs[i]; i++)
            putenv((char *)(uintptr_t)envs[i]);
        execv(g_bin, (char **)(uintptr_t)argv);
        _exit(127);
    }
    t0 = now_s();
    while (now_s() - t0 < 20) {
        FILE *f = fopen(portfile, "r");
        int status;
        if (f) {
            int ok = fscanf(f, "%d", &d->port) == 1;
            fclose(f);
            if (ok && d->port > 0) {
                snprintf(d->base, sizeof(d->base), "http://127.0.0.1:%d", d->port);
                return 0;
            }
        }
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
    return -1;
}

/* SIGTERM (or sig) and wait; the exit status, or -1. */
static int daemon_stop(struct daemon *d, int sig, double *seconds)
{
    int status = 0;
    double t0 = now_s();
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    if (waitpid(d->pid, &status, 0) != d->pid)
        return -1;
    d->pid = 0;
    if (seconds)
        *seconds = now_s() - t0;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- an HTTP client ---- */

struct reply {
    long status;
    char *body;
    size_t len;
    char headers[4096];
    size_t hlen;
    cJSON *json;
};

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    struct reply *r = u;
    char *nb = realloc(r->body, r->len + sz * n + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    struct reply *r = u;
    size_t k = sz * n;
    if (r->hlen + k < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

static void reply_free(struct reply *r)
{
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof(*r));
}

/* headers: "Name: value" strings, NULL-terminated (may be NULL). Returns the status (0 on a transport error). */
static long http(struct reply *r, const struct daemon *d, const char *method, const char *path, const char *body,
                 const char *const *headers)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[2048], auth[128];
    memset(r, 0, sizeof(*r));
    if (!c)
        return 0;
    snprintf(url, sizeof(url), "%s%s", d->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (body && !(headers && headers[0] && !strncasecmp(headers[0], "Content-Type:", 13)))
        h = curl_slist_append(h, "Content-Type: application/json");
    for (int i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    if (d->token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", d->token);
        h = curl_slist_append(h, auth);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body)
        r->json = cJSON_Parse(r->body);
    return r->status;
}

static const char *jstr(const cJSON *o, const char *path)
{
    /* "a.b.c" */
    char buf[128], *tok, *save;
    const cJSON *cur = o;
    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cJSON_IsString(cur) ? cur->valuestring : "";
}

static double jnum(const cJSON *o, const char *path)
{
    char buf[128], *tok, *save;
    const cJSON *cur = o;
    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cJSON_IsNumber(cur) ? cur->valuedouble : -1e300;
}

static int has_header(const struct reply *r, const char *needle)
{
    return strcasestr(r->headers, needle) != NULL;
}

/* A submission body for the generated tiny Llama (vocabulary 320, no tokenizer: token ids). */
static char *job_body(const char *model, int samples, const char *extra)
{
    static const int n = 2048;
    size_t cap = 32 * (size_t)n + 2048;
    char *b = malloc(cap);
    size_t k = 0;
    unsigned long long st = 99;
    k += (size_t)snprintf(b + k, cap - k, "{\"model\": \"%s\", \"quantization\": {\"bits\": 4, \"group_size\": 32}, "
                          "\"calibration\": {\"num_samples\": %d, \"seq_len\": 32, \"token_ids\": [", model, samples);
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(b + k, cap - k, "%s%d", i ? "," : "", (int)(test_rand_u64(&st) % 320));
    k += (size_t)snprintf(b + k, cap - k, "]}%s%s}", extra ? ", " : "", extra ? extra : "");
    return b;
}

/* Poll the job until it is finished (or timeout); its final status ("" on timeout). */
static void wait_job(char *status, size_t cap, const struct daemon *d, const char *id, double timeout)
{
    char path[128];
    double t0 = now_s();
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    status[0] = '\0';
    while (now_s() - t0 < timeout) {
        struct reply r;
        http(&r, d, "GET", path, NULL, NULL);
        if (r.json) {
            const char *s = jstr(r.json, "status");
            if (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled")) {
                snprintf(status, cap, "%s", s);
                if (strcmp(s, "succeeded"))
                    fprintf(stderr, "  job %s ended %s: %s\n", id, s, jstr(r.json, "error.message"));
                reply_free(&r);
                return;
            }
        }
        reply_free(&r);
        sleep_ms(30);
    }
}

/* Wait until the job's status is want (or a terminal one); 1 when reached. */
static int wait_status(const struct daemon *d, const char *id, const char *want, double timeout)
{
    char path[128];
    double t0 = now_s();
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    while (now_s() - t0 < timeout) {
        struct reply r;
        int hit;
        http(&r, d, "GET", path, NULL, NULL);
        hit = r.json && !strcmp(jstr(r.json, "status"), want);
        reply_free(&r);
        if (hit)
            return 1;
        sleep_ms(20);
    }
    return 0;
}

static int submit(char *id, size_t cap, const struct daemon *d, const char *body)
{
    struct reply r;
    long st = http(&r, d, "POST", "/v1/jobs", body, NULL);
    snprintf(id, cap, "%s", r.json ? jstr(r.json, "id") : "");
    if (st != 201)
        fprintf(stderr, "  submit: %ld %s\n", st, r.body ? r.body : "");
    reply_free(&r);
    return (int)st;
}

static void sha256_hex(char out[65], const void *data, size_t len)
{
    unsigned char dg[32];
    unsigned int n = 0;
    EVP_Digest(data, len, dg, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", dg[i]);
}

/* ---- the shared daemon for most cases ---- */

static struct daemon g_d;

static void test_daemon__health_ready_metrics_openapi(void)
{
    struct reply r;
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/healthz", NULL, NULL), 200);
    CHECK(r.json && !strcmp(jstr(r.json, "status"), "ok"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/readyz", NULL, NULL), 200);
    CHECK(r.json && !strcmp(jstr(r.json, "status"), "ready") && jnum(r.json, "workers") == 2);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/openapi.yaml", NULL, NULL), 200);
    CHECK(r.body && strstr(r.body, "openapi: 3.1") && strstr(r.body, "/v1/jobs/{id}/artifact/files/{name}"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/metrics", NULL, NULL), 200);
    CHECK(r.body && strstr(r.body, "gptqd_jobs{status=\"queued\"}") && strstr(r.body, "gptqd_http_requests_total"));
    CHECK(has_header(&r, "text/plain"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/nope", NULL, NULL), 404);
    CHECK(r.json && !strcmp(jstr(r.json, "error.code"), "not_found"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "PUT", "/v1/jobs", "{}", NULL), 405);
    CHECK(has_header(&r, "Allow: GET, POST") || has_header(&r, "Allow: POST, GET"));
    reply_free(&r);
}

static void test_daemon__bad_submissions_name_the_problem(void)
{
    struct {
        const char *body, *field;
        long status;
    } cases[] = {
        {"{\"model\": \"local:tiny-llama\",", "", 400},
        {"[1, 2]", "", 400},
        {"{\"model\": 7, \"calibration\": {\"token_ids\": [1,2,3]}}", "model", 400},
        {"{\"model\": \"a b\", \"calibration\": {\"token_ids\": [1,2,3]}}", "model", 400},
        {"{\"model\": \"local:../etc\", \"calibration\": {\"token_ids\": [1,2,3]}}", "model", 400},
        {"{\"model\": \"local:absent\", \"calibration\": {\"token_ids\": [1,2,3]}}", "model", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1,2,3]}, \"colour\": 1}", "colour", 400},
        {"{\"model\": \"org/x\", \"quantization\": {\"bits\": 5}, \"calibration\": {\"token_ids\": [1]}}",
         "quantization.bits", 400},
        {"{\"model\": \"org/x\", \"quantization\": {\"group_size\": 0}, \"calibration\": {\"token_ids\": [1]}}",
         "quantization.group_size", 400},
        {"{\"model\": \"org/x\", \"quantization\": {\"damp_percent\": -0.1}, \"calibration\": {\"token_ids\": [1]}}",
         "quantization.damp_percent", 400},
        {"{\"model\": \"org/x\", \"quantization\": {\"sym\": \"yes\"}, \"calibration\": {\"token_ids\": [1]}}",
         "quantization.sym", 400},
        {"{\"model\": \"org/x\"}", "calibration", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"texts\": []}}", "calibration.texts", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1, -2]}}", "calibration.token_ids[1]", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1], \"texts\": [\"a\"]}}", "calibration", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1], \"num_samples\": 0}}", "calibration.num_samples", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"revision\": \"../x\"}", "revision", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"ftp://x\"}", "callback_url", 400},
        /* webhooks never reach inside unless --webhook-private */
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"http://127.0.0.1:9/h\"}", "callback_url", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"http://169.254.169.254/latest\"}", "callback_url", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"https://[::1]:8443/\"}", "callback_url", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"http://localhost/h\"}", "callback_url", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"callback_url\": \"http://:80/h\"}", "callback_url", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"labels\": {\"k\": 3}}", "labels.k", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"eval\": {\"max_ppl_ratio\": 2}}", "eval", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"priority\": 1.5}", "priority", 400},
        {"{\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, \"quantization\": {\"dynamic\": {\"+:(\": {}}}}",
         "quantization.dynamic", 400},
    };
    struct reply r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long st = http(&r, &g_d, "POST", "/v1/jobs", cases[i].body, NULL);
        CHECK_MSG(st == cases[i].status, "case %zu: %ld %s", i, st, r.body ? r.body : "");
        CHECK_MSG(r.json && *jstr(r.json, "error.message"), "case %zu: no message", i);
        if (*cases[i].field)
            CHECK_MSG(!strcmp(jstr(r.json, "error.field"), cases[i].field), "case %zu: field '%s' (want %s)", i,
                      jstr(r.json, "error.field"), cases[i].field);
        reply_free(&r);
    }
    /* wrong content type, empty body, too large */
    {
        const char *h[] = {"Content-Type: text/plain", NULL};
        CHECK_EQ_INT(http(&r, &g_d, "POST", "/v1/jobs", "{}", h), 415);
        reply_free(&r);
    }
    CHECK_EQ_INT(http(&r, &g_d, "POST", "/v1/jobs", "", NULL), 400);
    reply_free(&r);
    {
        size_t n = 300 * 1024;
        char *big = malloc(n + 1);
        memset(big, ' ', n);
        big[0] = '{', big[n - 1] = '}', big[n] = '\0';
        CHECK_EQ_INT(http(&r, &g_d, "POST", "/v1/jobs", big, NULL), 413);
        CHECK(r.json && !strcmp(jstr(r.json, "error.code"), "body_too_large"));
        reply_free(&r);
        free(big);
    }
    /* the daemon is still fine */
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/healthz", NULL, NULL), 200);
    reply_free(&r);
}

static char g_done_id[32];

static void test_daemon__a_local_job_runs_to_a_verified_artifact(void)
{
    char id[32], st[16], path[256], want[65];
    char *body = job_body("local:tiny-llama", 8, "\"labels\": {\"team\": \"nlp\"}, "
                          "\"eval\": {\"token_ids\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,"
                          "25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,"
                          "56,57,58,59,60,61,62,63,64], \"max_ppl_ratio\": 100}");
    struct reply r;
    cJSON *files, *f;
    int seen_safetensors = 0, nfiles = 0;

    CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
    free(body);
    wait_job(st, sizeof(st), &g_d, id, 60);
    CHECK_MSG(!strcmp(st, "succeeded"), "status %s", st);
    snprintf(g_done_id, sizeof(g_done_id), "%s", id);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    http(&r, &g_d, "GET", path, NULL, NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "source_revision"), "local"));
    CHECK(r.json && jnum(r.json, "progress.fraction") == 1 && jnum(r.json, "attempts") == 1);
    CHECK(r.json && !strcmp(jstr(r.json, "labels.team"), "nlp"));
    CHECK(r.json && jnum(r.json, "calibration.token_ids") == 2048 && !cJSON_GetObjectItem(
        cJSON_GetObjectItem(r.json, "calibration"), "texts"));
    reply_free(&r);

    snprintf(path, sizeof(path), "/v1/jobs/%s/artifact", id);
    CHECK_EQ_INT(http(&r, &g_d, "GET", path, NULL, NULL), 200);
    CHECK(r.json && jnum(r.json, "quantization.bits") == 4 && jnum(r.json, "calibration.num_samples") == 8);
    CHECK(r.json && strlen(jstr(r.json, "calibration.sha256")) == 64);
    CHECK(r.json && !strcmp(jstr(r.json, "eval.gate"), "passed") && jnum(r.json, "eval.ppl_after") > 0);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "layers")) == 2);
    files = r.json ? cJSON_GetObjectItem(r.json, "files") : NULL;
    cJSON_ArrayForEach(f, files)
    {
        struct reply fr;
        const char *name = jstr(f, "name");
        char fp[256];
        nfiles++;
        snprintf(fp, sizeof(fp), "/v1/jobs/%s/artifact/files/%s", id, name);
        CHECK_EQ_INT(http(&fr, &g_d, "GET", fp, NULL, NULL), 200);
        CHECK((double)fr.len == jnum(f, "size"));
        sha256_hex(want, fr.body ? fr.body : "", fr.len);
        CHECK_MSG(!strcmp(want, jstr(f, "sha256")), "%s: sha256 differs", name);
        if (strstr(name, ".safetensors")) {
            struct reply rr;
            const char *h[] = {"Range: bytes=10-19", NULL};
            const char *h2[] = {"Range: bytes=99999999-", NULL};
            seen_safetensors = 1;
            CHECK_EQ_INT(http(&rr, &g_d, "GET", fp, NULL, h), 206);
            CHECK(rr.len == 10 && fr.body && !memcmp(rr.body, fr.body + 10, 10));
            CHECK(has_header(&rr, "Content-Range: bytes 10-19/"));
            reply_free(&rr);
            CHECK_EQ_INT(http(&rr, &g_d, "GET", fp, NULL, h2), 416);
            CHECK(has_header(&rr, "Content-Range: bytes */"));
            reply_free(&rr);
        }
        reply_free(&fr);
    }
    CHECK(seen_safetensors && nfiles >= 5);   /* config, quantize_config, quant_config, safetensors, quant_log */
    reply_free(&r);

    /* path traversal and names outside the artifact */
    {
        const char *evil[] = {"../gptqd.db", "..%2Fgptqd.db", "%2e%2e%2f%2e%2e%2fgptqd.db", "..", "%2e%2e",
                              "config.json%00", "sub%2Fconfig.json", "nope.json"};
        for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
            char ep[256];
            snprintf(ep, sizeof(ep), "/v1/jobs/%s/artifact/files/%s", id, evil[i]);
            CHECK_MSG(http(&r, &g_d, "GET", ep, NULL, NULL) == 404, "%s: %ld", evil[i], r.status);
            CHECK(!r.body || !strstr(r.body, "SQLite format"));
            reply_free(&r);
        }
        CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs/../../etc/passwd", NULL, NULL), 404);
        reply_free(&r);
    }

    /* events: state changes and per-layer progress, paged with after */
    snprintf(path, sizeof(path), "/v1/jobs/%s/events?limit=2", id);
    CHECK_EQ_INT(http(&r, &g_d, "GET", path, NULL, NULL), 200);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "events")) == 2);
    CHECK(r.json && cJSON_IsTrue(cJSON_GetObjectItem(r.json, "more")));
    {
        double next = r.json ? jnum(r.json, "next") : 0;
        int layers = 0, total = 2;
        reply_free(&r);
        for (int guard = 0; guard < 50; guard++) {
            cJSON *ev;
            snprintf(path, sizeof(path), "/v1/jobs/%s/events?after=%.0f&limit=3", id, next);
            http(&r, &g_d, "GET", path, NULL, NULL);
            if (!r.json)
                break;
            cJSON_ArrayForEach(ev, cJSON_GetObjectItem(r.json, "events"))
            {
                total++;
                layers += !strcmp(jstr(ev, "kind"), "progress");
                CHECK(jnum(ev, "seq") > next);
            }
            next = jnum(r.json, "next");
            if (!cJSON_IsTrue(cJSON_GetObjectItem(r.json, "more"))) {
                reply_free(&r);
                break;
            }
            reply_free(&r);
        }
        CHECK_MSG(layers == 2 && total >= 8, "layers %d total %d", layers, total);
    }
    snprintf(path, sizeof(path), "/v1/jobs/%s/events?after=x", id);
    CHECK_EQ_INT(http(&r, &g_d, "GET", path, NULL, NULL), 400);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs/j_00000000000000000000", NULL, NULL), 404);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs/j_00000000000000000000/artifact", NULL, NULL), 404);
    reply_free(&r);
}

static void test_daemon__a_hub_job_pins_the_revision(void)
{
    char id[32], st[16], path[128];
    char *body = job_body("gen/tiny-llama", 4, "\"revision\": \"main\"");
    struct reply r;
    CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
    free(body);
    wait_job(st, sizeof(st), &g_d, id, 60);
    CHECK_MSG(!strcmp(st, "succeeded"), "status %s", st);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    http(&r, &g_d, "GET", path, NULL, NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "source_revision"), g_hub_sha));
    reply_free(&r);
    snprintf(path, sizeof(path), "/v1/jobs/%s/artifact/files/quant_config.json", id);
    http(&r, &g_d, "GET", path, NULL, NULL);
    CHECK(r.body && strstr(r.body, g_hub_sha) && strstr(r.body, "gen/tiny-llama"));
    reply_free(&r);
    /* a repo that does not exist: the job fails with the Hub's reason */
    body = job_body("gen/absent", 4, NULL);
    CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
    free(body);
    wait_job(st, sizeof(st), &g_d, id, 30);
    CHECK(!strcmp(st, "failed"));
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    http(&r, &g_d, "GET", path, NULL, NULL);
    CHECK_MSG(r.json && !strcmp(jstr(r.json, "error.code"), "repo_not_found"), "%s", r.body ? r.body : "");
    reply_free(&r);
}

static void test_daemon__idempotency_keys(void)
{
    char *a = job_body("local:tiny-llama", 2, NULL), *b = job_body("local:tiny-llama", 3, NULL);
    const char *h[] = {"Idempotency-Key: key-1", NULL};
    struct reply r1, r2, r3;
    CHECK_EQ_INT(http(&r1, &g_d, "POST", "/v1/jobs", a, h), 201);
    CHECK_EQ_INT(http(&r2, &g_d, "POST", "/v1/jobs", a, h), 200);
    CHECK(r1.json && r2.json && !strcmp(jstr(r1.json, "id"), jstr(r2.json, "id")));
    CHECK(has_header(&r2, "Idempotent-Replayed: true"));
    CHECK_EQ_INT(http(&r3, &g_d, "POST", "/v1/jobs", b, h), 409);
    CHECK(r3.json && !strcmp(jstr(r3.json, "error.field"), "Idempotency-Key"));
    reply_free(&r1);
    reply_free(&r2);
    reply_free(&r3);
    free(a);
    free(b);
}

static void test_daemon__batches_are_all_or_nothing(void)
{
    char *a = job_body("local:tiny-llama", 2, "\"labels\": {\"batch\": \"b1\"}");
    size_t n = 3 * strlen(a) + 200;
    char *body = malloc(n);
    struct reply r;
    snprintf(body, n, "{\"jobs\": [%s, %s]}", a, a);
    CHECK_EQ_INT(http(&r, &g_d, "POST", "/v1/jobs:batch", body, NULL), 201);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) == 2);
    reply_free(&r);
    /* one bad job: nothing created, the field names it */
    snprintf(body, n, "{\"jobs\": [%s, {\"model\": \"org/x\", \"calibration\": {\"token_ids\": [1]}, "
             "\"quantization\": {\"bits\": 9}, \"labels\": {\"batch\": \"b2\"}}]}", a);
    CHECK_EQ_INT(http(&r, &g_d, "POST", "/v1/jobs:batch", body, NULL), 400);
    CHECK_MSG(r.json && !strcmp(jstr(r.json, "error.field"), "jobs[1].quantization.bits"), "%s", r.body);
    reply_free(&r);
    http(&r, &g_d, "GET", "/v1/jobs?label=batch%3Db2", NULL, NULL);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) == 0);
    reply_free(&r);
    http(&r, &g_d, "GET", "/v1/jobs?label=batch%3Db1", NULL, NULL);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) == 2);
    reply_free(&r);
    free(a);
    free(body);
}

static void test_daemon__list_filters_and_pagination(void)
{
    struct reply r;
    char path[256], after[64] = "";
    int total = 0, pages = 0, dup = 0;
    char seen[400][24];
    /* follow the cursor through everything, 3 at a time */
    for (;;) {
        cJSON *j;
        const cJSON *next;
        snprintf(path, sizeof(path), "/v1/jobs?limit=3%s%s", after[0] ? "&after=" : "", after);
        CHECK_EQ_INT(http(&r, &g_d, "GET", path, NULL, NULL), 200);
        if (!r.json)
            break;
        pages++;
        cJSON_ArrayForEach(j, cJSON_GetObjectItem(r.json, "jobs"))
        {
            for (int k = 0; k < total; k++)
                dup += !strcmp(seen[k], jstr(j, "id"));
            if (total < 400)
                snprintf(seen[total++], 24, "%s", jstr(j, "id"));
        }
        next = cJSON_GetObjectItem(r.json, "next");
        if (!cJSON_IsString(next)) {
            reply_free(&r);
            break;
        }
        snprintf(after, sizeof(after), "%s", next->valuestring);
        reply_free(&r);
        if (pages > 200)
            break;
    }
    CHECK_EQ_INT(dup, 0);
    http(&r, &g_d, "GET", "/v1/jobs?limit=1000", NULL, NULL);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) == total);
    reply_free(&r);
    CHECK(total >= 6 && pages >= 2);
    http(&r, &g_d, "GET", "/v1/jobs?status=failed&model=gen%2Fabsent", NULL, NULL);
    CHECK(r.json && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) == 1);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs?status=sleeping", NULL, NULL), 400);
    CHECK(r.json && !strcmp(jstr(r.json, "error.field"), "status"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs?limit=0", NULL, NULL), 400);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs?after=zzz", NULL, NULL), 400);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", "/v1/jobs?colour=red", NULL, NULL), 400);
    reply_free(&r);
}

static void test_daemon__delete_only_finished_jobs(void)
{
    struct reply r;
    char path[128], art[512];
    struct stat st;
    if (!g_done_id[0])
        SKIP("no finished job (an earlier case failed)");
    snprintf(art, sizeof(art), "%s/data/artifacts/%s", g_d.dir, g_done_id);
    CHECK(stat(art, &st) == 0);
    snprintf(path, sizeof(path), "/v1/jobs/%s", g_done_id);
    CHECK_EQ_INT(http(&r, &g_d, "DELETE", path, NULL, NULL), 204);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &g_d, "GET", path, NULL, NULL), 404);
    reply_free(&r);
    CHECK(stat(art, &st) < 0 && errno == ENOENT);
    CHECK_EQ_INT(http(&r, &g_d, "DELETE", path, NULL, NULL), 404);
    reply_free(&r);
}

static void test_daemon__cancel_queued_downloading_and_quantizing(void)
{
    struct reply r;
    char id[32], path[128], st[16];
    char *body;
    struct fakehub_fault f;

    /* downloading: the CDN stalls, the cancel ends it at once */
    memset(&f, 0, sizeof(f));
    f.kind = FAKEHUB_STALL, f.cdn = 1, f.match = "/blobs/", f.times = -1, f.stall_ms = 20000;
    fakehub_add_fault(g_hub, &f);
    body = job_body("gen/tiny-llama-2", 4, NULL);
    CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
    free(body);
    CHECK(wait_status(&g_d, id, "downloading", 10));
    sleep_ms(300);
    snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
    CHECK_EQ_INT(http(&r, &g_d, "POST", path, NULL, NULL), 202);
    reply_free(&r);
    wait_job(st, sizeof(st), &g_d, id, 10);
    CHECK(!strcmp(st, "cancelled"));
    fakehub_clear_faults(g_hub);
    /* a finished job cannot be cancelled */
    CHECK_EQ_INT(http(&r, &g_d, "POST", path, NULL, NULL), 409);
    reply_free(&r);
    /* queued: two slow jobs hold both workers, a third waits and is cancelled at once */
    {
        char a[32], b[32], c[32];
        body = job_body("local:tiny-slow", 4, NULL);
        CHECK_EQ_INT(submit(a, sizeof(a), &g_d, body), 201);
        CHECK_EQ_INT(submit(b, sizeof(b), &g_d, body), 201);
        CHECK(wait_status(&g_d, a, "quantizing", 20) && wait_status(&g_d, b, "quantizing", 20));
        CHECK_EQ_INT(submit(c, sizeof(c), &g_d, body), 201);
        free(body);
        snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", c);
        CHECK_EQ_INT(http(&r, &g_d, "POST", path, NULL, NULL), 200);
        CHECK(r.json && !strcmp(jstr(r.json, "status"), "cancelled"));
        reply_free(&r);
        /* quantizing: stops at the next block boundary */
        snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", a);
        CHECK_EQ_INT(http(&r, &g_d, "POST", path, NULL, NULL), 202);
        reply_free(&r);
        snprintf(path, sizeof(path), "/v1/jobs/%s", b);
        CHECK_EQ_INT(http(&r, &g_d, "DELETE", path, NULL, NULL), 409);
        reply_free(&r);
        wait_job(st, sizeof(st), &g_d, a, 20);
        CHECK(!strcmp(st, "cancelled"));
        wait_job(st, sizeof(st), &g_d, b, 60);
        CHECK(!strcmp(st, "succeeded"));
        {
            char work[512];
            struct stat sb;
            snprintf(work, sizeof(work), "%s/data/work/%s", g_d.dir, a);
            CHECK(stat(work, &sb) < 0);   /* temporary files removed */
            snprintf(work, sizeof(work), "%s/data/artifacts/%s", g_d.dir, a);
            CHECK(stat(work, &sb) < 0);
        }
    }
}

/* calibrating, writing and evaluating last milliseconds; the test hook stretches each stage to 10 x 60 ms */
static void test_daemon__cancel_while_calibrating_writing_evaluating(void)
{
    static const char *const stages[] = {"calibrating", "writing", "evaluating"};
    char *body = job_body("local:tiny-llama", 4, "\"priority\": 500, \"eval\": {\"token_ids\": [1,2,3,4,5,6,7,8,9,10,"
                          "11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40]}");
    for (int i = 0; i < 3; i++) {
        char id[32], path[128], st[16];
        struct reply r;
        long code;
        CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
        CHECK_MSG(wait_status(&g_d, id, stages[i], 30), "never saw %s", stages[i]);
        snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
        code = http(&r, &g_d, "POST", path, NULL, NULL);
        CHECK_MSG(code == 202, "%s: cancel answered %ld", stages[i], code);
        reply_free(&r);
        wait_job(st, sizeof(st), &g_d, id, 30);
        CHECK_MSG(!strcmp(st, "cancelled"), "%s: ended %s", stages[i], st);
        snprintf(path, sizeof(path), "/v1/jobs/%s", id);
        http(&r, &g_d, "GET", path, NULL, NULL);
        CHECK(r.json && strstr(jstr(r.json, "error.message"), "cancelled"));
        reply_free(&r);
        {
            char work[512];
            struct stat sb;
            snprintf(work, sizeof(work), "%s/data/work/%s", g_d.dir, id);
            CHECK(stat(work, &sb) < 0);
        }
    }
    free(body);
}

struct submitter {
    int from, count;
    char ids[40][32];
    int ok;
};

static void *submit_many(void *arg)
{
    struct submitter *s = arg;
    char *body = job_body("local:tiny-llama", 2, "\"priority\": -5, \"labels\": {\"load\": \"200\"}");
    for (int i = 0; i < s->count; i++)
        s->ok += submit(s->ids[i], sizeof(s->ids[i]), &g_d, body) == 201;
    free(body);
    return NULL;
}

static void test_daemon__200_concurrent_submissions(void)
{
    enum { T = 10, PER = 20 };
    struct submitter s[T];
    pthread_t th[T];
    int ok = 0, dup = 0, listed = 0;
    struct reply r;
    memset(s, 0, sizeof(s));
    for (int i = 0; i < T; i++) {
        s[i].count = PER;
        pthread_create(&th[i], NULL, submit_many, &s[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += s[i].ok;
    }
    CHECK_EQ_INT(ok, T * PER);
    for (int a = 0; a < T * PER; a++)
        for (int b = a + 1; b < T * PER; b++)
            dup += !strcmp(s[a / PER].ids[a % PER], s[b / PER].ids[b % PER]);
    CHECK_EQ_INT(dup, 0);
    http(&r, &g_d, "GET", "/v1/jobs?label=load%3D200&limit=1000", NULL, NULL);
    listed = r.json ? cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")) : -1;
    reply_free(&r);
    CHECK_EQ_INT(listed, T * PER);
}

struct poller {
    char path[128];
    double until;
    int n, bad;
};

static void *poll_job(void *arg)
{
    struct poller *p = arg;
    while (now_s() < p->until) {
        struct reply r;
        p->n++;
        p->bad += http(&r, &g_d, "GET", p->path, NULL, NULL) != 200 || !r.json;
        reply_free(&r);
    }
    return NULL;
}

static void test_daemon__50_pollers_while_a_job_runs(void)
{
    enum { P = 50 };
    struct poller p[P];
    pthread_t th[P];
    char id[32], st[16];
    char *body = job_body("local:tiny-slow", 4, "\"priority\": 100");
    int bad = 0, n = 0;
    CHECK_EQ_INT(submit(id, sizeof(id), &g_d, body), 201);
    free(body);
    CHECK(wait_status(&g_d, id, "quantizing", 30));
    for (int i = 0; i < P; i++) {
        snprintf(p[i].path, sizeof(p[i].path), "/v1/jobs/%s", id);
        p[i].until = now_s() + 1.5;
        p[i].n = p[i].bad = 0;
        pthread_create(&th[i], NULL, poll_job, &p[i]);
    }
    for (int i = 0; i < P; i++) {
        pthread_join(th[i], NULL);
        bad += p[i].bad, n += p[i].n;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(n >= P);
    wait_job(st, sizeof(st), &g_d, id, 120);
    CHECK(!strcmp(st, "succeeded"));
}

/* ---- daemons of their own ---- */

static void test_daemon__auth_and_cors(void)
{
    struct daemon d;
    struct reply r;
    char dir[300];
    const char *flags[] = {"--token=t-one", "--token", "t-two", "--cors-origin=https://dash.example", NULL};
    snprintf(dir, sizeof(dir), "%s/auth", g_root);
    if (daemon_start(&d, dir, flags, NULL) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        return;
    }
    CHECK_EQ_INT(http(&r, &d, "GET", "/v1/jobs", NULL, NULL), 401);
    CHECK(has_header(&r, "WWW-Authenticate: Bearer"));
    CHECK(r.json && !strcmp(jstr(r.json, "error.code"), "unauthorized"));
    reply_free(&r);
    snprintf(d.token, sizeof(d.token), "t-wrong");
    CHECK_EQ_INT(http(&r, &d, "GET", "/v1/jobs", NULL, NULL), 401);
    reply_free(&r);
    snprintf(d.token, sizeof(d.token), "t-two");
    CHECK_EQ_INT(http(&r, &d, "GET", "/v1/jobs", NULL, NULL), 200);
    CHECK(has_header(&r, "Access-Control-Allow-Origin: https://dash.example"));
    reply_free(&r);
    d.token[0] = '\0';
    CHECK_EQ_INT(http(&r, &d, "GET", "/healthz", NULL, NULL), 200);
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &d, "OPTIONS", "/v1/jobs", NULL, NULL), 204);
    CHECK(has_header(&r, "Access-Control-Allow-Headers: Authorization"));
    reply_free(&r);
    {
        char log[400], *text;
        snprintf(log, sizeof(log), "%s/gptqd.log", dir);
        CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
        text = test_read_file(log, NULL);
        CHECK(!text || (!strstr(text, "t-one") && !strstr(text, "t-two")));   /* tokens never logged */
        free(text);
    }
}

static void test_daemon__memory_budget_refuses_what_never_fits(void)
{
    struct daemon d;
    struct reply r;
    char dir[300];
    const char *flags[] = {"--memory-budget=80M", NULL};
    char *small = job_body("local:tiny-llama", 2, NULL);
    char big[512];
    snprintf(dir, sizeof(dir), "%s/budget", g_root);
    if (daemon_start(&d, dir, flags, NULL) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        free(small);
        return;
    }
    snprintf(big, sizeof(big), "{\"model\": \"local:tiny-llama\", \"calibration\": {\"token_ids\": [1,2,3], "
             "\"num_samples\": 4096, \"seq_len\": 4096}}");
    CHECK_EQ_INT(http(&r, &d, "POST", "/v1/jobs", big, NULL), 422);
    CHECK(r.json && !strcmp(jstr(r.json, "error.code"), "over_memory_budget"));
    reply_free(&r);
    CHECK_EQ_INT(http(&r, &d, "POST", "/v1/jobs", small, NULL), 201);
    reply_free(&r);
    free(small);
    CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
}

/* A webhook receiver: records the last POST. */
struct hook {
    pthread_mutex_t mu;
    int calls;
    char body[65536];
    char sig[128], ts[32];
};

static enum MHD_Result on_hook(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *data, size_t *size, void **rc)
{
    struct hook *h = cls;
    struct MHD_Response *resp;
    enum MHD_Result ok;
    (void)url, (void)method, (void)version;
    if (!*rc) {
        *rc = (void *)1;
        pthread_mutex_lock(&h->mu);
        h->body[0] = '\0';
        pthread_mutex_unlock(&h->mu);
        return MHD_YES;
    }
    if (*size) {
        pthread_mutex_lock(&h->mu);
        strncat(h->body, data, *size < sizeof(h->body) - strlen(h->body) - 1 ? *size
                                                                              : sizeof(h->body) - strlen(h->body) - 1);
        pthread_mutex_unlock(&h->mu);
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&h->mu);
    h->calls++;
    snprintf(h->sig, sizeof(h->sig), "%s",
             MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gptqd-Signature") ?: "");
    snprintf(h->ts, sizeof(h->ts), "%s", MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gptqd-Timestamp") ?: "");
    pthread_mutex_unlock(&h->mu);
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    ok = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void test_daemon__webhooks_are_signed(void)
{
    struct daemon d;
    struct hook h;
    struct MHD_Daemon *m;
    const union MHD_DaemonInfo *info;
    char dir[300], extra[200], id[32], st[16];
    const char *flags[] = {"--webhook-secret=s3cret", "--webhook-private", NULL};
    char *body;
    double t0;

    memset(&h, 0, sizeof(h));
    pthread_mutex_init(&h.mu, NULL);
    m = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_hook, &h, MHD_OPTION_END);
    if (!m) {
        CHECK_MSG(0, "cannot start the receiver");
        return;
    }
    info = MHD_get_daemon_info(m, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(dir, sizeof(dir), "%s/hooks", g_root);
    if (daemon_start(&d, dir, flags, NULL) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        MHD_stop_daemon(m);
        return;
    }
    snprintf(extra, sizeof(extra), "\"callback_url\": \"http://127.0.0.1:%u/hook\"", (unsigned)info->port);
    body = job_body("local:tiny-llama", 2, extra);
    CHECK_EQ_INT(submit(id, sizeof(id), &d, body), 201);
    free(body);
    wait_job(st, sizeof(st), &d, id, 60);
    CHECK(!strcmp(st, "succeeded"));
    t0 = now_s();
    while (now_s() - t0 < 10) {
        int calls;
        pthread_mutex_lock(&h.mu);
        calls = h.calls;
        pthread_mutex_unlock(&h.mu);
        if (calls)
            break;
        sleep_ms(20);
    }
    pthread_mutex_lock(&h.mu);
    CHECK_EQ_INT(h.calls, 1);
    CHECK(strstr(h.body, id) && strstr(h.body, "\"succeeded\""));
    {
        /* the signature verifies: HMAC-SHA256(secret, ts "." body) */
        unsigned char mac[32];
        unsigned int n = 0;
        char msg[70000], hex[72] = "sha256=";
        snprintf(msg, sizeof(msg), "%s.%s", h.ts, h.body);
        HMAC(EVP_sha256(), "s3cret", 6, (const unsigned char *)msg, strlen(msg), mac, &n);
        for (unsigned int i = 0; i < n; i++)
            snprintf(hex + 7 + 2 * i, 3, "%02x", mac[i]);
        CHECK_MSG(!strcmp(hex, h.sig), "signature %s, want %s", h.sig, hex);
    }
    pthread_mutex_unlock(&h.mu);
    CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
    MHD_stop_daemon(m);
    pthread_mutex_destroy(&h.mu);
}

static void test_daemon__kill_9_then_restart_finishes_the_job(void)
{
    struct daemon d;
    char dir[300], id[32], st[16], path[128];
    const char *env[] = {"GPTQD_TEST_DELAY_MS=150", NULL};
    char *body = job_body("local:tiny-llama", 4, NULL);
    struct reply r;
    snprintf(dir, sizeof(dir), "%s/crash", g_root);
    if (daemon_start(&d, dir, NULL, env) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        free(body);
        return;
    }
    CHECK_EQ_INT(submit(id, sizeof(id), &d, body), 201);
    free(body);
    CHECK(wait_status(&d, id, "quantizing", 20));
    sleep_ms(400);
    CHECK_EQ_INT(daemon_stop(&d, SIGKILL, NULL), 128 + SIGKILL);
    {
        char work[512];
        struct stat sb;
        snprintf(work, sizeof(work), "%s/data/work/%s", dir, id);
        CHECK(stat(work, &sb) == 0);   /* the crash left temporary files */
        if (daemon_start(&d, dir, NULL, NULL) < 0) {
            CHECK_MSG(0, "gptqd did not restart");
            return;
        }
        wait_job(st, sizeof(st), &d, id, 60);
        CHECK(!strcmp(st, "succeeded"));
        CHECK(stat(work, &sb) < 0);
    }
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    http(&r, &d, "GET", path, NULL, NULL);
    CHECK(r.json && jnum(r.json, "attempts") == 2);
    reply_free(&r);
    snprintf(path, sizeof(path), "/v1/jobs/%s/artifact/files/model.safetensors", id);
    CHECK_EQ_INT(http(&r, &d, "HEAD", path, NULL, NULL), 200);
    reply_free(&r);
    CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
}

static void test_daemon__sigterm_drains_and_requeues(void)
{
    struct daemon d;
    char dir[300], id[32], st[16], path[128];
    const char *env[] = {"GPTQD_TEST_DELAY_MS=300", NULL};
    char *body = job_body("local:tiny-llama", 4, NULL);
    struct reply r;
    double secs = 0;
    snprintf(dir, sizeof(dir), "%s/drain", g_root);
    if (daemon_start(&d, dir, NULL, env) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        free(body);
        return;
    }
    CHECK_EQ_INT(submit(id, sizeof(id), &d, body), 201);
    free(body);
    CHECK(wait_status(&d, id, "quantizing", 20));
    CHECK_EQ_INT(daemon_stop(&d, SIGTERM, &secs), 0);
    CHECK_MSG(secs < 5, "drain took %.1f s", secs);
    if (daemon_start(&d, dir, NULL, NULL) < 0) {
        CHECK_MSG(0, "gptqd did not restart");
        return;
    }
    wait_job(st, sizeof(st), &d, id, 60);
    CHECK(!strcmp(st, "succeeded"));
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    http(&r, &d, "GET", path, NULL, NULL);
    CHECK_MSG(r.json && jnum(r.json, "attempts") == 1, "attempts %g", r.json ? jnum(r.json, "attempts") : -1);
    reply_free(&r);
    CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
}

static void test_daemon__refuses_a_newer_database(void)
{
    char dir[300], cmd[800], out[4096], dbp[400];
    struct daemon d;
    sqlite3 *db = NULL;
    snprintf(dir, sizeof(dir), "%s/newer", g_root);
    if (daemon_start(&d, dir, NULL, NULL) < 0) {
        CHECK_MSG(0, "gptqd did not start");
        return;
    }
    CHECK(daemon_stop(&d, SIGTERM, NULL) == 0);
    /* a later gptqd migrated this database past what this binary knows */
    snprintf(dbp, sizeof(dbp), "%s/gptqd.db", dir);
    CHECK(sqlite3_open(dbp, &db) == SQLITE_OK && sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    snprintf(cmd, sizeof(cmd), "%s --db '%s' --data-dir '%s/data' --listen 127.0.0.1:0 2>&1", g_bin, dbp, dir);
    CHECK(test_run_cmd(out, sizeof(out), cmd) != 0);
    CHECK_MSG(strstr(out, "newer") != NULL, "%s", out);
}

static void test_daemon__help_and_bad_flags(void)
{
    char cmd[600], out[8192];
    snprintf(cmd, sizeof(cmd), "%s --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strstr(out, "--listen") && strstr(out, "GPTQD_WORKERS") && strstr(out, "--memory-budget"));
    snprintf(cmd, sizeof(cmd), "%s --workers 0 2>&1", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "--workers") != NULL);
    snprintf(cmd, sizeof(cmd), "GPTQD_WORKERS=lots %s 2>&1", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
    CHECK(strstr(out, "GPTQD_WORKERS") != NULL);
    snprintf(cmd, sizeof(cmd), "%s --frobnicate 2>&1", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
}

int main(void)
{
    char cmd[1200], out[256];
    const char *flags[] = {"--workers=2", "--max-body=262144", NULL};
    const char *env[] = {NULL};

    t_prog = "test_daemon";
    g_bin = getenv("GPTQD_BIN");
    if (!g_bin || !*g_bin) {
        printf("[test_daemon] skip: GPTQD_BIN is not set (run through make test)\n");
        printf("RESULT passed=0 failed=0 skipped=1\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_root, sizeof(g_root), "/tmp/gptqd-test-XXXXXX");
    if (!mkdtemp(g_root))
        return 1;
    /* local models: the generated tiny Llama, and a copy the tests slow down by name only */
    snprintf(g_models, sizeof(g_models), "%s/models", g_root);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp -r tests/fixtures/tiny-llama '%s/tiny-llama' && "
             "cp -r tests/fixtures/tiny-llama '%s/tiny-slow'", g_models, g_models, g_models);
    if (test_run_cmd(out, sizeof(out), cmd) != 0) {
        fprintf(stderr, "cannot copy tests/fixtures/tiny-llama (run from the repository root)\n");
        return 1;
    }
    if (!(g_hub = fakehub_start()))
        return 1;
    fakehub_commit_dir(g_hub, "gen/tiny-llama", "main", "tests/fixtures/tiny-llama", g_hub_sha);
    {
        char sha2[41];
        fakehub_commit_dir(g_hub, "gen/tiny-llama-2", "main", "tests/fixtures/tiny-llama", sha2);
    }
    (void)env;
    {
        char dir[300];
        const char *slow_env[] = {"GPTQD_TEST_DELAY_MS=60", NULL};
        snprintf(dir, sizeof(dir), "%s/main", g_root);
        if (daemon_start(&g_d, dir, flags, slow_env) < 0) {
            fprintf(stderr, "gptqd did not start; its log:\n");
            snprintf(cmd, sizeof(cmd), "cat '%s/gptqd.log' >&2", dir);
            if (test_run_cmd(out, sizeof(out), cmd) != 0)
                fprintf(stderr, "(no log)\n");
            return 1;
        }
    }
    RUN(test_daemon__help_and_bad_flags);
    RUN(test_daemon__health_ready_metrics_openapi);
    RUN(test_daemon__bad_submissions_name_the_problem);
    RUN(test_daemon__a_local_job_runs_to_a_verified_artifact);
    RUN(test_daemon__a_hub_job_pins_the_revision);
    RUN(test_daemon__idempotency_keys);
    RUN(test_daemon__batches_are_all_or_nothing);
    RUN(test_daemon__list_filters_and_pagination);
    RUN(test_daemon__delete_only_finished_jobs);
    RUN(test_daemon__cancel_queued_downloading_and_quantizing);
    RUN(test_daemon__cancel_while_calibrating_writing_evaluating);
    RUN(test_daemon__50_pollers_while_a_job_runs);
    RUN(test_daemon__200_concurrent_submissions);
    CHECK(daemon_stop(&g_d, SIGTERM, NULL) == 0);
    RUN(test_daemon__auth_and_cors);
    RUN(test_daemon__memory_budget_refuses_what_never_fits);
    RUN(test_daemon__webhooks_are_signed);
    RUN(test_daemon__kill_9_then_restart_finishes_the_job);
    RUN(test_daemon__sigterm_drains_and_requeues);
    RUN(test_daemon__refuses_a_newer_database);
    fakehub_stop(g_hub);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
    if (test_run_cmd(out, sizeof(out), cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", g_root);
    curl_global_cleanup();
    return test_report();
}
