/*
 * test_webhook.c - server/webhook.c against the real store (a temporary
 * database file) and a libmicrohttpd receiver on an ephemeral 127.0.0.1
 * port: what a delivery looks like on the wire (body, headers, a
 * signature that verifies, computed here independently with OpenSSL's
 * one-shot HMAC()), retries with backoff until a 2xx, giving up after
 * max_attempts, unsigned deliveries, a connection that is refused, notify
 * waking an idle sender, and stopping quickly both mid-POST and while a
 * retry is scheduled far away.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "store.h"
#include "test.h"
#include "webhook.h"

#define MAX_HITS 8
#define WAIT_MS 5000      /* the longest any case waits for the sender */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- the receiver ---- */

struct hit {
    char method[8];
    char path[64];
    char body[2048];
    char ctype[64], ua[64], event[48], delivery[24], ts[32], sig[96], expect[32];
    int has_sig, has_ts;
    int64_t t_ms;
};

struct recv {
    struct MHD_Daemon *d;
    char url[80];
    pthread_mutex_t mu;
    int hits;                   /* requests answered (or being held) */
    struct hit hit[MAX_HITS];
    int codes[MAX_HITS];        /* the reply to request i; the last one repeats */
    int ncodes;
    int hang;                   /* under mu: hold each request until release (or 5 s) */
    atomic_int release;
};

struct upload {
    char *p;
    size_t n;
};

static void copy_header(char *dst, size_t cap, struct MHD_Connection *c, const char *name, int *present)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(dst, cap, "%s", v ? v : "");
    if (present)
        *present = v != NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **req_cls)
{
    struct recv *r = cls;
    struct upload *u = *req_cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    int idx, code, hang;

    (void)version;
    if (!u) {
        if (!(u = calloc(1, sizeof(*u))))
            return MHD_NO;
        *req_cls = u;
        return MHD_YES;
    }
    if (*size) {
        char *p = realloc(u->p, u->n + *size + 1);
        if (!p)
            return MHD_NO;
        memcpy(p + u->n, data, *size);
        u->p = p;
        u->n += *size;
        u->p[u->n] = '\0';
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&r->mu);
    idx = r->hits++;
    code = r->ncodes ? r->codes[idx < r->ncodes ? idx : r->ncodes - 1] : 200;
    hang = r->hang;
    if (idx < MAX_HITS) {
        struct hit *h = &r->hit[idx];
        h->t_ms = mono_ms();
        snprintf(h->method, sizeof(h->method), "%s", method);
        snprintf(h->path, sizeof(h->path), "%s", url);
        snprintf(h->body, sizeof(h->body), "%s", u->p ? u->p : "");
        copy_header(h->ctype, sizeof(h->ctype), c, "Content-Type", NULL);
        copy_header(h->ua, sizeof(h->ua), c, "User-Agent", NULL);
        copy_header(h->event, sizeof(h->event), c, "X-Gptqd-Event", NULL);
        copy_header(h->delivery, sizeof(h->delivery), c, "X-Gptqd-Delivery", NULL);
        copy_header(h->ts, sizeof(h->ts), c, "X-Gptqd-Timestamp", &h->has_ts);
        copy_header(h->sig, sizeof(h->sig), c, "X-Gptqd-Signature", &h->has_sig);
        copy_header(h->expect, sizeof(h->expect), c, "Expect", NULL);
    }
    pthread_mutex_unlock(&r->mu);
    if (hang) {
        int64_t until = mono_ms() + 5000;
        while (!atomic_load(&r->release) && mono_ms() < until)
            sleep_ms(5);
    }
    resp = MHD_create_response_from_buffer(2, "ok", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    ret = MHD_queue_response(c, (unsigned int)code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct upload *u = *req_cls;
    (void)cls, (void)c, (void)toe;
    if (u) {
        free(u->p);
        free(u);
    }
    *req_cls = NULL;
}

/* Start a receiver that answers request i with codes[i] (the last repeats). */
static int recv_start(struct recv *r, const int *codes, int ncodes)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    int i;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->release, 0);
    for (i = 0; i < ncodes && i < MAX_HITS; i++)
        r->codes[i] = codes[i];
    r->ncodes = i;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                            on_request, r, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!r->d)
        return -1;
    info = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port)
        return -1;
    snprintf(r->url, sizeof(r->url), "http://127.0.0.1:%u/hook?token=abc", (unsigned)info->port);
    return 0;
}

