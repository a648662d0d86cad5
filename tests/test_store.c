/*
 * test_store.c - the SQLite store (server/store.c): migrations on file
 * databases (empty, current, newer, previous version), jobs (insert, get,
 * every list filter and the cursor, idempotency), the claim order and the
 * memory budget, transitions, cancel, requeue, delete with its cascades,
 * recovery, events, artifacts, webhook deliveries, counts, and eight
 * threads claiming from one file database with their own connections.
 *
 * Most cases run on store_open_memory; the ones about files use a
 * directory from mkdtemp under /tmp, removed at the end.  Every case checks
 * that store_close returns 0 (no statement leaked).
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed.h"
#include "store.h"
#include "test.h"

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "'%s' != '%s'", a_ ? a_ : "(null)", \
              b_ ? b_ : "(null)"); } while (0)
#define CHECK_HAS(msg, want) CHECK_MSG(strstr((msg), (want)) != NULL, "'%s' lacks '%s'", (msg), (want))

static char g_dir[64];

/* path of a database file name in the temporary directory */
static void db_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void db_remove(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static store *open_mem(void)
{
    store *s = NULL;
    gq_err e = GQ_ERR_INIT;
    CHECK_OK(store_open_memory(&s, &e), &e);
    return s;
}

/* A job to insert, its strings malloc'd like every job's. */
static struct job new_job(const char *model, int priority, int64_t mem, const char *labels)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.model = strdup(model);
    j.revision = strdup("main");
    j.spec = strdup("{\"bits\":4}");
    j.labels = labels ? strdup(labels) : NULL;
    j.priority = priority;
    j.mem_estimate = mem;
    return j;
}

/* Free the strings of a job that lives in the caller's memory (not the struct). */
static void clear_job(struct job *j)
{
    free(j->model), free(j->revision), free(j->source_revision), free(j->spec), free(j->labels);
    free(j->callback_url), free(j->idempotency_key), free(j->error_code), free(j->error_message);
    free(j->stage);
    memset(j, 0, sizeof(*j));
}

/* Insert one job; its id into id (may be NULL); 0 or the error. */
static int insert1(store *s, const char *model, int priority, int64_t mem, const char *labels, char *id)
{
    struct job j = new_job(model, priority, mem, labels);
    gq_err e = GQ_ERR_INIT;
    int rc = store_jobs_insert(s, &j, 1, NULL, &e);
    CHECK_OK(rc, &e);
    if (id)
        memcpy(id, j.id, 24);
    clear_job(&j);
    return rc;
}

/* A single integer from a raw SQL query on a raw connection (-1 on error). */
static long long q_int(sqlite3 *db, const char *q)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Number of entries of a type/name in sqlite_master. */
static long long has_object(sqlite3 *db, const char *type, const char *name)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = ?1 AND name = ?2", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/* All the schema's SQL text concatenated (malloc'd), to compare before and after. */
static char *schema_text(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    char *out = calloc(1, 1);
    if (sqlite3_prepare_v2(db, "SELECT coalesce(sql, '') FROM sqlite_master ORDER BY name", -1, &st, NULL) ==
        SQLITE_OK) {
        while (out && sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            size_t k = strlen(t);
            char *nout = realloc(out, n + k + 2);
            if (!nout) {
                free(out);
                out = NULL;
                break;
            }
            out = nout;
            memcpy(out + n, t, k);
            out[n + k] = '\n';
            n += k + 1;
            out[n] = '\0';
        }
    }
    sqlite3_finalize(st);
    return out;
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        CHECK_MSG(0, "cannot open %s raw", path);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static void test_store__status_names(void)
{
    for (int i = 0; i < JOB_NSTATUS; i++)
        CHECK_EQ_INT(job_status_parse(job_status_name((enum job_status)i)), i);
    CHECK_EQ_INT(job_status_parse("nope"), -1);
    CHECK_EQ_INT(job_status_parse(NULL), -1);
    CHECK_STR(job_status_name(JOB_CANCELLED), "cancelled");
    CHECK(job_status_terminal(JOB_SUCCEEDED) && job_status_terminal(JOB_FAILED) &&
          job_status_terminal(JOB_CANCELLED));
    CHECK(!job_status_terminal(JOB_QUEUED) && !job_status_terminal(JOB_EVALUATING));
    CHECK(!job_status_running(JOB_QUEUED) && !job_status_running(JOB_SUCCEEDED));
    for (int i = JOB_DOWNLOADING; i <= JOB_EVALUATING; i++)
        CHECK(job_status_running((enum job_status)i));
    CHECK(store_now_ms() > 1600000000000LL);
}

static void test_store__migrate_empty_file(void)
{
    static const char *const tables[] = { "jobs", "job_labels", "job_events", "artifacts", "artifact_files",
                                          "webhooks" };
    static const char *const indexes[] = { "jobs_by_status", "jobs_by_model", "job_labels_by_key",
                                           "job_events_by_job", "webhooks_by_job", "webhooks_due" };
    char path[256];
    gq_err e = GQ_ERR_INIT;
    int from = -1, to = -1;
    sqlite3 *db;
    store *s = NULL;

    CHECK(store_schema_version() >= 1);
    CHECK_EQ_INT(store_schema_version(), (long long)embedded_migrations_count);
    db_path(path, sizeof(path), "empty.db");
    CHECK_OK(store_migrate(path, &from, &to, &e), &e);
    CHECK_EQ_INT(from, 0);
    CHECK_EQ_INT(to, store_schema_version());
    if (!(db = raw_open(path)))
        return;
    CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), store_schema_version());
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        CHECK_MSG(has_object(db, "table", tables[i]) == 1, "table %s", tables[i]);
    for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++)
        CHECK_MSG(has_object(db, "index", indexes[i]) == 1, "index %s", indexes[i]);
    {
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
    }
    CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM jobs"), 0);
    sqlite3_close(db);

    CHECK_OK(store_open(&s, path, &e), &e);
    CHECK_OK(store_ping(s, &e), &e);
    CHECK_EQ_INT(store_close(s), 0);
    db_remove(path);
}

static void test_store__migrate_twice_is_noop(void)
{
    char path[256], *before = NULL, *after = NULL;
    gq_err e = GQ_ERR_INIT;
    int from = -1, to = -1;
    sqlite3 *db;
    store *s = NULL;
    char id[24];

    db_path(path, sizeof(path), "twice.db");
    CHECK_OK(store_migrate(path, NULL, NULL, &e), &e);
    CHECK_OK(store_open(&s, path, &e), &e);
    insert1(s, "org/a", 0, 0, NULL, id);
    CHECK_EQ_INT(store_close(s), 0);
    if ((db = raw_open(path))) {
        before = schema_text(db);
        sqlite3_close(db);
    }
    CHECK_OK(store_migrate(path, &from, &to, &e), &e);
    CHECK_EQ_INT(from, store_schema_version());
    CHECK_EQ_INT(to, store_schema_version());
    if ((db = raw_open(path))) {
        after = schema_text(db);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM jobs"), 1);
        sqlite3_close(db);
    }
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    db_remove(path);
}

