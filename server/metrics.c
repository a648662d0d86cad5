/*
 * metrics.c - the daemon's counters and histograms, rendered as Prometheus
 * text exposition format 0.0.4 (see metrics.h).
 *
 * DESIGN
 *
 * Every update is a handful of relaxed C11 atomic adds, so HTTP threads,
 * workers and the webhook sender never contend on a lock.  Updates are
 * independent facts ("one more request", "one more second of job time"),
 * and a scrape only needs each number to be a value it really had, so
 * relaxed ordering is enough; the one place that needs ordering is the
 * request-counter table below.
 *
 * HTTP requests are counted per (route, status code).  Routes come from a
 * small static table and codes from a handful of statuses, so the pairs
 * live in a fixed table of HTTP_SLOTS slots.  Finding a pair is a linear
 * scan of the published slots without a lock.  A new pair is added under
 * ins_mu: the slot's route and code are written first and the slot is then
 * published by a release store of nslots, which readers load with acquire,
 * so a reader never sees a half-written slot and a published slot is never
 * written again.  Should the table ever fill up, further new pairs are
 * counted in one overflow counter rendered as {route="other",code="other"}
 * rather than lost.
 *
 * Histograms keep one non-cumulative counter per bucket plus +Inf; the
 * renderer adds them up, so the cumulative _bucket series are monotone and
 * the +Inf bucket equals _count by construction even while writers run.
 * _sum is a double updated with a compare-and-swap loop on its bits.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define HTTP_SLOTS 64
#define ROUTE_MAX 128
#define MAX_BUCKETS 16

/* Request latency: half a millisecond (a cached GET) to ten seconds. */
static const double http_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
/* Job wall time: a second (a cancelled job) to a day (a 70B model). */
static const double job_bounds[] = { 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                                     7200, 14400, 28800, 43200, 86400 };

#define NBOUNDS(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(NBOUNDS(http_bounds) < MAX_BUCKETS, "http buckets fit");
_Static_assert(NBOUNDS(job_bounds) < MAX_BUCKETS, "job buckets fit");

struct hist {
    const double *bounds;
    size_t nbounds;
    atomic_uint_fast64_t bucket[MAX_BUCKETS];   /* [nbounds] is +Inf; not cumulative */
    _Atomic double sum;
};

struct http_slot {
    char route[ROUTE_MAX];      /* written once, before the slot is published */
    int code;
    atomic_uint_fast64_t count;
};

/* The terminal statuses that have a job-duration histogram, in render order. */
static const enum job_status job_terminals[] = { JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED };
#define NTERMINAL (sizeof(job_terminals) / sizeof(job_terminals[0]))

static const char *const webhook_results[] = { "delivered", "retried", "gave_up" };
#define NWEBHOOK (sizeof(webhook_results) / sizeof(webhook_results[0]))

struct metrics {
    pthread_mutex_t ins_mu;                 /* serialises inserting a new slot */
    atomic_size_t nslots;                   /* published slots */
    struct http_slot slots[HTTP_SLOTS];
    atomic_uint_fast64_t http_overflow;     /* requests of pairs that found no slot */
    struct hist http_hist;
    struct hist job_hist[NTERMINAL];
    atomic_uint_fast64_t bytes_downloaded;
    atomic_int jobs_running;
    atomic_uint_fast64_t webhook[NWEBHOOK];
};

static void hist_init(struct hist *h, const double *bounds, size_t n)
{
    size_t i;
    h->bounds = bounds;
    h->nbounds = n;
    for (i = 0; i < MAX_BUCKETS; i++)
        atomic_init(&h->bucket[i], 0);
    atomic_init(&h->sum, 0.0);
}

