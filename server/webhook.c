/*
 * webhook.c - the webhook sender (see webhook.h).
 *
 * DESIGN
 *
 * Deliveries are rows in the store, so this module keeps no queue of its
 * own: one thread with its own store connection asks the store for what is
 * due, POSTs each delivery, writes the outcome back (delivered, retry at a
 * later time, or given up) and then sleeps on a condition variable until
 * the earliest next_ms the store knows of.  webhook_notify() sets a flag
 * and signals, so a delivery added by a worker goes out at once; the sleep
 * is a while loop over (stopping, kicked, deadline), never a bare wait.
 * The flag is cleared under the mutex before each look at the store, so a
 * notify that lands while deliveries are being sent is not lost: the
 * thread sees it when it comes back to sleep and looks again.
 *
 * The store's clock is wall time (milliseconds since the epoch) while the
 * condition variable runs on CLOCK_MONOTONIC, so a sleep is converted to a
 * relative delay and capped at SLEEP_CAP_MS: should the wall clock jump,
 * the thread re-reads the store within a minute instead of oversleeping.
 * With no delivery pending at all it waits for a notify only.
 *
 * Each POST runs on one curl easy handle driven through a multi handle
 * created by webhook_start, polled in steps of POLL_MS.  That lets
 * webhook_stop() abandon an in-flight POST at once: it raises an atomic
 * flag (also read by the xferinfo callback) and calls curl_multi_wakeup(),
 * which is safe from any thread.  An abandoned attempt is not recorded, so
 * the delivery is simply due again when the daemon next starts.
 *
 * Retry delays double from backoff_ms up to backoff_max_ms and are then
 * drawn uniformly from [d/2, d] so that many receivers recovering at once
 * do not see synchronised retries.  The secret never appears in a log
 * line or a stored error, and neither does the callback URL (it may carry
 * a token in its query); deliveries are named by sequence number and job.
 *
 * Unless allow_private is set, a POST never connects to a loopback,
 * private, link-local (cloud metadata), carrier-grade NAT, multicast or
 * reserved address: the check runs in curl's socket hook on every address
 * after DNS resolution, so a public name pointing inside (or re-pointed
 * there after submission) is refused as well.  A refusal is final, not
 * retried.  Behind an HTTP proxy (curl honours http_proxy) the address
 * checked is the proxy's.
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "mem.h"
#include "pipeline.h"   /* GPTQD_VERSION */
#include "store.h"

#define USER_AGENT "gptqd/" GPTQD_VERSION
#define BATCH 16                 /* deliveries read per look at the store */
#define POLL_MS 100              /* how often an in-flight POST checks for stop */
#define CONNECT_TIMEOUT_MS 10000L
#define STORE_RETRY_MS 1000      /* after a store error, look again in a second */
#define SLEEP_CAP_MS 60000       /* longest sleep on a pending delivery (wall-clock jumps) */

struct webhook_sender {
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* CLOCK_MONOTONIC */
    pthread_t thread;
    int stopping;                /* under mu */
    int kicked;                  /* under mu: webhook_notify since the last look */
    int ready;                   /* under mu: the thread finished starting */
    int start_rc;                /* under mu: its result */
    gq_err start_err;
    atomic_bool stop;            /* stopping, for curl's callbacks and the poll loop */
    CURLM *multi;                /* webhook_stop wakes its poll */
    int have_mu, have_cv;        /* which primitives exist (for sender_free) */

    char *db_path;
    char *secret;                /* NULL when unsigned */
    int allow_private;           /* connect to loopback/private/link-local addresses too */
    char refused[INET6_ADDRSTRLEN];   /* the sender thread: the address the last POST refused */
    int max_attempts;
    long backoff_ms, backoff_max_ms, timeout_ms;
    metrics *metrics;
    uint64_t rng;                /* jitter; the sender thread only */
};

/* ---- signing ---- */

/*
 * Writes "" into out if OpenSSL fails (out of memory); the sender treats
 * that as a failed attempt rather than sending an unsigned request.
 */
void webhook_sign(char out[72], const char *secret, const char *timestamp, const char *body, size_t len)
{
    static char digest[] = "SHA256";   /* OSSL_PARAM wants a non-const pointer */
    static const char hex[] = "0123456789abcdef";
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    OSSL_PARAM params[2];
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0, i;

    out[0] = '\0';
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!(mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(ctx = EVP_MAC_CTX_new(mac)))
        goto done;
    if (!EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
        !EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) || mdlen != 32)
        goto done;
    memcpy(out, "sha256=", 7);
    for (i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[71] = '\0';
done:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    OPENSSL_cleanse(md, sizeof(md));
}

