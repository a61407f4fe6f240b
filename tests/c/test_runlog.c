/* The run log: schema and migrations, round trips, metric_summary, views and
 * saved queries, error messages, crash detection, and the buffer surviving a
 * failed flush. Each test works in its own temporary directory. */
#include "testutil.h"
#include "runlog.h"
#include "embedded.h"
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

typedef struct { char dir[64]; char path[128]; } tmpdb;

static int setup(void **state) {
    tmpdb *t = calloc(1, sizeof *t);
    strcpy(t->dir, "/tmp/gqe_runlog_XXXXXX");
    if (!mkdtemp(t->dir)) return -1;
    snprintf(t->path, sizeof t->path, "%s/runs.db", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state) {
    tmpdb *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0) return -1;
    free(t);
    return 0;
}

/* ---- query helpers: the first column of the first row ---- */

typedef struct { gqe_db_type type; int64_t i; double d; char s[512]; int rows; } cell;

static int grab(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    cell *c = ud;
    if (c->rows++ == 0 && ncol > 0) {
        c->type = v[0].type; c->i = v[0].i; c->d = v[0].d;
        if (v[0].type == GQE_DB_TEXT) snprintf(c->s, sizeof c->s, "%s", v[0].s);
    }
    return 0;
}

/* The name of the first column of the first row. */
static int grab_name(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    cell *c = ud;
    (void)v;
    if (c->rows++ == 0 && ncol > 0) snprintf(c->s, sizeof c->s, "%s", names[0]);
    return 0;
}

static cell q(gqe_runlog *db, const char *sql) {
    cell c = {0};
    CHECK_OK(gqe_runlog_query(db, sql, 0, NULL, NULL, grab, &c));
    return c;
}
static int64_t q_int(gqe_runlog *db, const char *sql) {
    cell c = q(db, sql);
    if (c.type != GQE_DB_INT) fail_msg("%s: expected an integer, got type %d", sql, c.type);
    return c.i;
}
static double q_real(gqe_runlog *db, const char *sql) {
    cell c = q(db, sql);
    if (c.type == GQE_DB_INT) return (double)c.i;
    if (c.type != GQE_DB_REAL) fail_msg("%s: expected a number, got type %d", sql, c.type);
    return c.d;
}

static int64_t begin(gqe_runlog *db, int64_t exp, const char *name, int n, const char *const *k,
                     const char *const *v, const char *host, int64_t pid) {
    gqe_run_info info = {.experiment_id = exp, .name = name, .config_json = "{\"a\":1}",
                         .config_hash = name, .nparams = n, .param_keys = k, .param_values = v,
                         .git_commit = "abc", .git_dirty = 0, .host = host, .pid = pid,
                         .device = "cpu", .seed = 1};
    int64_t id = 0;
    CHECK_OK(gqe_runlog_run_begin(db, &info, &id));
    assert_true(id > 0);
    return id;
}

/* ---- tests ---- */

