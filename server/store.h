/*
 * store.h - the daemon's SQLite store: jobs, their labels and events,
 * artifacts, webhook deliveries (schema: migrations/NNNN_name.sql, compiled
 * into the binary, see embed.h).
 *
 * One connection per thread: every thread that touches the database opens
 * its own store with store_open() and never shares it.  Connections use WAL,
 * synchronous=NORMAL, foreign keys and a busy timeout; every write runs in
 * BEGIN IMMEDIATE so contention shows up at BEGIN, where the timeout waits.
 * All SQL is static and prepared once per connection.
 *
 * Strings handed in are copied; structs handed out are owned by the caller
 * and freed with the matching _free (NULL-safe).  Every function returns 0
 * or a negative gq_code with e filled: GQ_EDB for SQLite failures (the
 * message is sqlite3_errmsg's), GQ_ENOTFOUND for a missing job, GQ_ECONFLICT
 * for a transition the job's state does not allow, GQ_ENOMEM.
 */
#ifndef GQ_STORE_H
#define GQ_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct store store;

enum job_status {
    JOB_QUEUED = 0,
    JOB_DOWNLOADING,
    JOB_CALIBRATING,
    JOB_QUANTIZING,
    JOB_WRITING,
    JOB_EVALUATING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_NSTATUS
};

/* "queued", ... "cancelled"; job_status_parse gives -1 for an unknown name. */
const char *job_status_name(enum job_status s);
int job_status_parse(const char *name);
/* succeeded, failed, cancelled */
int job_status_terminal(enum job_status s);
/* downloading .. evaluating */
int job_status_running(enum job_status s);

struct job {
    int64_t seq;                /* submission order, > 0 */
    char id[24];                /* "j_" + 20 lower-case hex digits */
    enum job_status status;
    int priority;               /* higher runs first; FIFO within a priority */
    char *model;                /* "org/name" or "local:NAME" */
    char *revision;             /* as requested */
    char *source_revision;      /* the pinned sha; NULL until known */
    char *spec;                 /* the validated request as canonical JSON text */
    char *labels;               /* JSON object text, "{}" when none */
    char *callback_url;         /* NULL when none */
    char *idempotency_key;      /* NULL when none */
    char request_hash[65];      /* hex SHA-256 of the canonical request, "" when none */
    int64_t mem_estimate;       /* bytes */
    int64_t created_ms, started_ms, finished_ms, updated_ms;  /* 0 = not yet */
    int attempts;               /* runs started (claims) */
    int cancel_requested;
    char *error_code;           /* NULL unless failed/cancelled */
    char *error_message;
    char *stage;                /* progress; NULL before the first report */
    int layer, layers_total;    /* -1 when unknown */
    double fraction;            /* 0..1 */
    double eta_seconds;         /* -1 when unknown */
};

void job_free(struct job *j);
/* Free a job's strings (plain free(): callers fill jobs for store_jobs_insert with malloc'd strings) and zero it. */
void job_clear(struct job *j);
void job_array_free(struct job *jobs, size_t n);   /* frees the members and the array */

/*
 * Bring the database at path (created when missing; ":memory:" is refused
 * here since each connection would see its own) up to the newest embedded
 * migration, each newer one in its own BEGIN IMMEDIATE transaction that
 * also sets PRAGMA user_version.  *from and *to (may be NULL) receive the
 * versions before and after.  GQ_ECONFLICT when the database's version is
 * newer than the binary's newest migration ("database schema version N is
 * newer than this gptqd (M)"): the daemon must not start.  Call once at
 * startup, before any store_open.
 */
int store_migrate(const char *path, int *from, int *to, gq_err *e);

/* Newest migration version embedded in the binary. */
int store_schema_version(void);

/*
 * A connection for the calling thread.  The schema must be current
 * (store_migrate ran): GQ_ECONFLICT otherwise, naming both versions.
 * store_open_memory opens a private in-memory database and migrates it
 * (for tests).
 */
int store_open(store **out, const char *path, gq_err *e);
int store_open_memory(store **out, gq_err *e);
/* Finalize every statement and close; returns GQ_EDB if the close failed
 * (a statement was leaked).  NULL-safe. */
int store_close(store *s);

/* Is the database writable right now (a trivial write transaction)? */
int store_ping(store *s, gq_err *e);

