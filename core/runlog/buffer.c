/* The write buffer: metrics, head usage and evals collect in memory and land
 * in one transaction per flush, so logging costs a few stores per call and
 * the database sees one write per logging interval. */
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grows *p (of *cap elements of size sz) to hold n + 1. */
static int grow(void **p, int64_t *cap, int64_t n, size_t sz) {
    if (n < *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 256;
    void *q = realloc(*p, (size_t)nc * sz);
    if (!q) return -1;
    *p = q; *cap = nc;
    return 0;
}

/* Index of key in the handle's interned keys, added if new. Loggers repeat
 * the same keys in the same order every step, so the key after the last hit
 * is tried first and the scan is rare. */
static int intern(gqe_runlog *db, const char *key) {
    int guess[2] = {db->last_key + 1, db->last_key};
    for (int g = 0; g < 2; g++)
        if (guess[g] >= 0 && guess[g] < db->nkeys && strcmp(db->keys[guess[g]], key) == 0)
            return db->last_key = guess[g];
    for (int i = 0; i < db->nkeys; i++)
        if (strcmp(db->keys[i], key) == 0) return db->last_key = i;
    if (db->nkeys == db->capkeys) {
        int nc = db->capkeys ? db->capkeys * 2 : 32;
        char **q = realloc(db->keys, (size_t)nc * sizeof *q);
        if (!q) return -1;
        db->keys = q; db->capkeys = nc;
    }
    if (!(db->keys[db->nkeys] = strdup(key))) return -1;
    return db->last_key = db->nkeys++;
}

static gqe_status check_row(gqe_runlog *db, int64_t run_id, int64_t step, const char *what, const char *key) {
    if (step < 0) return gqe_fail(GQE_ERR_ARG, "runlog %s: step %lld must be >= 0", what, (long long)step);
    if (key && !*key) return gqe_fail(GQE_ERR_ARG, "runlog %s: key is empty", what);
    return rl_check_run(db, run_id, what);
}

gqe_status gqe_runlog_metric(gqe_runlog *db, int64_t run_id, int64_t step, const char *key, double value) {
    GQE_TRY(check_row(db, run_id, step, "metric", key ? key : ""));
    int k = intern(db, key);
    if (k < 0 || grow((void **)&db->m, &db->capm, db->nm, sizeof *db->m))
        return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory buffering metric %s", key);
    db->m[db->nm++] = (rl_metric){run_id, step, k, value, rl_now()};
    return GQE_OK;
}

gqe_status gqe_runlog_head_usage(gqe_runlog *db, int64_t run_id, int64_t step, int layer, int grp,
                                 int expert, int64_t tokens, double frac, double mean_prob) {
    GQE_TRY(check_row(db, run_id, step, "head_usage", NULL));
    if (layer < 0 || grp < 0 || expert < 0)
        return gqe_fail(GQE_ERR_ARG, "runlog head_usage: layer %d, grp %d, expert %d must be >= 0", layer, grp, expert);
    if (grow((void **)&db->h, &db->caph, db->nh, sizeof *db->h))
        return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory buffering head usage");
    db->h[db->nh++] = (rl_head){run_id, step, tokens, layer, grp, expert, frac, mean_prob};
    return GQE_OK;
}

gqe_status gqe_runlog_eval(gqe_runlog *db, int64_t run_id, int64_t step, const char *split,
                           const char *key, double value) {
    GQE_TRY(check_row(db, run_id, step, "eval", key ? key : ""));
    if (!split || !*split) return gqe_fail(GQE_ERR_ARG, "runlog eval: split is empty (e.g. \"val\")");
    char name[512];
    snprintf(name, sizeof name, "%s/%s", split, key);
    int s = intern(db, split), k = intern(db, key), m = intern(db, name);
    if (s < 0 || k < 0 || m < 0 || grow((void **)&db->e, &db->cape, db->ne, sizeof *db->e))
        return gqe_fail(GQE_ERR_NOMEM, "runlog: out of memory buffering eval %s", name);
    db->e[db->ne++] = (rl_eval){run_id, step, s, k, m, value, rl_now()};
    return GQE_OK;
}

int64_t gqe_runlog_pending(const gqe_runlog *db) { return db->nm + db->nh + db->ne; }

static int bind_real(sqlite3_stmt *st, int i, double v) {
    return isnan(v) ? sqlite3_bind_null(st, i) : sqlite3_bind_double(st, i, v);
}

/* One metric row plus its summary. A re-logged step replaces the row and
 * does not count twice. */
static int write_metric(gqe_runlog *db, int64_t run, int64_t step, const char *key, double value, double wall) {
    sqlite3_stmt *ins, *upd, *sum;
    int rc;
    if ((rc = rl_stmt(db, RL_ST_METRIC_INSERT,
            "INSERT INTO metrics(run_id, step, key, value, wall) VALUES(?1, ?2, ?3, ?4, ?5) "
            "ON CONFLICT DO NOTHING", &ins)) != SQLITE_OK) return rc;
    if ((rc = rl_stmt(db, RL_ST_METRIC_UPDATE,
            "UPDATE metrics SET value = ?4, wall = ?5 WHERE run_id = ?1 AND key = ?3 AND step = ?2", &upd)) != SQLITE_OK)
        return rc;
    if ((rc = rl_stmt(db, RL_ST_SUMMARY,
            "INSERT INTO metric_summary(run_id, key, last, last_step, min, max, count) "
            "VALUES(?1, ?2, ?3, ?4, ?3, ?3, 1) "
            "ON CONFLICT(run_id, key) DO UPDATE SET "
            "  last = CASE WHEN excluded.last_step >= last_step THEN excluded.last ELSE last END,"
            "  last_step = max(last_step, excluded.last_step),"
            /* min(x, NULL) is NULL in SQLite: NaN (NULL) values leave min/max alone. */
            "  min = coalesce(min(min, excluded.min), min, excluded.min),"
            "  max = coalesce(max(max, excluded.max), max, excluded.max),"
            "  count = count + ?5", &sum)) != SQLITE_OK) return rc;

    sqlite3_bind_int64(ins, 1, run); sqlite3_bind_int64(ins, 2, step);
    sqlite3_bind_text(ins, 3, key, -1, SQLITE_STATIC);
    bind_real(ins, 4, value); sqlite3_bind_double(ins, 5, wall);
    if ((rc = rl_step_done(ins)) != SQLITE_OK) return rc;
    int added = sqlite3_changes(db->db) > 0;
    if (!added) {
        sqlite3_bind_int64(upd, 1, run); sqlite3_bind_int64(upd, 2, step);
        sqlite3_bind_text(upd, 3, key, -1, SQLITE_STATIC);
        bind_real(upd, 4, value); sqlite3_bind_double(upd, 5, wall);
        if ((rc = rl_step_done(upd)) != SQLITE_OK) return rc;
    }
    sqlite3_bind_int64(sum, 1, run);
    sqlite3_bind_text(sum, 2, key, -1, SQLITE_STATIC);
    bind_real(sum, 3, value);
    sqlite3_bind_int64(sum, 4, step);
    sqlite3_bind_int(sum, 5, added);
    return rl_step_done(sum);
}

/* Raises a run's recorded step to at least `step` and sets its heartbeat. */
static int beat(gqe_runlog *db, int64_t run, int64_t step, double now) {
    sqlite3_stmt *st;
    int rc = rl_stmt(db, RL_ST_HEARTBEAT, "UPDATE runs SET heartbeat = ?1, step = max(step, ?2) WHERE id = ?3", &st);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int64(st, 2, step);
    sqlite3_bind_int64(st, 3, run);
    return rl_step_done(st);
}

/* The highest step per run in this flush (usually one run); runs past the
 * table's size get their heartbeat at once instead of at the end. */
typedef struct rl_seen { int n; int64_t run[16], step[16]; } rl_seen;

static int see(gqe_runlog *db, rl_seen *s, int64_t run, int64_t step, double now) {
    for (int i = 0; i < s->n; i++)
        if (s->run[i] == run) { if (step > s->step[i]) s->step[i] = step; return SQLITE_OK; }
    if (s->n == 16) return beat(db, run, step, now);
    s->run[s->n] = run; s->step[s->n] = step; s->n++;
    return SQLITE_OK;
}

static int flush_body(gqe_runlog *db, void *ud) {
    int rc;
    double now = rl_now();
    sqlite3_stmt *head, *ev;
    if ((rc = rl_stmt(db, RL_ST_HEAD,
            "INSERT OR REPLACE INTO head_usage(run_id, step, layer, grp, expert, tokens, frac, mean_prob) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &head)) != SQLITE_OK) return rc;
    if ((rc = rl_stmt(db, RL_ST_EVAL,
            "INSERT OR REPLACE INTO evals(run_id, step, split, key, value) VALUES(?1, ?2, ?3, ?4, ?5)", &ev)) != SQLITE_OK)
        return rc;

    rl_seen seen = {.n = 0};
    for (int64_t i = 0; i < db->nm; i++) {
        const rl_metric *m = &db->m[i];
        if ((rc = write_metric(db, m->run_id, m->step, db->keys[m->key], m->value, m->wall)) != SQLITE_OK) return rc;
        if ((rc = see(db, &seen, m->run_id, m->step, now)) != SQLITE_OK) return rc;
    }
    for (int64_t i = 0; i < db->ne; i++) {
        const rl_eval *e = &db->e[i];
        sqlite3_bind_int64(ev, 1, e->run_id); sqlite3_bind_int64(ev, 2, e->step);
        sqlite3_bind_text(ev, 3, db->keys[e->split], -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 4, db->keys[e->key], -1, SQLITE_STATIC);
        bind_real(ev, 5, e->value);
        if ((rc = rl_step_done(ev)) != SQLITE_OK) return rc;
        if ((rc = write_metric(db, e->run_id, e->step, db->keys[e->metric], e->value, e->wall)) != SQLITE_OK) return rc;
        if ((rc = see(db, &seen, e->run_id, e->step, now)) != SQLITE_OK) return rc;
    }
    for (int64_t i = 0; i < db->nh; i++) {
        const rl_head *h = &db->h[i];
        sqlite3_bind_int64(head, 1, h->run_id); sqlite3_bind_int64(head, 2, h->step);
        sqlite3_bind_int(head, 3, h->layer); sqlite3_bind_int(head, 4, h->grp); sqlite3_bind_int(head, 5, h->expert);
        sqlite3_bind_int64(head, 6, h->tokens);
        bind_real(head, 7, h->frac); bind_real(head, 8, h->mean_prob);
        if ((rc = rl_step_done(head)) != SQLITE_OK) return rc;
        if ((rc = see(db, &seen, h->run_id, h->step, now)) != SQLITE_OK) return rc;
    }
    for (int i = 0; i < db->nactive; i++)
        if ((rc = see(db, &seen, db->active[i], 0, now)) != SQLITE_OK) return rc;
    for (int i = 0; i < seen.n; i++)
        if ((rc = beat(db, seen.run[i], seen.step[i], now)) != SQLITE_OK) return rc;
    return SQLITE_OK;
}

gqe_status gqe_runlog_flush(gqe_runlog *db) {
    if (gqe_runlog_pending(db) == 0 && db->nactive == 0) return GQE_OK;
    GQE_TRY(rl_write(db, "flush", flush_body, NULL));
    /* Only now is the buffer safe to drop: a failed flush rolled back. */
    db->nm = db->nh = db->ne = 0;
    return GQE_OK;
}
