/*
 * store.c - the daemon's SQLite store (contract in store.h).
 *
 * DESIGN
 * ------
 * A store is one SQLite connection plus every statement it will ever run,
 * prepared once at open (SQLITE_PREPARE_PERSISTENT) from the static table
 * sql[] below and indexed by enum stmt.  A table rather than one named field
 * per statement so that open and close are one loop each and no statement
 * can be forgotten by store_close.  No SQL is ever formatted; the single
 * exception is "PRAGMA user_version = N" in the migration runner, which
 * cannot take a bound parameter and is built from an integer.
 *
 * Every write is a short BEGIN IMMEDIATE ... COMMIT (tx_begin / tx_end, ROLLBACK
 * on any error), so concurrent writers on other connections queue at BEGIN
 * under the busy timeout instead of failing halfway with SQLITE_BUSY.  The
 * public write functions check their arguments, open the transaction and
 * call a static *_tx body; bodies use `goto done` and reset every statement
 * they stepped (reset + clear_bindings) before returning.
 *
 * Each status change (claim, transition, cancel of a queued job, requeue,
 * recovery) adds a "state" event in the same transaction: "from -> to" or
 * "from -> to: detail", with data {"from": ..., "to": ...}.
 *
 * Allocation is plain libc (the header hands out arrays to free() with
 * free()); a job's strings are malloc'd and job_free releases them.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "embed.h"
#include "store.h"

/* The columns of a job, in the order job_from_row reads them. */
#define JOB_COLS                                                                                        \
    "seq, id, status, priority, model, revision, source_revision, spec, labels, callback_url, "         \
    "idempotency_key, request_hash, mem_estimate, created_ms, started_ms, finished_ms, updated_ms, "   \
    "attempts, cancel_requested, error_code, error_message, stage, layer, layers_total, fraction, "    \
    "eta_seconds"
#define RUNNING_IN "('downloading', 'calibrating', 'quantizing', 'writing', 'evaluating')"

enum stmt {
    ST_BEGIN, ST_BEGIN_READ, ST_COMMIT, ST_ROLLBACK,
    ST_JOB_INSERT, ST_LABEL_INSERT, ST_JOB_BY_KEY, ST_JOB_GET, ST_JOB_LOOKUP, ST_JOBS_LIST,
    ST_JOB_CLAIM, ST_HAS_QUEUED, ST_JOB_SET_STATUS, ST_JOB_SET_REV, ST_JOB_PROGRESS, ST_JOB_CANCEL_REQ,
    ST_JOB_CANCEL_FLAG, ST_JOB_REQUEUE, ST_JOB_DELETE, ST_RUNNING_JOBS, ST_COUNTS,
    ST_EVENT_ADD, ST_EVENTS_LIST,
    ST_ART_DELETE, ST_ART_INSERT, ST_ART_FILE_INSERT, ST_ART_GET, ST_ART_FILES, ST_ART_DIRS,
    ST_HOOK_ADD, ST_HOOKS_DUE, ST_HOOK_RESULT, ST_HOOK_NEXT,
    ST_N
};

static const char *const sql[ST_N] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_JOB_INSERT] =
        "INSERT INTO jobs (id, status, priority, model, revision, spec, labels, callback_url, "
        "idempotency_key, request_hash, mem_estimate, created_ms, updated_ms) "
        "VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) RETURNING " JOB_COLS,
    [ST_LABEL_INSERT] = "INSERT OR IGNORE INTO job_labels (job_seq, key, value) VALUES (?1, ?2, ?3)",
    [ST_JOB_BY_KEY] = "SELECT " JOB_COLS " FROM jobs WHERE idempotency_key = ?1",
    [ST_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [ST_JOB_LOOKUP] = "SELECT seq, status FROM jobs WHERE id = ?1",
    [ST_JOBS_LIST] =
        "SELECT " JOB_COLS " FROM jobs WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) "
        "AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR EXISTS (SELECT 1 FROM job_labels l "
        "WHERE l.job_seq = jobs.seq AND l.key = ?4 AND (?5 IS NULL OR l.value = ?5))) "
        "ORDER BY seq LIMIT ?6",
    /* one statement: the pick and the update cannot be separated by another writer anyway
     * (BEGIN IMMEDIATE), and RETURNING hands back the claimed row */
    [ST_JOB_CLAIM] =
        "UPDATE jobs SET status = 'downloading', started_ms = COALESCE(started_ms, ?2), "
        "attempts = attempts + 1, cancel_requested = 0, updated_ms = ?2 "
        "WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' AND (?1 < 0 OR mem_estimate <= ?1) "
        "ORDER BY priority DESC, seq LIMIT 1) RETURNING " JOB_COLS,
    [ST_HAS_QUEUED] = "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')",
    [ST_JOB_SET_STATUS] =
        "UPDATE jobs SET status = ?2, updated_ms = ?3, finished_ms = ?4, error_code = ?5, "
        "error_message = ?6, fraction = CASE WHEN ?2 = 'succeeded' THEN 1 ELSE fraction END WHERE seq = ?1",
    [ST_JOB_SET_REV] = "UPDATE jobs SET source_revision = ?2, updated_ms = ?3 WHERE id = ?1",
    [ST_JOB_PROGRESS] =
        "UPDATE jobs SET stage = ?2, layer = ?3, layers_total = ?4, fraction = ?5, eta_seconds = ?6, "
        "updated_ms = ?7 WHERE seq = ?1",
    [ST_JOB_CANCEL_REQ] =
        "UPDATE jobs SET cancel_requested = 1, updated_ms = ?2 WHERE seq = ?1 AND cancel_requested = 0",
    [ST_JOB_CANCEL_FLAG] = "SELECT cancel_requested FROM jobs WHERE id = ?1",
    [ST_JOB_REQUEUE] =
        "UPDATE jobs SET status = 'queued', stage = NULL, layer = NULL, layers_total = NULL, fraction = 0, "
        "eta_seconds = NULL, error_code = NULL, error_message = NULL, cancel_requested = 0, "
        "attempts = MAX(attempts + ?2, 0), updated_ms = ?3 WHERE seq = ?1",
    [ST_JOB_DELETE] = "DELETE FROM jobs WHERE seq = ?1",
    [ST_RUNNING_JOBS] =
        "SELECT seq, id, status, attempts, cancel_requested FROM jobs WHERE status IN " RUNNING_IN " ORDER BY seq",
    [ST_COUNTS] = "SELECT status, count(*) FROM jobs GROUP BY status",
    [ST_EVENT_ADD] =
        "INSERT INTO job_events (job_seq, ts_ms, kind, level, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_EVENTS_LIST] =
        "SELECT seq, ts_ms, kind, level, message, data FROM job_events WHERE job_seq = ?1 AND seq > ?2 "
        "ORDER BY seq LIMIT ?3",
    [ST_ART_DELETE] = "DELETE FROM artifacts WHERE job_seq = ?1",
    [ST_ART_INSERT] =
        "INSERT INTO artifacts (job_seq, dir, created_ms, bytes, metadata) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ART_FILE_INSERT] = "INSERT INTO artifact_files (job_seq, name, size, sha256) VALUES (?1, ?2, ?3, ?4)",
    [ST_ART_GET] =
        "SELECT a.job_seq, a.dir, a.created_ms, a.bytes, a.metadata FROM artifacts a "
        "JOIN jobs j ON j.seq = a.job_seq WHERE j.id = ?1",
    [ST_ART_FILES] = "SELECT name, size, sha256 FROM artifact_files WHERE job_seq = ?1 ORDER BY name",
    [ST_ART_DIRS] = "SELECT dir FROM artifacts ORDER BY job_seq",
    [ST_HOOK_ADD] = "INSERT INTO webhooks (job_seq, url, body, next_ms) VALUES (?1, ?2, ?3, ?4)",
    [ST_HOOKS_DUE] =
        "SELECT w.seq, j.id, w.url, w.body, w.attempts FROM webhooks w JOIN jobs j ON j.seq = w.job_seq "
        "WHERE w.delivered_ms IS NULL AND w.gave_up_ms IS NULL AND w.next_ms <= ?1 ORDER BY w.next_ms, w.seq LIMIT ?2",
    /* ?2 ok, ?3 next_ms (< 0: give up), ?4 now, ?5 error */
    [ST_HOOK_RESULT] =
        "UPDATE webhooks SET attempts = attempts + 1, "
        "delivered_ms = CASE WHEN ?2 THEN ?4 END, "
        "gave_up_ms = CASE WHEN NOT ?2 AND ?3 < 0 THEN ?4 END, "
        "next_ms = CASE WHEN NOT ?2 AND ?3 >= 0 THEN ?3 ELSE next_ms END, "
        "last_error = CASE WHEN ?2 THEN last_error ELSE ?5 END "
        "WHERE seq = ?1 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
    [ST_HOOK_NEXT] = "SELECT MIN(next_ms) FROM webhooks WHERE delivered_ms IS NULL AND gave_up_ms IS NULL",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_N];
    int bind_rc;        /* first failed sqlite3_bind_* since the last step, SQLITE_OK otherwise */
};

