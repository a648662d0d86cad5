/*
 * pool.h - the worker pool: N threads that claim queued jobs from the
 * store (highest priority first, FIFO within a priority, only what fits
 * the memory budget next to the jobs already running) and run them
 * (runner.h).
 *
 * The queue is the jobs table itself, so a restart loses nothing; the pool
 * only wakes workers (pool_notify after a submission, and itself whenever
 * a job ends and frees memory).  Cancellation is cooperative: pool_cancel
 * raises the running job's flag, which the Hub client and the pipeline
 * poll at block boundaries.
 */
#ifndef GQ_POOL_H
#define GQ_POOL_H

#include <stdint.h>

#include "err.h"

struct daemon_config;
struct metrics;
struct webhook_sender;

typedef struct pool pool;

/* Start cfg->workers threads, each with its own store connection. */
int pool_start(pool **out, const struct daemon_config *cfg, struct metrics *m, struct webhook_sender *wh,
               gq_err *e);
/* Queued jobs were added: let idle workers look. Any thread. */
void pool_notify(pool *p);
/* Raise the cancel flag of job id if one of our workers runs it (1), else 0. Any thread. */
int pool_cancel(pool *p, const char *id);
/* Workers alive (for /readyz). */
int pool_alive(const pool *p);
int pool_running(pool *p);
/*
 * Stop: no new claims; running jobs are told to stop at their next block
 * boundary and are put back in the queue (not counted as an attempt);
 * then join every worker and free.  NULL-safe.
 */
void pool_stop(pool *p);

#endif