/* Milliseconds since the Unix epoch (the store's clock). */
int64_t store_now_ms(void);

/*
 * Insert new queued jobs, all or none, in one transaction.  For each job
 * the caller sets model, revision, spec, labels (NULL = "{}"),
 * callback_url, idempotency_key + request_hash (both or neither), priority
 * and mem_estimate; the store sets id (random), seq, status (queued),
 * created_ms, updated_ms, and the rest to their empty values, writing them
 * back into jobs[i].  The labels object's string members also go to
 * job_labels for filtering.  jobs[] belongs to the caller and its strings
 * are malloc'd like those of any job (job_array_free releases them): the
 * store frees and replaces the fields it fills, and touches jobs[] only
 * once the transaction has committed.  GQ_EINVAL when labels is not a JSON
 * object or a key comes without its request_hash.
 *
 * Idempotency: when a job's idempotency_key is already in the database,
 * with the same request_hash that job is returned in jobs[i] instead
 * (every field filled from the row; existing[i] = 1, existing may be NULL),
 * with another request_hash the whole call fails with GQ_ECONFLICT
 * ("idempotency key K was used for a different request"), inserting
 * nothing.
 */
int store_jobs_insert(store *s, struct job *jobs, size_t n, int *existing, gq_err *e);

/* The job with this id (GQ_ENOTFOUND). */
int store_job_get(struct job **out, store *s, const char *id, gq_err *e);

struct job_filter {
    int status;                 /* -1 any, else an enum job_status */
    const char *model;          /* NULL any */
    const char *label_key;      /* NULL any; with label_value NULL: has the key */
    const char *label_value;
    int64_t after_seq;          /* 0: from the start; else only seq > after_seq */
    size_t limit;               /* 1..1000 */
};

/*
 * Jobs matching f in submission order (seq ascending), at most f->limit.
 * *more is set to 1 when more matching jobs exist after the last one
 * returned.  *out is an array of *n jobs (job_array_free); *out may be
 * NULL when n is 0.
 */
int store_jobs_list(struct job **out, size_t *n, int *more, store *s, const struct job_filter *f, gq_err *e);

/*
 * Claim the next job to run: among queued jobs with mem_estimate <=
 * mem_free (mem_free < 0: no limit) the one with the highest priority,
 * then the lowest seq.  It becomes downloading with started_ms set (kept
 * from an earlier attempt if any), attempts + 1, cancel_requested 0, and is
 * returned in *out.  GQ_ENOTFOUND when no queued job fits.
 */
int store_job_claim(struct job **out, store *s, int64_t mem_free, gq_err *e);

/* Is there any queued job at all (1/0 in *out)? */
int store_has_queued(int *out, store *s, gq_err *e);

/*
 * Move a running job to another running status (downloading -> ... ->
 * evaluating), or to a terminal status: succeeded (error cleared),
 * failed / cancelled (error_code and error_message given), setting
 * finished_ms and fraction 1 on success.  Allowed only from a running
 * status (GQ_ECONFLICT otherwise, e.g. a job that was deleted or already
 * finished).  A state event ("status -> X") is added in the same
 * transaction.
 */
int store_job_transition(store *s, const char *id, enum job_status to, const char *error_code,
                         const char *error_message, gq_err *e);

/* Record the pinned sha. */
int store_job_set_source_revision(store *s, const char *id, const char *sha, gq_err *e);

/*
 * Progress of a running job (stage: a status name or a finer word; layer
 * and layers_total -1 when unknown; eta -1 when unknown).  Does not add an
 * event (callers add "progress" events at the granularity they want).
 * GQ_ECONFLICT unless the job is running.
 */
int store_job_progress(store *s, const char *id, const char *stage, int layer, int layers_total, double fraction,
                       double eta_seconds, gq_err *e);

/*
 * Cancel: a queued job becomes cancelled at once (finished_ms set,
 * error_code "cancelled"); a running one gets cancel_requested = 1 and
 * stays running until its worker stops it.  *status_out (may be NULL) is
 * the status after the call.  GQ_ECONFLICT for a finished job, naming its
 * status; GQ_ENOTFOUND.
 */
int store_job_cancel(store *s, const char *id, enum job_status *status_out, gq_err *e);

