/*
 * metrics.h - the daemon's counters for GET /metrics (Prometheus text
 * format 0.0.4).  Lock-free to update from any thread (HTTP threads,
 * workers, the webhook sender); rendering takes a snapshot.
 *
 * Series:
 *   gptqd_http_requests_total{route, code}    counter (route = the route pattern, "other" for 404s)
 *   gptqd_http_request_duration_seconds       histogram over all routes
 *   gptqd_jobs{status}                        gauge, from the store at render time
 *   gptqd_queue_depth                         gauge (= queued jobs)
 *   gptqd_jobs_running                        gauge
 *   gptqd_job_duration_seconds{status}        histogram of finished jobs (succeeded/failed/cancelled)
 *   gptqd_hub_bytes_downloaded_total          counter
 *   gptqd_webhook_deliveries_total{result}    counter (delivered, retried, gave_up)
 *   gptqd_uptime_seconds                      gauge
 */
#ifndef GQ_METRICS_H
#define GQ_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct metrics metrics;

int metrics_new(metrics **out, gq_err *e);
void metrics_free(metrics *m);

/* One HTTP request answered: route is a static pattern string ("/v1/jobs/{id}") or NULL. */
void metrics_http(metrics *m, const char *method, const char *route, int status, double seconds);
/* A job reached a terminal status after running seconds (wall clock of its last attempt). */
void metrics_job_finished(metrics *m, enum job_status status, double seconds);
void metrics_bytes_downloaded(metrics *m, uint64_t n);
void metrics_jobs_running(metrics *m, int delta);
/* result: "delivered", "retried", "gave_up" */
void metrics_webhook(metrics *m, const char *result);

/*
 * The exposition text (malloc'd, free()), with the job gauges from counts
 * (store_counts) and the uptime.  NULL on OOM.
 */
char *metrics_render(const metrics *m, const int64_t counts[JOB_NSTATUS], double uptime_seconds, size_t *len);

#endif