static const char *const status_names[JOB_NSTATUS] = {
    "queued", "downloading", "calibrating", "quantizing", "writing", "evaluating",
    "succeeded", "failed", "cancelled",
};

const char *job_status_name(enum job_status s)
{
    return (unsigned)s < JOB_NSTATUS ? status_names[s] : "unknown";
}

int job_status_parse(const char *name)
{
    for (int i = 0; name && i < JOB_NSTATUS; i++)
        if (strcmp(name, status_names[i]) == 0)
            return i;
    return -1;
}

int job_status_terminal(enum job_status s)
{
    return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

int job_status_running(enum job_status s)
{
    return s >= JOB_DOWNLOADING && s <= JOB_EVALUATING;
}

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void job_clear(struct job *j)
{
    free(j->model);
    free(j->revision);
    free(j->source_revision);
    free(j->spec);
    free(j->labels);
    free(j->callback_url);
    free(j->idempotency_key);
    free(j->error_code);
    free(j->error_message);
    free(j->stage);
    memset(j, 0, sizeof(*j));
}

static void job_clear_any(void *p)
{
    job_clear(p);
}

static void event_clear(void *p)
{
    struct job_event *ev = p;
    free(ev->message);
    free(ev->data);
}

static void file_clear(void *p)
{
    free(((struct artifact_file *)p)->name);
}

static void hook_clear(void *p)
{
    struct webhook *w = p;
    free(w->url);
    free(w->body);
}

void job_free(struct job *j)
{
    if (!j)
        return;
    job_clear(j);
    free(j);
}

void job_array_free(struct job *jobs, size_t n)
{
    if (!jobs)
        return;
    for (size_t i = 0; i < n; i++)
        job_clear(&jobs[i]);
    free(jobs);
}

void job_event_array_free(struct job_event *ev, size_t n)
{
    if (!ev)
        return;
    for (size_t i = 0; i < n; i++)
        event_clear(&ev[i]);
    free(ev);
}

void artifact_free(struct artifact *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nfiles; i++)
        file_clear(&a->files[i]);
    free(a->files);
    free(a->dir);
    free(a->metadata);
    free(a);
}

void webhook_array_free(struct webhook *w, size_t n)
{
    if (!w)
        return;
    for (size_t i = 0; i < n; i++)
        hook_clear(&w[i]);
    free(w);
}

/* ---- statement helpers ---- */

/* An SQLite failure as a gq error: ENOMEM for SQLITE_NOMEM, EDB with sqlite3_errmsg otherwise. */
static int db_fail(sqlite3 *db, int rc, gq_err *e)
{
    if ((rc & 0xff) == SQLITE_NOMEM)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory (sqlite)");
    return GQ_FAIL(e, GQ_EDB, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* Bind helpers remember the first failure in s->bind_rc; step() reports it. */
static void note(store *s, int rc)
{
    if (rc != SQLITE_OK && s->bind_rc == SQLITE_OK)
        s->bind_rc = rc;
}

static void bind_text(store *s, sqlite3_stmt *st, int i, const char *v)
{
    note(s, v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i));
}

static void bind_i64(store *s, sqlite3_stmt *st, int i, int64_t v)
{
    note(s, sqlite3_bind_int64(st, i, v));
}

/* v, or NULL when !present */
static void bind_i64_or_null(store *s, sqlite3_stmt *st, int i, int64_t v, int present)
{
    note(s, present ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i));
}

static void bind_double_or_null(store *s, sqlite3_stmt *st, int i, double v, int present)
{
    note(s, present ? sqlite3_bind_double(st, i, v) : sqlite3_bind_null(st, i));
}

