/*
 * store_open.c - the store's migrations and the opening of a connection
 * (contract in store.h, design notes in store.c).
 *
 * The migration runner, store_migrate, store_open, store_open_memory and
 * store_ping.  Preparing the statements of an opened connection (st_wrap)
 * and store_close stay in store.c, next to the table of statements.
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "embed.h"
#include "store.h"
#include "store_int.h"

/* ---- migrations ---- */

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
        rc = st_db_fail(db, rc, e);
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
        rc = st_db_fail(db, rc, e);
        goto done;
    }
    mode = sqlite3_column_text(st, 0);
    if (!memory && (!mode || strcmp((const char *)mode, "wal") != 0)) {
        rc = GQ_FAIL(e, GQ_EDB, "%s: cannot use WAL (journal mode is %s)", path, mode ? (const char *)mode : "?");
        goto done;
    }
    if ((rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL, NULL)) !=
        SQLITE_OK) {
        rc = st_db_fail(db, rc, e);
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

/* ---- open ---- */

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
    return st_wrap(out, db, e);
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
    return st_wrap(out, db, e);
}

int store_ping(store *s, gq_err *e)
{
    int rc;
    GQ_ASSERT_ARG(e, s != NULL);
    rc = st_tx_begin(s, e);
    return rc < 0 ? rc : st_tx_end(s, 0, e);
}