/* ---- one POST ---- */

enum post_result { POST_OK, POST_FAILED, POST_STOPPED, POST_REFUSED };

/* ---- where a webhook may connect ---- */

static int v4_private(uint32_t a)   /* host byte order */
{
    return (a >> 24) == 0 ||                  /* 0.0.0.0/8 "this network" */
           (a >> 24) == 10 ||                 /* 10.0.0.0/8 */
           (a >> 24) == 127 ||                /* loopback */
           (a >> 22) == (100u << 2 | 1) ||    /* 100.64.0.0/10 carrier-grade NAT */
           (a >> 16) == (169u << 8 | 254) ||  /* 169.254.0.0/16 link-local (cloud metadata) */
           (a >> 20) == (172u << 4 | 1) ||    /* 172.16.0.0/12 */
           (a >> 16) == (192u << 8 | 168) ||  /* 192.168.0.0/16 */
           (a >> 8) == (192u << 16 | 0 << 8 | 0) ||   /* 192.0.0.0/24 protocol assignments */
           (a >> 17) == (198u << 7 | 18 >> 1) ||      /* 198.18.0.0/15 benchmarking */
           (a >> 28) >= 14;                   /* 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, broadcast */
}

static int v6_private(const unsigned char *b)
{
    static const unsigned char zero[16];
    uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
    if (!memcmp(b, zero, 15) && (b[15] == 0 || b[15] == 1))
        return 1;   /* :: and ::1 */
    if ((!memcmp(b, zero, 10) && b[10] == 0xff && b[11] == 0xff) ||                      /* ::ffff:a.b.c.d */
        (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && !memcmp(b + 4, zero, 8)))   /* 64:ff9b::/96 */
        return v4_private(v4);
    return (b[0] & 0xfe) == 0xfc ||                   /* fc00::/7 unique local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||   /* fe80::/10 link-local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) ||   /* fec0::/10 site-local (deprecated) */
           b[0] == 0xff;                               /* multicast */
}

int webhook_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_private(ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return v6_private(((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
    return 1;   /* anything else (AF_UNIX) is local */
}

int webhook_host_private(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET, host, &a4) == 1)
        return v4_private(ntohl(a4.s_addr));
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return v6_private(a6.s6_addr);
    n = strlen(host);
    /* localhost and its subdomains resolve to loopback (RFC 6761) */
    return !strcasecmp(host, "localhost") || !strcasecmp(host, "localhost.") ||
           (n > 10 && !strcasecmp(host + n - 10, ".localhost")) ||
           (n > 11 && !strcasecmp(host + n - 11, ".localhost."));
}

/*
 * curl's socket hook: every address curl is about to connect to (after DNS,
 * so a name that resolves to a private address is caught, as is one that
 * changes between submission and delivery) passes through here.
 */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    webhook_sender *w = ud;
    (void)purpose;
    if (!w->allow_private && webhook_addr_private(&addr->addr)) {
        char host[INET6_ADDRSTRLEN] = "?";
        if (addr->family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)&addr->addr)->sin_addr, host, sizeof(host));
        else if (addr->family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)&addr->addr)->sin6_addr, host, sizeof(host));
        memcpy(w->refused, host, sizeof(w->refused));
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    const webhook_sender *w = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load(&w->stop) ? 1 : 0;
}

/*
 * "job.<status>" from the delivery's body (the job as the API shows it).
 * Only [a-z_] survives into the header; anything else is "job.unknown".
 */
static void event_name(char *out, size_t cap, const char *body)
{
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    const char *st = NULL;
    size_t i;

    snprintf(out, cap, "job.unknown");
    if (gq_json_parse(&j, body, strlen(body), &e) < 0)
        return;
    st = gq_json_string(gq_json_get(j, "status"));
    if (st && *st && strlen(st) < 32) {
        for (i = 0; st[i]; i++)
            if (!((st[i] >= 'a' && st[i] <= 'z') || st[i] == '_'))
                break;
        if (!st[i])
            snprintf(out, cap, "job.%s", st);
    }
    gq_json_free(j);
}

static int add_header(struct curl_slist **list, const char *h)
{
    struct curl_slist *t = curl_slist_append(*list, h);
    if (!t)
        return -1;
    *list = t;
    return 0;
}

/*
 * POST one delivery.  On POST_FAILED, why gets a one-line reason fit for
 * the store and the log ("http status 500", curl's error).  POST_STOPPED:
 * webhook_stop abandoned it.
 */