/* SQLITE_ROW or SQLITE_DONE, or a negative gq_code with e filled. */
static int step(store *s, sqlite3_stmt *st, gq_err *e)
{
    int rc;
    if (s->bind_rc != SQLITE_OK) {
        rc = s->bind_rc;
        s->bind_rc = SQLITE_OK;
        if (rc == SQLITE_NOMEM)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory (sqlite)");
        return GQ_FAIL(e, GQ_EDB, "binding a parameter: %s", sqlite3_errstr(rc));
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc;
    return db_fail(s->db, rc, e);
}

/* Ready a statement for its next use (harmless on one that did not run). */
static void rs(store *s, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    s->bind_rc = SQLITE_OK;
}

/* Run a statement that returns no row we need, then reset it: 0 or a gq_code. */
static int run(store *s, sqlite3_stmt *st, gq_err *e)
{
    int rc = step(s, st, e);
    rs(s, st);
    return rc < 0 ? rc : 0;
}

static int tx_begin(store *s, gq_err *e)
{
    return run(s, s->st[ST_BEGIN], e);
}

static int tx_begin_read(store *s, gq_err *e)
{
    return run(s, s->st[ST_BEGIN_READ], e);
}

/* COMMIT when rc >= 0, else (or when the commit fails) ROLLBACK; returns the outcome. */
static int tx_end(store *s, int rc, gq_err *e)
{
    if (rc >= 0) {
        int c = run(s, s->st[ST_COMMIT], e);
        if (c == 0)
            return rc;
        rc = c;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        gq_err ignored = GQ_ERR_INIT;   /* keep the first error in e */
        run(s, s->st[ST_ROLLBACK], &ignored);
    }
    return rc;
}

/* A copy of a text column, NULL for SQL NULL; *oom set when the copy failed. */
static char *col_dup(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n;
    char *d;
    if (!t)
        return NULL;   /* NULL, or SQLITE_NOMEM converting, which the caller cannot tell: treat as NULL */
    n = (size_t)sqlite3_column_bytes(st, i);
    if (!(d = malloc(n + 1))) {
        *oom = 1;
        return NULL;
    }
    memcpy(d, t, n);
    d[n] = '\0';
    return d;
}

/* An integer column, dflt for NULL. */
static int64_t col_i64(sqlite3_stmt *st, int i, int64_t dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

static void col_copy(char *dst, size_t cap, sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* Fill j (zeroed first) from a row of JOB_COLS. */
static int job_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct job *j = dst;
    int oom = 0, status;
    memset(j, 0, sizeof(*j));
    j->seq = sqlite3_column_int64(st, 0);
    col_copy(j->id, sizeof(j->id), st, 1);
    status = job_status_parse((const char *)sqlite3_column_text(st, 2));
    j->status = status < 0 ? JOB_FAILED : (enum job_status)status;   /* the CHECK constraint rules it out */
    j->priority = (int)sqlite3_column_int64(st, 3);
    j->model = col_dup(st, 4, &oom);
    j->revision = col_dup(st, 5, &oom);
    j->source_revision = col_dup(st, 6, &oom);
    j->spec = col_dup(st, 7, &oom);
    j->labels = col_dup(st, 8, &oom);
    j->callback_url = col_dup(st, 9, &oom);
    j->idempotency_key = col_dup(st, 10, &oom);
    col_copy(j->request_hash, sizeof(j->request_hash), st, 11);
    j->mem_estimate = col_i64(st, 12, 0);
    j->created_ms = col_i64(st, 13, 0);
    j->started_ms = col_i64(st, 14, 0);
    j->finished_ms = col_i64(st, 15, 0);
    j->updated_ms = col_i64(st, 16, 0);
    j->attempts = (int)col_i64(st, 17, 0);
    j->cancel_requested = (int)col_i64(st, 18, 0);
    j->error_code = col_dup(st, 19, &oom);
    j->error_message = col_dup(st, 20, &oom);
    j->stage = col_dup(st, 21, &oom);
    j->layer = (int)col_i64(st, 22, -1);
    j->layers_total = (int)col_i64(st, 23, -1);
    j->fraction = sqlite3_column_double(st, 24);
    j->eta_seconds = sqlite3_column_type(st, 25) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 25);
    if (oom || !j->model || !j->revision || !j->spec || !j->labels) {
        job_clear(j);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    }
    return 0;
}

/*
 * Room for one more element in the growing array *pp (of *cap, doubling):
 * 0, or GQ_ENOMEM with *pp unchanged.  pp is a pointer to the array's
 * pointer, passed as void * so that any element type fits.
 */
static int grow(void *pp, size_t *cap, size_t elem, gq_err *e)
{
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p, *np;
    memcpy(&p, pp, sizeof(p));
    if (ncap > SIZE_MAX / elem || !(np = realloc(p, ncap * elem)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    memcpy(pp, &np, sizeof(np));
    *cap = ncap;
    return 0;
}

/* Fill a zeroed element from the current row; on failure leave nothing to free. */
typedef int row_fn(void *dst, sqlite3_stmt *st, gq_err *e);
typedef void clear_fn(void *p);

/*
 * Step st (bound by the caller) and read up to limit rows into a new array
 * of elem-sized elements: *(T **)out (NULL when none) and *n.  *more (may
 * be NULL) is 1 when a row was left after limit.  Resets st.
 */
static int collect(void *out, size_t *n, int *more, store *s, sqlite3_stmt *st, size_t limit, size_t elem,
                   row_fn *row, clear_fn *clear, gq_err *e)
{
    char *v = NULL;
    size_t k = 0, cap = 0;
    int rc;
    if (more)
        *more = 0;
    while ((rc = step(s, st, e)) == SQLITE_ROW) {
        if (k == limit) {
            if (more)
                *more = 1;
            break;
        }
        if (k == cap && (rc = grow(&v, &cap, elem, e)) < 0)
            goto done;
        memset(v + k * elem, 0, elem);
        if ((rc = row(v + k * elem, st, e)) < 0)
            goto done;
        k++;
    }
    if (rc < 0)
        goto done;
    memcpy(out, &v, sizeof(v));
    *n = k;
    v = NULL;
    k = 0;
    rc = 0;
done:
    rs(s, st);
    for (size_t i = 0; clear && i < k; i++)
        clear(v + i * elem);
    free(v);
    return rc;
}

/* seq and status of job id: GQ_ENOTFOUND when it does not exist. */
static int job_lookup(int64_t *seq, enum job_status *status, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_LOOKUP];
    char q[64];
    int rc, v;
    bind_text(s, st, 1, id);
    if ((rc = step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
        goto done;
    }
    *seq = sqlite3_column_int64(st, 0);
    v = job_status_parse((const char *)sqlite3_column_text(st, 1));
    *status = v < 0 ? JOB_FAILED : (enum job_status)v;
    rc = 0;
done:
    rs(s, st);
    return rc;
}

/* Like job_lookup for operations that need a running job: anything else is GQ_ECONFLICT. */
static int running_lookup(int64_t *seq, enum job_status *status, store *s, const char *id, gq_err *e)
{
    char q[64];
    int rc = job_lookup(seq, status, s, id, e);
    if (rc == GQ_ENOTFOUND)
        return GQ_FAIL(e, GQ_ECONFLICT, "job %s no longer exists", gq_err_quote(q, sizeof(q), id));
    if (rc < 0)
        return rc;
    if (!job_status_running(*status))
        return GQ_FAIL(e, GQ_ECONFLICT, "job %s is %s, not running", gq_err_quote(q, sizeof(q), id),
                       job_status_name(*status));
    return 0;
}

static int event_insert(store *s, int64_t seq, int64_t now, const char *kind, const char *level,
                        const char *message, const char *data, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_EVENT_ADD];
    bind_i64(s, st, 1, seq);
    bind_i64(s, st, 2, now);
    bind_text(s, st, 3, kind);
    bind_text(s, st, 4, level);
    bind_text(s, st, 5, message);
    bind_text(s, st, 6, data);
    return run(s, st, e);
}

/* The "state" event of a status change: "from -> to[: detail]". */
static int state_event(store *s, int64_t seq, int64_t now, enum job_status from, enum job_status to,
                       const char *detail, gq_err *e)
{
    char msg[1024], data[96];
    snprintf(msg, sizeof(msg), "%s -> %s%s%s", job_status_name(from), job_status_name(to),
             detail ? ": " : "", detail ? detail : "");
    /* status names are fixed lower-case words: no JSON escaping needed */
    snprintf(data, sizeof(data), "{\"from\":\"%s\",\"to\":\"%s\"}", job_status_name(from), job_status_name(to));
    return event_insert(s, seq, now, "state", to == JOB_FAILED ? "error" : "info", msg, data, e);
}

/* status/finished/error columns of one job (ST_JOB_SET_STATUS). */
static int set_status(store *s, int64_t seq, enum job_status to, int64_t now, const char *error_code,
                      const char *error_message, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_SET_STATUS];
    bind_i64(s, st, 1, seq);
    bind_text(s, st, 2, job_status_name(to));
    bind_i64(s, st, 3, now);
    bind_i64_or_null(s, st, 4, now, job_status_terminal(to));
    bind_text(s, st, 5, error_code);
    bind_text(s, st, 6, error_message);
    return run(s, st, e);
}

/* ---- migrations, open, close ---- */

/* Number of embedded migrations after checking they are 0001..N, or GQ_EINVAL. */
static int check_migrations(gq_err *e)
{
    size_t n = embedded_migrations_count;
    if (n == 0)
        return GQ_FAIL(e, GQ_EINVAL, "no migrations are embedded in this binary");
    if (n > 9999)
        return GQ_FAIL(e, GQ_EINVAL, "too many migrations (%zu)", n);
    for (size_t i = 0; i < n; i++) {
        const char *name = embedded_migrations[i].name;
        int v = 0, k;
        for (k = 0; k < 4 && name[k] >= '0' && name[k] <= '9'; k++)
            v = v * 10 + (name[k] - '0');
        if (k != 4 || name[4] != '_' || v != (int)i + 1)
            return GQ_FAIL(e, GQ_EINVAL, "embedded migration %s should be number %04zu (versions must be "
                           "1..N without gaps)", name, i + 1);
    }
    return (int)n;
}

/* Returns -1 when the embedded migrations are malformed (store_migrate says why). */
int store_schema_version(void)
{
    int n = check_migrations(NULL);
    return n < 0 ? -1 : n;
}

static int user_version(int *out, sqlite3 *db, gq_err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        rc = db_fail(db, rc, e);
    sqlite3_finalize(st);
    return rc;
}

/* Open and configure a connection (WAL, synchronous NORMAL, foreign keys, busy timeout). */
static int db_open(sqlite3 **out, const char *path, gq_err *e)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const unsigned char *mode;
    int memory = strcmp(path, ":memory:") == 0;
    /* NOMUTEX: a connection is never shared between threads (store.h) */
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = db ? GQ_FAIL(e, GQ_EDB, "opening %s: %s", path, sqlite3_errmsg(db))
                : GQ_FAIL(e, GQ_ENOMEM, "out of memory opening %s", path);
        goto done;
    }
    sqlite3_busy_timeout(db, 5000);
    if ((rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL)) != SQLITE_OK ||
        (rc = sqlite3_step(st)) != SQLITE_ROW) {
        rc = db_fail(db, rc, e);
        goto done;
    }
    mode = sqlite3_column_text(st, 0);
    if (!memory && (!mode || strcmp((const char *)mode, "wal") != 0)) {
        rc = GQ_FAIL(e, GQ_EDB, "%s: cannot use WAL (journal mode is %s)", path, mode ? (const char *)mode : "?");
        goto done;
    }
    if ((rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL, NULL)) !=
        SQLITE_OK) {
        rc = db_fail(db, rc, e);
        goto done;
    }
    *out = db;
    db = NULL;
    rc = 0;
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static int exec(sqlite3 *db, const char *text, const char *what, gq_err *e)
{
    int rc = sqlite3_exec(db, text, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return 0;
    if ((rc & 0xff) == SQLITE_NOMEM)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory (sqlite) in %s", what);
    return GQ_FAIL(e, GQ_EDB, "%s: %s", what, sqlite3_errmsg(db));
}

/*
 * Apply every embedded migration newer than the database, each in its own
 * BEGIN IMMEDIATE transaction.  The version is read inside the transaction,
 * so two processes migrating at once apply each migration once.
 */
static int migrate_db(sqlite3 *db, int *from, int *to, gq_err *e)
{
    int n = check_migrations(e), v = 0, first = 1, rc;
    char pragma[48];
    if (n < 0)
        return n;
    for (;;) {
        if ((rc = exec(db, "BEGIN IMMEDIATE", "starting a migration", e)) < 0)
            return rc;
        if ((rc = user_version(&v, db, e)) < 0)
            goto fail;
        if (first && from)
            *from = v;
        first = 0;
        if (v > n) {
            rc = GQ_FAIL(e, GQ_ECONFLICT, "database schema version %d is newer than this gptqd (%d)", v, n);
            goto fail;
        }
        if (v == n)
            break;
        if ((rc = exec(db, (const char *)embedded_migrations[v].data, embedded_migrations[v].name, e)) < 0)
            goto fail;
        /* The one formatted statement: PRAGMA takes no bound parameters, and this is an integer. */
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        if ((rc = exec(db, pragma, "setting user_version", e)) < 0 ||
            (rc = exec(db, "COMMIT", "committing a migration", e)) < 0)
            goto fail;
    }
    if ((rc = exec(db, "COMMIT", "ending the migrations", e)) < 0)
        goto fail;
    if (to)
        *to = v;
    return 0;
fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int store_migrate(const char *path, int *from, int *to, gq_err *e)
{
    sqlite3 *db = NULL;
    int rc;
    GQ_ASSERT_ARG(e, path != NULL);
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0)
        return GQ_FAIL(e, GQ_EINVAL, "store_migrate needs a database file (got \"%s\")", path);
    if ((rc = db_open(&db, path, e)) < 0)
        return rc;
    rc = migrate_db(db, from, to, e);
    if (sqlite3_close(db) != SQLITE_OK && rc == 0)
        rc = GQ_FAIL(e, GQ_EDB, "closing %s after migrating: %s", path, sqlite3_errmsg(db));
    return rc;
}

int store_close(store *s)
{
    int rc = 0;
    if (!s)
        return 0;
    for (int i = 0; i < ST_N; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db && sqlite3_close(s->db) != SQLITE_OK) {
        /* a statement is still open somewhere: report it, and let SQLite free the
         * connection when that statement goes */
        sqlite3_close_v2(s->db);
        rc = GQ_EDB;
    }
    free(s);
    return rc;
}

/* A store over db (taken over, closed on failure) with every statement prepared. */
static int store_wrap(store **out, sqlite3 *db, gq_err *e)
{
    store *s = calloc(1, sizeof(*s));
    int rc = 0;
    if (!s) {
        sqlite3_close(db);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    }
    s->db = db;
    for (int i = 0; i < ST_N; i++) {
        if ((rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL)) != SQLITE_OK) {
            rc = GQ_FAIL(e, (rc & 0xff) == SQLITE_NOMEM ? GQ_ENOMEM : GQ_EDB, "preparing statement %d: %s", i,
                         sqlite3_errmsg(db));
            goto done;
        }
    }
    *out = s;
    s = NULL;
    rc = 0;
done:
    store_close(s);
    return rc;
}