/* cancel_requested of a job (0/1 in *out). */
int store_job_cancel_requested(int *out, store *s, const char *id, gq_err *e);

/*
 * Put a running job back in the queue (a worker stopped by shutdown): status
 * queued, progress cleared, attempts - 1 (an interrupted drain is not an
 * attempt), a state event; 0.  When a cancel was requested it changes
 * nothing and returns 1: the caller finishes the job as cancelled.
 * GQ_ECONFLICT unless running.
 */
int store_job_requeue(store *s, const char *id, gq_err *e);

/*
 * Delete a finished job with its labels, events, artifact rows and webhook
 * rows.  GQ_ECONFLICT when it is not finished; GQ_ENOTFOUND.
 */
int store_job_delete(store *s, const char *id, gq_err *e);

/*
 * Recovery at startup: every job in a running status (left by a crash) is
 * re-queued when its attempts < max_attempts, otherwise failed with
 * error_code "interrupted" and a message saying after how many attempts;
 * each gets a state event.  The ids touched are returned (*ids: an array of
 * *n char[24], free with free(); may be NULL when n is 0) so the caller can
 * remove their temporary files.
 */
int store_recover(char (**ids)[24], size_t *n, store *s, int max_attempts, gq_err *e);

/* Number of jobs in each status. */
int store_counts(int64_t counts[JOB_NSTATUS], store *s, gq_err *e);

/* ---- events ---- */

struct job_event {
    int64_t seq;                /* increasing across the whole database */
    int64_t ts_ms;
    char kind[16];              /* "state", "progress", "log" */
    char level[8];              /* "debug", "info", "warn", "error" */
    char *message;
    char *data;                 /* JSON text or NULL */
};

void job_event_array_free(struct job_event *ev, size_t n);

/* Append an event to a job (GQ_ENOTFOUND when the job is gone). */
int store_event_add(store *s, const char *id, const char *kind, const char *level, const char *message,
                    const char *data, gq_err *e);

/* The job's events with seq > after_seq, oldest first, at most limit (1..1000); *more as in store_jobs_list. */
int store_events_list(struct job_event **out, size_t *n, int *more, store *s, const char *id, int64_t after_seq,
                      size_t limit, gq_err *e);

/* ---- artifacts ---- */

struct artifact_file {
    char *name;                 /* relative to the artifact directory, no ".." */
    int64_t size;
    char sha256[65];
};

struct artifact {
    char *dir;
    int64_t created_ms;
    int64_t bytes;              /* sum of the files' sizes */
    char *metadata;             /* JSON text */
    struct artifact_file *files;
    size_t nfiles;              /* in name order */
};

void artifact_free(struct artifact *a);

/* Record a job's artifact (replacing an earlier one of that job). */
int store_artifact_put(store *s, const char *id, const char *dir, const char *metadata,
                       const struct artifact_file *files, size_t nfiles, gq_err *e);
/* GQ_ENOTFOUND when the job or its artifact does not exist. */
int store_artifact_get(struct artifact **out, store *s, const char *id, gq_err *e);
/* The directories of every artifact (startup: everything else under the artifact root is garbage);
 * *out is an array of *n malloc'd strings: free each, then the array, with free(). */
int store_artifact_dirs(char ***out, size_t *n, store *s, gq_err *e);

/* ---- webhook deliveries ---- */

struct webhook {
    int64_t seq;
    char job_id[24];
    char *url;
    char *body;
    int attempts;
};

void webhook_array_free(struct webhook *w, size_t n);

/* Queue a delivery, due now. */
int store_webhook_add(store *s, const char *job_id, const char *url, const char *body, gq_err *e);
/* Undelivered deliveries due at or before now_ms, oldest first, at most limit. */
int store_webhooks_due(struct webhook **out, size_t *n, store *s, int64_t now_ms, size_t limit, gq_err *e);
/* The outcome of an attempt: delivered (ok), retry at next_ms, or give up (next_ms < 0) with error. */
int store_webhook_result(store *s, int64_t seq, int ok, int64_t next_ms, const char *error, gq_err *e);
/* The earliest next_ms of an undelivered delivery, or -1 when none (for the sender's sleep). */
int store_webhook_next_due(int64_t *out, store *s, gq_err *e);

#endif