static enum post_result post(webhook_sender *w, CURL *c, const struct webhook *d, char *why, size_t cap)
{
    struct curl_slist *hdrs = NULL;
    char line[160], ev[48], sig[72], ts[32], errbuf[CURL_ERROR_SIZE];
    enum post_result res = POST_FAILED;
    CURLcode cc = CURLE_OK;
    CURLMcode mc;
    CURLMsg *msg;
    int running = 1, added = 0, left;
    long status = 0;
    size_t len = strlen(d->body);

    why[0] = '\0';
    errbuf[0] = '\0';
    event_name(ev, sizeof(ev), d->body);
    snprintf(line, sizeof(line), "X-Gptqd-Event: %s", ev);
    if (add_header(&hdrs, "Content-Type: application/json") < 0 || add_header(&hdrs, line) < 0)
        goto oom;
    snprintf(line, sizeof(line), "X-Gptqd-Delivery: %" PRId64, d->seq);
    /* "Expect:" stops curl from waiting for 100-continue on larger bodies */
    if (add_header(&hdrs, line) < 0 || add_header(&hdrs, "Expect:") < 0)
        goto oom;
    if (w->secret) {
        snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
        webhook_sign(sig, w->secret, ts, d->body, len);
        if (!sig[0]) {
            snprintf(why, cap, "cannot compute the signature");
            goto done;
        }
        snprintf(line, sizeof(line), "X-Gptqd-Timestamp: %s", ts);
        if (add_header(&hdrs, line) < 0)
            goto oom;
        snprintf(line, sizeof(line), "X-Gptqd-Signature: %s", sig);
        if (add_header(&hdrs, line) < 0)
            goto oom;
    }

    curl_easy_reset(c);   /* keeps the connection cache */
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     w->timeout_ms < CONNECT_TIMEOUT_MS ? w->timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, w);
    w->refused[0] = '\0';

    if ((mc = curl_multi_add_handle(w->multi, c)) != CURLM_OK) {
        snprintf(why, cap, "curl: %s", curl_multi_strerror(mc));
        goto done;
    }
    added = 1;
    for (;;) {
        if ((mc = curl_multi_perform(w->multi, &running)) != CURLM_OK) {
            snprintf(why, cap, "curl: %s", curl_multi_strerror(mc));
            goto done;
        }
        if (!running)
            break;
        if (atomic_load(&w->stop)) {
            res = POST_STOPPED;
            goto done;
        }
        if ((mc = curl_multi_poll(w->multi, NULL, 0, POLL_MS, NULL)) != CURLM_OK) {
            snprintf(why, cap, "curl: %s", curl_multi_strerror(mc));
            goto done;
        }
    }
    cc = CURLE_GOT_NOTHING;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == c)
            cc = msg->data.result;
    if (cc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&w->stop)) {
        res = POST_STOPPED;
    } else if (cc != CURLE_OK && w->refused[0]) {
        snprintf(why, cap, "refused to connect to %s: a loopback, private or link-local address "
                 "(gptqd --webhook-private allows it)", w->refused);
        res = POST_REFUSED;
    } else if (cc != CURLE_OK) {
        snprintf(why, cap, "curl: %.200s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
            res = POST_OK;
        else
            snprintf(why, cap, "http status %ld", status);
    }
    goto done;
oom:
    snprintf(why, cap, "out of memory building the request");
done:
    if (added)
        curl_multi_remove_handle(w->multi, c);
    /* the handle must not keep pointers into this frame or the delivery */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hdrs);
    OPENSSL_cleanse(sig, sizeof(sig));
    return res;
}

/* ---- retry policy ---- */

