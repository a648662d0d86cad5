/*
 * store_int.h - what the parts of the store share, for store.c,
 * store_open.c and store_outputs.c only (the contract is store.h).
 *
 * The connection with its prepared statements, and the helpers that more
 * than one part calls: statement helpers (bind, step, reset, transactions,
 * columns, collecting rows into an array) and the lookup of a job's seq,
 * all defined in store.c.  The st_ prefix marks these shared internals;
 * a helper only one file needs stays static there.
 */
#ifndef GQ_STORE_INT_H
#define GQ_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "err.h"
#include "store.h"

/* The statements of a connection, an index into store.st[] (their SQL: the table in store.c). */
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

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_N];
    int bind_rc;        /* first failed sqlite3_bind_* since the last step, SQLITE_OK otherwise */
};

/* A store over db (taken over, closed on failure) with every statement prepared. */
int st_wrap(store **out, sqlite3 *db, gq_err *e);

/* An SQLite failure as a gq error: ENOMEM for SQLITE_NOMEM, EDB with sqlite3_errmsg otherwise. */
int st_db_fail(sqlite3 *db, int rc, gq_err *e);

/* Binds (v NULL: SQL NULL); the first failure is kept in s->bind_rc and reported by st_step. */
void st_bind_text(store *s, sqlite3_stmt *st, int i, const char *v);
void st_bind_i64(store *s, sqlite3_stmt *st, int i, int64_t v);

/* SQLITE_ROW or SQLITE_DONE, or a negative gq_code with e filled. */
int st_step(store *s, sqlite3_stmt *st, gq_err *e);
/* Ready a statement for its next use (reset + clear_bindings; harmless on one that did not run). */
void st_reset(store *s, sqlite3_stmt *st);
/* Run a statement that returns no row we need, then reset it: 0 or a gq_code. */
int st_run(store *s, sqlite3_stmt *st, gq_err *e);

/* BEGIN IMMEDIATE (writes), BEGIN (a read snapshot); st_tx_end COMMITs when rc >= 0, else
 * (or when the commit fails) ROLLs BACK, and returns the outcome. */
int st_tx_begin(store *s, gq_err *e);
int st_tx_begin_read(store *s, gq_err *e);
int st_tx_end(store *s, int rc, gq_err *e);

/* A copy of a text column, NULL for SQL NULL; *oom set when the copy failed. */
char *st_col_dup(sqlite3_stmt *st, int i, int *oom);
/* An integer column, dflt for NULL. */
int64_t st_col_i64(sqlite3_stmt *st, int i, int64_t dflt);
/* A text column into dst[cap], truncated, "" for NULL. */
void st_col_copy(char *dst, size_t cap, sqlite3_stmt *st, int i);

/* Fill a zeroed element from the current row; on failure leave nothing to free. */
typedef int st_row_fn(void *dst, sqlite3_stmt *st, gq_err *e);
typedef void st_clear_fn(void *p);

/*
 * Step st (bound by the caller) and read up to limit rows into a new array
 * of elem-sized elements: *(T **)out (NULL when none) and *n.  *more (may
 * be NULL) is 1 when a row was left after limit.  Resets st.
 */
int st_collect(void *out, size_t *n, int *more, store *s, sqlite3_stmt *st, size_t limit, size_t elem,
               st_row_fn *row, st_clear_fn *clear, gq_err *e);

/* seq and status of job id: GQ_ENOTFOUND when it does not exist. */
int st_job_lookup(int64_t *seq, enum job_status *status, store *s, const char *id, gq_err *e);

#endif