int store_open(store **out, const char *path, gq_err *e)
{
    sqlite3 *db = NULL;
    int rc, v = 0, want;
    GQ_ASSERT_ARG(e, out != NULL && path != NULL);
    if ((want = check_migrations(e)) < 0)
        return want;
    if ((rc = db_open(&db, path, e)) < 0)
        return rc;
    if ((rc = user_version(&v, db, e)) < 0)
        goto fail;
    if (v != want) {
        rc = v > want ? GQ_FAIL(e, GQ_ECONFLICT, "database schema version %d is newer than this gptqd (%d)", v, want)
                      : GQ_FAIL(e, GQ_ECONFLICT, "database schema version %d is older than this gptqd (%d): "
                                "run the migrations first", v, want);
        goto fail;
    }
    return store_wrap(out, db, e);
fail:
    sqlite3_close(db);
    return rc;
}

int store_open_memory(store **out, gq_err *e)
{
    sqlite3 *db = NULL;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL);
    if ((rc = db_open(&db, ":memory:", e)) < 0)
        return rc;
    if ((rc = migrate_db(db, NULL, NULL, e)) < 0) {
        sqlite3_close(db);
        return rc;
    }
    return store_wrap(out, db, e);
}

int store_ping(store *s, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, 0, e);
}

/* ---- jobs ---- */

