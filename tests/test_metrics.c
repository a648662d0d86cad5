/*
 * test_metrics.c - server/metrics.c: counters per (route, code), the
 * histograms (le-inclusive buckets, cumulative, +Inf = _count), the
 * exposition text checked line by line by a small parser of the text
 * format, label escaping, the fixed table's overflow, and exact totals
 * under concurrent updates from four threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "store.h"
#include "test.h"

/* ---- a small parser of the text format ---- */

#define MAX_LABELS 4

struct sample {
    char name[96];
    int nlabels;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][160];  /* unescaped */
    double value;
};

static int name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/*
 * Parse one sample line (without its newline) as `name{k="v",...} value`
 * or `name value`.  0 on success, else -1 with why set.
 */
static int parse_sample(struct sample *s, const char *line, const char **why)
{
    const char *p = line;
    size_t n = 0;
    char *end;

    memset(s, 0, sizeof(*s));
    if (!name_char(*p, 1))
        return *why = "bad metric name", -1;
    while (name_char(*p, 0) && n + 1 < sizeof(s->name))
        s->name[n++] = *p++;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t k = 0, v = 0;
            if (s->nlabels == MAX_LABELS)
                return *why = "too many labels", -1;
            if (!name_char(*p, 1))
                return *why = "bad label name", -1;
            while (name_char(*p, 0) && k + 1 < sizeof(s->key[0]))
                s->key[s->nlabels][k++] = *p++;
            if (p[0] != '=' || p[1] != '"')
                return *why = "label without =\"", -1;
            p += 2;
            while (*p != '"') {
                char c = *p++;
                if (c == '\0' || c == '\n')
                    return *why = "unterminated label value", -1;
                if (c == '\\') {
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        return *why = "bad escape in label value", -1;
                }
                if (v + 1 < sizeof(s->val[0]))
                    s->val[s->nlabels][v++] = c;
            }
            p++;
            s->nlabels++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return *why = "labels not separated by ,", -1;
        }
        p++;
    }
    if (*p != ' ')
        return *why = "no space before the value", -1;
    p++;
    if (!strcmp(p, "+Inf")) {
        s->value = INFINITY;
    } else if (!strcmp(p, "-Inf")) {
        s->value = -INFINITY;
    } else if (!strcmp(p, "NaN")) {
        s->value = NAN;
    } else {
        s->value = strtod(p, &end);
        if (end == p || *end != '\0')
            return *why = "bad value", -1;
    }
    return 0;
}

static const char *label(const struct sample *s, const char *key)
{
    int i;
    for (i = 0; i < s->nlabels; i++)
        if (!strcmp(s->key[i], key))
            return s->val[i];
    return NULL;
}

/*
 * The value of the sample with this name whose labels include the given
 * pairs (k1, v1, k2, v2, ...; NULL-terminated list may be empty); NAN when
 * absent.  Parses the whole text, so it also fails loudly on a bad line.
 */
static double value_of(const char *text, const char *name, const char *k1, const char *v1, const char *k2,
                       const char *v2)
{
    const char *p = text;
    char line[512];
    struct sample s;
    const char *why;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : p + n;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (parse_sample(&s, line, &why) < 0)
            continue;
        if (strcmp(s.name, name) != 0)
            continue;
        if (k1 && (!label(&s, k1) || strcmp(label(&s, k1), v1) != 0))
            continue;
        if (k2 && (!label(&s, k2) || strcmp(label(&s, k2), v2) != 0))
            continue;
        return s.value;
    }
    return NAN;
}

static char *render(const metrics *m, const int64_t *counts)
{
    size_t len = 0;
    char *t = metrics_render(m, counts, 12.5, &len);
    CHECK(t != NULL);
    if (t)
        CHECK_EQ_INT(len, strlen(t));
    return t;
}

static metrics *new_metrics(void)
{
    metrics *m = NULL;
    gq_err e = GQ_ERR_INIT;
    CHECK_OK(metrics_new(&m, &e), &e);
    return m;
}

/* ---- cases ---- */