static void test_open_and_migrate(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    assert_int_equal(q_int(db, "PRAGMA user_version"), gqe_runlog_schema_version());
    assert_string_equal(q(db, "PRAGMA journal_mode").s, "wal");
    assert_int_equal(q_int(db, "PRAGMA foreign_keys"), 1);
    int64_t ntables = q_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
    assert_int_equal(ntables, 9);
    assert_true(q_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'view'") >= 6);
    int64_t e1;
    CHECK_OK(gqe_runlog_experiment(db, "keep", &e1));
    gqe_runlog_close(db);

    /* Opening again changes nothing and keeps the data. */
    CHECK_OK(gqe_runlog_open(&db, t->path));
    assert_int_equal(q_int(db, "PRAGMA user_version"), gqe_runlog_schema_version());
    assert_int_equal(q_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"), ntables);
    int64_t e2;
    CHECK_OK(gqe_runlog_experiment(db, "keep", &e2));
    assert_int_equal(e1, e2);
    /* A database from a newer build is refused with both versions named. */
    CHECK_OK(gqe_runlog_exec(db, "PRAGMA user_version = 99"));
    gqe_runlog_close(db);
    gqe_runlog *db2 = NULL;
    assert_int_equal(gqe_runlog_open(&db2, t->path), GQE_ERR_DB);
    assert_null(db2);
    assert_non_null(strstr(gqe_last_error(), "99"));
    assert_non_null(strstr(gqe_last_error(), t->path));
}

static void test_round_trip(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp;
    CHECK_OK(gqe_runlog_experiment(db, "rt", &exp));
    const char *k[] = {"model.k", "optim.lr", "router", "causal"}, *v[] = {"2", "3e-4", "softmax", "true"};
    int64_t run = begin(db, exp, "r1", 4, k, v, NULL, 0);
    assert_string_equal(q(db, "SELECT status FROM runs").s, "running");
    assert_int_equal(q_int(db, "SELECT pid FROM runs"), getpid());
    assert_int_equal(q_int(db, "SELECT count(*) FROM params"), 4);
    assert_string_equal(q(db, "SELECT params FROM run_overview").s,
                        "{\"causal\":true,\"model.k\":2,\"optim.lr\":0.0003,\"router\":\"softmax\"}");
    assert_true(fabs(q_real(db, "SELECT num FROM params WHERE key = 'optim.lr'") - 3e-4) < 1e-12);
    assert_int_equal(q(db, "SELECT num FROM params WHERE key = 'router'").type, GQE_DB_NULL);

    for (int s = 0; s < 25; s++) {
        CHECK_OK(gqe_runlog_metric(db, run, s, "train/loss", 3.0 - 0.1 * s));
        CHECK_OK(gqe_runlog_metric(db, run, s, "perf/tokens", 100.0 * (s + 1)));
    }
    CHECK_OK(gqe_runlog_eval(db, run, 24, "val", "loss", 0.9));
    CHECK_OK(gqe_runlog_head_usage(db, run, 24, 0, 1, 2, 50, 0.25, 0.3));
    assert_int_equal(gqe_runlog_pending(db), 52);
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics"), 0);   /* buffered until flush */
    CHECK_OK(gqe_runlog_flush(db));
    assert_int_equal(gqe_runlog_pending(db), 0);
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics WHERE key = 'train/loss'"), 25);
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics WHERE key = 'val/loss'"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM evals WHERE split = 'val' AND key = 'loss'"), 1);
    assert_int_equal(q_int(db, "SELECT tokens FROM head_usage WHERE layer = 0 AND grp = 1 AND expert = 2"), 50);
    assert_int_equal(q_int(db, "SELECT step FROM runs"), 24);
    assert_true(fabs(q_real(db, "SELECT value FROM metrics WHERE key = 'train/loss' AND step = 10") - 2.0) < 1e-12);

    CHECK_OK(gqe_runlog_checkpoint(db, run, 24, "ckpt/r1_24.safetensors"));
    assert_string_equal(q(db, "SELECT path FROM checkpoints").s, "ckpt/r1_24.safetensors");

    int64_t found = -1;
    CHECK_OK(gqe_runlog_find_finished(db, exp, "r1", "r1", &found));
    assert_int_equal(found, 0);
    assert_int_equal(gqe_runlog_run_end(db, run, "done", NULL), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "finished"));
    CHECK_OK(gqe_runlog_run_end(db, run, "finished", NULL));
    CHECK_OK(gqe_runlog_find_finished(db, exp, "r1", "r1", &found));
    assert_int_equal(found, run);
    CHECK_OK(gqe_runlog_find_finished(db, exp, "r1", NULL, &found));
    assert_int_equal(found, run);
    CHECK_OK(gqe_runlog_find_finished(db, exp, "r1", "other", &found));
    assert_int_equal(found, 0);
    assert_true(q_real(db, "SELECT ended - started FROM runs") >= 0);

    CHECK_OK(gqe_runlog_bench(db, "matmul", "gflops", 50, "GFLOP/s", 100, "cpu", "abc", NULL));
    assert_true(fabs(q_real(db, "SELECT ratio FROM bench") - 0.5) < 1e-12);

    /* A row for a run that does not exist is refused when logged, so it can
     * never sit in the buffer failing every flush; foreign keys back this up. */
    assert_int_equal(gqe_runlog_metric(db, 999, 0, "x", 1), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "999"));
    assert_int_equal(gqe_runlog_pending(db), 0);
    assert_int_equal(gqe_runlog_exec(db, "INSERT INTO metrics VALUES(999, 0, 'x', 1, 0)"), GQE_ERR_DB);
    assert_non_null(strstr(gqe_last_error(), "FOREIGN KEY"));
    gqe_runlog_close(db);
}

