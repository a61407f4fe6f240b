/* Experiments, runs and their params; checkpoints, crash detection, bench:
 * the rows written at once rather than buffered. */
#include "internal.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const run_statuses[] = {"queued", "running", "finished", "failed", "killed",
                                           "diverged", "crashed", NULL};

/* Prepares, binds nothing; the caller binds and steps. Errors keep the SQLite code. */
static int prep(gqe_runlog *db, const char *sql, sqlite3_stmt **st) {
    return sqlite3_prepare_v2(db->db, sql, -1, st, NULL);
}

/* ---- experiments ---- */

typedef struct { const char *name; int64_t id; } exp_args;

static int select_experiment(gqe_runlog *db, exp_args *a) {
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT id FROM experiments WHERE name = ?1", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) { a->id = sqlite3_column_int64(st, 0); rc = SQLITE_OK; }
    else if (rc == SQLITE_DONE) { a->id = 0; rc = SQLITE_OK; }
    sqlite3_finalize(st);
    return rc;
}

static int experiment_body(gqe_runlog *db, void *ud) {
    exp_args *a = ud;
    sqlite3_stmt *st;
    int rc = prep(db, "INSERT INTO experiments(name, created) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, rl_now());
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    return rc != SQLITE_OK ? rc : select_experiment(db, a);
}

gqe_status gqe_runlog_experiment(gqe_runlog *db, const char *name, int64_t *id) {
    if (!name || !*name) return gqe_fail(GQE_ERR_ARG, "runlog: experiment name is empty");
    exp_args a = {name, 0};
    /* Most calls find an existing experiment: no write lock for those. */
    int rc = select_experiment(db, &a);
    if (rc != SQLITE_OK) return rl_fail(db, rc, "look up experiment", sqlite3_errmsg(db->db));
    if (!a.id) GQE_TRY(rl_write(db, "create experiment", experiment_body, &a));
    *id = a.id;
    return GQE_OK;
}

gqe_status gqe_runlog_find_finished(gqe_runlog *db, int64_t experiment_id, const char *run_name,
                                    const char *config_hash, int64_t *run_id) {
    *run_id = 0;
    if (!run_name) return gqe_fail(GQE_ERR_ARG, "runlog find_finished: run name is missing");
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT id FROM runs WHERE experiment_id = ?1 AND name = ?2 AND status = 'finished' "
                      "AND (?3 IS NULL OR config_hash = ?3) ORDER BY id DESC LIMIT 1", &st);
    if (rc != SQLITE_OK) return rl_fail(db, rc, "find finished run", sqlite3_errmsg(db->db));
    sqlite3_bind_int64(st, 1, experiment_id);
    sqlite3_bind_text(st, 2, run_name, -1, SQLITE_STATIC);
    rl_bind_text(st, 3, config_hash);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *run_id = sqlite3_column_int64(st, 0);
    gqe_status s = rc == SQLITE_ROW || rc == SQLITE_DONE ? GQE_OK
                 : rl_fail(db, rc, "find finished run", sqlite3_errmsg(db->db));
    sqlite3_finalize(st);
    return s;
}

/* ---- runs ---- */

static int remember(gqe_runlog *db, int64_t id) {
    if (db->nknown == db->capknown) {
        int nc = db->capknown ? db->capknown * 2 : 16;
        int64_t *q = realloc(db->known, (size_t)nc * sizeof *q);
        if (!q) return -1;
        db->known = q; db->capknown = nc;
    }
    db->known[db->nknown++] = id;
    return 0;
}