static int new_job_id(char id[24], gq_err *e)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[10];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return GQ_FAIL(e, GQ_EIO, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    id[0] = 'j', id[1] = '_';
    for (size_t i = 0; i < sizeof(b); i++) {
        id[2 + 2 * i] = hex[b[i] >> 4];
        id[3 + 2 * i] = hex[b[i] & 15];
    }
    id[22] = '\0';
    return 0;
}

/* One row per string member of the labels object. */
static int insert_labels(store *s, int64_t seq, const char *labels, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_LABEL_INSERT];
    cJSON *o = cJSON_Parse(labels);
    const cJSON *m;
    int rc = 0;
    if (!cJSON_IsObject(o)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "labels must be a JSON object");
        goto done;
    }
    cJSON_ArrayForEach(m, o) {
        if (!cJSON_IsString(m) || !m->string)
            continue;
        bind_i64(s, st, 1, seq);
        bind_text(s, st, 2, m->string);
        bind_text(s, st, 3, m->valuestring);
        if ((rc = run(s, st, e)) < 0)
            goto done;
    }
done:
    cJSON_Delete(o);
    return rc;
}

/*
 * The body of store_jobs_insert: every job's row as stored (the existing
 * one on an idempotent replay, found[i] = 1) goes to rows[], so that jobs[]
 * is only touched once the transaction has committed.
 */
static int jobs_insert_tx(store *s, const struct job *jobs, size_t n, struct job *rows, int *found, int64_t now,
                          gq_err *e)
{
    sqlite3_stmt *by_key = s->st[ST_JOB_BY_KEY], *ins = s->st[ST_JOB_INSERT];
    char q[64], id[24];
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct job *j = &jobs[i];
        if (j->idempotency_key) {
            bind_text(s, by_key, 1, j->idempotency_key);
            if ((rc = step(s, by_key, e)) < 0)
                goto done;
            if (rc == SQLITE_ROW) {
                const unsigned char *hash = sqlite3_column_text(by_key, 11);
                if (strcmp(hash ? (const char *)hash : "", j->request_hash) != 0) {
                    rc = GQ_FAIL(e, GQ_ECONFLICT, "idempotency key %s was used for a different request",
                                 gq_err_quote(q, sizeof(q), j->idempotency_key));
                    goto done;
                }
                if ((rc = job_from_row(&rows[i], by_key, e)) < 0)
                    goto done;
                found[i] = 1;
                rs(s, by_key);
                continue;
            }
            rs(s, by_key);
        }
        if ((rc = new_job_id(id, e)) < 0)
            goto done;
        bind_text(s, ins, 1, id);
        bind_i64(s, ins, 2, j->priority);
        bind_text(s, ins, 3, j->model);
        bind_text(s, ins, 4, j->revision);
        bind_text(s, ins, 5, j->spec);
        bind_text(s, ins, 6, j->labels ? j->labels : "{}");
        bind_text(s, ins, 7, j->callback_url);
        bind_text(s, ins, 8, j->idempotency_key);
        bind_text(s, ins, 9, j->request_hash[0] ? j->request_hash : NULL);
        bind_i64(s, ins, 10, j->mem_estimate);
        bind_i64(s, ins, 11, now);
        if ((rc = step(s, ins, e)) < 0 || (rc = job_from_row(&rows[i], ins, e)) < 0)
            goto done;
        rs(s, ins);
        if (j->labels && (rc = insert_labels(s, rows[i].seq, j->labels, e)) < 0)
            goto done;
    }
    rc = 0;
done:
    rs(s, by_key);
    rs(s, ins);
    return rc;
}

int store_jobs_insert(store *s, struct job *jobs, size_t n, int *existing, gq_err *e)
{
    struct job *rows = NULL;
    int *found = NULL;
    int rc = 0;
    GQ_ASSERT_ARG(e, s != NULL && (jobs != NULL || n == 0));
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const struct job *j = &jobs[i];
        if (!j->model || !j->revision || !j->spec)
            return GQ_FAIL(e, GQ_EINVAL, "job %zu: model, revision and spec are required", i);
        if (j->idempotency_key && !j->request_hash[0])
            return GQ_FAIL(e, GQ_EINVAL, "job %zu: an idempotency key needs a request hash", i);
    }
    rows = calloc(n, sizeof(*rows));
    found = calloc(n, sizeof(*found));
    if (!rows || !found) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = tx_begin(s, e)) < 0 || (rc = tx_end(s, jobs_insert_tx(s, jobs, n, rows, found, store_now_ms(), e), e)) < 0)
        goto done;
    /* committed: hand the rows over */
    for (size_t i = 0; i < n; i++) {
        if (existing)
            existing[i] = found[i];
        job_clear(&jobs[i]);
        jobs[i] = rows[i];
        memset(&rows[i], 0, sizeof(rows[i]));
    }
done:
    job_array_free(rows, rows ? n : 0);
    free(found);
    return rc;
}

