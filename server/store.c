/*
 * store.c - the daemon's SQLite store (contract in store.h).
 *
 * DESIGN
 * ------
 * A store is one SQLite connection plus every statement it will ever run,
 * prepared once at open (SQLITE_PREPARE_PERSISTENT) from the static table
 * sql[] below and indexed by enum stmt (store_int.h).  A table rather than
 * one named field per statement so that open and close are one loop each
 * and no statement can be forgotten by store_close.  No SQL is ever
 * formatted; the single exception is "PRAGMA user_version = N" in the
 * migration runner, which cannot take a bound parameter and is built from
 * an integer.
 *
 * The store is three files: this one (the statements, the helpers every
 * part uses, jobs and their events), store_open.c (migrations, opening a
 * connection) and store_outputs.c (artifacts, webhook deliveries).  What
 * they share, struct store and the st_-prefixed helpers, is declared in
 * store_int.h; everything else stays static to its file.
 *
 * Every write is a short BEGIN IMMEDIATE ... COMMIT (st_tx_begin /
 * st_tx_end, ROLLBACK on any error), so concurrent writers on other
 * connections queue at BEGIN under the busy timeout instead of failing
 * halfway with SQLITE_BUSY.  The public write functions check their
 * arguments, open the transaction and call a static *_tx body; bodies use
 * `goto done` and reset every statement they stepped (st_reset: reset +
 * clear_bindings) before returning.
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

#include "store.h"
#include "store_int.h"

/* The columns of a job, in the order job_from_row reads them. */
#define JOB_COLS                                                                                        \
    "seq, id, status, priority, model, revision, source_revision, spec, labels, callback_url, "         \
    "idempotency_key, request_hash, mem_estimate, created_ms, started_ms, finished_ms, updated_ms, "   \
    "attempts, cancel_requested, error_code, error_message, stage, layer, layers_total, fraction, "    \
    "eta_seconds"
#define RUNNING_IN "('downloading', 'calibrating', 'quantizing', 'writing', 'evaluating')"

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

/* ---- statement helpers ---- */

/* An SQLite failure as a gq error: ENOMEM for SQLITE_NOMEM, EDB with sqlite3_errmsg otherwise. */
int st_db_fail(sqlite3 *db, int rc, gq_err *e)
{
    if ((rc & 0xff) == SQLITE_NOMEM)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory (sqlite)");
    return GQ_FAIL(e, GQ_EDB, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* Bind helpers remember the first failure in s->bind_rc; st_step() reports it. */
static void note(store *s, int rc)
{
    if (rc != SQLITE_OK && s->bind_rc == SQLITE_OK)
        s->bind_rc = rc;
}

void st_bind_text(store *s, sqlite3_stmt *st, int i, const char *v)
{
    note(s, v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i));
}

void st_bind_i64(store *s, sqlite3_stmt *st, int i, int64_t v)
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
int st_step(store *s, sqlite3_stmt *st, gq_err *e)
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
    return st_db_fail(s->db, rc, e);
}

/* Ready a statement for its next use (harmless on one that did not run). */
void st_reset(store *s, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    s->bind_rc = SQLITE_OK;
}

/* Run a statement that returns no row we need, then reset it: 0 or a gq_code. */
int st_run(store *s, sqlite3_stmt *st, gq_err *e)
{
    int rc = st_step(s, st, e);
    st_reset(s, st);
    return rc < 0 ? rc : 0;
}

int st_tx_begin(store *s, gq_err *e)
{
    return st_run(s, s->st[ST_BEGIN], e);
}

int st_tx_begin_read(store *s, gq_err *e)
{
    return st_run(s, s->st[ST_BEGIN_READ], e);
}

/* COMMIT when rc >= 0, else (or when the commit fails) ROLLBACK; returns the outcome. */
int st_tx_end(store *s, int rc, gq_err *e)
{
    if (rc >= 0) {
        int c = st_run(s, s->st[ST_COMMIT], e);
        if (c == 0)
            return rc;
        rc = c;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        gq_err ignored = GQ_ERR_INIT;   /* keep the first error in e */
        st_run(s, s->st[ST_ROLLBACK], &ignored);
    }
    return rc;
}