static void test_summary(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp, run;
    CHECK_OK(gqe_runlog_experiment(db, "sum", &exp));
    run = begin(db, exp, "r", 0, NULL, NULL, NULL, 0);
    /* Three flushes; steps out of order, a NaN, and a step logged twice. */
    double vals[] = {5, 3, 4, 1, 2};
    for (int s = 0; s < 5; s++) CHECK_OK(gqe_runlog_metric(db, run, s, "m", vals[s]));
    CHECK_OK(gqe_runlog_flush(db));
    CHECK_OK(gqe_runlog_metric(db, run, 10, "m", 7));
    CHECK_OK(gqe_runlog_metric(db, run, 6, "m", 0.5));   /* older step: not the last */
    CHECK_OK(gqe_runlog_flush(db));
    CHECK_OK(gqe_runlog_metric(db, run, 11, "m", NAN));
    CHECK_OK(gqe_runlog_metric(db, run, 3, "m", 1.5));   /* re-logged: replaces, not counted */
    CHECK_OK(gqe_runlog_flush(db));

    assert_int_equal(q_int(db, "SELECT count FROM metric_summary WHERE key = 'm'"), 8);
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics WHERE key = 'm'"), 8);
    assert_int_equal(q_int(db, "SELECT last_step FROM metric_summary"), 11);
    assert_int_equal(q(db, "SELECT last FROM metric_summary").type, GQE_DB_NULL);   /* NaN at the end */
    assert_true(q_real(db, "SELECT min FROM metric_summary") == 0.5);
    assert_true(q_real(db, "SELECT max FROM metric_summary") == 7);
    assert_true(q_real(db, "SELECT value FROM metrics WHERE step = 3") == 1.5);
    CHECK_OK(gqe_runlog_metric(db, run, 12, "m", 0.25));
    CHECK_OK(gqe_runlog_flush(db));
    assert_true(q_real(db, "SELECT last FROM metric_summary") == 0.25);
    assert_true(q_real(db, "SELECT min FROM metric_summary") == 0.25);
    gqe_runlog_close(db);
}

/* Experiment "abl": model.k in {1, 2} x seed in {1, 2}, model.dim fixed.
 * best val/loss = 2.0 - 0.5 * k + 0.01 * seed, reached at step 1; the last
 * val/loss is 0.1 higher. */
static void fabricate(gqe_runlog *db) {
    int64_t exp, other;
    CHECK_OK(gqe_runlog_experiment(db, "abl", &exp));
    CHECK_OK(gqe_runlog_experiment(db, "other", &other));
    for (int k = 1; k <= 2; k++)
        for (int seed = 1; seed <= 2; seed++) {
            char ks[8], ss[8], name[32];
            snprintf(ks, sizeof ks, "%d", k); snprintf(ss, sizeof ss, "%d", seed);
            snprintf(name, sizeof name, "k%d_s%d", k, seed);
            const char *keys[] = {"model.k", "seed", "model.dim", "optim.lr"};
            const char *vals[] = {ks, ss, "64", "0.001"};
            int64_t run = begin(db, exp, name, 4, keys, vals, NULL, 0);
            double best = 2.0 - 0.5 * k + 0.01 * seed;
            CHECK_OK(gqe_runlog_metric(db, run, 0, "val/loss", best + 1));
            CHECK_OK(gqe_runlog_eval(db, run, 1, "val", "loss", best));
            CHECK_OK(gqe_runlog_metric(db, run, 2, "val/loss", best + 0.1));
            for (int s = 0; s < 3; s++) {
                CHECK_OK(gqe_runlog_metric(db, run, s, "train/loss", 3 - s));
                CHECK_OK(gqe_runlog_metric(db, run, s, "perf/tokens", 1000.0 * (s + 1)));
            }
            for (int step = 0; step <= 2; step += 2)
                for (int e = 0; e < 4; e++)
                    CHECK_OK(gqe_runlog_head_usage(db, run, step, 0, 0, e, e == 0 ? 0 : 10 * e,
                                                   e == 0 ? 0 : e / 6.0, 0.25));
            CHECK_OK(gqe_runlog_run_end(db, run, "finished", NULL));
        }
    const char *keys[] = {"model.k"}, *vals[] = {"1"};
    int64_t run = begin(db, other, "lonely", 1, keys, vals, NULL, 0);
    CHECK_OK(gqe_runlog_run_end(db, run, "failed", "out of memory"));
}