gqe_status rl_check_run(gqe_runlog *db, int64_t run_id, const char *what) {
    for (int i = db->nknown - 1; i >= 0; i--)
        if (db->known[i] == run_id) return GQE_OK;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT 1 FROM runs WHERE id = ?1", &st);
    if (rc != SQLITE_OK) return rl_fail(db, rc, what, sqlite3_errmsg(db->db));
    sqlite3_bind_int64(st, 1, run_id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return gqe_fail(GQE_ERR_ARG, "%s: %s: no run with id %lld (use the id begin_run returned)",
                        db->path, what, (long long)run_id);
    if (rc != SQLITE_ROW) return rl_fail(db, rc, what, sqlite3_errmsg(db->db));
    if (remember(db, run_id)) return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory");
    return GQE_OK;
}

typedef struct { const gqe_run_info *info; int64_t id; } begin_args;

static int begin_body(gqe_runlog *db, void *ud) {
    begin_args *a = ud;
    const gqe_run_info *in = a->info;
    double now = rl_now();
    sqlite3_stmt *st;
    int rc = prep(db, "INSERT INTO runs(experiment_id, name, status, config, config_hash, git_commit, git_dirty, "
                      "host, pid, device, seed, started, heartbeat, uid) "
                      "VALUES(?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, lower(hex(randomblob(8))))", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, in->experiment_id);
    rl_bind_text(st, 2, in->name);
    rl_bind_text(st, 3, in->config_json);
    rl_bind_text(st, 4, in->config_hash);
    rl_bind_text(st, 5, in->git_commit);
    if (in->git_dirty >= 0) sqlite3_bind_int(st, 6, in->git_dirty != 0);
    /* host and pid default to this process: mark_crashed relies on them. */
    char host[256] = "";
    if (!in->host && gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    rl_bind_text(st, 7, in->host ? in->host : host[0] ? host : NULL);
    sqlite3_bind_int64(st, 8, in->pid > 0 ? in->pid : (int64_t)getpid());
    rl_bind_text(st, 9, in->device);
    sqlite3_bind_int64(st, 10, in->seed);
    sqlite3_bind_double(st, 11, now);
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return rc;
    a->id = sqlite3_last_insert_rowid(db->db);

    if ((rc = prep(db, "INSERT OR REPLACE INTO params(run_id, key, value, num) VALUES(?1, ?2, ?3, ?4)", &st)) != SQLITE_OK)
        return rc;
    for (int i = 0; i < in->nparams && rc == SQLITE_OK; i++) {
        const char *v = in->param_values[i];
        sqlite3_bind_int64(st, 1, a->id);
        sqlite3_bind_text(st, 2, in->param_keys[i], -1, SQLITE_STATIC);
        rl_bind_text(st, 3, v);
        /* num only for a value that is entirely a finite number. */
        char *end = NULL;
        double num = v && *v ? strtod(v, &end) : NAN;
        if (end && *end == 0 && isfinite(num)) sqlite3_bind_double(st, 4, num);
        else sqlite3_bind_null(st, 4);
        rc = rl_step_done(st);
    }
    sqlite3_finalize(st);
    return rc;
}

gqe_status gqe_runlog_run_begin(gqe_runlog *db, const gqe_run_info *info, int64_t *run_id) {
    if (!info->name || !*info->name) return gqe_fail(GQE_ERR_ARG, "runlog begin_run: run name is empty");
    if (info->experiment_id <= 0) return gqe_fail(GQE_ERR_ARG, "runlog begin_run: experiment_id %lld is not an id",
                                                  (long long)info->experiment_id);
    for (int i = 0; i < info->nparams; i++)
        if (!info->param_keys[i] || !*info->param_keys[i])
            return gqe_fail(GQE_ERR_ARG, "runlog begin_run %s: param %d has an empty key", info->name, i);
    if (db->nactive == db->capactive) {
        int nc = db->capactive ? db->capactive * 2 : 8;
        int64_t *q = realloc(db->active, (size_t)nc * sizeof *q);
        if (!q) return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory");
        db->active = q; db->capactive = nc;
    }
    begin_args a = {info, 0};
    GQE_TRY(rl_write(db, "begin run", begin_body, &a));
    db->active[db->nactive++] = a.id;
    remember(db, a.id);   /* only a cache: a failure costs one lookup later */
    *run_id = a.id;
    return GQE_OK;
}

typedef struct { int64_t id; const char *status, *error; int changed; } end_args;

static int end_body(gqe_runlog *db, void *ud) {
    end_args *a = ud;
    sqlite3_stmt *st;
    int rc = prep(db, "UPDATE runs SET status = ?2, error = ?3, ended = ?4, heartbeat = ?4 WHERE id = ?1", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->id);
    sqlite3_bind_text(st, 2, a->status, -1, SQLITE_STATIC);
    rl_bind_text(st, 3, a->error);
    sqlite3_bind_double(st, 4, rl_now());
    rc = rl_step_done(st);
    a->changed = sqlite3_changes(db->db);
    sqlite3_finalize(st);
    return rc;
}

gqe_status gqe_runlog_run_end(gqe_runlog *db, int64_t run_id, const char *status, const char *error) {
    int ok = 0;
    for (const char *const *s = run_statuses; *s && status; s++) ok |= strcmp(*s, status) == 0;
    if (!ok || strcmp(status, "running") == 0 || strcmp(status, "queued") == 0)
        return gqe_fail(GQE_ERR_ARG, "runlog end_run: status '%s' must be one of finished, failed, killed, "
                        "diverged, crashed", status ? status : "(null)");
    /* A run ends finished only with everything it logged written. A run
     * that stopped gets its status even when the flush fails (a full disk
     * may still take one small row while the buffer does not fit); the rows
     * stay buffered for a later flush or close. */
    gqe_status flushed = gqe_runlog_flush(db);
    if (flushed != GQE_OK && strcmp(status, "finished") == 0) return flushed;
    end_args a = {run_id, status, error, 0};
    if (rl_write(db, "end run", end_body, &a) != GQE_OK) {
        /* A WAL that cannot grow (a file-size limit, a full disk) can often
         * be folded back into the database and then reused from its start:
         * try that once for the status row. */
        sqlite3_wal_checkpoint_v2(db->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        GQE_TRY(rl_write(db, "end run", end_body, &a));
    }
    if (!a.changed) return gqe_fail(GQE_ERR_ARG, "%s: end_run: no run with id %lld", db->path, (long long)run_id);
    for (int i = 0; i < db->nactive; i++)
        if (db->active[i] == run_id) { db->active[i] = db->active[--db->nactive]; break; }
    return GQE_OK;
}

/* ---- claiming a stopped run ---- */

typedef struct {
    int64_t id, pid;
    const char *host;
    gqe_run_prev *prev;
    char why[512];
} claim_args;

static char *col_dup(sqlite3_stmt *st, int c) {
    const unsigned char *t = sqlite3_column_text(st, c);
    return t ? strdup((const char *)t) : NULL;
}

static int claim_body(gqe_runlog *db, void *ud) {
    claim_args *a = ud;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT status, error, ended, host, pid FROM runs WHERE id = ?1", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        snprintf(a->why, sizeof a->why, "no run %lld in this database", (long long)a->id);
        sqlite3_finalize(st);
        return SQLITE_OK;
    }
    if (rc != SQLITE_ROW) { sqlite3_finalize(st); return rc; }
    const char *status = (const char *)sqlite3_column_text(st, 0);
    const char *host = (const char *)sqlite3_column_text(st, 3);
    if (status && (strcmp(status, "running") == 0 || strcmp(status, "queued") == 0)) {
        snprintf(a->why, sizeof a->why, "run %lld is %s: held by process %lld on %s; stop it first",
                 (long long)a->id, status, (long long)sqlite3_column_int64(st, 4), host ? host : "an unknown host");
    } else if (status && strcmp(status, "finished") == 0) {
        snprintf(a->why, sizeof a->why, "run %lld already finished", (long long)a->id);
    } else {
        a->prev->status = col_dup(st, 0);
        a->prev->error = col_dup(st, 1);
        a->prev->ended = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 2);
    }
    sqlite3_finalize(st);
    if (a->why[0]) return SQLITE_OK;
    if (!a->prev->status) return SQLITE_NOMEM;
    /* The status is checked again in the UPDATE itself, under the same
     * write lock: two claims cannot both see the run stopped. */
    rc = prep(db, "UPDATE runs SET status = 'running', ended = NULL, error = NULL, host = ?2, pid = ?3, "
                  "heartbeat = ?4 WHERE id = ?1 AND status NOT IN ('running', 'queued', 'finished')", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->id);
    rl_bind_text(st, 2, a->host);
    sqlite3_bind_int64(st, 3, a->pid);
    sqlite3_bind_double(st, 4, rl_now());
    rc = rl_step_done(st);
    if (rc == SQLITE_OK && sqlite3_changes(db->db) != 1)
        snprintf(a->why, sizeof a->why, "run %lld changed status while being claimed", (long long)a->id);
    sqlite3_finalize(st);
    return rc;
}

void gqe_run_prev_free(gqe_run_prev *p) {
    free(p->status);
    free(p->error);
    p->status = p->error = NULL;
}

gqe_status gqe_runlog_run_claim(gqe_runlog *db, int64_t run_id, gqe_run_prev *prev) {
    memset(prev, 0, sizeof *prev);
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    claim_args a = {run_id, (int64_t)getpid(), host[0] ? host : NULL, prev, ""};
    gqe_status s = rl_write(db, "claim run", claim_body, &a);
    if (s == GQE_OK && a.why[0]) s = gqe_fail(GQE_ERR_ARG, "%s", a.why);
    if (s != GQE_OK) { gqe_run_prev_free(prev); return s; }
    if (db->nactive == db->capactive) {
        int nc = db->capactive ? db->capactive * 2 : 8;
        int64_t *q = realloc(db->active, (size_t)nc * sizeof *q);
        if (!q) return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory");
        db->active = q; db->capactive = nc;
    }
    db->active[db->nactive++] = run_id;
    remember(db, run_id);
    return GQE_OK;
}

typedef struct { int64_t id; const gqe_run_prev *prev; } unclaim_args;

static int unclaim_body(gqe_runlog *db, void *ud) {
    unclaim_args *a = ud;
    sqlite3_stmt *st;
    int rc = prep(db, "UPDATE runs SET status = ?2, error = ?3, ended = ?4 WHERE id = ?1", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->id);
    rl_bind_text(st, 2, a->prev->status);
    rl_bind_text(st, 3, a->prev->error);
    if (a->prev->ended >= 0) sqlite3_bind_double(st, 4, a->prev->ended); else sqlite3_bind_null(st, 4);
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    return rc;
}

gqe_status gqe_runlog_run_unclaim(gqe_runlog *db, int64_t run_id, const gqe_run_prev *prev) {
    if (!prev->status) return gqe_fail(GQE_ERR_ARG, "runlog unclaim: no previous status");
    GQE_TRY(gqe_runlog_flush(db));
    unclaim_args a = {run_id, prev};
    GQE_TRY(rl_write(db, "restore run status", unclaim_body, &a));
    for (int i = 0; i < db->nactive; i++)
        if (db->active[i] == run_id) { db->active[i] = db->active[--db->nactive]; break; }
    return GQE_OK;
}

/* ---- checkpoints ---- */

typedef struct {
    int64_t run, step, keep;
    const char *path;
    gqe_runlog_path_fn pruned;
    void *ud;
} ckpt_args;

/* The rows beyond the newest `keep` of the run, deleted; a path no other row
 * still names is handed to the callback (after the delete, in the same
 * transaction, so a failure rolls the whole thing back). */
static int prune(gqe_runlog *db, ckpt_args *a) {
    sqlite3_stmt *sel, *del, *used;
    int rc = prep(db, "SELECT id, path FROM checkpoints WHERE run_id = ?1 ORDER BY step DESC, id DESC "
                      "LIMIT -1 OFFSET ?2", &sel);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(sel, 1, a->run);
    sqlite3_bind_int64(sel, 2, a->keep);
    int64_t *ids = NULL;
    char **paths = NULL;
    int n = 0, cap = 0;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            int64_t *ni = realloc(ids, (size_t)cap * sizeof *ni);
            if (ni) ids = ni;
            char **np = realloc(paths, (size_t)cap * sizeof *np);
            if (np) paths = np;
            if (!ni || !np) { rc = SQLITE_NOMEM; break; }
        }
        ids[n] = sqlite3_column_int64(sel, 0);
        paths[n] = col_dup(sel, 1);
        n++;
    }
    sqlite3_finalize(sel);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc == SQLITE_OK) rc = prep(db, "DELETE FROM checkpoints WHERE id = ?1", &del);
    if (rc == SQLITE_OK) {
        for (int i = 0; i < n && rc == SQLITE_OK; i++) {
            sqlite3_bind_int64(del, 1, ids[i]);
            rc = rl_step_done(del);
        }
        sqlite3_finalize(del);
    }
    if (rc == SQLITE_OK && (rc = prep(db, "SELECT 1 FROM checkpoints WHERE path = ?1", &used)) == SQLITE_OK) {
        for (int i = 0; i < n && rc == SQLITE_OK; i++) {
            if (!paths[i]) continue;
            sqlite3_bind_text(used, 1, paths[i], -1, SQLITE_STATIC);
            int r = sqlite3_step(used);
            sqlite3_reset(used);
            if (r == SQLITE_DONE) { if (a->pruned) a->pruned(a->ud, paths[i]); }
            else if (r != SQLITE_ROW) rc = r;
        }
        sqlite3_finalize(used);
    }
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(ids);
    return rc;
}

