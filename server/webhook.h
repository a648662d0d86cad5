/*
 * webhook.h - job webhooks: on a terminal transition the job (as the API
 * shows it) is POSTed to its callback_url.
 *
 * Deliveries are rows in the store (store_webhook_add, written by the
 * runner with the terminal transition), so they survive a restart.  One
 * sender thread with its own store connection and curl handle sleeps until
 * the next delivery is due (or it is woken), POSTs the body with
 * Content-Type: application/json, User-Agent gptqd/VERSION,
 * X-Gptqd-Event: job.<status>, X-Gptqd-Delivery: <seq>, and, when a secret
 * is configured, X-Gptqd-Signature: sha256=<hex HMAC-SHA256(secret,
 * "<timestamp>.<body>")> with X-Gptqd-Timestamp: <unix seconds> (the
 * timestamp in the MAC stops replays).  A 2xx reply is delivered; anything
 * else (connection error, timeout, non-2xx) is retried with exponential
 * backoff (base, doubling, capped, jittered to [d/2, d]) up to max_attempts,
 * then given up, recorded with the last error.  Redirects are not followed.
 */
#ifndef GQ_WEBHOOK_H
#define GQ_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "metrics.h"

typedef struct webhook_sender webhook_sender;

struct webhook_config {
    const char *db_path;      /* the sender opens its own connection */
    const char *secret;       /* NULL or "" = unsigned */
    int allow_private;        /* 0: never connect to loopback/private/link-local addresses */
    int max_attempts;         /* >= 1 */
    long backoff_ms;          /* first retry delay */
    long backoff_max_ms;
    long timeout_ms;          /* one POST */
    metrics *metrics;         /* may be NULL */
};

struct sockaddr;

/*
 * Whether a webhook must not connect there without allow_private: loopback,
 * 0/8, 10/8, 100.64/10, 169.254/16, 172.16/12, 192.0.0/24, 192.168/16,
 * 198.18/15, multicast and reserved IPv4; ::, ::1, fc00::/7, fe80::/10,
 * fec0::/10, multicast, and IPv4-mapped or NAT64 forms of the above.
 * webhook_host_private takes a URL's host: an IPv4 or IPv6 literal
 * ("[::1]" too) or a name, of which only localhost names count (other
 * names are checked when delivery resolves them).  1 or 0.
 */
int webhook_addr_private(const struct sockaddr *sa);
int webhook_host_private(const char *host);

/* Start the sender thread (config strings copied). */
int webhook_start(webhook_sender **out, const struct webhook_config *cfg, gq_err *e);
/* A delivery was added: look now. */
void webhook_notify(webhook_sender *w);
/* Stop the thread (an in-flight POST is abandoned within ~100 ms) and free. NULL-safe. */
void webhook_stop(webhook_sender *w);

/* "sha256=<hex>" of HMAC-SHA256(secret, timestamp "." body) into out (72 bytes). */
void webhook_sign(char out[72], const char *secret, const char *timestamp, const char *body, size_t len);

#endif