int store_job_get(struct job **out, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st;
    struct job *j = NULL;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL && id != NULL);
    st = s->st[ST_JOB_GET];
    if (!(j = malloc(sizeof(*j))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    bind_text(s, st, 1, id);
    if ((rc = step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
        goto done;
    }
    if ((rc = job_from_row(j, st, e)) < 0)
        goto done;
    *out = j;
    j = NULL;
done:
    rs(s, st);
    free(j);   /* never holds strings here: job_from_row clears on failure */
    return rc;
}

int store_jobs_list(struct job **out, size_t *n, int *more, store *s, const struct job_filter *f, gq_err *e)
{
    sqlite3_stmt *st;
    GQ_ASSERT_ARG(e, out != NULL && n != NULL && s != NULL && f != NULL);
    st = s->st[ST_JOBS_LIST];
    if (f->limit < 1 || f->limit > 1000)
        return GQ_FAIL(e, GQ_EINVAL, "limit must be 1..1000 (got %zu)", f->limit);
    if (f->status != -1 && (f->status < 0 || f->status >= JOB_NSTATUS))
        return GQ_FAIL(e, GQ_EINVAL, "unknown status filter %d", f->status);
    if (f->label_value && !f->label_key)
        return GQ_FAIL(e, GQ_EINVAL, "a label value filter needs a label key");
    bind_i64(s, st, 1, f->after_seq);
    bind_text(s, st, 2, f->status >= 0 ? job_status_name((enum job_status)f->status) : NULL);
    bind_text(s, st, 3, f->model);
    bind_text(s, st, 4, f->label_key);
    bind_text(s, st, 5, f->label_value);
    bind_i64(s, st, 6, (int64_t)f->limit + 1);   /* one more than asked: is there a next page? */
    return collect(out, n, more, s, st, f->limit, sizeof(**out), job_from_row, job_clear_any, e);
}

static int claim_tx(struct job **out, store *s, int64_t mem_free, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_CLAIM];
    struct job *j = NULL;
    int rc;
    if (!(j = malloc(sizeof(*j))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    bind_i64(s, st, 1, mem_free);
    bind_i64(s, st, 2, now);
    if ((rc = step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        rc = mem_free < 0 ? GQ_FAIL(e, GQ_ENOTFOUND, "no queued job")
                          : GQ_FAIL(e, GQ_ENOTFOUND, "no queued job fits in %lld bytes", (long long)mem_free);
        goto done;
    }
    if ((rc = job_from_row(j, st, e)) < 0)
        goto done;
    rs(s, st);   /* finish the UPDATE before the next statement */
    if ((rc = state_event(s, j->seq, now, JOB_QUEUED, JOB_DOWNLOADING, NULL, e)) < 0) {
        job_clear(j);
        goto done;
    }
    *out = j;
    j = NULL;
done:
    rs(s, st);
    free(j);
    return rc;
}

int store_job_claim(struct job **out, store *s, int64_t mem_free, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, claim_tx(out, s, mem_free, store_now_ms(), e), e);
}

int store_has_queued(int *out, store *s, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    st = s->st[ST_HAS_QUEUED];
    if ((rc = step(s, st, e)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0) != 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_EDB, "EXISTS returned no row");
    }
    rs(s, st);
    return rc;
}

static int transition_tx(store *s, const char *id, enum job_status to, const char *error_code,
                         const char *error_message, int64_t now, gq_err *e)
{
    int64_t seq;
    enum job_status from;
    int rc;
    if ((rc = running_lookup(&seq, &from, s, id, e)) < 0)
        return rc;
    if (to == JOB_SUCCEEDED || job_status_running(to))
        error_code = error_message = NULL;
    else if (!error_code)
        error_code = to == JOB_FAILED ? "failed" : "cancelled";
    if ((rc = set_status(s, seq, to, now, error_code, error_message, e)) < 0)
        return rc;
    return state_event(s, seq, now, from, to, error_message ? error_message : error_code, e);
}

int store_job_transition(store *s, const char *id, enum job_status to, const char *error_code,
                         const char *error_message, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    if (!job_status_running(to) && !job_status_terminal(to))
        return GQ_FAIL(e, GQ_EINVAL, "cannot transition a job to %s", job_status_name(to));
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, transition_tx(s, id, to, error_code, error_message, store_now_ms(), e), e);
}

int store_job_set_source_revision(store *s, const char *id, const char *sha, gq_err *e)
{
    sqlite3_stmt *st;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    st = s->st[ST_JOB_SET_REV];
    if ((rc = tx_begin(s, e)) < 0)
        return rc;
    bind_text(s, st, 1, id);
    bind_text(s, st, 2, sha);
    bind_i64(s, st, 3, store_now_ms());
    if ((rc = run(s, st, e)) == 0 && sqlite3_changes(s->db) == 0)
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
    return tx_end(s, rc, e);
}

static int progress_tx(store *s, const char *id, const char *stage, int layer, int layers_total,
                       double fraction, double eta_seconds, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_PROGRESS];
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = running_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    bind_i64(s, st, 1, seq);
    bind_text(s, st, 2, stage);
    bind_i64_or_null(s, st, 3, layer, layer >= 0);
    bind_i64_or_null(s, st, 4, layers_total, layers_total >= 0);
    bind_double_or_null(s, st, 5, fraction, 1);
    bind_double_or_null(s, st, 6, eta_seconds, eta_seconds >= 0);
    bind_i64(s, st, 7, store_now_ms());
    return run(s, st, e);
}

int store_job_progress(store *s, const char *id, const char *stage, int layer, int layers_total, double fraction,
                       double eta_seconds, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    if (!(fraction >= 0 && fraction <= 1))
        return GQ_FAIL(e, GQ_EINVAL, "progress fraction must be in 0..1 (got %g)", fraction);
    if (isnan(eta_seconds))
        eta_seconds = -1;
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, progress_tx(s, id, stage, layer, layers_total, fraction, eta_seconds, e), e);
}

static int cancel_tx(store *s, const char *id, enum job_status *status_out, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_CANCEL_REQ];
    int64_t seq;
    enum job_status status;
    char q[64];
    int rc;
    if ((rc = job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    if (job_status_terminal(status))
        return GQ_FAIL(e, GQ_ECONFLICT, "job %s is already %s", gq_err_quote(q, sizeof(q), id),
                       job_status_name(status));
    if (status == JOB_QUEUED) {
        if ((rc = set_status(s, seq, JOB_CANCELLED, now, "cancelled", "cancelled before it started", e)) < 0 ||
            (rc = state_event(s, seq, now, JOB_QUEUED, JOB_CANCELLED, "cancelled before it started", e)) < 0)
            return rc;
        status = JOB_CANCELLED;
    } else {
        bind_i64(s, st, 1, seq);
        bind_i64(s, st, 2, now);
        if ((rc = run(s, st, e)) < 0)
            return rc;
        if (sqlite3_changes(s->db) > 0 &&
            (rc = event_insert(s, seq, now, "log", "info", "cancel requested", NULL, e)) < 0)
            return rc;
    }
    if (status_out)
        *status_out = status;
    return 0;
}

int store_job_cancel(store *s, const char *id, enum job_status *status_out, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, cancel_tx(s, id, status_out, store_now_ms(), e), e);
}

int store_job_cancel_requested(int *out, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL && id != NULL);
    st = s->st[ST_JOB_CANCEL_FLAG];
    bind_text(s, st, 1, id);
    if ((rc = step(s, st, e)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0) != 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
    }
    rs(s, st);
    return rc;
}

/* Back to queued, progress cleared, attempts + delta (not below 0). */
static int requeue_row(store *s, int64_t seq, int delta, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_REQUEUE];
    bind_i64(s, st, 1, seq);
    bind_i64(s, st, 2, delta);
    bind_i64(s, st, 3, now);
    return run(s, st, e);
}

static int requeue_tx(store *s, const char *id, int64_t now, gq_err *e)
{
    int64_t seq;
    enum job_status from;
    int rc;
    int cancel = 0;
    if ((rc = running_lookup(&seq, &from, s, id, e)) < 0 || (rc = store_job_cancel_requested(&cancel, s, id, e)) < 0)
        return rc;
    if (cancel)
        return 1;   /* the caller finishes it as cancelled: the user's request outlives the drain */
    if ((rc = requeue_row(s, seq, -1, now, e)) < 0)
        return rc;
    return state_event(s, seq, now, from, JOB_QUEUED, "requeued (stopped by shutdown)", e);
}

int store_job_requeue(store *s, const char *id, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, requeue_tx(s, id, store_now_ms(), e), e);
}

static int delete_tx(store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_DELETE];
    int64_t seq;
    enum job_status status;
    char q[64];
    int rc;
    if ((rc = job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    if (!job_status_terminal(status))
        return GQ_FAIL(e, GQ_ECONFLICT, "job %s is %s, not finished", gq_err_quote(q, sizeof(q), id),
                       job_status_name(status));
    bind_i64(s, st, 1, seq);   /* labels, events, artifact, files, webhooks go by ON DELETE CASCADE */
    return run(s, st, e);
}

int store_job_delete(store *s, const char *id, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, delete_tx(s, id, e), e);
}