/* A copy of a text column, NULL for SQL NULL; *oom set when the copy failed. */
char *st_col_dup(sqlite3_stmt *st, int i, int *oom)
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
int64_t st_col_i64(sqlite3_stmt *st, int i, int64_t dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

void st_col_copy(char *dst, size_t cap, sqlite3_stmt *st, int i)
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
    st_col_copy(j->id, sizeof(j->id), st, 1);
    status = job_status_parse((const char *)sqlite3_column_text(st, 2));
    j->status = status < 0 ? JOB_FAILED : (enum job_status)status;   /* the CHECK constraint rules it out */
    j->priority = (int)sqlite3_column_int64(st, 3);
    j->model = st_col_dup(st, 4, &oom);
    j->revision = st_col_dup(st, 5, &oom);
    j->source_revision = st_col_dup(st, 6, &oom);
    j->spec = st_col_dup(st, 7, &oom);
    j->labels = st_col_dup(st, 8, &oom);
    j->callback_url = st_col_dup(st, 9, &oom);
    j->idempotency_key = st_col_dup(st, 10, &oom);
    st_col_copy(j->request_hash, sizeof(j->request_hash), st, 11);
    j->mem_estimate = st_col_i64(st, 12, 0);
    j->created_ms = st_col_i64(st, 13, 0);
    j->started_ms = st_col_i64(st, 14, 0);
    j->finished_ms = st_col_i64(st, 15, 0);
    j->updated_ms = st_col_i64(st, 16, 0);
    j->attempts = (int)st_col_i64(st, 17, 0);
    j->cancel_requested = (int)st_col_i64(st, 18, 0);
    j->error_code = st_col_dup(st, 19, &oom);
    j->error_message = st_col_dup(st, 20, &oom);
    j->stage = st_col_dup(st, 21, &oom);
    j->layer = (int)st_col_i64(st, 22, -1);
    j->layers_total = (int)st_col_i64(st, 23, -1);
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

/*
 * Step st (bound by the caller) and read up to limit rows into a new array
 * of elem-sized elements: *(T **)out (NULL when none) and *n.  *more (may
 * be NULL) is 1 when a row was left after limit.  Resets st.
 */
int st_collect(void *out, size_t *n, int *more, store *s, sqlite3_stmt *st, size_t limit, size_t elem,
               st_row_fn *row, st_clear_fn *clear, gq_err *e)
{
    char *v = NULL;
    size_t k = 0, cap = 0;
    int rc;
    if (more)
        *more = 0;
    while ((rc = st_step(s, st, e)) == SQLITE_ROW) {
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
    st_reset(s, st);
    for (size_t i = 0; clear && i < k; i++)
        clear(v + i * elem);
    free(v);
    return rc;
}

/* seq and status of job id: GQ_ENOTFOUND when it does not exist. */
int st_job_lookup(int64_t *seq, enum job_status *status, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_LOOKUP];
    char q[64];
    int rc, v;
    st_bind_text(s, st, 1, id);
    if ((rc = st_step(s, st, e)) < 0)
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
    st_reset(s, st);
    return rc;
}

/* Like st_job_lookup for operations that need a running job: anything else is GQ_ECONFLICT. */
static int running_lookup(int64_t *seq, enum job_status *status, store *s, const char *id, gq_err *e)
{
    char q[64];
    int rc = st_job_lookup(seq, status, s, id, e);
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
    st_bind_i64(s, st, 1, seq);
    st_bind_i64(s, st, 2, now);
    st_bind_text(s, st, 3, kind);
    st_bind_text(s, st, 4, level);
    st_bind_text(s, st, 5, message);
    st_bind_text(s, st, 6, data);
    return st_run(s, st, e);
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
    st_bind_i64(s, st, 1, seq);
    st_bind_text(s, st, 2, job_status_name(to));
    st_bind_i64(s, st, 3, now);
    bind_i64_or_null(s, st, 4, now, job_status_terminal(to));
    st_bind_text(s, st, 5, error_code);
    st_bind_text(s, st, 6, error_message);
    return st_run(s, st, e);
}

/* ---- preparing and finalizing a connection's statements (store_open.c opens it) ---- */

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
int st_wrap(store **out, sqlite3 *db, gq_err *e)
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
        st_bind_i64(s, st, 1, seq);
        st_bind_text(s, st, 2, m->string);
        st_bind_text(s, st, 3, m->valuestring);
        if ((rc = st_run(s, st, e)) < 0)
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
            st_bind_text(s, by_key, 1, j->idempotency_key);
            if ((rc = st_step(s, by_key, e)) < 0)
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
                st_reset(s, by_key);
                continue;
            }
            st_reset(s, by_key);
        }
        if ((rc = new_job_id(id, e)) < 0)
            goto done;
        st_bind_text(s, ins, 1, id);
        st_bind_i64(s, ins, 2, j->priority);
        st_bind_text(s, ins, 3, j->model);
        st_bind_text(s, ins, 4, j->revision);
        st_bind_text(s, ins, 5, j->spec);
        st_bind_text(s, ins, 6, j->labels ? j->labels : "{}");
        st_bind_text(s, ins, 7, j->callback_url);
        st_bind_text(s, ins, 8, j->idempotency_key);
        st_bind_text(s, ins, 9, j->request_hash[0] ? j->request_hash : NULL);
        st_bind_i64(s, ins, 10, j->mem_estimate);
        st_bind_i64(s, ins, 11, now);
        if ((rc = st_step(s, ins, e)) < 0 || (rc = job_from_row(&rows[i], ins, e)) < 0)
            goto done;
        st_reset(s, ins);
        if (j->labels && (rc = insert_labels(s, rows[i].seq, j->labels, e)) < 0)
            goto done;
    }
    rc = 0;
