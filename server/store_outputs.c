/*
 * store_outputs.c - what a job leaves for the outside world: its artifact
 * (directory, metadata, file list) and the webhook deliveries that announce
 * how it ended (contract in store.h, design notes in store.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store.h"
#include "store_int.h"

/* ---- artifacts ---- */

static void file_clear(void *p)
{
    free(((struct artifact_file *)p)->name);
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
    if ((rc = st_job_lookup(&seq, &status, s, id, e)) < 0)
        return rc;
    st_bind_i64(s, del, 1, seq);   /* the earlier artifact's files go by ON DELETE CASCADE */
    if ((rc = st_run(s, del, e)) < 0)
        return rc;
    st_bind_i64(s, ins, 1, seq);
    st_bind_text(s, ins, 2, dir);
    st_bind_i64(s, ins, 3, store_now_ms());
    st_bind_i64(s, ins, 4, bytes);
    st_bind_text(s, ins, 5, metadata ? metadata : "{}");
    if ((rc = st_run(s, ins, e)) < 0)
        return rc;
    for (size_t i = 0; i < nfiles; i++) {
        st_bind_i64(s, fins, 1, seq);
        st_bind_text(s, fins, 2, files[i].name);
        st_bind_i64(s, fins, 3, files[i].size);
        st_bind_text(s, fins, 4, files[i].sha256);
        if ((rc = st_run(s, fins, e)) < 0) {
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
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, artifact_put_tx(s, id, dir, metadata, files, nfiles, bytes, e), e);
}

static int file_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct artifact_file *f = dst;
    int oom = 0;
    if (!(f->name = st_col_dup(st, 0, &oom)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    f->size = sqlite3_column_int64(st, 1);
    st_col_copy(f->sha256, sizeof(f->sha256), st, 2);
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
    st_bind_text(s, st, 1, id);
    if ((rc = st_step(s, st, e)) < 0)
        goto done;
    if (rc == SQLITE_DONE) {
        st_reset(s, st);
        if ((rc = st_job_lookup(&seq, &status, s, id, e)) == 0)
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "job %s has no artifact", gq_err_quote(q, sizeof(q), id));
        goto done;
    }
    if (!(a = calloc(1, sizeof(*a)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    seq = sqlite3_column_int64(st, 0);
    a->dir = st_col_dup(st, 1, &oom);
    a->created_ms = sqlite3_column_int64(st, 2);
    a->bytes = sqlite3_column_int64(st, 3);
    a->metadata = st_col_dup(st, 4, &oom);
    st_reset(s, st);
    if (oom || !a->dir || !a->metadata) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    st_bind_i64(s, fst, 1, seq);
    if ((rc = st_collect(&a->files, &a->nfiles, NULL, s, fst, SIZE_MAX, sizeof(*a->files), file_from_row,
                         file_clear, e)) < 0)
        goto done;
    *out = a;
    a = NULL;
    rc = 0;
done:
    st_reset(s, st);
    st_reset(s, fst);
    artifact_free(a);
    return rc;
}

int store_artifact_get(struct artifact **out, store *s, const char *id, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL && id != NULL);
    /* a read transaction: the row and its files from one snapshot */
    rc = st_tx_begin_read(s, e);
    return rc < 0 ? rc : st_tx_end(s, artifact_get_tx(out, s, id, e), e);
}

static int dir_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    int oom = 0;
    char *d = st_col_dup(st, 0, &oom);
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
    return st_collect(out, n, NULL, s, s->st[ST_ART_DIRS], SIZE_MAX, sizeof(**out), dir_from_row, dir_clear, e);
}

/* ---- webhook deliveries ---- */

static void hook_clear(void *p)
{
    struct webhook *w = p;
    free(w->url);
    free(w->body);
}

void webhook_array_free(struct webhook *w, size_t n)
{
    if (!w)
        return;
    for (size_t i = 0; i < n; i++)
        hook_clear(&w[i]);
    free(w);
}

static int webhook_add_tx(store *s, const char *job_id, const char *url, const char *body, gq_err *e)
{
    sqlite3_stmt *st = s->st[ST_HOOK_ADD];
    int64_t seq;
    enum job_status status;
    int rc;
    if ((rc = st_job_lookup(&seq, &status, s, job_id, e)) < 0)
        return rc;
    st_bind_i64(s, st, 1, seq);
    st_bind_text(s, st, 2, url);
    st_bind_text(s, st, 3, body);
    st_bind_i64(s, st, 4, store_now_ms());
    return st_run(s, st, e);
}

int store_webhook_add(store *s, const char *job_id, const char *url, const char *body, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL && job_id != NULL && url != NULL && body != NULL);
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, webhook_add_tx(s, job_id, url, body, e), e);
}

static int hook_from_row(void *dst, sqlite3_stmt *st, gq_err *e)
{
    struct webhook *w = dst;
    int oom = 0;
    w->seq = sqlite3_column_int64(st, 0);
    st_col_copy(w->job_id, sizeof(w->job_id), st, 1);
    w->url = st_col_dup(st, 2, &oom);
    w->body = st_col_dup(st, 3, &oom);
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
    st_bind_i64(s, st, 1, now_ms);
    st_bind_i64(s, st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    return st_collect(out, n, NULL, s, st, limit, sizeof(**out), hook_from_row, hook_clear, e);
}

int store_webhook_result(store *s, int64_t seq, int ok, int64_t next_ms, const char *error, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, s != NULL);
    st = s->st[ST_HOOK_RESULT];
    if ((rc = st_tx_begin(s, e)) < 0)
        return rc;
    st_bind_i64(s, st, 1, seq);
    st_bind_i64(s, st, 2, ok != 0);
    st_bind_i64(s, st, 3, next_ms);
    st_bind_i64(s, st, 4, store_now_ms());
    st_bind_text(s, st, 5, error);
    if ((rc = st_run(s, st, e)) == 0 && sqlite3_changes(s->db) == 0)
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "webhook delivery %lld does not exist or is finished", (long long)seq);
    return st_tx_end(s, rc, e);
}

int store_webhook_next_due(int64_t *out, store *s, gq_err *e)
{
    sqlite3_stmt *st;
    int rc;
    GQ_ASSERT_ARG(e, out != NULL && s != NULL);
    st = s->st[ST_HOOK_NEXT];
    if ((rc = st_step(s, st, e)) == SQLITE_ROW) {
        *out = st_col_i64(st, 0, -1);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *out = -1;
        rc = 0;
    }
    st_reset(s, st);
    return rc;
}