static void test_store__newer_schema_refused(void)
{
    char path[256], want[128], pragma[64];
    gq_err e = GQ_ERR_INIT;
    int n = store_schema_version();
    sqlite3 *db;
    store *s = NULL;

    db_path(path, sizeof(path), "future.db");
    if (!(db = raw_open(path)))
        return;
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", n + 1);
    CHECK(sqlite3_exec(db, "CREATE TABLE from_the_future (x)", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db, pragma, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    snprintf(want, sizeof(want), "database schema version %d is newer than this gptqd (%d)", n + 1, n);
    CHECK_EQ_INT(store_migrate(path, NULL, NULL, &e), GQ_ECONFLICT);
    CHECK_STR(e.msg, want);
    gq_err_clear(&e);
    CHECK_EQ_INT(store_open(&s, path, &e), GQ_ECONFLICT);
    CHECK_STR(e.msg, want);
    CHECK(s == NULL);
    if ((db = raw_open(path))) {   /* untouched */
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), n + 1);
        CHECK_EQ_INT(has_object(db, "table", "jobs"), 0);
        sqlite3_close(db);
    }
    db_remove(path);

    /* an un-migrated database is refused by store_open too */
    db_path(path, sizeof(path), "old.db");
    gq_err_clear(&e);
    CHECK_EQ_INT(store_open(&s, path, &e), GQ_ECONFLICT);
    CHECK_HAS(e.msg, "older than this gptqd");
    db_remove(path);

    gq_err_clear(&e);
    CHECK_EQ_INT(store_migrate(":memory:", NULL, NULL, &e), GQ_EINVAL);
}

/*
 * A database one version behind this binary: migrations 1..N-1 applied by
 * hand (none while only 0001 exists), plus a table of our own that must
 * survive; store_migrate brings it to N.
 */
static void test_store__migrate_previous_version(void)
{
    char path[256], pragma[64], id[24];
    gq_err e = GQ_ERR_INIT;
    int n = store_schema_version(), from = -1, to = -1;
    sqlite3 *db;
    store *s = NULL;
    struct job *j = NULL;

    db_path(path, sizeof(path), "previous.db");
    if (!(db = raw_open(path)))
        return;
    CHECK(sqlite3_exec(db, "CREATE TABLE keep_me (x TEXT); INSERT INTO keep_me VALUES ('still here')", NULL, NULL,
                       NULL) == SQLITE_OK);
    for (int v = 1; v < n; v++) {
        CHECK_MSG(sqlite3_exec(db, (const char *)embedded_migrations[v - 1].data, NULL, NULL, NULL) == SQLITE_OK,
                  "%s: %s", embedded_migrations[v - 1].name, sqlite3_errmsg(db));
    }
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", n - 1);
    CHECK(sqlite3_exec(db, pragma, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    CHECK_EQ_INT(store_open(&s, path, &e), GQ_ECONFLICT);
    CHECK_OK(store_migrate(path, &from, &to, &e), &e);
    CHECK_EQ_INT(from, n - 1);
    CHECK_EQ_INT(to, n);
    if ((db = raw_open(path))) {
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM keep_me WHERE x = 'still here'"), 1);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), n);
        CHECK_EQ_INT(has_object(db, "table", "jobs"), 1);
        sqlite3_close(db);
    }
    CHECK_OK(store_open(&s, path, &e), &e);
    if (!s)
        return;
    insert1(s, "org/a", 0, 0, NULL, id);
    CHECK_OK(store_job_get(&j, s, id, &e), &e);
    job_free(j);
    CHECK_EQ_INT(store_close(s), 0);
    db_remove(path);
}

static void test_store__insert_get(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    struct job jobs[2], *g = NULL;
    int existing[2] = { 7, 7 };
    int64_t t0 = store_now_ms();

    if (!s)
        return;
    jobs[0] = new_job("org/a", 3, 1000, "{\"team\":\"x\",\"n\":1}");
    jobs[0].callback_url = strdup("http://127.0.0.1/hook");
    jobs[1] = new_job("local:b", 0, 0, NULL);
    CHECK_OK(store_jobs_insert(s, jobs, 2, existing, &e), &e);
    CHECK_EQ_INT(existing[0], 0);
    CHECK_EQ_INT(existing[1], 0);
    for (int i = 0; i < 2; i++) {
        CHECK(jobs[i].seq > 0);
        CHECK_EQ_INT(strlen(jobs[i].id), 22);
        CHECK(strncmp(jobs[i].id, "j_", 2) == 0);
        CHECK(strspn(jobs[i].id + 2, "0123456789abcdef") == 20);
        CHECK_EQ_INT(jobs[i].status, JOB_QUEUED);
        CHECK(jobs[i].created_ms >= t0 && jobs[i].updated_ms == jobs[i].created_ms);
        CHECK_EQ_INT(jobs[i].attempts, 0);
        CHECK_EQ_INT(jobs[i].layer, -1);
        CHECK(jobs[i].eta_seconds == -1);
    }
    CHECK(jobs[1].seq > jobs[0].seq);
    CHECK(strcmp(jobs[0].id, jobs[1].id) != 0);
    CHECK_STR(jobs[1].labels, "{}");

    CHECK_OK(store_job_get(&g, s, jobs[0].id, &e), &e);
    if (g) {
        CHECK_EQ_INT(g->seq, jobs[0].seq);
        CHECK_STR(g->id, jobs[0].id);
        CHECK_EQ_INT(g->status, JOB_QUEUED);
        CHECK_EQ_INT(g->priority, 3);
        CHECK_STR(g->model, "org/a");
        CHECK_STR(g->revision, "main");
        CHECK(g->source_revision == NULL);
        CHECK_STR(g->spec, "{\"bits\":4}");
        CHECK_STR(g->labels, "{\"team\":\"x\",\"n\":1}");
        CHECK_STR(g->callback_url, "http://127.0.0.1/hook");
        CHECK(g->idempotency_key == NULL);
        CHECK_STR(g->request_hash, "");
        CHECK_EQ_INT(g->mem_estimate, 1000);
        CHECK_EQ_INT(g->created_ms, jobs[0].created_ms);
        CHECK_EQ_INT(g->started_ms, 0);
        CHECK_EQ_INT(g->finished_ms, 0);
        CHECK(g->error_code == NULL && g->error_message == NULL && g->stage == NULL);
        CHECK_EQ_INT(g->layer, -1);
        CHECK_EQ_INT(g->layers_total, -1);
        CHECK(g->fraction == 0);
        CHECK(g->eta_seconds == -1);
        job_free(g);
    }
    g = NULL;
    CHECK_EQ_INT(store_job_get(&g, s, "j_00000000000000000000", &e), GQ_ENOTFOUND);
    CHECK_HAS(e.msg, "j_00000000000000000000 does not exist");
    CHECK(g == NULL);

    CHECK_OK(store_job_set_source_revision(s, jobs[1].id, "0123abcd", &e), &e);
    CHECK_OK(store_job_get(&g, s, jobs[1].id, &e), &e);
    if (g)
        CHECK_STR(g->source_revision, "0123abcd");
    job_free(g);
    CHECK_EQ_INT(store_job_set_source_revision(s, "j_missing", "x", &e), GQ_ENOTFOUND);

    /* labels that are not an object: nothing inserted */
    {
        struct job bad = new_job("org/bad", 0, 0, "[1,2]");
        int64_t counts[JOB_NSTATUS];
        CHECK_EQ_INT(store_jobs_insert(s, &bad, 1, NULL, &e), GQ_EINVAL);
        CHECK_OK(store_counts(counts, s, &e), &e);
        CHECK_EQ_INT(counts[JOB_QUEUED], 2);
        clear_job(&bad);
    }
    for (int i = 0; i < 2; i++)
        clear_job(&jobs[i]);
    CHECK_EQ_INT(store_close(s), 0);
}

/* the ids of a list, "a,b,c" by index into ids[] */
static void list_names(char *out, size_t cap, const struct job *v, size_t n, char ids[][24], size_t nids)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < nids && strcmp(v[i].id, ids[k]) != 0; k++)
            ;
        len += (size_t)snprintf(out + len, cap - len, "%s%zu", i ? "," : "", k);
        if (len >= cap)
            break;
    }
}