static void test_views(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    fabricate(db);

    assert_int_equal(q_int(db, "SELECT count(*) FROM experiment_varied_keys WHERE experiment = 'abl'"), 2);
    assert_string_equal(q(db, "SELECT group_concat(key, ',') FROM (SELECT key FROM experiment_varied_keys "
                              "WHERE experiment = 'abl' ORDER BY key)").s, "model.k,seed");
    assert_int_equal(q_int(db, "SELECT count(*) FROM experiment_varied_keys WHERE experiment = 'other'"), 0);

    assert_int_equal(q_int(db, "SELECT count(*) FROM run_overview"), 5);
    assert_string_equal(q(db, "SELECT varied FROM run_overview WHERE run = 'k2_s1'").s, "{\"model.k\":2,\"seed\":1}");
    assert_int_equal(q_int(db, "SELECT params ->> '$.\"model.dim\"' FROM run_overview WHERE run = 'k2_s1'"), 64);
    assert_true(fabs(q_real(db, "SELECT params ->> '$.\"optim.lr\"' FROM run_overview WHERE run = 'k2_s1'") - 0.001) < 1e-15);
    assert_true(fabs(q_real(db, "SELECT best_val_loss FROM run_overview WHERE run = 'k2_s1'") - 1.01) < 1e-12);
    assert_true(fabs(q_real(db, "SELECT final_val_loss FROM run_overview WHERE run = 'k2_s1'") - 1.11) < 1e-12);
    assert_true(q_real(db, "SELECT final_train_loss FROM run_overview WHERE run = 'k2_s1'") == 1);
    assert_true(q_real(db, "SELECT tokens FROM run_overview WHERE run = 'k2_s1'") == 3000);
    assert_string_equal(q(db, "SELECT status FROM run_overview WHERE run = 'lonely'").s, "failed");

    /* The ablation recipe of the README: mean best loss per value of model.k. */
    assert_true(fabs(q_real(db, "SELECT avg(best_val_loss) FROM ablation WHERE experiment = 'abl' "
                                "AND key = 'model.k' AND value = '1'") - 1.515) < 1e-12);
    assert_int_equal(q_int(db, "SELECT count(*) FROM (SELECT value, avg(best_val_loss) FROM ablation "
                               "WHERE experiment = 'abl' AND key = 'model.k' GROUP BY value)"), 2);
    assert_int_equal(q_int(db, "SELECT count(*) FROM ablation WHERE experiment = 'abl'"), 16);

    assert_int_equal(q_int(db, "SELECT count(*) FROM head_usage_latest"), 16);
    assert_int_equal(q_int(db, "SELECT min(step) FROM head_usage_latest"), 2);

    /* counted_runs: one row per distinct config, its latest finished row. A
     * killed rerun of k1_s1 does not count; a finished one supersedes it. */
    assert_int_equal(q_int(db, "SELECT count(*) FROM counted_runs WHERE experiment = 'abl'"), 4);
    assert_int_equal(q_int(db, "SELECT count(*) FROM counted_runs WHERE experiment = 'other'"), 0);
    const char *keys[] = {"model.k", "seed", "model.dim", "optim.lr"};
    const char *vals[] = {"1", "1", "64", "0.001"};
    int64_t exp = q_int(db, "SELECT id FROM experiments WHERE name = 'abl'");
    int64_t killed = begin(db, exp, "k1_s1", 4, keys, vals, NULL, 0);
    CHECK_OK(gqe_runlog_eval(db, killed, 1, "val", "loss", 9.0));
    CHECK_OK(gqe_runlog_run_end(db, killed, "killed", "SIGINT"));
    assert_int_equal(q_int(db, "SELECT count(*) FROM counted_runs WHERE experiment = 'abl'"), 4);
    assert_int_equal(q_int(db, "SELECT counted FROM run_overview WHERE run_id = (SELECT max(id) FROM runs)"), 0);
    assert_true(fabs(q_real(db, "SELECT avg(best_val_loss) FROM ablation WHERE experiment = 'abl' "
                                "AND key = 'model.k' AND value = '1'") - 1.515) < 1e-12);
    int64_t again = begin(db, exp, "k1_s1", 4, keys, vals, NULL, 0);
    CHECK_OK(gqe_runlog_eval(db, again, 1, "val", "loss", 1.0));
    CHECK_OK(gqe_runlog_run_end(db, again, "finished", NULL));
    assert_int_equal(q_int(db, "SELECT count(*) FROM counted_runs WHERE experiment = 'abl'"), 4);
    assert_int_equal(q_int(db, "SELECT run_id FROM counted_runs WHERE run = 'k1_s1'"), again);
    assert_int_equal(q_int(db, "SELECT count(*) FROM ablation WHERE experiment = 'abl'"), 16);
    assert_int_equal(q_int(db, "SELECT count(*) FROM run_overview WHERE experiment = 'abl' AND NOT counted"), 2);
    assert_true(fabs(q_real(db, "SELECT avg(best_val_loss) FROM ablation WHERE experiment = 'abl' "
                                "AND key = 'model.k' AND value = '1'") - (1.0 + 1.52) / 2) < 1e-12);
    gqe_runlog_close(db);
}

