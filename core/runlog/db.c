/* Opening, migrating and closing the run log; the write-retry loop and the
 * error messages every runlog file shares; generic query and exec. */
#include "internal.h"
#include "embedded.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Migration i brings user_version from i to i+1 by running these embedded
 * files in order, in one transaction. Never edit a shipped migration: append
 * one. views.sql drops its views before creating them, so a migration that
 * changes a view can simply list "analysis/views.sql" again. */
static const char *const migration_1[] = {"analysis/schema.sql", "analysis/views.sql", NULL};
static const char *const migration_2[] = {"analysis/migration_2_run_uid.sql", NULL};
/* 3: counted_runs (which row counts for a run) and the views that read it. */
static const char *const migration_3[] = {"analysis/views.sql", NULL};
static const char *const *const migrations[] = {migration_1, migration_2, migration_3};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof *migrations))

int gqe_runlog_schema_version(void) { return N_MIGRATIONS; }

double rl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gqe_status rl_fail(gqe_runlog *db, int rc, const char *what, const char *msg) {
    const char *path = db->path;
    switch (rc & 0xff) {
    case SQLITE_READONLY:
        return gqe_fail(GQE_ERR_DB, "%s: %s: the database is read-only (check the permissions of "
                        "the file and of its directory, which must be writable for the WAL files)", path, what);
    case SQLITE_FULL:
        return gqe_fail(GQE_ERR_DB, "%s: %s: disk full; buffered rows are kept until a flush succeeds", path, what);
    case SQLITE_BUSY: case SQLITE_LOCKED:
        return gqe_fail(GQE_ERR_DB, "%s: %s: another process held the write lock for over %.3g s; "
                        "buffered rows are kept", path, what, db->timeout_s);
    case SQLITE_NOTADB:
        return gqe_fail(GQE_ERR_DB, "%s: not an SQLite database (is --db pointing at the right file?)", path);
    case SQLITE_CANTOPEN:
        return gqe_fail(GQE_ERR_DB, "%s: cannot open the database (does its directory exist, is it "
                        "writable, is the path a directory?)", path);
    case SQLITE_CORRUPT:
        return gqe_fail(GQE_ERR_DB, "%s: the database file is corrupt (%s)", path, msg);
    default:
        return gqe_fail(GQE_ERR_DB, "%s: %s: %s", path, what, msg ? msg : sqlite3_errstr(rc));
    }
}

int rl_stmt(gqe_runlog *db, int which, const char *sql, sqlite3_stmt **out) {
    if (!db->st[which]) {
        int rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->st[which], NULL);
        if (rc != SQLITE_OK) return rc;
    }
    *out = db->st[which];
    return SQLITE_OK;
}

int rl_bind_text(sqlite3_stmt *st, int i, const char *s) {
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

int rl_step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

/* 1 ms doubling to 100 ms, jittered by pid so writers that collided once do
 * not collide again in lockstep. */
static void backoff(int attempt) {
    long ms = attempt < 7 ? 1L << attempt : 100;
    ms += (long)(getpid() % 7) * (attempt + 1) % 11;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

gqe_status rl_write(gqe_runlog *db, const char *what, rl_body_fn body, void *ud) {
    double t0 = rl_now();
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rc = body(db, ud);
            if (rc == SQLITE_OK) rc = sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
        }
        if (rc == SQLITE_OK) return GQE_OK;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db->db));
        if (!sqlite3_get_autocommit(db->db)) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        if (is_busy(rc) && rl_now() - t0 < db->timeout_s) { backoff(attempt); continue; }
        return rl_fail(db, rc, what, msg);
    }
}

void gqe_runlog_set_timeout(gqe_runlog *db, double seconds) {
    db->timeout_s = seconds > 0 ? seconds : 0;
    /* SQLite's own busy handler waits out most lock holders; rl_write's loop
     * covers the cases where SQLite reports BUSY without waiting. */
    double wait = db->timeout_s < 10 ? db->timeout_s : 10;
    sqlite3_busy_timeout(db->db, (int)(wait * 1000));
}

static int user_version(sqlite3 *h, int *v) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) { *v = sqlite3_column_int(st, 0); rc = SQLITE_OK; }
    sqlite3_finalize(st);
    return rc;
}

/* Body of the migration transaction: re-reads the version under the write
 * lock, since another process may have migrated while we waited. */