#define CHECK_LIST(f, want, want_more) do { struct job *v_ = NULL; size_t n_ = 0; int more_ = -1; \
    char got_[256]; gq_err e_ = GQ_ERR_INIT; \
    CHECK_OK(store_jobs_list(&v_, &n_, &more_, s, (f), &e_), &e_); \
    list_names(got_, sizeof(got_), v_, n_, ids, 6); CHECK_STR(got_, (want)); \
    CHECK_EQ_INT(more_, (want_more)); CHECK(n_ > 0 || v_ == NULL); job_array_free(v_, n_); } while (0)

static void test_store__list_filters(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char ids[6][24];
    struct job_filter f = { -1, NULL, NULL, NULL, 0, 100 };
    struct job *v = NULL, *c = NULL;
    size_t n = 0;
    int more = 0;

    if (!s)
        return;
    insert1(s, "org/a", 0, 0, "{\"team\":\"x\",\"env\":\"prod\"}", ids[0]);
    insert1(s, "org/b", 0, 0, "{\"team\":\"y\"}", ids[1]);
    insert1(s, "org/a", 9, 0, NULL, ids[2]);
    insert1(s, "org/a", 0, 0, "{\"team\":\"x\",\"n\":5}", ids[3]);
    insert1(s, "org/c", 0, 0, "{\"env\":\"dev\"}", ids[4]);
    insert1(s, "org/a", 0, 0, "{\"team\":\"y\"}", ids[5]);
    /* ids[2] (priority 9) is claimed: downloading; ids[4] cancelled */
    CHECK_OK(store_job_claim(&c, s, -1, &e), &e);
    if (c)
        CHECK_STR(c->id, ids[2]);
    job_free(c);
    CHECK_OK(store_job_cancel(s, ids[4], NULL, &e), &e);

    CHECK_LIST(&f, "0,1,2,3,4,5", 0);
    f.status = JOB_QUEUED;
    CHECK_LIST(&f, "0,1,3,5", 0);
    f.status = JOB_DOWNLOADING;
    CHECK_LIST(&f, "2", 0);
    f.status = JOB_CANCELLED;
    CHECK_LIST(&f, "4", 0);
    f.status = JOB_SUCCEEDED;
    CHECK_LIST(&f, "", 0);
    f.status = -1;
    f.model = "org/a";
    CHECK_LIST(&f, "0,2,3,5", 0);
    f.status = JOB_QUEUED;
    CHECK_LIST(&f, "0,3,5", 0);
    f.status = -1;
    f.model = NULL;
    f.label_key = "team";
    CHECK_LIST(&f, "0,1,3,5", 0);
    f.label_value = "x";
    CHECK_LIST(&f, "0,3", 0);
    f.label_key = "n";          /* not a string member: not indexed */
    f.label_value = NULL;
    CHECK_LIST(&f, "", 0);
    f.label_key = "env";
    CHECK_LIST(&f, "0,4", 0);
    f.model = "org/a";
    f.label_key = "team";
    f.label_value = "y";
    CHECK_LIST(&f, "5", 0);

    /* pages of two with the cursor */
    memset(&f, 0, sizeof(f));
    f.status = -1;
    f.limit = 2;
    CHECK_LIST(&f, "0,1", 1);
    CHECK_OK(store_jobs_list(&v, &n, &more, s, &f, &e), &e);
    f.after_seq = n == 2 ? v[1].seq : 0;
    job_array_free(v, n);
    CHECK_LIST(&f, "2,3", 1);
    CHECK_OK(store_jobs_list(&v, &n, &more, s, &f, &e), &e);
    f.after_seq = n == 2 ? v[1].seq : 0;
    job_array_free(v, n);
    CHECK_LIST(&f, "4,5", 0);
    f.after_seq += 1000;
    CHECK_LIST(&f, "", 0);
    f.after_seq = 0;
    f.limit = 6;
    CHECK_LIST(&f, "0,1,2,3,4,5", 0);
    f.limit = 5;
    CHECK_LIST(&f, "0,1,2,3,4", 1);
    f.status = JOB_QUEUED;
    f.limit = 3;
    CHECK_LIST(&f, "0,1,3", 1);

    f.limit = 0;
    CHECK_EQ_INT(store_jobs_list(&v, &n, &more, s, &f, &e), GQ_EINVAL);
    f.limit = 1001;
    CHECK_EQ_INT(store_jobs_list(&v, &n, &more, s, &f, &e), GQ_EINVAL);
    f.limit = 10;
    f.status = JOB_NSTATUS;
    CHECK_EQ_INT(store_jobs_list(&v, &n, &more, s, &f, &e), GQ_EINVAL);
    f.status = -1;
    f.label_value = "x";
    CHECK_EQ_INT(store_jobs_list(&v, &n, &more, s, &f, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_close(s), 0);
}

static struct job keyed_job(const char *model, const char *key, const char *hash)
{
    struct job j = new_job(model, 0, 0, "{\"k\":\"v\"}");
    j.idempotency_key = strdup(key);
    snprintf(j.request_hash, sizeof(j.request_hash), "%s", hash);
    return j;
}

static void test_store__idempotency(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    struct job a = keyed_job("org/a", "key-1", "aaaa"), b, batch[3];
    int existing[3] = { -1, -1, -1 };
    int64_t counts[JOB_NSTATUS];
    struct job_filter f = { -1, NULL, "k", NULL, 0, 100 };
    struct job *v = NULL;
    size_t n = 0;

    if (!s)
        return;
    CHECK_OK(store_jobs_insert(s, &a, 1, existing, &e), &e);
    CHECK_EQ_INT(existing[0], 0);

    /* the same request again: the same job, every field from the row */
    b = keyed_job("org/a", "key-1", "aaaa");
    free(b.spec);
    b.spec = strdup("{\"not\":\"what is stored\"}");
    CHECK_OK(store_jobs_insert(s, &b, 1, existing, &e), &e);
    CHECK_EQ_INT(existing[0], 1);
    CHECK_STR(b.id, a.id);
    CHECK_EQ_INT(b.seq, a.seq);
    CHECK_STR(b.spec, "{\"bits\":4}");
    CHECK_STR(b.idempotency_key, "key-1");
    CHECK_STR(b.request_hash, "aaaa");
    CHECK_EQ_INT(b.created_ms, a.created_ms);
    CHECK_EQ_INT(b.status, JOB_QUEUED);
    clear_job(&b);

    /* a different request with that key */
    b = keyed_job("org/a", "key-1", "bbbb");
    CHECK_EQ_INT(store_jobs_insert(s, &b, 1, NULL, &e), GQ_ECONFLICT);
    CHECK_STR(e.msg, "idempotency key key-1 was used for a different request");
    CHECK_STR(b.id, "");
    clear_job(&b);

    /* a batch with one conflicting job inserts nothing and leaves jobs[] alone */
    batch[0] = keyed_job("org/new", "key-2", "cccc");
    batch[1] = new_job("org/new", 0, 0, "{\"k\":\"w\"}");
    batch[2] = keyed_job("org/a", "key-1", "dddd");
    CHECK_EQ_INT(store_jobs_insert(s, batch, 3, existing, &e), GQ_ECONFLICT);
    for (int i = 0; i < 3; i++) {
        CHECK_STR(batch[i].id, "");
        CHECK_EQ_INT(batch[i].seq, 0);
    }
    CHECK_OK(store_counts(counts, s, &e), &e);
    CHECK_EQ_INT(counts[JOB_QUEUED], 1);
    CHECK_OK(store_jobs_list(&v, &n, NULL, s, &f, &e), &e);   /* no labels left behind */
    CHECK_EQ_INT(n, 1);
    job_array_free(v, n);

    /* the batch without the conflict goes in; a key repeated inside one batch is one job */
    memcpy(batch[2].request_hash, "cccc", 5);
    free(batch[2].idempotency_key);
    batch[2].idempotency_key = strdup("key-2");
    CHECK_OK(store_jobs_insert(s, batch, 3, existing, &e), &e);
    CHECK_EQ_INT(existing[0], 0);
    CHECK_EQ_INT(existing[1], 0);
    CHECK_EQ_INT(existing[2], 1);
    CHECK_STR(batch[2].id, batch[0].id);
    CHECK_STR(batch[2].model, "org/new");
    CHECK_OK(store_counts(counts, s, &e), &e);
    CHECK_EQ_INT(counts[JOB_QUEUED], 3);
    for (int i = 0; i < 3; i++)
        clear_job(&batch[i]);

    /* a key needs its hash */
    b = keyed_job("org/a", "key-3", "");
    CHECK_EQ_INT(store_jobs_insert(s, &b, 1, NULL, &e), GQ_EINVAL);
    clear_job(&b);

    clear_job(&a);
    CHECK_EQ_INT(store_close(s), 0);
}

/* claim with mem_free and return the id ("" when none, with code in *rc) */
static void claim_id(char *id, store *s, int64_t mem_free, int *rc)
{
    struct job *j = NULL;
    gq_err e = GQ_ERR_INIT;
    *rc = store_job_claim(&j, s, mem_free, &e);
    id[0] = '\0';
    if (*rc == 0 && j) {
        memcpy(id, j->id, 24);
        CHECK_EQ_INT(j->status, JOB_DOWNLOADING);
    } else {
        CHECK(j == NULL);
    }
    job_free(j);
}

static void test_store__claim_order(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char ids[5][24], got[24];
    struct job *j = NULL;
    struct job_event *ev = NULL;
    size_t n = 0;
    int rc, has = -1;
    int64_t t0 = store_now_ms();

    if (!s)
        return;
    CHECK_OK(store_has_queued(&has, s, &e), &e);
    CHECK_EQ_INT(has, 0);
    insert1(s, "org/p0", 0, 0, NULL, ids[0]);
    insert1(s, "org/p5a", 5, 0, NULL, ids[1]);
    insert1(s, "org/p1", 1, 0, NULL, ids[2]);
    insert1(s, "org/p5b", 5, 0, NULL, ids[3]);
    insert1(s, "org/m1", -1, 0, NULL, ids[4]);
    CHECK_OK(store_has_queued(&has, s, &e), &e);
    CHECK_EQ_INT(has, 1);

    CHECK_OK(store_job_claim(&j, s, -1, &e), &e);
    if (j) {
        CHECK_STR(j->id, ids[1]);
        CHECK_EQ_INT(j->status, JOB_DOWNLOADING);
        CHECK_EQ_INT(j->attempts, 1);
        CHECK(j->started_ms >= t0);
        CHECK_EQ_INT(j->cancel_requested, 0);
        CHECK_STR(j->model, "org/p5a");
    }
    job_free(j);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, ids[3]);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, ids[2]);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, ids[0]);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, ids[4]);
    claim_id(got, s, -1, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);
    CHECK_OK(store_has_queued(&has, s, &e), &e);
    CHECK_EQ_INT(has, 0);

    CHECK_OK(store_events_list(&ev, &n, NULL, s, ids[1], 0, 10, &e), &e);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_STR(ev[0].kind, "state");
        CHECK_STR(ev[0].level, "info");
        CHECK_STR(ev[0].message, "queued -> downloading");
        CHECK_STR(ev[0].data, "{\"from\":\"queued\",\"to\":\"downloading\"}");
    }
    job_event_array_free(ev, n);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__claim_memory_budget(void)
{
    store *s = open_mem();
    char ids[4][24], got[24];
    int rc;

    if (!s)
        return;
    insert1(s, "org/big", 0, 100, NULL, ids[0]);
    insert1(s, "org/small", 0, 50, NULL, ids[1]);
    insert1(s, "org/huge", 0, 200, NULL, ids[2]);
    insert1(s, "org/big-urgent", 3, 100, NULL, ids[3]);
    claim_id(got, s, 60, &rc);
    CHECK_STR(got, ids[1]);
    claim_id(got, s, 10, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);
    claim_id(got, s, 0, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);
    claim_id(got, s, 100, &rc);        /* exactly fits; the higher priority first */
    CHECK_STR(got, ids[3]);
    claim_id(got, s, 199, &rc);
    CHECK_STR(got, ids[0]);
    claim_id(got, s, 199, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);
    claim_id(got, s, -1, &rc);         /* no limit */
    CHECK_STR(got, ids[2]);
    CHECK_EQ_INT(store_close(s), 0);
}