done:
    st_reset(s, by_key);
    st_reset(s, ins);
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
    if ((rc = st_tx_begin(s, e)) < 0 ||
        (rc = st_tx_end(s, jobs_insert_tx(s, jobs, n, rows, found, store_now_ms(), e), e)) < 0)
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
    st_bind_text(s, st, 1, id);
    if ((rc = st_step(s, st, e)) < 0)
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
    st_reset(s, st);
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
    st_bind_i64(s, st, 1, f->after_seq);
    st_bind_text(s, st, 2, f->status >= 0 ? job_status_name((enum job_status)f->status) : NULL);
    st_bind_text(s, st, 3, f->model);
    st_bind_text(s, st, 4, f->label_key);
    st_bind_text(s, st, 5, f->label_value);
    st_bind_i64(s, st, 6, (int64_t)f->limit + 1);   /* one more than asked: is there a next page? */
    return st_collect(out, n, more, s, st, f->limit, sizeof(**out), job_from_row, job_clear_any, e);
}

static int claim_tx(struct job **out, store *s, int64_t mem_free, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_CLAIM];
    struct job *j = NULL;
    int rc;
    if (!(j = malloc(sizeof(*j))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    st_bind_i64(s, st, 1, mem_free);
    st_bind_i64(s, st, 2, now);
    if ((rc = st_step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        rc = mem_free < 0 ? GQ_FAIL(e, GQ_ENOTFOUND, "no queued job")
                          : GQ_FAIL(e, GQ_ENOTFOUND, "no queued job fits in %lld bytes", (long long)mem_free);
        goto done;
    }
    if ((rc = job_from_row(j, st, e)) < 0)
        goto done;
    st_reset(s, st);   /* finish the UPDATE before the next statement */
    if ((rc = state_event(s, j->seq, now, JOB_QUEUED, JOB_DOWNLOADING, NULL, e)) < 0) {
        job_clear(j);
        goto done;
    }
    *out = j;
    j = NULL;
done:
    st_reset(s, st);
    free(j);
    return rc;
}

int store_job_claim(struct job **out, store *s, int64_t mem_free, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, claim_tx(out, s, mem_free, store_now_ms(), e), e);
}

int store_has_queued(int *out, store *s, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    st = s->st[ST_HAS_QUEUED];
    if ((rc = st_step(s, st, e)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0) != 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_EDB, "EXISTS returned no row");
    }
    st_reset(s, st);
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, transition_tx(s, id, to, error_code, error_message, store_now_ms(), e), e);
}

int store_job_set_source_revision(store *s, const char *id, const char *sha, gq_err *e)
{
    sqlite3_stmt *st;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    st = s->st[ST_JOB_SET_REV];
    if ((rc = st_tx_begin(s, e)) < 0)
        return rc;
    st_bind_text(s, st, 1, id);
    st_bind_text(s, st, 2, sha);
    st_bind_i64(s, st, 3, store_now_ms());
    if ((rc = st_run(s, st, e)) == 0 && sqlite3_changes(s->db) == 0)
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
    return st_tx_end(s, rc, e);
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
    st_bind_i64(s, st, 1, seq);
    st_bind_text(s, st, 2, stage);
    bind_i64_or_null(s, st, 3, layer, layer >= 0);
    bind_i64_or_null(s, st, 4, layers_total, layers_total >= 0);
    bind_double_or_null(s, st, 5, fraction, 1);
    bind_double_or_null(s, st, 6, eta_seconds, eta_seconds >= 0);
    st_bind_i64(s, st, 7, store_now_ms());
    return st_run(s, st, e);
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, progress_tx(s, id, stage, layer, layers_total, fraction, eta_seconds, e), e);
}

