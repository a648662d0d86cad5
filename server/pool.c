/*
 * pool.c - the worker pool.
 *
 * DESIGN
 * ------
 * The queue lives in SQLite (jobs with status queued), so the pool holds
 * no job list of its own: a worker claims with store_job_claim, which picks
 * the highest priority, oldest job whose memory estimate fits what the
 * running jobs leave of the budget, and marks it downloading in the same
 * transaction (so two workers never take one job).
 *
 * One mutex and one condition variable.  `wake` counts reasons to look at
 * the queue (a submission, a job ending, start-up); each worker remembers
 * the count it last looked at and sleeps while nothing new happened:
 *
 *     while (!stopping && seen == wake) pthread_cond_wait(&cv, &mu);
 *
 * Claims happen under the mutex, so the reserved-memory total a claim is
 * checked against is exact.  The job then runs with no lock held.  Each
 * running job has a slot with its id and atomic cancel flag; pool_cancel
 * raises it, pool_stop raises every flag plus the shared shutdown flag, so
 * runners re-queue instead of cancelling.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pool.h"
#include "runner.h"
#include "store.h"

struct slot {
    pool *p;
    pthread_t thread;
    int started;
    char id[24];            /* the running job, "" when idle (under mu) */
    int64_t mem;            /* its reservation (under mu) */
    atomic_bool cancel;
};

struct pool {
    const struct daemon_config *cfg;
    struct metrics *metrics;
    struct webhook_sender *webhooks;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t wake;
    int stopping;
    int64_t reserved;
    atomic_int alive;
    atomic_int running;
    atomic_bool shutdown;
    struct slot *slots;
    int nslots;
};

static void *worker(void *arg)
{
    struct slot *sl = arg;
    pool *p = sl->p;
    store *st = NULL;
    gq_err e = GQ_ERR_INIT;
    uint64_t seen = 0;   /* p->wake starts at 1: look at once */

    if (store_open(&st, p->cfg->db_path, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "worker: cannot open the database: %s", e.msg);
        return NULL;
    }
    atomic_fetch_add(&p->alive, 1);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct job *j = NULL;
        int64_t budget = p->cfg->memory_budget, mem_free;
        struct runner_env env;

        while (!p->stopping && seen == p->wake)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping)
            break;
        seen = p->wake;
        mem_free = budget > 0 ? budget - p->reserved : -1;
        if (budget > 0 && mem_free < 0)
            mem_free = 0;
        if (store_job_claim(&j, st, mem_free, &e) < 0) {
            if (e.code != GQ_ENOTFOUND)
                gq_log(GQ_LOG_ERROR, "worker: claiming a job failed: %s", e.msg);
            continue;
        }
        snprintf(sl->id, sizeof(sl->id), "%s", j->id);
        sl->mem = j->mem_estimate;
        p->reserved += j->mem_estimate;
        atomic_store(&sl->cancel, 0);
        pthread_mutex_unlock(&p->mu);

        metrics_jobs_running(p->metrics, 1);
        atomic_fetch_add(&p->running, 1);
        gq_log(GQ_LOG_INFO, "job %s started (attempt %d, model %s)", j->id, j->attempts, j->model);
        env.cfg = p->cfg, env.st = st, env.metrics = p->metrics, env.webhooks = p->webhooks;
        runner_run(&env, j, &sl->cancel, &p->shutdown);
        atomic_fetch_sub(&p->running, 1);
        metrics_jobs_running(p->metrics, -1);
        job_free(j);

        pthread_mutex_lock(&p->mu);
        p->reserved -= sl->mem;
        sl->id[0] = '\0';
        sl->mem = 0;
        /* memory was freed and this worker is idle: everyone looks again */
        p->wake++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&p->alive, 1);
    if (store_close(st) < 0)
        gq_log(GQ_LOG_ERROR, "worker: closing the database failed (a statement was leaked)");
    return NULL;
}

int pool_start(pool **out, const struct daemon_config *cfg, struct metrics *m, struct webhook_sender *wh,
               gq_err *e)
{
    pool *p = gq_calloc(1, sizeof(*p));
    int rc = 0;
    if (!p)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    p->cfg = cfg, p->metrics = m, p->webhooks = wh;
    p->wake = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->nslots = cfg->workers;
    if (!(p->slots = gq_calloc((size_t)p->nslots, sizeof(*p->slots)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < p->nslots; i++) {
        p->slots[i].p = p;
        atomic_init(&p->slots[i].cancel, 0);
        if (pthread_create(&p->slots[i].thread, NULL, worker, &p->slots[i]) != 0) {
            rc = GQ_FAIL(e, GQ_EIO, "cannot start worker %d", i);
            goto done;
        }
        p->slots[i].started = 1;
    }
done:
    if (rc < 0) {
        pool_stop(p);
        return rc;
    }
    *out = p;
    return 0;
}

void pool_notify(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->wake++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int pool_cancel(pool *p, const char *id)
{
    int found = 0;
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].id[0] && !strcmp(p->slots[i].id, id)) {
            atomic_store(&p->slots[i].cancel, 1);
            found = 1;
        }
    pthread_mutex_unlock(&p->mu);
    return found;
}

int pool_alive(const pool *p)
{
    return p ? atomic_load(&((pool *)(uintptr_t)p)->alive) : 0;
}

int pool_running(pool *p)
{
    return p ? atomic_load(&p->running) : 0;
}

void pool_stop(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    atomic_store(&p->shutdown, 1);
    for (int i = 0; p->slots && i < p->nslots; i++)
        if (p->slots[i].id[0])
            atomic_store(&p->slots[i].cancel, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->slots && i < p->nslots; i++)
        if (p->slots[i].started)
            pthread_join(p->slots[i].thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    gq_free(p->slots);
    gq_free(p);
}