typedef struct { int rows; } counter;
static int count_rows(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    ((counter *)ud)->rows++;
    return 0;
}

static void test_saved_queries(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    fabricate(db);
    int64_t run = q_int(db, "SELECT id FROM runs WHERE name = 'k1_s1'");
    /* Every saved query runs with the named parameters the CLI passes. */
    const char *names[] = {"experiment", "run"};
    gqe_db_value binds[] = {{.type = GQE_DB_TEXT, .s = "abl", .len = -1}, {.type = GQE_DB_INT, .i = run}};
    int nq = 0;
    for (const gqe_embedded_file *f = gqe_embedded_files; f->path; f++) {
        if (strncmp(f->path, "analysis/queries/", 17) != 0) continue;
        counter c = {0};
        gqe_status s = gqe_runlog_query(db, f->data, 2, binds, names, count_rows, &c);
        if (s != GQE_OK) fail_msg("%s: %s", f->path, gqe_last_error());
        nq++;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(strlen(f->path) - 17 - 4), f->path + 17);
        assert_ptr_equal(gqe_runlog_saved_query(name), f->data);
        if (strcmp(name, "compare_runs") == 0) assert_int_equal(c.rows, 4);
        if (strcmp(name, "best_per_experiment") == 0) assert_int_equal(c.rows, 1);
        if (strcmp(name, "loss_curve") == 0) assert_int_equal(c.rows, 6);
        if (strcmp(name, "head_usage_balance") == 0) assert_int_equal(c.rows, 1);
        if (strcmp(name, "ablation_summary") == 0) assert_int_equal(c.rows, 2);
    }
    assert_true(nq >= 4);
    cell c = {0};
    CHECK_OK(gqe_runlog_query(db, gqe_runlog_saved_query("best_per_experiment"), 0, NULL, NULL, grab, &c));
    assert_string_equal(c.s, "abl");
    c = (cell){0};
    CHECK_OK(gqe_runlog_query(db, "SELECT sum(tokens = 0) FROM head_usage_latest WHERE run_id = ?",
                              1, &binds[1], NULL, grab, &c));
    assert_int_equal(c.i, 1);

    /* A LIKE on a bound value makes SQLite prepare the statement again at its
     * first step; the column names handed to the callback must survive that. */
    c = (cell){0};
    gqe_db_value like = {.type = GQE_DB_TEXT, .s = "ab%", .len = 3};
    CHECK_OK(gqe_runlog_query(db, "SELECT name AS experiment_name FROM experiments WHERE name LIKE ?",
                              1, &like, NULL, grab_name, &c));
    assert_int_equal(c.rows, 1);
    assert_string_equal(c.s, "experiment_name");

    /* Query misuse: a clear error, not a silent NULL. */
    assert_int_equal(gqe_runlog_query(db, "SELECT :experiment, :run", 1, binds, names, NULL, NULL), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), ":run"));
    assert_int_equal(gqe_runlog_query(db, "SELECT 1; SELECT 2", 0, NULL, NULL, NULL, NULL), GQE_ERR_ARG);
    assert_int_equal(gqe_runlog_query(db, "SELECT nope FROM runs", 0, NULL, NULL, NULL, NULL), GQE_ERR_DB);
    assert_non_null(strstr(gqe_last_error(), "nope"));
    gqe_runlog_close(db);
}