static int cancel_tx(store *s, const char *id, enum job_status *status_out, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_CANCEL_REQ];
    int64_t seq;
    enum job_status status;
    char q[64];
    int rc;
    if ((rc = st_job_lookup(&seq, &status, s, id, e)) < 0)
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
        st_bind_i64(s, st, 1, seq);
        st_bind_i64(s, st, 2, now);
        if ((rc = st_run(s, st, e)) < 0)
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, cancel_tx(s, id, status_out, store_now_ms(), e), e);
}

int store_job_cancel_requested(int *out, store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st;
    char q[64];
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL && id != NULL);
    st = s->st[ST_JOB_CANCEL_FLAG];
    st_bind_text(s, st, 1, id);
    if ((rc = st_step(s, st, e)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0) != 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s does not exist", gq_err_quote(q, sizeof(q), id));
    }
    st_reset(s, st);
    return rc;
}

/* Back to queued, progress cleared, attempts + delta (not below 0). */
static int requeue_row(store *s, int64_t seq, int delta, int64_t now, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_REQUEUE];
    st_bind_i64(s, st, 1, seq);
    st_bind_i64(s, st, 2, delta);
    st_bind_i64(s, st, 3, now);
    return st_run(s, st, e);
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, requeue_tx(s, id, store_now_ms(), e), e);
}

static int delete_tx(store *s, const char *id, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_JOB_DELETE];
    int64_t seq;
    enum job_status status;
    char q[64];
    int rc;
    if ((rc = st_job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    if (!job_status_terminal(status))
        return GQ_FAIL(e, GQ_ECONFLICT, "job %s is %s, not finished", gq_err_quote(q, sizeof(q), id),
                       job_status_name(status));
    st_bind_i64(s, st, 1, seq);   /* labels, events, artifact, files, webhooks go by ON DELETE CASCADE */
    return st_run(s, st, e);
}

int store_job_delete(store *s, const char *id, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && id != NULL);
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, delete_tx(s, id, e), e);
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
    st_col_copy(r->id, sizeof(r->id), st, 1);
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
    if ((rc = st_collect(&v, &n, NULL, s, s->st[ST_RUNNING_JOBS], SIZE_MAX, sizeof(*v), running_from_row, NULL, e)) < 0)
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
    if ((rc = st_tx_begin(s, e)) < 0)
        return rc;
    if ((rc = st_tx_end(s, recover_tx(&rows, &k, s, max_attempts, store_now_ms(), e), e)) < 0)
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
    while ((rc = st_step(s, st, e)) == SQLITE_ROW) {
        int k = job_status_parse((const char *)sqlite3_column_text(st, 0));
        if (k >= 0)
            counts[k] = sqlite3_column_int64(st, 1);
    }
    st_reset(s, st);
    return rc < 0 ? rc : 0;
}

/* ---- events ---- */

static int event_add_tx(store *s, const char *id, const char *kind, const char *level, const char *message,
                        const char *data, gq_err *e)
{
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = st_job_lookup(&seq, &status, s, id, e)) < 0)
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, event_add_tx(s, id, kind, level, message, data, e), e);
}

static int event_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct job_event *ev = dst;
    int oom = 0;
    ev->seq = sqlite3_column_int64(st, 0);
    ev->ts_ms = sqlite3_column_int64(st, 1);
    st_col_copy(ev->kind, sizeof(ev->kind), st, 2);
    st_col_copy(ev->level, sizeof(ev->level), st, 3);
    ev->message = st_col_dup(st, 4, &oom);
    ev->data = st_col_dup(st, 5, &oom);
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
    if ((rc = st_job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    st_bind_i64(s, st, 1, seq);
    st_bind_i64(s, st, 2, after_seq);
    st_bind_i64(s, st, 3, (int64_t)limit + 1);
    return st_collect(out, n, more, s, st, limit, sizeof(**out), event_from_row, event_clear, e);
}