static int ckpt_body(gqe_runlog *db, void *ud) {
    ckpt_args *a = ud;
    sqlite3_stmt *st;
    /* A file written again (a resumed run passing the same step) is one
     * checkpoint: its old row goes. */
    int rc = prep(db, "DELETE FROM checkpoints WHERE run_id = ?1 AND path = ?2", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->run);
    sqlite3_bind_text(st, 2, a->path, -1, SQLITE_STATIC);
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return rc;
    rc = prep(db, "INSERT INTO checkpoints(run_id, step, path, created) VALUES(?1, ?2, ?3, ?4)", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_int64(st, 1, a->run);
    sqlite3_bind_int64(st, 2, a->step);
    sqlite3_bind_text(st, 3, a->path, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, rl_now());
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && a->keep > 0) rc = prune(db, a);
    return rc;
}

gqe_status gqe_runlog_checkpoint(gqe_runlog *db, int64_t run_id, int64_t step, const char *path) {
    return gqe_runlog_checkpoint_keep(db, run_id, step, path, 0, NULL, NULL);
}

gqe_status gqe_runlog_checkpoint_keep(gqe_runlog *db, int64_t run_id, int64_t step, const char *path,
                                      int64_t keep, gqe_runlog_path_fn pruned, void *ud) {
    if (!path || !*path) return gqe_fail(GQE_ERR_ARG, "runlog checkpoint: path is empty");
    if (keep < 0) return gqe_fail(GQE_ERR_ARG, "runlog checkpoint: keep must be >= 0 (0 keeps all), got %lld",
                                  (long long)keep);
    ckpt_args a = {run_id, step, keep, path, pruned, ud};
    return rl_write(db, "record checkpoint", ckpt_body, &a);
}