static void test_bad_files(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db = NULL;
    /* Not a database. */
    FILE *f = fopen(t->path, "w");
    fputs("this is a text file, not a database, long enough to have a header ..........\n", f);
    fclose(f);
    assert_int_equal(gqe_runlog_open(&db, t->path), GQE_ERR_DB);
    assert_null(db);
    assert_non_null(strstr(gqe_last_error(), t->path));
    assert_non_null(strstr(gqe_last_error(), "not an SQLite database"));
    /* A directory, and a missing directory. */
    assert_int_equal(gqe_runlog_open(&db, t->dir), GQE_ERR_DB);
    assert_non_null(strstr(gqe_last_error(), t->dir));
    assert_int_equal(gqe_runlog_open(&db, "/nonexistent_gqe_dir/runs.db"), GQE_ERR_DB);
    assert_non_null(strstr(gqe_last_error(), "/nonexistent_gqe_dir/runs.db"));

    /* A read-only database file. Root ignores file modes, so the check runs
     * in a child that gives up root first. */
    unlink(t->path);
    CHECK_OK(gqe_runlog_open(&db, t->path));
    gqe_runlog_close(db);
    chmod(t->dir, 0755);
    chmod(t->path, 0444);
    pid_t pid = fork();
    if (pid == 0) {
        if (getuid() == 0 && setuid(65534) != 0) _exit(3);
        gqe_runlog *ro = NULL;
        gqe_status s = gqe_runlog_open(&ro, t->path);
        if (s != GQE_ERR_DB || ro) _exit(1);
        if (!strstr(gqe_last_error(), t->path) || !strstr(gqe_last_error(), "read-only")) {
            fprintf(stderr, "message: %s\n", gqe_last_error());
            _exit(2);
        }
        _exit(0);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    chmod(t->path, 0644);
}

static void test_mark_crashed(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp;
    CHECK_OK(gqe_runlog_experiment(db, "crash", &exp));
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);   /* reaped: the pid no longer exists */
    int64_t r_dead = begin(db, exp, "dead", 0, NULL, NULL, "hostA", dead);
    int64_t r_alive = begin(db, exp, "alive", 0, NULL, NULL, "hostA", getpid());
    int64_t r_stale = begin(db, exp, "stale", 0, NULL, NULL, "hostB", 12345);
    int64_t r_fresh = begin(db, exp, "fresh", 0, NULL, NULL, "hostB", 12346);
    int64_t r_done = begin(db, exp, "done", 0, NULL, NULL, "hostA", dead);
    CHECK_OK(gqe_runlog_run_end(db, r_done, "finished", NULL));
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE runs SET heartbeat = heartbeat - 1000 WHERE id = %lld", (long long)r_stale);
    CHECK_OK(gqe_runlog_exec(db, sql));

    int64_t n = -1;
    CHECK_OK(gqe_runlog_mark_crashed(db, "hostA", 100, &n));
    assert_int_equal(n, 2);
    assert_string_equal(q(db, "SELECT group_concat(name, ',') FROM (SELECT name FROM runs "
                              "WHERE status = 'crashed' ORDER BY id)").s, "dead,stale");
    snprintf(sql, sizeof sql, "SELECT status FROM runs WHERE id = %lld", (long long)r_alive);
    assert_string_equal(q(db, sql).s, "running");
    snprintf(sql, sizeof sql, "SELECT status FROM runs WHERE id = %lld", (long long)r_fresh);
    assert_string_equal(q(db, sql).s, "running");
    snprintf(sql, sizeof sql, "SELECT error FROM runs WHERE id = %lld", (long long)r_dead);
    assert_non_null(strstr(q(db, sql).s, "no longer exists"));
    CHECK_OK(gqe_runlog_mark_crashed(db, "hostA", 100, &n));
    assert_int_equal(n, 0);
    gqe_runlog_close(db);
}