struct running_row {
    int64_t seq;
    char id[24];
    enum job_status status;
    int attempts;
    int cancel_requested;
};

static int running_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct running_row *r = dst;
    int status = job_status_parse((const char *)sqlite3_column_text(st, 2));
    (void)e;
    r->seq = sqlite3_column_int64(st, 0);
    col_copy(r->id, sizeof(r->id), st, 1);
    r->status = status < 0 ? JOB_DOWNLOADING : (enum job_status)status;
    r->attempts = sqlite3_column_int(st, 3);
    r->cancel_requested = sqlite3_column_int(st, 4) != 0;
    return 0;
}

static int recover_tx(struct running_row **rows_out, size_t *n_out, store *s, int max_attempts, int64_t now,
                      gq_err *e)
{
    struct running_row *v = NULL;
    size_t n = 0;
    char detail[128];
    int rc;
    /* read them all first: the updates below change the rows the SELECT walks */
    if ((rc = collect(&v, &n, NULL, s, s->st[ST_RUNNING_JOBS], SIZE_MAX, sizeof(*v), running_from_row, NULL, e)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const struct running_row *r = &v[i];
        if (r->cancel_requested) {
            /* cancelled while running, then the daemon died: honour the request */
            snprintf(detail, sizeof(detail), "cancelled by request (the run was interrupted by a restart)");
            if ((rc = set_status(s, r->seq, JOB_CANCELLED, now, "cancelled", detail, e)) < 0 ||
                (rc = state_event(s, r->seq, now, r->status, JOB_CANCELLED, detail, e)) < 0)
                goto done;
        } else if (r->attempts < max_attempts) {
            snprintf(detail, sizeof(detail), "recovered after a restart (attempt %d of %d was interrupted)",
                     r->attempts, max_attempts);
            if ((rc = requeue_row(s, r->seq, 0, now, e)) < 0 ||
                (rc = state_event(s, r->seq, now, r->status, JOB_QUEUED, detail, e)) < 0)
                goto done;
        } else {
            snprintf(detail, sizeof(detail), "interrupted by a restart after %d attempt%s", r->attempts,
                     r->attempts == 1 ? "" : "s");
            if ((rc = set_status(s, r->seq, JOB_FAILED, now, "interrupted", detail, e)) < 0 ||
                (rc = state_event(s, r->seq, now, r->status, JOB_FAILED, detail, e)) < 0)
                goto done;
        }
    }
    *rows_out = v;
    *n_out = n;
    v = NULL;
done:
    free(v);
    return rc;
}

int store_recover(char (**ids)[24], size_t *n, store *s, int max_attempts, gq_err *e)
{
    struct running_row *rows = NULL;
    char (*v)[24] = NULL;
    size_t k = 0;
    int rc;
    GQ_ASSERT_ARG(e, ids != NULL && n != NULL && s != NULL);
    if (max_attempts < 1)
        return GQ_FAIL(e, GQ_EINVAL, "max_attempts must be >= 1 (got %d)", max_attempts);
    if ((rc = tx_begin(s, e)) < 0)
        return rc;
    if ((rc = tx_end(s, recover_tx(&rows, &k, s, max_attempts, store_now_ms(), e), e)) < 0)
        goto done;
    if (k > 0 && !(v = malloc(k * sizeof(*v)))) {
        /* committed already: the caller only loses the list of ids to clean up after */
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++)
        memcpy(v[i], rows[i].id, sizeof(v[i]));
    *ids = v;
    *n = k;
done:
    free(rows);
    return rc;
}

int store_counts(int64_t counts[JOB_NSTATUS], store *s, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, counts != NULL && s != NULL);
    st = s->st[ST_COUNTS];
    memset(counts, 0, JOB_NSTATUS * sizeof(counts[0]));
    while ((rc = step(s, st, e)) == SQLITE_ROW) {
        int k = job_status_parse((const char *)sqlite3_column_text(st, 0));
        if (k >= 0)
            counts[k] = sqlite3_column_int64(st, 1);
    }
    rs(s, st);
    return rc < 0 ? rc : 0;
}

/* ---- events ---- */

static int event_add_tx(store *s, const char *id, const char *kind, const char *level, const char *message,
                        const char *data, gq_err *e)
{
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    return event_insert(s, seq, store_now_ms(), kind, level, message, data, e);
}

int store_event_add(store *s, const char *id, const char *kind, const char *level, const char *message,
                    const char *data, gq_err *e)
{
    static const char *const kinds[] = { "state", "progress", "log" };
    static const char *const levels[] = { "debug", "info", "warn", "error" };
    int ok_kind = 0, ok_level = 0, rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL && kind != NULL && level != NULL && message != NULL);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        ok_kind |= strcmp(kind, kinds[i]) == 0;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        ok_level |= strcmp(level, levels[i]) == 0;
    if (!ok_kind || !ok_level) {
        char q[32];
        return GQ_FAIL(e, GQ_EINVAL, "unknown event %s \"%s\"", ok_kind ? "level" : "kind",
                       gq_err_quote(q, sizeof(q), ok_kind ? level : kind));
    }
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, event_add_tx(s, id, kind, level, message, data, e), e);
}

static int event_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct job_event *ev = dst;
    int oom = 0;
    ev->seq = sqlite3_column_int64(st, 0);
    ev->ts_ms = sqlite3_column_int64(st, 1);
    col_copy(ev->kind, sizeof(ev->kind), st, 2);
    col_copy(ev->level, sizeof(ev->level), st, 3);
    ev->message = col_dup(st, 4, &oom);
    ev->data = col_dup(st, 5, &oom);
    if (oom || !ev->message) {
        free(ev->message);
        free(ev->data);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    }
    return 0;
}

int store_events_list(struct job_event **out, size_t *n, int *more, store *s, const char *id, int64_t after_seq,
                      size_t limit, gq_err *e)
{
    sqlite3_stmt *st;
    int64_t seq;
    enum job_status status;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && n != NULL && s != NULL && id != NULL);
    st = s->st[ST_EVENTS_LIST];
    if (limit < 1 || limit > 1000)
        return GQ_FAIL(e, GQ_EINVAL, "limit must be 1..1000 (got %zu)", limit);
    if ((rc = job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    bind_i64(s, st, 1, seq);
    bind_i64(s, st, 2, after_seq);
    bind_i64(s, st, 3, (int64_t)limit + 1);
    return collect(out, n, more, s, st, limit, sizeof(**out), event_from_row, event_clear, e);
}

/* ---- artifacts ---- */

/* A relative path that stays inside its directory: not empty, not absolute, no ".." component. */
static int safe_relative(const char *name)
{
    const char *p = name;
    if (!name || !*name || *name == '/')
        return 0;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += len;
        if (*p == '/')
            p++;
    }
    return p[-1] != '/';
}