/* Negative, NaN or infinite durations (a clock gone backwards) count as 0. */
static void hist_observe(struct hist *h, double v)
{
    size_t i = 0;
    double old;

    if (!(v >= 0) || isinf(v))
        v = 0;
    while (i < h->nbounds && v > h->bounds[i])   /* le: v <= bound falls in that bucket */
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + v, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

int metrics_new(metrics **out, gq_err *e)
{
    metrics *m;
    size_t i;

    GQ_ASSERT_ARG(e, out != NULL);
    *out = NULL;
    if (!(m = gq_calloc(1, sizeof(*m))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory allocating metrics");
    if (pthread_mutex_init(&m->ins_mu, NULL) != 0) {
        gq_free(m);
        return GQ_FAIL(e, GQ_ENOMEM, "cannot create the metrics mutex");
    }
    atomic_init(&m->nslots, 0);
    for (i = 0; i < HTTP_SLOTS; i++)
        atomic_init(&m->slots[i].count, 0);
    atomic_init(&m->http_overflow, 0);
    hist_init(&m->http_hist, http_bounds, NBOUNDS(http_bounds));
    for (i = 0; i < NTERMINAL; i++)
        hist_init(&m->job_hist[i], job_bounds, NBOUNDS(job_bounds));
    atomic_init(&m->bytes_downloaded, 0);
    atomic_init(&m->jobs_running, 0);
    for (i = 0; i < NWEBHOOK; i++)
        atomic_init(&m->webhook[i], 0);
    *out = m;
    return 0;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->ins_mu);
    gq_free(m);
}

static struct http_slot *find_slot(metrics *m, size_t n, const char *route, int code)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (m->slots[i].code == code && strcmp(m->slots[i].route, route) == 0)
            return &m->slots[i];
    return NULL;
}

/*
 * One answered request.  The method is not a label (the route pattern
 * already names the resource, and the method is in the access log); it
 * stays in the signature for the caller's convenience.  Any thread.
 */
void metrics_http(metrics *m, const char *method, const char *route, int status, double seconds)
{
    struct http_slot *slot;
    size_t n;

    (void)method;
    if (!m)
        return;
    if (!route)
        route = "other";
    n = atomic_load_explicit(&m->nslots, memory_order_acquire);
    slot = find_slot(m, n, route, status);
    if (!slot) {
        pthread_mutex_lock(&m->ins_mu);
        /* another thread may have added it since the scan */
        n = atomic_load_explicit(&m->nslots, memory_order_relaxed);
        slot = find_slot(m, n, route, status);
        if (!slot && n < HTTP_SLOTS) {
            slot = &m->slots[n];
            snprintf(slot->route, sizeof(slot->route), "%s", route);
            slot->code = status;
            atomic_store_explicit(&m->nslots, n + 1, memory_order_release);
        }
        pthread_mutex_unlock(&m->ins_mu);
    }
    if (slot)
        atomic_fetch_add_explicit(&slot->count, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&m->http_overflow, 1, memory_order_relaxed);
    hist_observe(&m->http_hist, seconds);
}

/* Non-terminal statuses have no histogram and are ignored.  Any thread. */
void metrics_job_finished(metrics *m, enum job_status status, double seconds)
{
    size_t i;
    if (!m)
        return;
    for (i = 0; i < NTERMINAL; i++)
        if (job_terminals[i] == status)
            hist_observe(&m->job_hist[i], seconds);
}

void metrics_bytes_downloaded(metrics *m, uint64_t n)
{
    if (m)
        atomic_fetch_add_explicit(&m->bytes_downloaded, n, memory_order_relaxed);
}

void metrics_jobs_running(metrics *m, int delta)
{
    if (m)
        atomic_fetch_add_explicit(&m->jobs_running, delta, memory_order_relaxed);
}

/* An unknown result name is ignored (no new series appear at run time). */
void metrics_webhook(metrics *m, const char *result)
{
    size_t i;
    if (!m || !result)
        return;
    for (i = 0; i < NWEBHOOK; i++)
        if (strcmp(webhook_results[i], result) == 0)
            atomic_fetch_add_explicit(&m->webhook[i], 1, memory_order_relaxed);
}

/* ---- rendering ---- */

/*
 * A malloc'd text buffer (metrics_render's result is released with free(),
 * so it does not go through gq_buf's allocator).  After the first failed
 * append the buffer is marked failed and later appends do nothing.
 */
struct out {
    char *p;
    size_t len, cap;
    int failed;
};

static void out_grow(struct out *o, size_t extra)
{
    size_t cap;
    char *p;

    if (o->failed || o->len + extra + 1 <= o->cap)
        return;
    cap = o->cap ? o->cap : 4096;
    while (cap < o->len + extra + 1)
        cap *= 2;
    if (!(p = realloc(o->p, cap))) {
        o->failed = 1;
        return;
    }
    o->p = p;
    o->cap = cap;
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return;
    }
    out_grow(o, (size_t)n);
    if (o->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* A label value with \, " and newline escaped as the text format requires. */
static void out_label_value(struct out *o, const char *s)
{
    for (; *s; s++) {
        out_grow(o, 2);
        if (o->failed)
            return;
        if (*s == '\\' || *s == '"') {
            o->p[o->len++] = '\\';
            o->p[o->len++] = *s;
        } else if (*s == '\n') {
            o->p[o->len++] = '\\';
            o->p[o->len++] = 'n';
        } else {
            o->p[o->len++] = *s;
        }
    }
    if (!o->failed)
        o->p[o->len] = '\0';
}

/*
 * A float sample value: the shortest of %.15g / %.17g that reads back as
 * the same double, and the text format's spellings of the special values.
 */
static void fmt_double(char out[32], double v)
{
    if (isnan(v)) {
        snprintf(out, 32, "NaN");
    } else if (isinf(v)) {
        snprintf(out, 32, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, 32, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 32, "%.17g", v);
    }
}

static void out_header(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * The _bucket, _sum and _count series of one histogram.  label is either
 * "" or a complete `key="value",` prefix for the other labels (already
 * escaped).
 */
static void out_hist(struct out *o, const char *name, const char *label, const struct hist *h)
{
    uint64_t cum = 0;
    size_t i;
    char num[32];

    for (i = 0; i <= h->nbounds; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < h->nbounds)
            fmt_double(num, h->bounds[i]);
        else
            snprintf(num, sizeof(num), "+Inf");
        out_printf(o, "%s_bucket{%sle=\"%s\"} %llu\n", name, label, num, (unsigned long long)cum);
    }
    fmt_double(num, atomic_load_explicit(&h->sum, memory_order_relaxed));
    if (*label) {
        /* the prefix ends in ','; the braces of _sum/_count must not */
        out_printf(o, "%s_sum{%.*s} %s\n", name, (int)strlen(label) - 1, label, num);
        out_printf(o, "%s_count{%.*s} %llu\n", name, (int)strlen(label) - 1, label,
                   (unsigned long long)cum);
    } else {
        out_printf(o, "%s_sum %s\n", name, num);
        out_printf(o, "%s_count %llu\n", name, (unsigned long long)cum);
    }
}

/*
 * The exposition text.  counts (may be NULL: the job gauges are left out,
 * since unknown is not zero) comes from store_counts.  The caller owns the
 * result (free()); *len (may be NULL) gets its length.  NULL on OOM.  Any
 * thread, concurrently with updates.
 */
char *metrics_render(const metrics *m, const int64_t counts[JOB_NSTATUS], double uptime_seconds, size_t *len)
{
    struct out o = { NULL, 0, 0, 0 };
    size_t i, n;
    char num[32];

    if (len)
        *len = 0;
    if (!m)
        return NULL;

    out_header(&o, "gptqd_http_requests_total", "counter", "HTTP requests answered, by route pattern and status code.");
    n = atomic_load_explicit(&m->nslots, memory_order_acquire);
    for (i = 0; i < n; i++) {
        const struct http_slot *s = &m->slots[i];
        out_printf(&o, "gptqd_http_requests_total{route=\"");
        out_label_value(&o, s->route);
        out_printf(&o, "\",code=\"%d\"} %llu\n", s->code,
                   (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
    }
    {
        uint64_t over = atomic_load_explicit(&m->http_overflow, memory_order_relaxed);
        if (over)
            out_printf(&o, "gptqd_http_requests_total{route=\"other\",code=\"other\"} %llu\n",
                       (unsigned long long)over);
    }

    out_header(&o, "gptqd_http_request_duration_seconds", "histogram", "Time to answer an HTTP request, all routes.");
    out_hist(&o, "gptqd_http_request_duration_seconds", "", &m->http_hist);

    if (counts) {
        out_header(&o, "gptqd_jobs", "gauge", "Jobs in the store, by status.");
        for (i = 0; i < JOB_NSTATUS; i++)
            out_printf(&o, "gptqd_jobs{status=\"%s\"} %lld\n", job_status_name((enum job_status)i),
                       (long long)counts[i]);
        out_header(&o, "gptqd_queue_depth", "gauge", "Jobs waiting to run.");
        out_printf(&o, "gptqd_queue_depth %lld\n", (long long)counts[JOB_QUEUED]);
    }

    out_header(&o, "gptqd_jobs_running", "gauge", "Jobs running on a worker now.");
    out_printf(&o, "gptqd_jobs_running %d\n", atomic_load_explicit(&m->jobs_running, memory_order_relaxed));

    out_header(&o, "gptqd_job_duration_seconds", "histogram",
               "Wall time of a job's last attempt, by terminal status.");
    for (i = 0; i < NTERMINAL; i++) {
        char label[64];
        snprintf(label, sizeof(label), "status=\"%s\",", job_status_name(job_terminals[i]));
        out_hist(&o, "gptqd_job_duration_seconds", label, &m->job_hist[i]);
    }

    out_header(&o, "gptqd_hub_bytes_downloaded_total", "counter", "Bytes downloaded from the Hugging Face Hub.");
    out_printf(&o, "gptqd_hub_bytes_downloaded_total %llu\n",
               (unsigned long long)atomic_load_explicit(&m->bytes_downloaded, memory_order_relaxed));

    out_header(&o, "gptqd_webhook_deliveries_total", "counter", "Webhook delivery attempts, by outcome.");
    for (i = 0; i < NWEBHOOK; i++)
        out_printf(&o, "gptqd_webhook_deliveries_total{result=\"%s\"} %llu\n", webhook_results[i],
                   (unsigned long long)atomic_load_explicit(&m->webhook[i], memory_order_relaxed));

    out_header(&o, "gptqd_uptime_seconds", "gauge", "Seconds since the daemon started.");
    fmt_double(num, uptime_seconds);
    out_printf(&o, "gptqd_uptime_seconds %s\n", num);

    if (o.failed) {
        free(o.p);
        return NULL;
    }
    if (len)
        *len = o.len;
    return o.p;
}