static void test_metrics__counts(void)
{
    metrics *m = new_metrics();
    int64_t counts[JOB_NSTATUS] = { 0 };
    char *t;
    int i;

    if (!m)
        return;
    for (i = 0; i < 3; i++)
        metrics_http(m, "POST", "/v1/jobs", 201, 0.002);
    metrics_http(m, "POST", "/v1/jobs", 400, 0.001);
    /* a different pointer to the same pattern is the same series */
    {
        char copy[] = "/v1/jobs";
        metrics_http(m, "POST", copy, 201, 0.002);
    }
    metrics_http(m, "GET", "/v1/jobs/{id}", 200, 0.0001);
    metrics_http(m, "GET", NULL, 404, 0.0001);
    metrics_http(m, "GET", NULL, 404, 0.0001);
    metrics_bytes_downloaded(m, 1000);
    metrics_bytes_downloaded(m, 24);
    metrics_jobs_running(m, 2);
    metrics_jobs_running(m, -1);
    metrics_webhook(m, "delivered");
    metrics_webhook(m, "retried");
    metrics_webhook(m, "retried");
    metrics_webhook(m, "gave_up");
    metrics_webhook(m, "no_such_result");   /* ignored */
    metrics_webhook(m, NULL);
    counts[JOB_QUEUED] = 4;
    counts[JOB_QUANTIZING] = 1;
    counts[JOB_SUCCEEDED] = 7;

    t = render(m, counts);
    if (t) {
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "/v1/jobs", "code", "201") == 4);
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "/v1/jobs", "code", "400") == 1);
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "/v1/jobs/{id}", "code", "200") == 1);
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "other", "code", "404") == 2);
        CHECK(isnan(value_of(t, "gptqd_http_requests_total", "route", "/v1/jobs/{id}", "code", "404")));
        CHECK(value_of(t, "gptqd_http_request_duration_seconds_count", NULL, NULL, NULL, NULL) == 8);
        CHECK(value_of(t, "gptqd_hub_bytes_downloaded_total", NULL, NULL, NULL, NULL) == 1024);
        CHECK(value_of(t, "gptqd_jobs_running", NULL, NULL, NULL, NULL) == 1);
        CHECK(value_of(t, "gptqd_webhook_deliveries_total", "result", "delivered", NULL, NULL) == 1);
        CHECK(value_of(t, "gptqd_webhook_deliveries_total", "result", "retried", NULL, NULL) == 2);
        CHECK(value_of(t, "gptqd_webhook_deliveries_total", "result", "gave_up", NULL, NULL) == 1);
        CHECK(value_of(t, "gptqd_jobs", "status", "queued", NULL, NULL) == 4);
        CHECK(value_of(t, "gptqd_jobs", "status", "quantizing", NULL, NULL) == 1);
        CHECK(value_of(t, "gptqd_jobs", "status", "succeeded", NULL, NULL) == 7);
        CHECK(value_of(t, "gptqd_jobs", "status", "cancelled", NULL, NULL) == 0);
        CHECK(value_of(t, "gptqd_queue_depth", NULL, NULL, NULL, NULL) == 4);
        CHECK(value_of(t, "gptqd_uptime_seconds", NULL, NULL, NULL, NULL) == 12.5);
        /* the method is not a label */
        CHECK(strstr(t, "method=") == NULL);
    }
    free(t);

    /* without counts the store gauges are left out, the rest stays */
    t = render(m, NULL);
    if (t) {
        CHECK(strstr(t, "gptqd_jobs{") == NULL);
        CHECK(strstr(t, "gptqd_queue_depth") == NULL);
        CHECK(value_of(t, "gptqd_jobs_running", NULL, NULL, NULL, NULL) == 1);
    }
    free(t);
    metrics_free(m);
}

static void test_metrics__null_safe(void)
{
    metrics_free(NULL);
    metrics_http(NULL, "GET", "/x", 200, 1);
    metrics_job_finished(NULL, JOB_FAILED, 1);
    metrics_bytes_downloaded(NULL, 1);
    metrics_jobs_running(NULL, 1);
    metrics_webhook(NULL, "delivered");
    CHECK(metrics_render(NULL, NULL, 0, NULL) == NULL);
}