static uint64_t next_rand(webhook_sender *w)
{
    uint64_t z = (w->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The delay before the retry that follows failed attempt number attempt (1-based). */
static long retry_delay_ms(webhook_sender *w, int attempt)
{
    long d = w->backoff_ms;
    int i;

    for (i = 1; i < attempt && d < w->backoff_max_ms; i++)
        d = d > w->backoff_max_ms / 2 ? w->backoff_max_ms : d * 2;
    if (d > w->backoff_max_ms)
        d = w->backoff_max_ms;
    if (d <= 1)
        return d;
    return d / 2 + (long)(next_rand(w) % (uint64_t)(d - d / 2 + 1));
}

/*
 * Send one delivery on c and record its outcome.  0, or -1 when the store
 * could not record it (the caller backs off rather than resend at once).
 */
static int deliver(webhook_sender *w, store *st, CURL *c, const struct webhook *d)
{
    char why[256];
    gq_err e = GQ_ERR_INIT;
    enum post_result r;
    int attempt = d->attempts + 1, rc;

    r = post(w, c, d, why, sizeof(why));
    if (r == POST_STOPPED)
        return 0;   /* not an attempt: due again on the next start */
    if (r == POST_OK) {
        rc = store_webhook_result(st, d->seq, 1, 0, NULL, &e);
        metrics_webhook(w->metrics, "delivered");
        gq_log(GQ_LOG_INFO, "webhook %" PRId64 " for job %s delivered (attempt %d)", d->seq, d->job_id,
               attempt);
    } else if (r == POST_REFUSED || attempt >= w->max_attempts) {   /* a refusal is final */
        rc = store_webhook_result(st, d->seq, 0, -1, why, &e);
        metrics_webhook(w->metrics, "gave_up");
        gq_log(GQ_LOG_WARN, "webhook %" PRId64 " for job %s given up after %d attempt%s: %s", d->seq,
               d->job_id, attempt, attempt == 1 ? "" : "s", why);
    } else {
        long delay = retry_delay_ms(w, attempt);
        rc = store_webhook_result(st, d->seq, 0, store_now_ms() + delay, why, &e);
        metrics_webhook(w->metrics, "retried");
        gq_log(GQ_LOG_INFO, "webhook %" PRId64 " for job %s failed (attempt %d of %d), retry in %ld ms: %s",
               d->seq, d->job_id, attempt, w->max_attempts, delay, why);
    }
    if (rc == GQ_ENOTFOUND) {
        /* the job (and with it the delivery) was deleted meanwhile: nothing to record */
        gq_log(GQ_LOG_INFO, "webhook %" PRId64 ": the delivery is gone: %s", d->seq, e.msg);
    } else if (rc < 0) {
        gq_log(GQ_LOG_ERROR, "webhook %" PRId64 ": cannot record the outcome: %s", d->seq, e.msg);
        return -1;
    }
    return 0;
}

/*
 * Send everything that is due.  Returns how long to sleep: 0 to look
 * again at once (a full batch, or more already due), a delay in ms, or -1
 * to wait for a notify (nothing pending).
 */
static long send_due(webhook_sender *w, store *st, CURL *c)
{
    struct webhook *due = NULL;
    size_t n = 0, i;
    int64_t next = -1, delay;
    gq_err e = GQ_ERR_INIT;
    int failed = 0;

    if (store_webhooks_due(&due, &n, st, store_now_ms(), BATCH, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "webhook: cannot read due deliveries: %s", e.msg);
        return STORE_RETRY_MS;
    }
    for (i = 0; i < n && !atomic_load(&w->stop) && !failed; i++)
        if (deliver(w, st, c, &due[i]) < 0)
            failed = 1;
    webhook_array_free(due, n);
    if (failed)
        return STORE_RETRY_MS;
    if (atomic_load(&w->stop) || n == BATCH)
        return 0;
    if (store_webhook_next_due(&next, st, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "webhook: cannot read the next due time: %s", e.msg);
        return STORE_RETRY_MS;
    }
    if (next < 0)
        return -1;
    delay = next - store_now_ms();
    if (delay <= 0)
        return n ? 0 : 1;   /* never spin should the two queries ever disagree */
    return delay > SLEEP_CAP_MS ? SLEEP_CAP_MS : (long)delay;
}

/* With mu held: sleep ms (-1: until woken) unless stopped or notified. */
static void sleep_locked(webhook_sender *w, long ms)
{
    struct timespec dl;

    if (ms < 0) {
        while (!w->stopping && !w->kicked)
            pthread_cond_wait(&w->cv, &w->mu);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    while (!w->stopping && !w->kicked)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
            break;
}

static void *sender_main(void *arg)
{
    webhook_sender *w = arg;
    store *st = NULL;
    CURL *c = NULL;
    gq_err e = GQ_ERR_INIT;
    int rc;
    long ms;

    rc = store_open(&st, w->db_path, &e);
    if (rc == 0 && !(c = curl_easy_init()))
        rc = GQ_FAIL(&e, GQ_ENOMEM, "cannot create a curl handle for webhooks");
    pthread_mutex_lock(&w->mu);
    w->start_rc = rc;
    w->start_err = e;
    w->ready = 1;
    pthread_cond_broadcast(&w->cv);
    if (rc < 0) {
        pthread_mutex_unlock(&w->mu);
        goto done;
    }
    while (!w->stopping) {
        w->kicked = 0;
        pthread_mutex_unlock(&w->mu);
        ms = send_due(w, st, c);
        pthread_mutex_lock(&w->mu);
        if (ms != 0)
            sleep_locked(w, ms);
    }
    pthread_mutex_unlock(&w->mu);
done:
    curl_easy_cleanup(c);
    if (store_close(st) < 0)
        gq_log(GQ_LOG_WARN, "webhook: closing the store connection failed");
    return NULL;
}

/* ---- the public functions ---- */

static void sender_free(webhook_sender *w)
{
    if (!w)
        return;
    curl_multi_cleanup(w->multi);
    if (w->have_cv)
        pthread_cond_destroy(&w->cv);
    if (w->have_mu)
        pthread_mutex_destroy(&w->mu);
    gq_free(w->db_path);
    if (w->secret) {
        OPENSSL_cleanse(w->secret, strlen(w->secret));
        gq_free(w->secret);
    }
    gq_free(w);
}

/*
 * Start the sender: copy the configuration, start the thread and wait for
 * it to open its store connection, so a bad db_path or an old schema is
 * reported here (GQ_EDB / GQ_ECONFLICT from store_open).  GQ_EINVAL for a
 * bad configuration, GQ_ENOMEM.  curl_global_init must have run.  The
 * caller owns *out and releases it with webhook_stop.  Call from one
 * thread (startup).
 */
int webhook_start(webhook_sender **out, const struct webhook_config *cfg, gq_err *e)
{
    webhook_sender *w = NULL;
    pthread_condattr_t ca;
    int rc = 0;

    GQ_ASSERT_ARG(e, out != NULL && cfg != NULL);
    *out = NULL;
    if (!cfg->db_path || !*cfg->db_path)
        return GQ_FAIL(e, GQ_EINVAL, "webhook sender needs a database path");
    if (cfg->max_attempts < 1)
        return GQ_FAIL(e, GQ_EINVAL, "webhook max attempts must be at least 1 (got %d)", cfg->max_attempts);
    if (cfg->backoff_ms < 0 || cfg->backoff_max_ms < cfg->backoff_ms)
        return GQ_FAIL(e, GQ_EINVAL, "webhook backoff must satisfy 0 <= base <= max (got %ld, %ld)",
                       cfg->backoff_ms, cfg->backoff_max_ms);
    if (cfg->timeout_ms <= 0)
        return GQ_FAIL(e, GQ_EINVAL, "webhook timeout must be positive (got %ld ms)", cfg->timeout_ms);

    if (!(w = gq_calloc(1, sizeof(*w)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory starting the webhook sender");
        goto done;
    }
    atomic_init(&w->stop, 0);
    w->max_attempts = cfg->max_attempts;
    w->allow_private = cfg->allow_private;
    w->backoff_ms = cfg->backoff_ms;
    w->backoff_max_ms = cfg->backoff_max_ms;
    w->timeout_ms = cfg->timeout_ms;
    w->metrics = cfg->metrics;
    w->rng = (uint64_t)store_now_ms() ^ (uint64_t)(uintptr_t)w;
    if (!(w->db_path = gq_strdup(cfg->db_path)) ||
        (cfg->secret && *cfg->secret && !(w->secret = gq_strdup(cfg->secret)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory starting the webhook sender");
        goto done;
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot create the webhook mutex");
        goto done;
    }
    w->have_mu = 1;
    if (pthread_condattr_init(&ca) != 0) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot create the webhook condition variable");
        goto done;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    w->have_cv = pthread_cond_init(&w->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!w->have_cv) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot create the webhook condition variable");
        goto done;
    }
    if (!(w->multi = curl_multi_init())) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot create a curl multi handle for webhooks");
        goto done;
    }
    if (pthread_create(&w->thread, NULL, sender_main, w) != 0) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot start the webhook thread");
        goto done;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->ready)
        pthread_cond_wait(&w->cv, &w->mu);
    rc = w->start_rc;
    pthread_mutex_unlock(&w->mu);
    if (rc < 0) {
        pthread_join(w->thread, NULL);   /* it has already returned */
        if (e)
            *e = w->start_err;
        goto done;
    }
    *out = w;
    w = NULL;
done:
    sender_free(w);
    return rc;
}

/* Any thread; NULL-safe. */
void webhook_notify(webhook_sender *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->kicked = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/*
 * Stop the thread and free everything.  A sleeping sender wakes at once;
 * an in-flight POST is abandoned at its next poll step (curl_multi_wakeup
 * makes that immediate) and stays due.  Call once, from the thread that
 * owns w (shutdown); NULL-safe.
 */
void webhook_stop(webhook_sender *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    atomic_store(&w->stop, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    sender_free(w);
}