static void test_failed_flush_keeps_buffer(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp, run;
    CHECK_OK(gqe_runlog_experiment(db, "lock", &exp));
    run = begin(db, exp, "r", 0, NULL, NULL, NULL, 0);
    for (int s = 0; s < 30; s++) CHECK_OK(gqe_runlog_metric(db, run, s, "train/loss", s));

    /* Another connection holds the write lock; our writes give up quickly. */
    sqlite3 *other;
    assert_int_equal(sqlite3_open(t->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    gqe_runlog_set_timeout(db, 0.05);
    assert_int_equal(gqe_runlog_flush(db), GQE_ERR_DB);
    assert_non_null(strstr(gqe_last_error(), "write lock"));
    assert_non_null(strstr(gqe_last_error(), t->path));
    assert_int_equal(gqe_runlog_pending(db), 30);
    for (int s = 30; s < 40; s++) CHECK_OK(gqe_runlog_metric(db, run, s, "train/loss", s));
    assert_int_equal(gqe_runlog_flush(db), GQE_ERR_DB);

    /* The lock goes away; the next flush writes everything, once. */
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    CHECK_OK(gqe_runlog_flush(db));
    assert_int_equal(gqe_runlog_pending(db), 0);
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics"), 40);
    assert_int_equal(q_int(db, "SELECT count FROM metric_summary"), 40);
    assert_int_equal(q_int(db, "SELECT step FROM runs"), 39);
    CHECK_OK(gqe_runlog_run_end(db, run, "finished", NULL));
    assert_string_equal(q(db, "PRAGMA integrity_check").s, "ok");
    gqe_runlog_close(db);
}

/* Claiming a stopped run: atomic, refused for a running or finished one
 * (naming the holder), undone by unclaim with the old status and reason. */
static void test_claim_run(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp;
    CHECK_OK(gqe_runlog_experiment(db, "claim", &exp));
    int64_t r = begin(db, exp, "r", 0, NULL, NULL, "hostA", 4242);
    assert_int_equal(q(db, "SELECT length(uid) FROM runs").i, 16);
    gqe_run_prev prev;
    assert_int_equal(gqe_runlog_run_claim(db, r, &prev), GQE_ERR_ARG);
    assert_non_null(strstr(gqe_last_error(), "held by process 4242 on hostA"));
    CHECK_OK(gqe_runlog_run_end(db, r, "killed", "SIGINT at step 3"));
    CHECK_OK(gqe_runlog_run_claim(db, r, &prev));
    assert_string_equal(prev.status, "killed");
    assert_string_equal(prev.error, "SIGINT at step 3");
    assert_string_equal(q(db, "SELECT status FROM runs").s, "running");
    gqe_run_prev again;
    assert_int_equal(gqe_runlog_run_claim(db, r, &again), GQE_ERR_ARG);
    CHECK_OK(gqe_runlog_run_unclaim(db, r, &prev));
    assert_string_equal(q(db, "SELECT status || '|' || error FROM runs").s, "killed|SIGINT at step 3");
    gqe_run_prev_free(&prev);
    assert_int_equal(gqe_runlog_run_claim(db, 999, &prev), GQE_ERR_ARG);
    gqe_runlog_close(db);
    gqe_runlog *mem;
    assert_int_equal(gqe_runlog_open(&mem, ":memory:"), GQE_ERR_ARG);
    assert_null(mem);
}

static void collect(void *ud, const char *path) { strcat((char *)ud, path); strcat((char *)ud, ";"); }

/* Retention: rows beyond the newest `keep` go in the same transaction and
 * their paths are reported; a path still named by a kept row is not. */
static void test_checkpoint_retention(void **state) {
    tmpdb *t = *state;
    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, t->path));
    int64_t exp;
    CHECK_OK(gqe_runlog_experiment(db, "keep", &exp));
    int64_t r = begin(db, exp, "r", 0, NULL, NULL, NULL, 0);
    char pruned[256] = "";
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 2, "s2", 2, collect, pruned));
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 4, "s4", 2, collect, pruned));
    assert_string_equal(pruned, "");
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 6, "s6", 2, collect, pruned));
    assert_string_equal(pruned, "s2;");
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 6, "s6", 2, collect, pruned));   /* rewritten: one row */
    assert_string_equal(pruned, "s2;");
    assert_int_equal(q(db, "SELECT count(*) FROM checkpoints").i, 2);
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 8, "s8", 3, collect, pruned));
    assert_string_equal(pruned, "s2;");
    CHECK_OK(gqe_runlog_checkpoint_keep(db, r, 10, "s10", 1, collect, pruned));
    assert_string_equal(pruned, "s2;s8;s6;s4;");
    assert_string_equal(q(db, "SELECT group_concat(step) FROM checkpoints").s, "10");
    assert_int_equal(gqe_runlog_checkpoint_keep(db, r, 9, "s9", -1, NULL, NULL), GQE_ERR_ARG);
    gqe_runlog_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saved_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_crashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_flush_keeps_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_retention, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