/* Bucket counts of a histogram series, in le order; returns how many were found. */
static int buckets(const char *text, const char *name, const char *status, double *le, double *cnt, int cap)
{
    const char *p = text;
    char line[512], bucket[128];
    struct sample s;
    const char *why;
    int n = 0;

    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= sizeof(line))
            len = sizeof(line) - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl ? nl + 1 : p + len;
        if (line[0] == '#' || parse_sample(&s, line, &why) < 0 || strcmp(s.name, bucket) != 0)
            continue;
        if (status && (!label(&s, "status") || strcmp(label(&s, "status"), status) != 0))
            continue;
        if (n < cap) {
            const char *l = label(&s, "le");
            le[n] = !l ? NAN : !strcmp(l, "+Inf") ? INFINITY : strtod(l, NULL);
            cnt[n] = s.value;
        }
        n++;
    }
    return n;
}

static void test_metrics__histogram_buckets(void)
{
    metrics *m = new_metrics();
    double le[32], cnt[32];
    char *t;
    int n, i;

    if (!m)
        return;
    /* 0.0005 falls in le="0.0005" (le is inclusive), 0.0006 in le="0.001" */
    metrics_http(m, "GET", "/healthz", 200, 0.0005);
    metrics_http(m, "GET", "/healthz", 200, 0.0006);
    metrics_http(m, "GET", "/healthz", 200, 0.3);
    metrics_http(m, "GET", "/healthz", 200, 10);
    metrics_http(m, "GET", "/healthz", 200, 11);     /* only in +Inf */
    metrics_http(m, "GET", "/healthz", 200, -1);     /* clamped to 0 */
    metrics_http(m, "GET", "/healthz", 200, NAN);    /* clamped to 0 */

    metrics_job_finished(m, JOB_SUCCEEDED, 30);
    metrics_job_finished(m, JOB_SUCCEEDED, 4000);
    metrics_job_finished(m, JOB_FAILED, 0.5);
    metrics_job_finished(m, JOB_FAILED, 90000);
    metrics_job_finished(m, JOB_QUANTIZING, 5);      /* not terminal: ignored */

    t = render(m, NULL);
    if (!t) {
        metrics_free(m);
        return;
    }
    n = buckets(t, "gptqd_http_request_duration_seconds", NULL, le, cnt, 32);
    CHECK_EQ_INT(n, 15);     /* 14 bounds + Inf */
    if (n == 15) {
        CHECK_NEAR(le[0], 0.0005, 0);
        CHECK_NEAR(le[13], 10, 0);
        CHECK(isinf(le[14]));
        CHECK(cnt[0] == 3);   /* 0.0005, -1, NaN */
        CHECK(cnt[1] == 4);   /* + 0.0006 */
        for (i = 1; i < 15; i++) {
            CHECK(le[i] > le[i - 1]);
            CHECK(cnt[i] >= cnt[i - 1]);
        }
        CHECK(cnt[8] == 4);   /* le=0.25 */
        CHECK(cnt[9] == 5);   /* le=0.5 gets 0.3 */
        CHECK(cnt[13] == 6);  /* le=10 gets 10 */
        CHECK(cnt[14] == 7);
    }
    CHECK(value_of(t, "gptqd_http_request_duration_seconds_count", NULL, NULL, NULL, NULL) == 7);
    CHECK_NEAR(value_of(t, "gptqd_http_request_duration_seconds_sum", NULL, NULL, NULL, NULL),
               0.0005 + 0.0006 + 0.3 + 10 + 11, 1e-12);

    n = buckets(t, "gptqd_job_duration_seconds", "succeeded", le, cnt, 32);
    CHECK_EQ_INT(n, 16);     /* 15 bounds + Inf */
    if (n == 16) {
        CHECK_NEAR(le[0], 1, 0);
        CHECK_NEAR(le[14], 86400, 0);
        CHECK(cnt[0] == 0);
        CHECK(cnt[2] == 0);   /* le=10 */
        CHECK(cnt[3] == 1);   /* le=30 */
        CHECK(cnt[9] == 1);   /* le=3600 */
        CHECK(cnt[10] == 2);  /* le=7200 */
        CHECK(cnt[15] == 2);
    }
    n = buckets(t, "gptqd_job_duration_seconds", "failed", le, cnt, 32);
    CHECK_EQ_INT(n, 16);
    if (n == 16) {
        CHECK(cnt[0] == 1);
        CHECK(cnt[14] == 1);
        CHECK(cnt[15] == 2);
    }
    n = buckets(t, "gptqd_job_duration_seconds", "cancelled", le, cnt, 32);
    CHECK_EQ_INT(n, 16);
    if (n == 16)
        CHECK(cnt[15] == 0);
    CHECK(value_of(t, "gptqd_job_duration_seconds_count", "status", "succeeded", NULL, NULL) == 2);
    CHECK(value_of(t, "gptqd_job_duration_seconds_sum", "status", "succeeded", NULL, NULL) == 4030);
    CHECK(value_of(t, "gptqd_job_duration_seconds_count", "status", "failed", NULL, NULL) == 2);
    CHECK(value_of(t, "gptqd_job_duration_seconds_count", "status", "cancelled", NULL, NULL) == 0);
    CHECK(isnan(value_of(t, "gptqd_job_duration_seconds_count", "status", "quantizing", NULL, NULL)));
    free(t);
    metrics_free(m);
}