/* ---- crash detection ---- */

typedef struct { const char *host; double stale; int64_t changed; } crash_args;

static int crash_body(gqe_runlog *db, void *ud) {
    crash_args *a = ud;
    a->changed = 0;
    double now = rl_now();
    sqlite3_stmt *sel, *upd;
    int rc = prep(db, "SELECT id, host, pid, coalesce(heartbeat, started) FROM runs WHERE status = 'running'", &sel);
    if (rc != SQLITE_OK) return rc;
    if ((rc = prep(db, "UPDATE runs SET status = 'crashed', ended = coalesce(heartbeat, started), error = ?2 "
                       "WHERE id = ?1 AND status = 'running'", &upd)) != SQLITE_OK) {
        sqlite3_finalize(sel);
        return rc;
    }
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(sel, 0);
        const char *host = (const char *)sqlite3_column_text(sel, 1);
        int64_t pid = sqlite3_column_int64(sel, 2);
        double beat = sqlite3_column_type(sel, 3) == SQLITE_NULL ? 0 : sqlite3_column_double(sel, 3);
        char why[256] = "";
        if (a->host && host && strcmp(host, a->host) == 0) {
            /* On this host the process table is the truth; EPERM means alive. */
            if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
                snprintf(why, sizeof why, "process %lld on %s no longer exists", (long long)pid, host);
        } else if (a->stale > 0 && now - beat > a->stale) {
            snprintf(why, sizeof why, "no heartbeat from %s for %.0f s", host ? host : "unknown host", now - beat);
        }
        if (!why[0]) continue;
        sqlite3_bind_int64(upd, 1, id);
        sqlite3_bind_text(upd, 2, why, -1, SQLITE_TRANSIENT);
        if ((rc = rl_step_done(upd)) != SQLITE_OK) break;
        a->changed += sqlite3_changes(db->db);
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

gqe_status gqe_runlog_mark_crashed(gqe_runlog *db, const char *this_host, double stale_seconds, int64_t *changed) {
    crash_args a = {this_host, stale_seconds, 0};
    GQE_TRY(rl_write(db, "mark crashed runs", crash_body, &a));
    if (changed) *changed = a.changed;
    return GQE_OK;
}

/* ---- bench ---- */

typedef struct { const char *name, *key, *unit, *device, *commit, *notes; double value, baseline; } bench_args;

static int bench_body(gqe_runlog *db, void *ud) {
    bench_args *a = ud;
    sqlite3_stmt *st;
    int rc = prep(db, "INSERT INTO bench(name, key, value, unit, baseline, ratio, device, git_commit, created, notes) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->key, -1, SQLITE_STATIC);
    if (!isnan(a->value)) sqlite3_bind_double(st, 3, a->value);
    rl_bind_text(st, 4, a->unit);
    if (!isnan(a->baseline) && a->baseline != 0) {
        sqlite3_bind_double(st, 5, a->baseline);
        if (!isnan(a->value)) sqlite3_bind_double(st, 6, a->value / a->baseline);
    }
    rl_bind_text(st, 7, a->device);
    rl_bind_text(st, 8, a->commit);
    sqlite3_bind_double(st, 9, rl_now());
    rl_bind_text(st, 10, a->notes);
    rc = rl_step_done(st);
    sqlite3_finalize(st);
    return rc;
}

gqe_status gqe_runlog_bench(gqe_runlog *db, const char *name, const char *key, double value,
                            const char *unit, double baseline, const char *device,
                            const char *git_commit, const char *notes) {
    if (!name || !*name || !key || !*key) return gqe_fail(GQE_ERR_ARG, "runlog bench: name and key are required");
    bench_args a = {name, key, unit, device, git_commit, notes, value, baseline};
    return rl_write(db, "record benchmark", bench_body, &a);
}