/* messages of a job's events, joined by '|' */
static void event_messages(char *out, size_t cap, store *s, const char *id)
{
    struct job_event *ev = NULL;
    size_t n = 0, len = 0;
    gq_err e = GQ_ERR_INIT;
    out[0] = '\0';
    CHECK_OK(store_events_list(&ev, &n, NULL, s, id, 0, 1000, &e), &e);
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "|" : "", ev[i].message);
    job_event_array_free(ev, n);
}

static void test_store__transitions(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], b[24], q[24], got[24], msgs[1024];
    struct job *j = NULL;
    int rc;

    if (!s)
        return;
    insert1(s, "org/a", 2, 0, NULL, a);
    insert1(s, "org/b", 1, 0, NULL, b);
    insert1(s, "org/q", 0, 0, NULL, q);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, a);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, b);

    CHECK_OK(store_job_progress(s, a, "downloading", -1, -1, 0.1, -1, &e), &e);
    CHECK_OK(store_job_transition(s, a, JOB_CALIBRATING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_transition(s, a, JOB_QUANTIZING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_progress(s, a, "quantizing", 3, 12, 0.5, 42.5, &e), &e);
    CHECK_OK(store_job_get(&j, s, a, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_QUANTIZING);
        CHECK_STR(j->stage, "quantizing");
        CHECK_EQ_INT(j->layer, 3);
        CHECK_EQ_INT(j->layers_total, 12);
        CHECK(j->fraction == 0.5);
        CHECK(j->eta_seconds == 42.5);
        CHECK_EQ_INT(j->finished_ms, 0);
    }
    job_free(j);
    j = NULL;
    CHECK_EQ_INT(store_job_progress(s, a, "x", 0, 1, 1.5, -1, &e), GQ_EINVAL);
    CHECK_OK(store_job_transition(s, a, JOB_WRITING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_transition(s, a, JOB_EVALUATING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_transition(s, a, JOB_SUCCEEDED, "ignored", "ignored", &e), &e);
    CHECK_OK(store_job_get(&j, s, a, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_SUCCEEDED);
        CHECK(j->fraction == 1);
        CHECK(j->finished_ms >= j->started_ms && j->finished_ms > 0);
        CHECK(j->error_code == NULL && j->error_message == NULL);
    }
    job_free(j);
    j = NULL;
    event_messages(msgs, sizeof(msgs), s, a);
    CHECK_STR(msgs, "queued -> downloading|downloading -> calibrating|calibrating -> quantizing|"
                    "quantizing -> writing|writing -> evaluating|evaluating -> succeeded");

    /* refused: from a finished job, a queued one, a missing one; to queued */
    CHECK_EQ_INT(store_job_transition(s, a, JOB_FAILED, "x", "y", &e), GQ_ECONFLICT);
    CHECK_HAS(e.msg, "is succeeded, not running");
    CHECK_EQ_INT(store_job_transition(s, q, JOB_QUANTIZING, NULL, NULL, &e), GQ_ECONFLICT);
    CHECK_HAS(e.msg, "is queued, not running");
    CHECK_EQ_INT(store_job_transition(s, "j_gone", JOB_SUCCEEDED, NULL, NULL, &e), GQ_ECONFLICT);
    CHECK_EQ_INT(store_job_transition(s, b, JOB_QUEUED, NULL, NULL, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_job_progress(s, a, "late", -1, -1, 0.5, -1, &e), GQ_ECONFLICT);
    CHECK_EQ_INT(store_job_progress(s, q, "early", -1, -1, 0.5, -1, &e), GQ_ECONFLICT);

    /* failure keeps its code and message; the event is an error */
    CHECK_OK(store_job_transition(s, b, JOB_FAILED, "hub_error", "repo org/b not found", &e), &e);
    CHECK_OK(store_job_get(&j, s, b, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_FAILED);
        CHECK_STR(j->error_code, "hub_error");
        CHECK_STR(j->error_message, "repo org/b not found");
        CHECK(j->finished_ms > 0);
    }
    job_free(j);
    {
        struct job_event *ev = NULL;
        size_t n = 0;
        CHECK_OK(store_events_list(&ev, &n, NULL, s, b, 0, 10, &e), &e);
        CHECK_EQ_INT(n, 2);
        if (n == 2) {
            CHECK_STR(ev[1].message, "downloading -> failed: repo org/b not found");
            CHECK_STR(ev[1].level, "error");
        }
        job_event_array_free(ev, n);
    }
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__cancel(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char r[24], q[24], got[24], msgs[512];
    enum job_status st = JOB_NSTATUS;
    struct job *j = NULL;
    int rc, flag = -1;

    if (!s)
        return;
    insert1(s, "org/r", 1, 0, NULL, r);
    insert1(s, "org/q", 0, 0, NULL, q);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, r);

    /* queued: cancelled at once */
    CHECK_OK(store_job_cancel(s, q, &st, &e), &e);
    CHECK_EQ_INT(st, JOB_CANCELLED);
    CHECK_OK(store_job_get(&j, s, q, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_CANCELLED);
        CHECK_STR(j->error_code, "cancelled");
        CHECK(j->finished_ms > 0);
    }
    job_free(j);
    j = NULL;
    event_messages(msgs, sizeof(msgs), s, q);
    CHECK_STR(msgs, "queued -> cancelled: cancelled before it started");

    /* running: only the flag, twice is fine */
    CHECK_OK(store_job_cancel_requested(&flag, s, r, &e), &e);
    CHECK_EQ_INT(flag, 0);
    CHECK_OK(store_job_cancel(s, r, &st, &e), &e);
    CHECK_EQ_INT(st, JOB_DOWNLOADING);
    CHECK_OK(store_job_cancel(s, r, NULL, &e), &e);
    CHECK_OK(store_job_cancel_requested(&flag, s, r, &e), &e);
    CHECK_EQ_INT(flag, 1);
    CHECK_OK(store_job_get(&j, s, r, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_DOWNLOADING);
        CHECK_EQ_INT(j->cancel_requested, 1);
        CHECK_EQ_INT(j->finished_ms, 0);
    }
    job_free(j);
    event_messages(msgs, sizeof(msgs), s, r);
    CHECK_STR(msgs, "queued -> downloading|cancel requested");
    CHECK_OK(store_job_transition(s, r, JOB_CANCELLED, "cancelled", "cancelled by the user", &e), &e);

    /* finished, missing */
    CHECK_EQ_INT(store_job_cancel(s, r, &st, &e), GQ_ECONFLICT);
    CHECK_HAS(e.msg, "is already cancelled");
    CHECK_EQ_INT(store_job_cancel(s, q, NULL, &e), GQ_ECONFLICT);
    CHECK_EQ_INT(store_job_cancel(s, "j_missing", NULL, &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_job_cancel_requested(&flag, s, "j_missing", &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__requeue(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], got[24], msgs[512];
    struct job *j = NULL, *c = NULL;
    int rc;
    int64_t started = 0;

    if (!s)
        return;
    insert1(s, "org/a", 0, 0, NULL, a);
    CHECK_OK(store_job_claim(&c, s, -1, &e), &e);
    if (c)
        started = c->started_ms;
    job_free(c);
    c = NULL;
    CHECK_OK(store_job_transition(s, a, JOB_QUANTIZING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_progress(s, a, "quantizing", 2, 4, 0.5, 10, &e), &e);
    CHECK_OK(store_job_requeue(s, a, &e), &e);
    CHECK_OK(store_job_get(&j, s, a, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_QUEUED);
        CHECK_EQ_INT(j->attempts, 0);
        CHECK(j->stage == NULL);
        CHECK_EQ_INT(j->layer, -1);
        CHECK_EQ_INT(j->layers_total, -1);
        CHECK(j->fraction == 0);
        CHECK(j->eta_seconds == -1);
    }
    job_free(j);
    event_messages(msgs, sizeof(msgs), s, a);
    CHECK_HAS(msgs, "|quantizing -> queued");
    CHECK_EQ_INT(store_job_requeue(s, a, &e), GQ_ECONFLICT);

    usleep(2000);
    CHECK_OK(store_job_claim(&c, s, -1, &e), &e);
    if (c) {
        CHECK_STR(c->id, a);
        CHECK_EQ_INT(c->attempts, 1);
        CHECK_EQ_INT(c->started_ms, started);   /* kept from the first attempt */
    }
    job_free(c);
    CHECK_OK(store_job_transition(s, a, JOB_SUCCEEDED, NULL, NULL, &e), &e);
    CHECK_EQ_INT(store_job_requeue(s, a, &e), GQ_ECONFLICT);
    claim_id(got, s, -1, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__delete_cascades(void)
{
    static const char *const counts_sql[] = {
        "SELECT count(*) FROM jobs", "SELECT count(*) FROM job_labels", "SELECT count(*) FROM job_events",
        "SELECT count(*) FROM artifacts", "SELECT count(*) FROM artifact_files", "SELECT count(*) FROM webhooks",
    };
    static const long long before[] = { 2, 3, 3, 1, 2, 1 }, after[] = { 1, 1, 0, 0, 0, 0 };
    char path[256], a[24], b[24], got[24];
    const struct artifact_file files[2] = { { (char *)(uintptr_t)"model.safetensors", 10, "ab" },
                                            { (char *)(uintptr_t)"config.json", 2, "cd" } };
    gq_err e = GQ_ERR_INIT;
    store *s = NULL;
    sqlite3 *db;
    int rc;

    db_path(path, sizeof(path), "delete.db");
    CHECK_OK(store_migrate(path, NULL, NULL, &e), &e);
    CHECK_OK(store_open(&s, path, &e), &e);
    if (!s)
        return;
    insert1(s, "org/a", 1, 0, "{\"x\":\"1\",\"y\":\"2\"}", a);
    insert1(s, "org/b", 0, 0, "{\"x\":\"1\"}", b);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, a);
    CHECK_OK(store_event_add(s, a, "log", "info", "hello", NULL, &e), &e);
    CHECK_OK(store_artifact_put(s, a, "/data/a", "{}", files, 2, &e), &e);
    CHECK_EQ_INT(store_job_delete(s, a, &e), GQ_ECONFLICT);   /* running */
    CHECK_HAS(e.msg, "is downloading, not finished");
    CHECK_EQ_INT(store_job_delete(s, b, &e), GQ_ECONFLICT);   /* queued */
    CHECK_OK(store_job_transition(s, a, JOB_SUCCEEDED, NULL, NULL, &e), &e);
    CHECK_OK(store_webhook_add(s, a, "http://127.0.0.1/h", "{}", &e), &e);
    if ((db = raw_open(path))) {
        for (size_t i = 0; i < 6; i++)
            CHECK_MSG(q_int(db, counts_sql[i]) == before[i], "%s: %lld", counts_sql[i], q_int(db, counts_sql[i]));
        sqlite3_close(db);
    }
    CHECK_OK(store_job_delete(s, a, &e), &e);
    if ((db = raw_open(path))) {
        for (size_t i = 0; i < 6; i++)
            CHECK_MSG(q_int(db, counts_sql[i]) == after[i], "%s: %lld", counts_sql[i], q_int(db, counts_sql[i]));
        sqlite3_close(db);
    }
    CHECK_EQ_INT(store_job_delete(s, a, &e), GQ_ENOTFOUND);
    {
        struct job *j = NULL;
        CHECK_EQ_INT(store_job_get(&j, s, a, &e), GQ_ENOTFOUND);
    }
    CHECK_EQ_INT(store_close(s), 0);
    db_remove(path);
}

/* A cancel requested while a job runs is not lost when a drain or a crash
 * interrupts the run: requeue declines (1), recovery cancels. */
static void test_store__cancel_survives_interruption(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], b[24], got[24], msgs[1024], (*touched)[24] = NULL;
    enum job_status st;
    struct job *j = NULL;
    size_t n = 0;
    int rc, flag = 0;

    if (!s)
        return;
    insert1(s, "org/a", 10, 0, NULL, a);
    insert1(s, "org/b", 5, 0, NULL, b);
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, a);
    CHECK_OK(store_job_transition(s, a, JOB_QUANTIZING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_cancel(s, a, &st, &e), &e);
    CHECK_OK(store_job_cancel_requested(&flag, s, a, &e), &e);
    CHECK_EQ_INT(flag, 1);
    /* the drain: requeue declines and leaves the job as it was */
    CHECK_EQ_INT(store_job_requeue(s, a, &e), 1);
    CHECK_OK(store_job_get(&j, s, a, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_QUANTIZING);
        CHECK_EQ_INT(j->cancel_requested, 1);
    }
    job_free(j);
    j = NULL;
    CHECK_OK(store_job_transition(s, a, JOB_CANCELLED, "cancelled", "cancelled by request", &e), &e);

    /* a crash: recovery cancels the job whose cancel was requested */
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, b);
    CHECK_OK(store_job_cancel(s, b, &st, &e), &e);
    CHECK_OK(store_recover(&touched, &n, s, 3, &e), &e);
    CHECK_EQ_INT(n, 1);
    free(touched);
    CHECK_OK(store_job_get(&j, s, b, &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_CANCELLED);
        CHECK_STR(j->error_code, "cancelled");
        CHECK(j->finished_ms > 0);
    }
    job_free(j);
    event_messages(msgs, sizeof(msgs), s, b);
    CHECK_HAS(msgs, "|downloading -> cancelled: cancelled by request (the run was interrupted by a restart)");
    claim_id(got, s, -1, &rc);
    CHECK_EQ_INT(rc, GQ_ENOTFOUND);   /* neither went back to the queue */
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__recover(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char ids[4][24], got[24], (*touched)[24] = NULL, msgs[1024];
    size_t n = 0;
    struct job *j = NULL;
    int rc;

    if (!s)
        return;
    for (int i = 0; i < 4; i++)
        insert1(s, "org/m", 10 - i, 0, NULL, ids[i]);
    for (int i = 0; i < 3; i++) {
        claim_id(got, s, -1, &rc);
        CHECK_STR(got, ids[i]);
    }
    CHECK_OK(store_job_transition(s, ids[1], JOB_QUANTIZING, NULL, NULL, &e), &e);
    CHECK_OK(store_job_transition(s, ids[2], JOB_SUCCEEDED, NULL, NULL, &e), &e);

    /* attempts 1 < 2: both running jobs go back to the queue, attempts kept */
    CHECK_EQ_INT(store_recover(&touched, &n, s, 0, &e), GQ_EINVAL);
    CHECK_OK(store_recover(&touched, &n, s, 2, &e), &e);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(touched[0], ids[0]);
        CHECK_STR(touched[1], ids[1]);
    }
    free(touched);
    touched = NULL;
    CHECK_OK(store_job_get(&j, s, ids[1], &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_QUEUED);
        CHECK_EQ_INT(j->attempts, 1);
    }
    job_free(j);
    j = NULL;
    event_messages(msgs, sizeof(msgs), s, ids[1]);
    CHECK_HAS(msgs, "|quantizing -> queued: recovered after a restart");

    /* the second crash of ids[0] is its last attempt */
    claim_id(got, s, -1, &rc);
    CHECK_STR(got, ids[0]);
    CHECK_OK(store_recover(&touched, &n, s, 2, &e), &e);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_STR(touched[0], ids[0]);
    free(touched);
    touched = NULL;
    CHECK_OK(store_job_get(&j, s, ids[0], &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_FAILED);
        CHECK_STR(j->error_code, "interrupted");
        CHECK_STR(j->error_message, "interrupted by a restart after 2 attempts");
        CHECK(j->finished_ms > 0);
    }
    job_free(j);
    j = NULL;
    event_messages(msgs, sizeof(msgs), s, ids[0]);
    CHECK_HAS(msgs, "|downloading -> failed: interrupted by a restart after 2 attempts");

    /* nothing running: nothing touched; queued and finished jobs untouched */
    CHECK_OK(store_recover(&touched, &n, s, 2, &e), &e);
    CHECK_EQ_INT(n, 0);
    free(touched);
    CHECK_OK(store_job_get(&j, s, ids[2], &e), &e);
    if (j)
        CHECK_EQ_INT(j->status, JOB_SUCCEEDED);
    job_free(j);
    j = NULL;
    CHECK_OK(store_job_get(&j, s, ids[3], &e), &e);
    if (j) {
        CHECK_EQ_INT(j->status, JOB_QUEUED);
        CHECK_EQ_INT(j->attempts, 0);
    }
    job_free(j);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__events(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], b[24];
    struct job_event *ev = NULL;
    size_t n = 0;
    int more = -1;
    int64_t after;

    if (!s)
        return;
    insert1(s, "org/a", 0, 0, NULL, a);
    insert1(s, "org/b", 0, 0, NULL, b);
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "line %d", i);
        CHECK_OK(store_event_add(s, a, "log", "info", msg, NULL, &e), &e);
        CHECK_OK(store_event_add(s, b, "progress", "debug", msg, "{\"i\":1}", &e), &e);
    }
    CHECK_OK(store_events_list(&ev, &n, &more, s, a, 0, 2, &e), &e);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(more, 1);
    if (n != 2) {
        job_event_array_free(ev, n);
        store_close(s);
        return;
    }
    CHECK_STR(ev[0].message, "line 0");
    CHECK_STR(ev[1].message, "line 1");
    CHECK_STR(ev[0].kind, "log");
    CHECK_STR(ev[0].level, "info");
    CHECK(ev[0].data == NULL);
    CHECK(ev[1].seq > ev[0].seq && ev[0].ts_ms > 0);
    after = ev[1].seq;
    job_event_array_free(ev, n);
    CHECK_OK(store_events_list(&ev, &n, &more, s, a, after, 2, &e), &e);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(more, 1);
    if (n == 2)
        after = ev[1].seq;
    CHECK(n == 2 && strcmp(ev[0].message, "line 2") == 0);
    job_event_array_free(ev, n);
    CHECK_OK(store_events_list(&ev, &n, &more, s, a, after, 2, &e), &e);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(more, 0);
    CHECK(n == 1 && strcmp(ev[0].message, "line 4") == 0);
    if (n == 1)
        after = ev[0].seq;
    job_event_array_free(ev, n);
    CHECK_OK(store_events_list(&ev, &n, &more, s, a, after, 2, &e), &e);
    CHECK_EQ_INT(n, 0);
    CHECK(ev == NULL);
    CHECK_EQ_INT(more, 0);

    CHECK_OK(store_events_list(&ev, &n, &more, s, b, 0, 5, &e), &e);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(more, 0);
    if (n == 5) {
        CHECK_STR(ev[4].kind, "progress");
        CHECK_STR(ev[4].data, "{\"i\":1}");
    }
    job_event_array_free(ev, n);

    CHECK_EQ_INT(store_event_add(s, a, "shout", "info", "x", NULL, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_event_add(s, a, "log", "fatal", "x", NULL, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_event_add(s, "j_missing", "log", "info", "x", NULL, &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_events_list(&ev, &n, &more, s, "j_missing", 0, 5, &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_events_list(&ev, &n, &more, s, a, 0, 0, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_events_list(&ev, &n, &more, s, a, 0, 1001, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__artifacts(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], b[24];
    struct artifact_file files[3];
    struct artifact *art = NULL;
    char **dirs = NULL;
    size_t ndirs = 0;

    if (!s)
        return;
    insert1(s, "org/a", 0, 0, NULL, a);
    insert1(s, "org/b", 0, 0, NULL, b);
    memset(files, 0, sizeof(files));
    files[0].name = strdup("model.safetensors");
    files[0].size = 1000;
    memset(files[0].sha256, 'a', 64);
    files[1].name = strdup("config.json");
    files[1].size = 24;
    memset(files[1].sha256, 'b', 64);
    files[2].name = strdup("sub/tokenizer.json");
    files[2].size = 6;
    memset(files[2].sha256, 'c', 64);

    CHECK_EQ_INT(store_artifact_get(&art, s, a, &e), GQ_ENOTFOUND);
    CHECK_HAS(e.msg, "has no artifact");
    CHECK_EQ_INT(store_artifact_get(&art, s, "j_missing", &e), GQ_ENOTFOUND);
    CHECK_HAS(e.msg, "does not exist");
    CHECK_OK(store_artifact_put(s, a, "/data/a1", "{\"bits\":4}", files, 3, &e), &e);
    CHECK_OK(store_artifact_get(&art, s, a, &e), &e);
    if (art) {
        CHECK_STR(art->dir, "/data/a1");
        CHECK_STR(art->metadata, "{\"bits\":4}");
        CHECK_EQ_INT(art->bytes, 1030);
        CHECK(art->created_ms > 0);
        CHECK_EQ_INT(art->nfiles, 3);
        if (art->nfiles == 3) {
            CHECK_STR(art->files[0].name, "config.json");
            CHECK_STR(art->files[1].name, "model.safetensors");
            CHECK_STR(art->files[2].name, "sub/tokenizer.json");
            CHECK_EQ_INT(art->files[1].size, 1000);
            CHECK_EQ_INT(strlen(art->files[1].sha256), 64);
            CHECK_EQ_INT(art->files[1].sha256[0], 'a');
        }
    }
    artifact_free(art);
    art = NULL;

    /* replaced */
    CHECK_OK(store_artifact_put(s, a, "/data/a2", NULL, files + 1, 1, &e), &e);
    CHECK_OK(store_artifact_put(s, b, "/data/b", "{}", NULL, 0, &e), &e);
    CHECK_OK(store_artifact_get(&art, s, a, &e), &e);
    if (art) {
        CHECK_STR(art->dir, "/data/a2");
        CHECK_STR(art->metadata, "{}");
        CHECK_EQ_INT(art->bytes, 24);
        CHECK_EQ_INT(art->nfiles, 1);
    }
    artifact_free(art);
    art = NULL;
    CHECK_OK(store_artifact_dirs(&dirs, &ndirs, s, &e), &e);
    CHECK_EQ_INT(ndirs, 2);
    if (ndirs == 2) {
        CHECK_STR(dirs[0], "/data/a2");
        CHECK_STR(dirs[1], "/data/b");
    }
    for (size_t i = 0; i < ndirs; i++)
        free(dirs[i]);
    free(dirs);

    /* bad names and duplicates change nothing */
    {
        static const char *const bad[] = { "../x", "/etc/passwd", "a/../b", "", "a//b", "a/", ".." };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct artifact_file f = files[0];
            f.name = (char *)(uintptr_t)bad[i];
            CHECK_MSG(store_artifact_put(s, a, "/data/a3", "{}", &f, 1, &e) == GQ_EINVAL, "name '%s'", bad[i]);
        }
    }
    free(files[2].name);
    files[2].name = strdup("model.safetensors");
    CHECK_EQ_INT(store_artifact_put(s, a, "/data/a4", "{}", files, 3, &e), GQ_EINVAL);
    CHECK_HAS(e.msg, "listed twice");
    CHECK_OK(store_artifact_get(&art, s, a, &e), &e);
    if (art)
        CHECK_STR(art->dir, "/data/a2");
    artifact_free(art);
    CHECK_EQ_INT(store_artifact_put(s, "j_missing", "/x", "{}", NULL, 0, &e), GQ_ENOTFOUND);
    for (int i = 0; i < 3; i++)
        free(files[i].name);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__webhooks(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char a[24], b[24];
    struct webhook *w = NULL;
    size_t n = 0;
    int64_t now, next = 0, seq1 = 0, seq2 = 0;

    if (!s)
        return;
    insert1(s, "org/a", 0, 0, NULL, a);
    insert1(s, "org/b", 0, 0, NULL, b);
    CHECK_OK(store_webhook_next_due(&next, s, &e), &e);
    CHECK_EQ_INT(next, -1);
    CHECK_OK(store_webhook_add(s, a, "http://h/a", "{\"id\":\"a\"}", &e), &e);
    CHECK_OK(store_webhook_add(s, b, "http://h/b", "{\"id\":\"b\"}", &e), &e);
    CHECK_EQ_INT(store_webhook_add(s, "j_missing", "http://h", "{}", &e), GQ_ENOTFOUND);
    now = store_now_ms();
    CHECK_OK(store_webhook_next_due(&next, s, &e), &e);
    CHECK(next > 0 && next <= now);
    CHECK_OK(store_webhooks_due(&w, &n, s, now, 10, &e), &e);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(w[0].job_id, a);
        CHECK_STR(w[0].url, "http://h/a");
        CHECK_STR(w[0].body, "{\"id\":\"a\"}");
        CHECK_EQ_INT(w[0].attempts, 0);
        CHECK_STR(w[1].job_id, b);
        seq1 = w[0].seq;
        seq2 = w[1].seq;
    }
    webhook_array_free(w, n);
    w = NULL;
    CHECK_OK(store_webhooks_due(&w, &n, s, now, 1, &e), &e);
    CHECK_EQ_INT(n, 1);
    webhook_array_free(w, n);
    w = NULL;
    CHECK_OK(store_webhooks_due(&w, &n, s, now - 60000, 10, &e), &e);   /* not due yet */
    CHECK_EQ_INT(n, 0);
    CHECK(w == NULL);

    CHECK_OK(store_webhook_result(s, seq1, 1, 0, NULL, &e), &e);            /* delivered */
    CHECK_OK(store_webhook_result(s, seq2, 0, now + 1000, "HTTP 500", &e), &e);   /* retry */
    CHECK_OK(store_webhooks_due(&w, &n, s, now, 10, &e), &e);
    CHECK_EQ_INT(n, 0);
    webhook_array_free(w, n);
    w = NULL;
    CHECK_OK(store_webhook_next_due(&next, s, &e), &e);
    CHECK_EQ_INT(next, now + 1000);
    CHECK_OK(store_webhooks_due(&w, &n, s, now + 1000, 10, &e), &e);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(w[0].seq, seq2);
        CHECK_EQ_INT(w[0].attempts, 1);
    }
    webhook_array_free(w, n);
    w = NULL;
    CHECK_OK(store_webhook_result(s, seq2, 0, -1, "connection refused", &e), &e);   /* give up */
    CHECK_OK(store_webhooks_due(&w, &n, s, INT64_MAX, 10, &e), &e);
    CHECK_EQ_INT(n, 0);
    CHECK_OK(store_webhook_next_due(&next, s, &e), &e);
    CHECK_EQ_INT(next, -1);
    CHECK_EQ_INT(store_webhook_result(s, seq2, 1, 0, NULL, &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_webhook_result(s, seq1, 0, 5, "x", &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_webhook_result(s, 9999, 1, 0, NULL, &e), GQ_ENOTFOUND);
    CHECK_EQ_INT(store_webhooks_due(&w, &n, s, now, 0, &e), GQ_EINVAL);
    CHECK_EQ_INT(store_close(s), 0);
}

static void test_store__counts(void)
{
    store *s = open_mem();
    gq_err e = GQ_ERR_INIT;
    char ids[5][24], got[24];
    int64_t c[JOB_NSTATUS];
    int rc;

    if (!s)
        return;
    CHECK_OK(store_counts(c, s, &e), &e);
    for (int i = 0; i < JOB_NSTATUS; i++)
        CHECK_EQ_INT(c[i], 0);
    for (int i = 0; i < 5; i++)
        insert1(s, "org/m", 5 - i, 0, NULL, ids[i]);
    claim_id(got, s, -1, &rc);
    claim_id(got, s, -1, &rc);
    CHECK_OK(store_job_transition(s, ids[1], JOB_FAILED, "x", "y", &e), &e);
    CHECK_OK(store_job_cancel(s, ids[4], NULL, &e), &e);
    CHECK_OK(store_counts(c, s, &e), &e);
    CHECK_EQ_INT(c[JOB_QUEUED], 2);
    CHECK_EQ_INT(c[JOB_DOWNLOADING], 1);
    CHECK_EQ_INT(c[JOB_FAILED], 1);
    CHECK_EQ_INT(c[JOB_CANCELLED], 1);
    CHECK_EQ_INT(c[JOB_SUCCEEDED], 0);
    CHECK_OK(store_ping(s, &e), &e);
    CHECK_EQ_INT(store_close(s), 0);
    CHECK_EQ_INT(store_close(NULL), 0);
}

/* ---- eight workers, one file database ---- */

#define NTHREADS 8
#define NJOBS 400

struct worker_arg {
    const char *path;
    char (*ids)[24];       /* what it claimed */
    size_t n;
    int errors, close_rc;
    char msg[256];
};

static void *claimer(void *p)
{
    struct worker_arg *w = p;
    store *s = NULL;
    gq_err e = GQ_ERR_INIT;
    if (store_open(&s, w->path, &e) < 0) {
        w->errors++;
        snprintf(w->msg, sizeof(w->msg), "%s", e.msg);
        return NULL;
    }
    for (;;) {
        struct job *j = NULL;
        int rc = store_job_claim(&j, s, -1, &e);
        if (rc == GQ_ENOTFOUND)
            break;
        if (rc < 0) {
            w->errors++;
            snprintf(w->msg, sizeof(w->msg), "%s", e.msg);
            break;
        }
        memcpy(w->ids[w->n++], j->id, 24);
        /* more writers in the mix: progress, then the end */
        if (store_job_progress(s, j->id, "quantizing", 1, 2, 0.5, -1, &e) < 0 ||
            store_job_transition(s, j->id, JOB_SUCCEEDED, NULL, NULL, &e) < 0) {
            w->errors++;
            snprintf(w->msg, sizeof(w->msg), "%s", e.msg);
        }
        job_free(j);
    }
    w->close_rc = store_close(s);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_store__threads_claim_once(void)
{
    char path[256];
    gq_err e = GQ_ERR_INIT;
    store *s = NULL;
    pthread_t th[NTHREADS];
    struct worker_arg args[NTHREADS];
    char (*all)[24] = calloc(NJOBS * 2, 24);
    size_t total = 0;
    int64_t c[JOB_NSTATUS];

    if (!all)
        return;
    db_path(path, sizeof(path), "threads.db");
    CHECK_OK(store_migrate(path, NULL, NULL, &e), &e);
    CHECK_OK(store_open(&s, path, &e), &e);
    if (!s) {
        free(all);
        return;
    }
    for (int i = 0; i < NJOBS; i += 40) {
        struct job batch[40];
        for (int k = 0; k < 40; k++)
            batch[k] = new_job("org/m", k % 3, 0, "{\"t\":\"x\"}");
        CHECK_OK(store_jobs_insert(s, batch, 40, NULL, &e), &e);
        for (int k = 0; k < 40; k++)
            clear_job(&batch[k]);
    }
    for (int t = 0; t < NTHREADS; t++) {
        memset(&args[t], 0, sizeof(args[t]));
        args[t].path = path;
        args[t].ids = calloc(NJOBS, 24);
        CHECK(args[t].ids != NULL);
        CHECK(pthread_create(&th[t], NULL, claimer, &args[t]) == 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_MSG(args[t].errors == 0, "thread %d: %d errors, last: %s", t, args[t].errors, args[t].msg);
        CHECK_EQ_INT(args[t].close_rc, 0);
        for (size_t i = 0; i < args[t].n && total < NJOBS * 2; i++)
            memcpy(all[total++], args[t].ids[i], 24);
        free(args[t].ids);
    }
    CHECK_EQ_INT(total, NJOBS);
    qsort(all, total, 24, cmp_id);
    for (size_t i = 1; i < total; i++)
        CHECK_MSG(strcmp(all[i - 1], all[i]) != 0, "job %s claimed twice", all[i]);
    CHECK_OK(store_counts(c, s, &e), &e);
    CHECK_EQ_INT(c[JOB_SUCCEEDED], NJOBS);
    CHECK_EQ_INT(c[JOB_QUEUED], 0);
    CHECK_EQ_INT(store_close(s), 0);
    free(all);
    db_remove(path);
}

int main(void)
{
    t_prog = "test_store";
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_store.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_store__status_names);
    RUN(test_store__migrate_empty_file);
    RUN(test_store__migrate_twice_is_noop);
    RUN(test_store__newer_schema_refused);
    RUN(test_store__migrate_previous_version);
    RUN(test_store__insert_get);
    RUN(test_store__list_filters);
    RUN(test_store__idempotency);
    RUN(test_store__claim_order);
    RUN(test_store__claim_memory_budget);
    RUN(test_store__transitions);
    RUN(test_store__cancel);
    RUN(test_store__requeue);
    RUN(test_store__delete_cascades);
    RUN(test_store__recover);
    RUN(test_store__cancel_survives_interruption);
    RUN(test_store__events);
    RUN(test_store__artifacts);
    RUN(test_store__webhooks);
    RUN(test_store__counts);
    RUN(test_store__threads_claim_once);
    if (rmdir(g_dir) != 0)
        fprintf(stderr, "  cannot remove %s (left behind)\n", g_dir);
    return test_report();
}