/* The family a sample belongs to: histogram series drop their suffix. */
static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

static void family_of(char *out, size_t cap, const char *name)
{
    static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
    size_t i;
    snprintf(out, cap, "%s", name);
    for (i = 0; i < 3; i++)
        if (ends_with(name, suffixes[i])) {
            snprintf(out, cap, "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
            return;
        }
}

/*
 * Every line is a # HELP, a # TYPE (with a known type, once per family,
 * before its samples) or a well-formed sample of a family whose TYPE came
 * first; no sample series appears twice; the text ends with a newline.
 */
static void check_format(const char *t)
{
    char families[64][96], types[64][32], seen[512][320];
    size_t nfam = 0, nseen = 0, i;
    const char *p = t;
    char line[512];
    int lineno = 0;

    CHECK(t[0] != '\0' && t[strlen(t) - 1] == '\n');
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        struct sample s;
        const char *why = "";
        char fam[96];
        int found = 0;

        lineno++;
        CHECK_MSG(n < sizeof(line), "line %d too long", lineno);
        if (n >= sizeof(line))
            return;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : p + n;
        CHECK_MSG(line[0] != '\0', "empty line %d", lineno);
        if (!strncmp(line, "# HELP ", 7)) {
            CHECK_MSG(strchr(line + 7, ' ') != NULL, "HELP without text: %s", line);
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[96] = "", type[32] = "";
            CHECK_MSG(sscanf(line + 7, "%95s %31s", name, type) == 2, "bad TYPE: %s", line);
            CHECK_MSG(!strcmp(type, "counter") || !strcmp(type, "gauge") || !strcmp(type, "histogram"),
                      "type %s", type);
            for (i = 0; i < nfam; i++)
                CHECK_MSG(strcmp(families[i], name) != 0, "TYPE %s twice", name);
            if (nfam < 64) {
                snprintf(families[nfam], sizeof(families[0]), "%s", name);
                snprintf(types[nfam], sizeof(types[0]), "%s", type);
                nfam++;
            }
            continue;
        }
        CHECK_MSG(line[0] != '#', "unknown comment line: %s", line);
        CHECK_MSG(parse_sample(&s, line, &why) == 0, "line %d '%s': %s", lineno, line, why);
        /* a sample belongs to a family TYPE'd before it (histograms: by suffix) */
        family_of(fam, sizeof(fam), s.name);
        for (i = 0; i < nfam; i++)
            if (!strcmp(families[i], s.name) ||
                (!strcmp(families[i], fam) && !strcmp(types[i], "histogram")))
                found = 1;
        CHECK_MSG(found, "sample before its TYPE: %s", line);
        if (ends_with(s.name, "_bucket"))
            CHECK_MSG(label(&s, "le") != NULL, "bucket without le: %s", line);
        if (ends_with(s.name, "_total"))
            CHECK_MSG(s.value >= 0, "negative counter: %s", line);
        /* the series (the text before the value) is unique */
        {
            const char *sp = strrchr(line, ' ');
            size_t k = (size_t)(sp - line);
            for (i = 0; i < nseen; i++)
                CHECK_MSG(strlen(seen[i]) != k || strncmp(seen[i], line, k) != 0, "duplicate series %s", line);
            if (nseen < 512 && k < sizeof(seen[0]))
                snprintf(seen[nseen++], sizeof(seen[0]), "%.*s", (int)k, line);
        }
    }
    CHECK(nfam >= 7);   /* 9 with the store gauges */
}