static int artifact_put_tx(store *s, const char *id, const char *dir, const char *metadata,
                           const struct artifact_file *files, size_t nfiles, int64_t bytes, gq_err *e)
{
    sqlite3_stmt *del = s->st[ST_ART_DELETE], *ins = s->st[ST_ART_INSERT], *fins = s->st[ST_ART_FILE_INSERT];
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    bind_i64(s, del, 1, seq);   /* the earlier artifact's files go by ON DELETE CASCADE */
    if ((rc = run(s, del, e)) < 0)
        return rc;
    bind_i64(s, ins, 1, seq);
    bind_text(s, ins, 2, dir);
    bind_i64(s, ins, 3, store_now_ms());
    bind_i64(s, ins, 4, bytes);
    bind_text(s, ins, 5, metadata ? metadata : "{}");
    if ((rc = run(s, ins, e)) < 0)
        return rc;
    for (size_t i = 0; i < nfiles; i++) {
        bind_i64(s, fins, 1, seq);
        bind_text(s, fins, 2, files[i].name);
        bind_i64(s, fins, 3, files[i].size);
        bind_text(s, fins, 4, files[i].sha256);
        if ((rc = run(s, fins, e)) < 0) {
            if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
                char q[64];
                rc = GQ_FAIL(e, GQ_EINVAL, "artifact file %s is listed twice",
                             gq_err_quote(q, sizeof(q), files[i].name));
            }
            return rc;
        }
    }
    return 0;
}

int store_artifact_put(store *s, const char *id, const char *dir, const char *metadata,
                       const struct artifact_file *files, size_t nfiles, gq_err *e)
{
    int64_t bytes = 0;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL && dir != NULL && (files != NULL || nfiles == 0));
    for (size_t i = 0; i < nfiles; i++) {
        if (!safe_relative(files[i].name))
            return GQ_FAIL(e, GQ_EINVAL, "artifact file name %s must be a relative path without \"..\"",
                           files[i].name ? gq_err_quote(q, sizeof(q), files[i].name) : "(null)");
        if (files[i].size < 0 || files[i].size > INT64_MAX - bytes)
            return GQ_FAIL(e, GQ_EINVAL, "artifact file %s has a bad size %lld",
                           gq_err_quote(q, sizeof(q), files[i].name), (long long)files[i].size);
        bytes += files[i].size;
    }
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, artifact_put_tx(s, id, dir, metadata, files, nfiles, bytes, e), e);
}

static int file_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct artifact_file *f = dst;
    int oom = 0;
    if (!(f->name = col_dup(st, 0, &oom)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    f->size = sqlite3_column_int64(st, 1);
    col_copy(f->sha256, sizeof(f->sha256), st, 2);
    return 0;
}

static int artifact_get_tx(struct artifact **out, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_ART_GET], *fst = s->st[ST_ART_FILES];
    struct artifact *a = NULL;
    int64_t seq;
    enum job_status status;
    char q[64];
    int rc, oom = 0;
    bind_text(s, st, 1, id);
    if ((rc = step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        rs(s, st);
        if ((rc = job_lookup(&seq, &status, s, id, e)) == 0)
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s has no artifact", gq_err_quote(q, sizeof(q), id));
        goto done;
    }
    if (!(a = calloc(1, sizeof(*a)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    seq = sqlite3_column_int64(st, 0);
    a->dir = col_dup(st, 1, &oom);
    a->created_ms = sqlite3_column_int64(st, 2);
    a->bytes = sqlite3_column_int64(st, 3);
    a->metadata = col_dup(st, 4, &oom);
    rs(s, st);
    if (oom || !a->dir || !a->metadata) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    bind_i64(s, fst, 1, seq);
    if ((rc = collect(&a->files, &a->nfiles, NULL, s, fst, SIZE_MAX, sizeof(*a->files), file_from_row, file_clear,
                      e)) < 0)
        goto done;
    *out = a;
    a = NULL;
    rc = 0;
done:
    rs(s, st);
    rs(s, fst);
    artifact_free(a);
    return rc;
}

int store_artifact_get(struct artifact **out, store *s, const char *id, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL && id != NULL);
    /* a read transaction: the row and its files from one snapshot */
    rc = tx_begin_read(s, e);
    return rc < 0 ? rc : tx_end(s, artifact_get_tx(out, s, id, e), e);
}

static int dir_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    int oom = 0;
    char *d = col_dup(st, 0, &oom);
    if (!d)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    memcpy(dst, &d, sizeof(d));
    return 0;
}

static void dir_clear(void *p)
{
    char *d;
    memcpy(&d, p, sizeof(d));
    free(d);
}

int store_artifact_dirs(char ***out, size_t *n, store *s, gq_err *e)
{
    GQ_ASSERT_ARG(e, out != NULL && n != NULL && s != NULL);
    return collect(out, n, NULL, s, s->st[ST_ART_DIRS], SIZE_MAX, sizeof(**out), dir_from_row, dir_clear, e);
}

/* ---- webhook deliveries ---- */

static int webhook_add_tx(store *s, const char *job_id, const char *url, const char *body, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_HOOK_ADD];
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = job_lookup(&seq, &status, s, job_id, e)) < 0)
        return rc;
    bind_i64(s, st, 1, seq);
    bind_text(s, st, 2, url);
    bind_text(s, st, 3, body);
    bind_i64(s, st, 4, store_now_ms());
    return run(s, st, e);
}

int store_webhook_add(store *s, const char *job_id, const char *url, const char *body, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && job_id != NULL && url != NULL && body != NULL);
    rc = tx_begin(s, e);
    return rc < 0 ? rc : tx_end(s, webhook_add_tx(s, job_id, url, body, e), e);
}

static int hook_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct webhook *w = dst;
    int oom = 0;
    w->seq = sqlite3_column_int64(st, 0);
    col_copy(w->job_id, sizeof(w->job_id), st, 1);
    w->url = col_dup(st, 2, &oom);
    w->body = col_dup(st, 3, &oom);
    w->attempts = sqlite3_column_int(st, 4);
    if (oom || !w->url || !w->body) {
        free(w->url);
        free(w->body);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    }
    return 0;
}

int store_webhooks_due(struct webhook **out, size_t *n, store *s, int64_t now_ms, size_t limit, gq_err *e)
{
    sqlite3_stmt *st;
    GQ_ASSERT_ARG(e, out != NULL && n != NULL && s != NULL);
    st = s->st[ST_HOOKS_DUE];
    if (limit < 1)
        return GQ_FAIL(e, GQ_EINVAL, "limit must be >= 1");
    bind_i64(s, st, 1, now_ms);
    bind_i64(s, st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    return collect(out, n, NULL, s, st, limit, sizeof(**out), hook_from_row, hook_clear, e);
}

int store_webhook_result(store *s, int64_t seq, int ok, int64_t next_ms, const char *error, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, s != NULL);
    st = s->st[ST_HOOK_RESULT];
    if ((rc = tx_begin(s, e)) < 0)
        return rc;
    bind_i64(s, st, 1, seq);
    bind_i64(s, st, 2, ok != 0);
    bind_i64(s, st, 3, next_ms);
    bind_i64(s, st, 4, store_now_ms());
    bind_text(s, st, 5, error);
    if ((rc = run(s, st, e)) == 0 && sqlite3_changes(s->db) == 0)
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "webhook delivery %lld does not exist or is finished", (long long)seq);
    return tx_end(s, rc, e);
}

int store_webhook_next_due(int64_t *out, store *s, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    st = s->st[ST_HOOK_NEXT];
    if ((rc = step(s, st, e)) == SQLITE_ROW) {
        *out = col_i64(st, 0, -1);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *out = -1;
        rc = 0;
    }
    rs(s, st);
    return rc;
}