static void recv_stop(struct recv *r)
{
    atomic_store(&r->release, 1);
    if (r->d)
        MHD_stop_daemon(r->d);
    r->d = NULL;
    pthread_mutex_destroy(&r->mu);
}

static int recv_hits(struct recv *r)
{
    int n;
    pthread_mutex_lock(&r->mu);
    n = r->hits;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- the fixture: a database with one job and its delivery ---- */

struct fx {
    char dir[64], db[96];
    store *st;
    struct job *job;            /* heap strings: the store may replace or free them (job_free) */
    char body[512];
    int64_t seq;                /* of the delivery */
    metrics *m;
    webhook_sender *w;
    struct recv r;
    int have_recv;
    int refuse_private;         /* start the sender without allow_private */
};

static int fx_setup(struct fx *f)
{
    gq_err e = GQ_ERR_INIT;
    int rc;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_webhook.XXXXXX");
    if (!mkdtemp(f->dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/gptqd.db", f->dir);
    CHECK_OK(rc = store_migrate(f->db, NULL, NULL, &e), &e);
    if (rc < 0)
        return -1;
    CHECK_OK(rc = store_open(&f->st, f->db, &e), &e);
    if (rc < 0)
        return -1;
    CHECK_OK(rc = metrics_new(&f->m, &e), &e);
    if (rc < 0)
        return -1;
    if (!(f->job = calloc(1, sizeof(*f->job))) || !(f->job->model = strdup("org/name")) ||
        !(f->job->revision = strdup("main")) || !(f->job->spec = strdup("{\"model\":\"org/name\"}")) ||
        !(f->job->callback_url = strdup("http://127.0.0.1:1/unused"))) {
        CHECK_MSG(0, "out of memory");
        return -1;
    }
    CHECK_OK(rc = store_jobs_insert(f->st, f->job, 1, NULL, &e), &e);
    if (rc < 0)
        return -1;
    snprintf(f->body, sizeof(f->body), "{\"id\":\"%s\",\"status\":\"succeeded\",\"model\":\"org/name\"}",
             f->job->id);
    return 0;
}

/* fx_setup plus a receiver answering codes; -1 (checks failed) when either failed. */
static int fx_begin(struct fx *f, const int *codes, int ncodes)
{
    if (fx_setup(f) < 0)
        return -1;
    if (recv_start(&f->r, codes, ncodes) < 0) {
        CHECK_MSG(0, "cannot start the receiver");
        if (f->r.d)
            MHD_stop_daemon(f->r.d);
        pthread_mutex_destroy(&f->r.mu);
        return -1;
    }
    f->have_recv = 1;
    return 0;
}

/* Queue the job's delivery to url and remember its seq. */
static int fx_add(struct fx *f, const char *url)
{
    gq_err e = GQ_ERR_INIT;
    struct webhook *due = NULL;
    size_t n = 0;
    int rc;

    CHECK_OK(rc = store_webhook_add(f->st, f->job->id, url, f->body, &e), &e);
    if (rc < 0)
        return -1;
    CHECK_OK(rc = store_webhooks_due(&due, &n, f->st, store_now_ms() + 1000, 10, &e), &e);
    if (rc == 0 && n > 0) {
        f->seq = due[n - 1].seq;
        CHECK(strcmp(due[n - 1].job_id, f->job->id) == 0);
        CHECK_EQ_INT(due[n - 1].attempts, 0);
    }
    CHECK(n > 0);
    webhook_array_free(due, n);
    return rc;
}

static int fx_start(struct fx *f, const char *secret, int max_attempts, long backoff_ms, long backoff_max_ms,
                    long timeout_ms)
{
    struct webhook_config cfg;
    gq_err e = GQ_ERR_INIT;
    int rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.db_path = f->db;
    cfg.secret = secret;
    cfg.allow_private = !f->refuse_private;   /* the receivers are on 127.0.0.1 */
    cfg.max_attempts = max_attempts;
    cfg.backoff_ms = backoff_ms;
    cfg.backoff_max_ms = backoff_max_ms;
    cfg.timeout_ms = timeout_ms;
    cfg.metrics = f->m;
    CHECK_OK(rc = webhook_start(&f->w, &cfg, &e), &e);
    return rc;
}

/* The earliest next_ms of an undelivered delivery (-1: none), -2 on error. */
static int64_t next_due(struct fx *f)
{
    gq_err e = GQ_ERR_INIT;
    int64_t next = -2;
    if (store_webhook_next_due(&next, f->st, &e) < 0)
        return -2;
    return next;
}

/* Wait until the receiver saw hits requests and nothing is pending. 0, or -1 on timeout. */
static int fx_wait_settled(struct fx *f, int hits)
{
    int64_t until = mono_ms() + WAIT_MS;
    while (mono_ms() < until) {
        if (recv_hits(&f->r) >= hits && next_due(f) == -1)
            return 0;
        sleep_ms(5);
    }
    return -1;
}

static double webhook_count(struct fx *f, const char *result)
{
    char *t = metrics_render(f->m, NULL, 0, NULL), *p;
    char key[96];
    double v = -1;

    if (!t)
        return -1;
    snprintf(key, sizeof(key), "gptqd_webhook_deliveries_total{result=\"%s\"} ", result);
    if ((p = strstr(t, key)) != NULL)
        v = strtod(p + strlen(key), NULL);
    free(t);
    return v;
}

static void fx_teardown(struct fx *f)
{
    char path[160];
    webhook_stop(f->w);
    f->w = NULL;
    if (f->have_recv)
        recv_stop(&f->r);
    CHECK_EQ_INT(store_close(f->st), 0);
    metrics_free(f->m);
    job_free(f->job);
    snprintf(path, sizeof(path), "%s", f->db);
    unlink(path);
    snprintf(path, sizeof(path), "%s-wal", f->db);
    unlink(path);
    snprintf(path, sizeof(path), "%s-shm", f->db);
    unlink(path);
    rmdir(f->dir);
}

/* hex HMAC-SHA256(key, msg) with OpenSSL's one-shot HMAC(), as "sha256=<hex>". */
static void ref_sign(char out[72], const char *key, const char *msg)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &n);
    strcpy(out, "sha256=");
    for (i = 0; i < n && i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* ---- cases ---- */

static void test_webhook__sign(void)
{
    char got[72], want[72];
    const char *body = "{\"id\":\"j_1\",\"status\":\"failed\"}";
    char msg[128];

    webhook_sign(got, "s3cret", "1700000000", body, strlen(body));
    snprintf(msg, sizeof(msg), "1700000000.%s", body);
    ref_sign(want, "s3cret", msg);
    CHECK_MSG(strcmp(got, want) == 0, "%s != %s", got, want);
    CHECK_EQ_INT(strlen(got), 71);
    /* golden value from `openssl dgst -sha256 -hmac s3cret` over the same bytes */
    CHECK(strcmp(got, "sha256=eacebb6ac5c3ead4d34d96a20a9161d9ea50cd7cab8c38e7fc011625d27a1500") == 0);
    /* an empty body: the MAC still covers "<timestamp>." */
    webhook_sign(got, "Jefe", "what do ya want for nothing?", "", 0);
    ref_sign(want, "Jefe", "what do ya want for nothing?.");
    CHECK(strcmp(got, want) == 0);
    /* len bounds the body; bytes after it are not signed */
    webhook_sign(got, "k", "1", "abcdef", 3);
    ref_sign(want, "k", "1.abc");
    CHECK(strcmp(got, want) == 0);
    /* a different key or timestamp changes it */
    webhook_sign(want, "k2", "1", "abcdef", 3);
    CHECK(strcmp(got, want) != 0);
    webhook_sign(want, "k", "2", "abcdef", 3);
    CHECK(strcmp(got, want) != 0);
}

static void test_webhook__delivered_signed(void)
{
    struct fx f;
    char want[72], msg[2200];
    const struct hit *h;
    long long ts;
    char seq[24];

    if (fx_begin(&f, (const int[]){ 200 }, 1) < 0) {
        fx_teardown(&f);
        return;
    }
    if (fx_add(&f, f.r.url) < 0 || fx_start(&f, "s3cret", 3, 20, 100, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    CHECK_MSG(fx_wait_settled(&f, 1) == 0, "not delivered in time (%d hits)", recv_hits(&f.r));
    sleep_ms(50);   /* nothing more may arrive */
    CHECK_EQ_INT(recv_hits(&f.r), 1);
    h = &f.r.hit[0];
    CHECK(strcmp(h->method, "POST") == 0);
    CHECK(strcmp(h->path, "/hook") == 0);
    CHECK_MSG(strcmp(h->body, f.body) == 0, "body '%s'", h->body);
    CHECK(strcmp(h->ctype, "application/json") == 0);
    CHECK_MSG(strncmp(h->ua, "gptqd/", 6) == 0, "user agent '%s'", h->ua);
    CHECK_MSG(strcmp(h->event, "job.succeeded") == 0, "event '%s'", h->event);
    snprintf(seq, sizeof(seq), "%" PRId64, f.seq);
    CHECK_MSG(strcmp(h->delivery, seq) == 0, "delivery '%s' != %s", h->delivery, seq);
    CHECK(h->expect[0] == '\0');
    CHECK(h->has_ts && h->has_sig);
    ts = strtoll(h->ts, NULL, 10);
    CHECK_MSG(llabs(ts - (long long)time(NULL)) < 60, "timestamp %s", h->ts);
    /* the signature verifies, computed two ways */
    webhook_sign(want, "s3cret", h->ts, h->body, strlen(h->body));
    CHECK_MSG(strcmp(h->sig, want) == 0, "%s != %s", h->sig, want);
    snprintf(msg, sizeof(msg), "%s.%s", h->ts, h->body);
    ref_sign(want, "s3cret", msg);
    CHECK_MSG(strcmp(h->sig, want) == 0, "%s != %s", h->sig, want);
    CHECK(webhook_count(&f, "delivered") == 1);
    CHECK(webhook_count(&f, "retried") == 0);
    CHECK(webhook_count(&f, "gave_up") == 0);
    fx_teardown(&f);
}

static void test_webhook__retry_then_delivered(void)
{
    struct fx f;
    int i;

    if (fx_begin(&f, (const int[]){ 500, 500, 200 }, 3) < 0) {
        fx_teardown(&f);
        return;
    }
    if (fx_add(&f, f.r.url) < 0 || fx_start(&f, "s3cret", 5, 20, 1000, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    CHECK_MSG(fx_wait_settled(&f, 3) == 0, "not delivered in time (%d hits)", recv_hits(&f.r));
    sleep_ms(100);
    CHECK_EQ_INT(recv_hits(&f.r), 3);
    CHECK(webhook_count(&f, "retried") == 2);
    CHECK(webhook_count(&f, "delivered") == 1);
    CHECK(webhook_count(&f, "gave_up") == 0);
    /* the retries waited: jittered into [d/2, d] of 20 ms, then 40 ms (ms clock: 1 ms slack) */
    CHECK_MSG(f.r.hit[1].t_ms - f.r.hit[0].t_ms >= 9, "first retry after %lld ms",
              (long long)(f.r.hit[1].t_ms - f.r.hit[0].t_ms));
    CHECK_MSG(f.r.hit[2].t_ms - f.r.hit[1].t_ms >= 19, "second retry after %lld ms",
              (long long)(f.r.hit[2].t_ms - f.r.hit[1].t_ms));
    /* every attempt is the same delivery, freshly signed */
    for (i = 0; i < 3; i++) {
        char want[72];
        CHECK(strcmp(f.r.hit[i].body, f.body) == 0);
        webhook_sign(want, "s3cret", f.r.hit[i].ts, f.r.hit[i].body, strlen(f.r.hit[i].body));
        CHECK(strcmp(f.r.hit[i].sig, want) == 0);
    }
    fx_teardown(&f);
}

static void test_webhook__gives_up(void)
{
    struct fx f;
    struct webhook *due = NULL;
    size_t n = 0;
    gq_err e = GQ_ERR_INIT;

    if (fx_begin(&f, (const int[]){ 500 }, 1) < 0) {
        fx_teardown(&f);
        return;
    }
    if (fx_add(&f, f.r.url) < 0 || fx_start(&f, "s3cret", 3, 10, 20, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    CHECK_MSG(fx_wait_settled(&f, 3) == 0, "not given up in time (%d hits)", recv_hits(&f.r));
    sleep_ms(100);
    CHECK_EQ_INT(recv_hits(&f.r), 3);
    CHECK(webhook_count(&f, "retried") == 2);
    CHECK(webhook_count(&f, "gave_up") == 1);
    CHECK(webhook_count(&f, "delivered") == 0);
    /* given up is final: never due again, even far in the future */
    CHECK_OK(store_webhooks_due(&due, &n, f.st, store_now_ms() + 86400000LL, 10, &e), &e);
    CHECK_EQ_INT(n, 0);
    webhook_array_free(due, n);
    fx_teardown(&f);
}

static void test_webhook__unsigned(void)
{
    static const char *const secrets[] = { NULL, "" };
    size_t k;

    for (k = 0; k < 2; k++) {
        struct fx f;
        if (fx_begin(&f, (const int[]){ 204 }, 1) < 0) {
            fx_teardown(&f);
            return;
        }
        if (fx_add(&f, f.r.url) < 0 || fx_start(&f, secrets[k], 1, 10, 10, 2000) < 0) {
            fx_teardown(&f);
            return;
        }
        CHECK_MSG(fx_wait_settled(&f, 1) == 0, "not delivered in time");
        CHECK_EQ_INT(recv_hits(&f.r), 1);
        CHECK(!f.r.hit[0].has_sig);
        CHECK(!f.r.hit[0].has_ts);
        CHECK(strcmp(f.r.hit[0].body, f.body) == 0);
        CHECK(webhook_count(&f, "delivered") == 1);   /* 204 is a 2xx */
        fx_teardown(&f);
    }
}

/* Nobody listens: connection errors are retried like any failure, then given up. */
/* The address classifier, on literals and on socket addresses. */
static void test_webhook__private_addresses(void)
{
    static const char *private_hosts[] = {
        "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "100.127.255.255", "0.0.0.0", "192.0.0.8", "198.18.0.1",
        "198.19.255.255", "224.0.0.1", "255.255.255.255", "::1", "::", "[::1]", "fd00::1", "fc12::9",
        "fe80::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
        "localhost", "LOCALHOST", "localhost.", "api.localhost",
    };
    static const char *public_hosts[] = {
        "8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "192.169.0.1", "100.63.255.255",
        "100.128.0.1", "169.253.1.1", "198.17.255.255", "198.20.0.1", "223.255.255.255", "11.0.0.1",
        "2001:4860:4860::8888", "[2606:4700::1111]", "::ffff:8.8.8.8", "64:ff9b::808:808",
        "example.com", "localhost.example.com", "mylocalhost",
    };
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;

    for (size_t i = 0; i < sizeof(private_hosts) / sizeof(private_hosts[0]); i++)
        CHECK_MSG(webhook_host_private(private_hosts[i]) == 1, "%s counts as public", private_hosts[i]);
    for (size_t i = 0; i < sizeof(public_hosts) / sizeof(public_hosts[0]); i++)
        CHECK_MSG(webhook_host_private(public_hosts[i]) == 0, "%s counts as private", public_hosts[i]);
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    inet_pton(AF_INET, "169.254.169.254", &a4.sin_addr);
    CHECK(webhook_addr_private((const struct sockaddr *)&a4) == 1);
    inet_pton(AF_INET, "93.184.216.34", &a4.sin_addr);
    CHECK(webhook_addr_private((const struct sockaddr *)&a4) == 0);
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.168.0.1", &a6.sin6_addr);
    CHECK(webhook_addr_private((const struct sockaddr *)&a6) == 1);
    inet_pton(AF_INET6, "2a00:1450::1", &a6.sin6_addr);
    CHECK(webhook_addr_private((const struct sockaddr *)&a6) == 0);
}

/* The webhook's last_error, read from the database; "" when none. */
static void stored_error(struct fx *f, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT last_error FROM webhooks WHERE seq = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, f->seq);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Without allow_private a callback to loopback is refused at connect time,
 * once (not retried), and the receiver sees nothing; names resolving there
 * ("localhost") are caught after DNS. */
static void test_webhook__private_refused(void)
{
    static const char *hosts[] = {"127.0.0.1", "localhost"};
    for (size_t i = 0; i < 2; i++) {
        struct fx f;
        char url[128], err[512];
        int64_t until;

        memset(&f, 0, sizeof(f));
        if (fx_begin(&f, (const int[]){ 200 }, 1) < 0) {
            fx_teardown(&f);
            return;
        }
        f.refuse_private = 1;
        snprintf(url, sizeof(url), "http://%s:%s", hosts[i], strrchr(f.r.url, ':') + 1);
        if (fx_add(&f, url) < 0 || fx_start(&f, NULL, 5, 10, 10, 2000) < 0) {
            fx_teardown(&f);
            return;
        }
        until = mono_ms() + WAIT_MS;
        while (mono_ms() < until && next_due(&f) != -1)
            sleep_ms(5);
        CHECK_EQ_INT(next_due(&f), -1);
        CHECK_EQ_INT(recv_hits(&f.r), 0);
        CHECK(webhook_count(&f, "gave_up") == 1);
        CHECK(webhook_count(&f, "retried") == 0);
        stored_error(&f, err, sizeof(err));
        CHECK_MSG(strstr(err, "refused to connect to ") && strstr(err, "--webhook-private"), "%s: last_error '%s'",
                  hosts[i], err);
        fx_teardown(&f);
    }
}

static void test_webhook__connection_refused(void)
{
    struct fx f;
    struct recv gone;
    char url[80];

    if (fx_setup(&f) < 0 || recv_start(&gone, NULL, 0) < 0) {
        CHECK_MSG(0, "setup failed");
        fx_teardown(&f);
        return;
    }
    snprintf(url, sizeof(url), "%s", gone.url);
    recv_stop(&gone);   /* the port is closed now */
    if (fx_add(&f, url) < 0 || fx_start(&f, "s3cret", 2, 10, 10, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    {
        int64_t until = mono_ms() + WAIT_MS;
        while (mono_ms() < until && next_due(&f) != -1)
            sleep_ms(5);
    }
    CHECK_EQ_INT(next_due(&f), -1);
    CHECK(webhook_count(&f, "retried") == 1);
    CHECK(webhook_count(&f, "gave_up") == 1);
    fx_teardown(&f);
}

/* An idle sender (nothing pending) waits for webhook_notify, and notify wakes it at once. */
static void test_webhook__notify_wakes(void)
{
    struct fx f;
    int64_t t0;

    if (fx_begin(&f, (const int[]){ 200 }, 1) < 0) {
        fx_teardown(&f);
        return;
    }
    if (fx_start(&f, NULL, 3, 10, 10, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    sleep_ms(50);
    CHECK_EQ_INT(recv_hits(&f.r), 0);
    t0 = mono_ms();
    if (fx_add(&f, f.r.url) == 0)
        webhook_notify(f.w);
    CHECK_MSG(fx_wait_settled(&f, 1) == 0, "not delivered in time");
    CHECK_MSG(mono_ms() - t0 < 1000, "took %lld ms", (long long)(mono_ms() - t0));
    webhook_notify(NULL);
    fx_teardown(&f);
}

/* Stop with a POST in flight (the receiver holds it): quick, and the delivery stays due. */
static void test_webhook__stop_in_flight(void)
{
    struct fx f;
    struct webhook *due = NULL;
    size_t n = 0;
    gq_err e = GQ_ERR_INIT;
    int64_t t0, until;

    if (fx_begin(&f, (const int[]){ 200 }, 1) < 0) {
        fx_teardown(&f);
        return;
    }
    pthread_mutex_lock(&f.r.mu);
    f.r.hang = 1;
    pthread_mutex_unlock(&f.r.mu);
    if (fx_add(&f, f.r.url) < 0 || fx_start(&f, "s3cret", 3, 10, 10, 5000) < 0) {
        fx_teardown(&f);
        return;
    }
    until = mono_ms() + WAIT_MS;
    while (recv_hits(&f.r) < 1 && mono_ms() < until)
        sleep_ms(2);
    CHECK_EQ_INT(recv_hits(&f.r), 1);
    sleep_ms(20);   /* well inside the POST */
    t0 = mono_ms();
    webhook_stop(f.w);
    f.w = NULL;
    CHECK_MSG(mono_ms() - t0 < 300, "stop took %lld ms", (long long)(mono_ms() - t0));
    atomic_store(&f.r.release, 1);
    /* abandoned, not an attempt: due as before */
    CHECK_OK(store_webhooks_due(&due, &n, f.st, store_now_ms(), 10, &e), &e);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_EQ_INT(due[0].attempts, 0);
    webhook_array_free(due, n);
    CHECK(webhook_count(&f, "delivered") == 0);
    CHECK(webhook_count(&f, "retried") == 0);
    fx_teardown(&f);
}

/* Stop while the next retry is far away: the sleeping sender wakes at once. */
static void test_webhook__stop_while_waiting(void)
{
    struct fx f;
    int64_t t0, until;

    if (fx_begin(&f, (const int[]){ 503 }, 1) < 0) {
        fx_teardown(&f);
        return;
    }
    if (fx_add(&f, f.r.url) < 0 || fx_start(&f, NULL, 5, 30000, 30000, 2000) < 0) {
        fx_teardown(&f);
        return;
    }
    until = mono_ms() + WAIT_MS;
    while (webhook_count(&f, "retried") < 1 && mono_ms() < until)
        sleep_ms(2);
    CHECK(webhook_count(&f, "retried") == 1);
    /* the retry is scheduled 15..30 s out */
    CHECK_MSG(next_due(&f) - store_now_ms() > 10000, "next due in %lld ms",
              (long long)(next_due(&f) - store_now_ms()));
    t0 = mono_ms();
    webhook_stop(f.w);
    f.w = NULL;
    CHECK_MSG(mono_ms() - t0 < 200, "stop took %lld ms", (long long)(mono_ms() - t0));
    CHECK_EQ_INT(recv_hits(&f.r), 1);
    fx_teardown(&f);
}

static void test_webhook__bad_config(void)
{
    struct webhook_config cfg;
    webhook_sender *w = (webhook_sender *)&cfg;   /* must come back NULL */
    gq_err e = GQ_ERR_INIT;

    memset(&cfg, 0, sizeof(cfg));
    cfg.db_path = "/tmp/x.db";
    cfg.max_attempts = 0;
    cfg.backoff_ms = 10;
    cfg.backoff_max_ms = 10;
    cfg.timeout_ms = 1000;
    CHECK_EQ_INT(webhook_start(&w, &cfg, &e), GQ_EINVAL);
    CHECK(w == NULL);
    CHECK(strstr(e.msg, "max attempts") != NULL);
    cfg.max_attempts = 3;
    cfg.backoff_max_ms = 5;
    CHECK_EQ_INT(webhook_start(&w, &cfg, &e), GQ_EINVAL);
    cfg.backoff_max_ms = 10;
    cfg.timeout_ms = 0;
    CHECK_EQ_INT(webhook_start(&w, &cfg, &e), GQ_EINVAL);
    cfg.timeout_ms = 1000;
    cfg.db_path = NULL;
    CHECK_EQ_INT(webhook_start(&w, &cfg, &e), GQ_EINVAL);
    /* a database that cannot be opened is reported by start, not by the thread later */
    cfg.db_path = "/nonexistent-dir/gptqd.db";
    gq_err_clear(&e);
    CHECK(webhook_start(&w, &cfg, &e) < 0);
    CHECK(w == NULL);
    CHECK(e.msg[0] != '\0');
    webhook_stop(NULL);
}

int main(void)
{
    t_prog = "test_webhook";
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_webhook__sign);
    RUN(test_webhook__delivered_signed);
    RUN(test_webhook__retry_then_delivered);
    RUN(test_webhook__gives_up);
    RUN(test_webhook__unsigned);
    RUN(test_webhook__connection_refused);
    RUN(test_webhook__private_addresses);
    RUN(test_webhook__private_refused);
    RUN(test_webhook__notify_wakes);
    RUN(test_webhook__stop_in_flight);
    RUN(test_webhook__stop_while_waiting);
    RUN(test_webhook__bad_config);
    curl_global_cleanup();
    return test_report();
}