static void test_metrics__render_format(void)
{
    metrics *m = new_metrics();
    int64_t counts[JOB_NSTATUS] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    char *t;

    if (!m)
        return;
    /* an empty registry is valid text too */
    t = render(m, counts);
    if (t) {
        const char *q = t;
        int ntype = 0;
        check_format(t);
        while ((q = strstr(q, "# TYPE ")) != NULL)
            q++, ntype++;
        CHECK_EQ_INT(ntype, 9);
        CHECK(strstr(t, "# TYPE gptqd_http_requests_total counter\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_http_request_duration_seconds histogram\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_job_duration_seconds histogram\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_jobs gauge\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_queue_depth gauge\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_jobs_running gauge\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_hub_bytes_downloaded_total counter\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_webhook_deliveries_total counter\n") != NULL);
        CHECK(strstr(t, "# TYPE gptqd_uptime_seconds gauge\n") != NULL);
        CHECK(strstr(t, "# HELP gptqd_http_requests_total ") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_bucket{le=\"+Inf\"} 0\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_sum 0\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_count 0\n") != NULL);
        CHECK(strstr(t, "gptqd_job_duration_seconds_bucket{status=\"failed\",le=\"86400\"} 0\n") != NULL);
        CHECK(strstr(t, "gptqd_job_duration_seconds_count{status=\"failed\"} 0\n") != NULL);
        CHECK(strstr(t, "gptqd_jobs{status=\"cancelled\"} 9\n") != NULL);
    }
    free(t);

    metrics_http(m, "GET", "/v1/jobs", 200, 0.01);
    metrics_http(m, "DELETE", "/v1/jobs/{id}", 409, 0.02);
    metrics_http(m, "GET", NULL, 404, 0.1);
    metrics_job_finished(m, JOB_CANCELLED, 3);
    metrics_webhook(m, "delivered");
    t = render(m, counts);
    if (t) {
        check_format(t);
        CHECK(strstr(t, "gptqd_http_requests_total{route=\"/v1/jobs/{id}\",code=\"409\"} 1\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_bucket{le=\"0.0005\"} 0\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_bucket{le=\"0.01\"} 1\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_bucket{le=\"2.5\"} 3\n") != NULL);
        CHECK(strstr(t, "gptqd_http_request_duration_seconds_sum 0.13\n") != NULL);
        CHECK(strstr(t, "gptqd_job_duration_seconds_bucket{status=\"cancelled\",le=\"5\"} 1\n") != NULL);
        CHECK(strstr(t, "gptqd_job_duration_seconds_sum{status=\"cancelled\"} 3\n") != NULL);
    }
    free(t);
    metrics_free(m);
}

static void test_metrics__label_escaping(void)
{
    metrics *m = new_metrics();
    const char *nasty = "/a\"b\\c\nd";
    char *t;

    if (!m)
        return;
    metrics_http(m, "GET", nasty, 200, 0.01);
    t = render(m, NULL);
    if (t) {
        check_format(t);
        CHECK(strstr(t, "{route=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 1\n") != NULL);
        /* and the parser's unescaping gives the original back */
        CHECK(value_of(t, "gptqd_http_requests_total", "route", nasty, "code", "200") == 1);
    }
    free(t);
    metrics_free(m);
}

/* More distinct pairs than the table holds: none is lost. */
static void test_metrics__table_overflow(void)
{
    metrics *m = new_metrics();
    char route[32];
    char *t;
    int i;

    if (!m)
        return;
    for (i = 0; i < 100; i++) {
        snprintf(route, sizeof(route), "/r%d", i);
        metrics_http(m, "GET", route, 200, 0.001);
        metrics_http(m, "GET", route, 200, 0.001);
    }
    t = render(m, NULL);
    if (t) {
        double sum = 0;
        const char *p = t;
        check_format(t);
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "/r0", "code", "200") == 2);
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "/r63", "code", "200") == 2);
        CHECK(isnan(value_of(t, "gptqd_http_requests_total", "route", "/r64", "code", "200")));
        CHECK(value_of(t, "gptqd_http_requests_total", "route", "other", "code", "other") == 72);
        while ((p = strstr(p, "gptqd_http_requests_total{")) != NULL) {
            p = strchr(p, '}') + 2;
            sum += strtod(p, NULL);
        }
        CHECK(sum == 200);
        CHECK(value_of(t, "gptqd_http_request_duration_seconds_count", NULL, NULL, NULL, NULL) == 200);
    }
    free(t);
    metrics_free(m);
}

