/*
 * runner.h - one job from start to end, on a worker thread: the model
 * (Hub snapshot pinned to a commit sha, or a local directory), the
 * calibration matrix, sequential GPTQ into a temporary directory, the
 * artifact (moved under <data-dir>/artifacts/<id>, every file hashed),
 * the optional evaluation and gate, and the terminal state with its
 * webhook.  Every step is persisted (status, progress, events) through the
 * worker's own store connection.
 */
#ifndef GQ_RUNNER_H
#define GQ_RUNNER_H

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "store.h"

struct daemon_config;
struct metrics;
struct webhook_sender;

struct runner_env {
    const struct daemon_config *cfg;
    store *st;                       /* the worker's connection */
    struct metrics *metrics;         /* may be NULL */
    struct webhook_sender *webhooks; /* may be NULL */
};

/*
 * Run job j (claimed: status downloading).  Returns when the job reached a
 * terminal status, or was put back in the queue because *shutdown was
 * raised (with *cancel) by a daemon stopping.  Never fails the daemon: any
 * error becomes the job's error.
 */
void runner_run(const struct runner_env *env, const struct job *j, const atomic_bool *cancel,
                const atomic_bool *shutdown);

/* mkdir -p with this mode for the directories it creates. 0 or -1 (errno). */
int runner_mkdirs(const char *path, mode_t mode);

/* Remove a directory tree (no error when missing). 0 or -1. */
int runner_rmtree(const char *path);

#endif