static int migrate_body(gqe_runlog *db, void *ud) {
    int v, rc = user_version(db->db, &v);
    if (rc != SQLITE_OK) return rc;
    for (; v < N_MIGRATIONS; v++) {
        for (const char *const *f = migrations[v]; *f; f++) {
            const char *sql = gqe_embedded_find(*f, NULL);
            if (!sql) return SQLITE_INTERNAL;   /* the Makefile embeds every analysis SQL file */
            if ((rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL)) != SQLITE_OK) return rc;
        }
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        if ((rc = sqlite3_exec(db->db, set, NULL, NULL, NULL)) != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

/* A pragma that touches the file, retried while another process holds it. */
static int pragma(gqe_runlog *db, const char *sql) {
    double t0 = rl_now();
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
        if (!is_busy(rc) || rl_now() - t0 >= db->timeout_s) return rc;
        backoff(attempt);
    }
}

static gqe_status open_db(gqe_runlog *db, const char *path) {
    int rc = sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) return rl_fail(db, rc, "open", db->db ? sqlite3_errmsg(db->db) : NULL);
    sqlite3_extended_result_codes(db->db, 1);
    gqe_runlog_set_timeout(db, 60);
    /* SQLite silently falls back to read-only for a write-protected file;
     * say so now rather than at the first flush. */
    if (sqlite3_db_readonly(db->db, "main") == 1) return rl_fail(db, SQLITE_READONLY, "open", NULL);
    /* journal_mode is the first statement that reads the file: a non-database
     * file fails here. WAL lets readers and one writer work at once. */
    if ((rc = pragma(db, "PRAGMA journal_mode = WAL")) != SQLITE_OK)
        return rl_fail(db, rc, "set WAL mode", sqlite3_errmsg(db->db));
    if ((rc = pragma(db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")) != SQLITE_OK)
        return rl_fail(db, rc, "set pragmas", sqlite3_errmsg(db->db));
    int v;
    if ((rc = user_version(db->db, &v)) != SQLITE_OK)
        return rl_fail(db, rc, "read the schema version", sqlite3_errmsg(db->db));
    if (v > N_MIGRATIONS)
        return gqe_fail(GQE_ERR_DB, "%s: schema version %d is newer than this gqe build's (%d); "
                        "update gqe to write to it", path, v, N_MIGRATIONS);
    if (v < N_MIGRATIONS) GQE_TRY(rl_write(db, "create or migrate the schema", migrate_body, NULL));
    return GQE_OK;
}

gqe_status gqe_runlog_open(gqe_runlog **out, const char *path) {
    *out = NULL;
    if (!path || !*path) return gqe_fail(GQE_ERR_ARG, "runlog: database path is empty");
    /* An in-memory or temporary database dies with its process: runs logged
     * there are lost, and two processes opening it would each see their own. */
    if (path[0] == ':' || strncmp(path, "file:", 5) == 0)
        return gqe_fail(GQE_ERR_ARG, "runlog: '%s' is not a file path; the run log must be a file (e.g. runs.db) "
                        "that outlives the process and that every worker shares", path);
    gqe_runlog *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) { free(db); return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory"); }
    gqe_status s = open_db(db, path);
    if (s != GQE_OK) { gqe_runlog_close(db); return s; }
    *out = db;
    return GQE_OK;
}

void gqe_runlog_close(gqe_runlog *db) {
    if (!db) return;
    if (db->db && gqe_runlog_pending(db) > 0) gqe_runlog_flush(db);
    for (int i = 0; i < RL_ST_COUNT; i++) sqlite3_finalize(db->st[i]);
    sqlite3_close(db->db);
    for (int i = 0; i < db->nkeys; i++) free(db->keys[i]);
    free(db->keys); free(db->m); free(db->h); free(db->e); free(db->active); free(db->known); free(db->path);
    free(db);
}

/* ---- generic access ---- */

static int bind_value(sqlite3_stmt *st, int i, const gqe_db_value *v) {
    switch (v->type) {
    case GQE_DB_INT:  return sqlite3_bind_int64(st, i, v->i);
    case GQE_DB_REAL: return sqlite3_bind_double(st, i, v->d);
    case GQE_DB_TEXT: return sqlite3_bind_text(st, i, v->s, v->len >= 0 ? (int)v->len : -1, SQLITE_TRANSIENT);
    case GQE_DB_BLOB: return sqlite3_bind_blob(st, i, v->s, (int)v->len, SQLITE_TRANSIENT);
    default:          return sqlite3_bind_null(st, i);
    }
}

static gqe_status bind_all(gqe_runlog *db, sqlite3_stmt *st, int n, const gqe_db_value *binds,
                           const char *const *names) {
    int np = sqlite3_bind_parameter_count(st);
    if (!names && n != np)
        return gqe_fail(GQE_ERR_ARG, "%s: query takes %d parameter(s), got %d", db->path, np, n);
    unsigned char bound[256] = {0};
    if (np > 256) return gqe_fail(GQE_ERR_ARG, "%s: query has over 256 parameters", db->path);
    for (int i = 0; i < n; i++) {
        int idx = i + 1;
        if (names) {
            const char *nm = names[i];
            idx = sqlite3_bind_parameter_index(st, nm);
            char buf[128];
            for (const char *p = ":@$"; !idx && *p && strchr(":@$", nm[0]) == NULL; p++) {
                snprintf(buf, sizeof buf, "%c%s", *p, nm);
                idx = sqlite3_bind_parameter_index(st, buf);
            }
            if (!idx) continue;  /* a value the query does not use: callers pass common sets */
        }
        int rc = bind_value(st, idx, &binds[i]);
        if (rc != SQLITE_OK) return rl_fail(db, rc, "bind a query parameter", sqlite3_errmsg(db->db));
        bound[idx - 1] = 1;
    }
    for (int i = 0; i < np; i++)
        if (!bound[i]) {
            const char *nm = sqlite3_bind_parameter_name(st, i + 1);
            if (nm) return gqe_fail(GQE_ERR_ARG, "%s: query parameter %s has no value", db->path, nm);
            return gqe_fail(GQE_ERR_ARG, "%s: query parameter ?%d has no value", db->path, i + 1);
        }
    return GQE_OK;
}

gqe_status gqe_runlog_query(gqe_runlog *db, const char *sql, int nbinds, const gqe_db_value *binds,
                            const char *const *names, gqe_db_row_fn fn, void *ud) {
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(db->db, sql, -1, &st, &tail);
    if (rc != SQLITE_OK) return rl_fail(db, rc, "query", sqlite3_errmsg(db->db));
    if (!st) return gqe_fail(GQE_ERR_ARG, "%s: query is empty", db->path);
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';')) tail++;
    if (tail && *tail) {
        sqlite3_finalize(st);
        return gqe_fail(GQE_ERR_ARG, "%s: query holds more than one statement (use exec): %.60s", db->path, tail);
    }
    gqe_status s = bind_all(db, st, nbinds, binds, names);
    if (s != GQE_OK) { sqlite3_finalize(st); return s; }

    int ncol = sqlite3_column_count(st);
    const char **cn = calloc((size_t)ncol + 1, sizeof *cn);
    gqe_db_value *vals = calloc((size_t)ncol + 1, sizeof *vals);
    if (!cn || !vals) { free(cn); free(vals); sqlite3_finalize(st); return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory"); }

    double t0 = rl_now();
    int64_t rows = 0;
    for (int attempt = 0;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            /* Names are read after the first step: a statement prepared again
             * there (a LIKE on a bound value) frees the names read before. */
            if (rows++ == 0)
                for (int c = 0; c < ncol; c++) cn[c] = sqlite3_column_name(st, c);
            for (int c = 0; c < ncol; c++) {
                gqe_db_value *v = &vals[c];
                memset(v, 0, sizeof *v);
                switch (sqlite3_column_type(st, c)) {
                case SQLITE_INTEGER: v->type = GQE_DB_INT; v->i = sqlite3_column_int64(st, c); break;
                case SQLITE_FLOAT:   v->type = GQE_DB_REAL; v->d = sqlite3_column_double(st, c); break;
                case SQLITE_TEXT:    v->type = GQE_DB_TEXT; v->s = (const char *)sqlite3_column_text(st, c);
                                     v->len = sqlite3_column_bytes(st, c); break;
                case SQLITE_BLOB:    v->type = GQE_DB_BLOB; v->s = sqlite3_column_blob(st, c);
                                     v->len = sqlite3_column_bytes(st, c); break;
                default:             v->type = GQE_DB_NULL;
                }
            }
            if (fn && fn(ud, ncol, cn, vals)) { rc = SQLITE_DONE; break; }
            continue;
        }
        /* Retry only before the first row, so the callback never sees a row twice. */
        if (is_busy(rc) && rows == 0 && rl_now() - t0 < db->timeout_s) {
            sqlite3_reset(st);
            backoff(attempt++);
            continue;
        }
        break;
    }
    s = rc == SQLITE_DONE ? GQE_OK : rl_fail(db, rc, "query", sqlite3_errmsg(db->db));
    free(cn); free(vals);
    sqlite3_finalize(st);
    return s;
}

/* No retry loop here: a multi-statement text may have committed part of its
 * work before a BUSY; SQLite's busy handler already waits for the lock. */
gqe_status gqe_runlog_exec(gqe_runlog *db, const char *sql) {
    char *err = NULL;
    int rc = sqlite3_exec(db->db, sql, NULL, NULL, &err);
    if (rc == SQLITE_OK) return GQE_OK;
    gqe_status s = rl_fail(db, rc, "exec", err ? err : sqlite3_errmsg(db->db));
    sqlite3_free(err);
    return s;
}

const char *gqe_runlog_saved_query(const char *name) {
    char path[256];
    if (!name || strlen(name) > 200) return NULL;
    snprintf(path, sizeof path, "analysis/queries/%s.sql", name);
    return gqe_embedded_find(path, NULL);
}