/* ---- concurrency ---- */

#define THREADS 4
#define PER_THREAD 50000

static const char *const routes[] = { "/v1/jobs", "/v1/jobs/{id}", "/healthz", "/metrics" };
static const int codes[] = { 200, 201, 404, 500, 503 };

struct worker {
    metrics *m;
    int id;
};

static void *hammer(void *arg)
{
    const struct worker *w = arg;
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        /* every thread walks the pairs in another order, so inserts race */
        int k = (i + w->id * 7) % 20;
        metrics_http(w->m, "GET", routes[k % 4], codes[k % 5], 0.001 * (double)(i % 3));
        metrics_job_finished(w->m, (i & 1) ? JOB_SUCCEEDED : JOB_FAILED, 1.0);
        metrics_bytes_downloaded(w->m, 3);
        metrics_jobs_running(w->m, (i & 1) ? -1 : 1);
        metrics_webhook(w->m, "retried");
    }
    return NULL;
}

static void *scrape(void *arg)
{
    metrics *m = arg;
    int i;
    for (i = 0; i < 20; i++) {
        char *t = metrics_render(m, NULL, 1, NULL);
        if (!t)
            return (void *)1;
        free(t);
    }
    return NULL;
}

static void test_metrics__concurrent(void)
{
    metrics *m = new_metrics();
    pthread_t th[THREADS + 1];
    struct worker w[THREADS];
    void *ret = NULL;
    char *t;
    int i, k;
    double total = 0;

    if (!m)
        return;
    for (i = 0; i < THREADS; i++) {
        w[i].m = m;
        w[i].id = i;
        CHECK(pthread_create(&th[i], NULL, hammer, &w[i]) == 0);
    }
    CHECK(pthread_create(&th[THREADS], NULL, scrape, m) == 0);
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(th[THREADS], &ret);
    CHECK(ret == NULL);

    t = render(m, NULL);
    if (t) {
        check_format(t);
        /* each of the 20 pairs got exactly PER_THREAD / 20 calls from each thread */
        for (k = 0; k < 20; k++) {
            char code[8];
            double v;
            snprintf(code, sizeof(code), "%d", codes[k % 5]);
            v = value_of(t, "gptqd_http_requests_total", "route", routes[k % 4], "code", code);
            CHECK_MSG(v == (double)THREADS * PER_THREAD / 20, "%s %s: %g", routes[k % 4], code, v);
            total += v;
        }
        CHECK(total == (double)THREADS * PER_THREAD);
        CHECK(value_of(t, "gptqd_http_request_duration_seconds_count", NULL, NULL, NULL, NULL) ==
              (double)THREADS * PER_THREAD);
        CHECK(value_of(t, "gptqd_job_duration_seconds_count", "status", "succeeded", NULL, NULL) ==
              (double)THREADS * PER_THREAD / 2);
        CHECK(value_of(t, "gptqd_job_duration_seconds_sum", "status", "failed", NULL, NULL) ==
              (double)THREADS * PER_THREAD / 2);
        CHECK(value_of(t, "gptqd_hub_bytes_downloaded_total", NULL, NULL, NULL, NULL) ==
              3.0 * THREADS * PER_THREAD);
        CHECK(value_of(t, "gptqd_jobs_running", NULL, NULL, NULL, NULL) == 0);
        CHECK(value_of(t, "gptqd_webhook_deliveries_total", "result", "retried", NULL, NULL) ==
              (double)THREADS * PER_THREAD);
    }
    free(t);
    metrics_free(m);
}

int main(void)
{
    t_prog = "test_metrics";
    RUN(test_metrics__counts);
    RUN(test_metrics__null_safe);
    RUN(test_metrics__histogram_buckets);
    RUN(test_metrics__render_format);
    RUN(test_metrics__label_escaping);
    RUN(test_metrics__table_overflow);
    RUN(test_metrics__concurrent);
    return test_report();
}
