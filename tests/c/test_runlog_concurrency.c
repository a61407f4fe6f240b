/* Several processes write one run log at once: 4 writers, released together
 * onto a database none of them has created yet, each log two runs and flush
 * every 10 steps while a fifth process reads the views. Every write must land
 * exactly once and no process may see an error (no "database is locked"). */
#include "testutil.h"
#include "runlog.h"
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

enum { WRITERS = 4, RUNS = 2, STEPS = 300, FLUSH_EVERY = 10, EXPERTS = 4 };

static char dir[64], path[128];

/* Child body: exit status 0 on success, otherwise prints the reason. */
static int writer(int w) {
    gqe_runlog *db;
    int64_t exp, run;
#define TRY(expr) do { if ((expr) != GQE_OK) { \
        fprintf(stderr, "writer %d: %s: %s\n", w, #expr, gqe_last_error()); return 1; } } while (0)
    TRY(gqe_runlog_open(&db, path));
    TRY(gqe_runlog_experiment(db, "concurrent", &exp));
    for (int r = 0; r < RUNS; r++) {
        char name[32], wv[8], rv[8];
        snprintf(name, sizeof name, "w%d_r%d", w, r);
        snprintf(wv, sizeof wv, "%d", w); snprintf(rv, sizeof rv, "%d", r);
        const char *keys[] = {"writer", "repeat"}, *vals[] = {wv, rv};
        gqe_run_info info = {.experiment_id = exp, .name = name, .nparams = 2, .param_keys = keys,
                             .param_values = vals, .git_dirty = -1, .seed = r};
        TRY(gqe_runlog_run_begin(db, &info, &run));
        for (int s = 0; s < STEPS; s++) {
            TRY(gqe_runlog_metric(db, run, s, "train/loss", 10.0 / (s + 1)));
            TRY(gqe_runlog_metric(db, run, s, "perf/tokens", 64.0 * (s + 1)));
            if ((s + 1) % FLUSH_EVERY == 0) {
                for (int e = 0; e < EXPERTS; e++)
                    TRY(gqe_runlog_head_usage(db, run, s, 0, 0, e, 16, 0.25, 0.25));
                TRY(gqe_runlog_flush(db));
            }
        }
        TRY(gqe_runlog_eval(db, run, STEPS - 1, "val", "loss", 1.0 + w + 0.1 * r));
        TRY(gqe_runlog_run_end(db, run, "finished", NULL));
    }
    gqe_runlog_close(db);
    return 0;
}

static int count_rows(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    ++*(int *)ud;
    return 0;
}

/* Reads the views while the writers write, until every run has finished. */
static int reader(void) {
    gqe_runlog *db = NULL;
    /* The writers create the file; wait until it has a schema. */
    for (int i = 0; i < 2000; i++) {
        if (access(path, F_OK) == 0 && gqe_runlog_open(&db, path) == GQE_OK) break;
        usleep(2000);
    }
    if (!db) { fprintf(stderr, "reader: %s\n", gqe_last_error()); return 1; }
    for (int i = 0; i < 100000; i++) {
        int rows = 0;
        if (gqe_runlog_query(db, "SELECT * FROM run_overview", 0, NULL, NULL, count_rows, &rows) != GQE_OK ||
            gqe_runlog_query(db, "SELECT * FROM head_usage_latest", 0, NULL, NULL, count_rows, &rows) != GQE_OK) {
            fprintf(stderr, "reader: %s\n", gqe_last_error());
            return 1;
        }
        int done = 0;
        gqe_runlog_query(db, "SELECT 1 FROM runs WHERE status = 'finished'", 0, NULL, NULL, count_rows, &done);
        if (done == WRITERS * RUNS) break;
        usleep(5000);
    }
    gqe_runlog_close(db);
    return 0;
}

typedef struct { int64_t v; } one;
static int grab(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    ((one *)ud)->v = v[0].type == GQE_DB_INT ? v[0].i : -1;
    return 1;
}
static int64_t q_int(gqe_runlog *db, const char *sql) {
    one o = {-1};
    CHECK_OK(gqe_runlog_query(db, sql, 0, NULL, NULL, grab, &o));
    return o.v;
}

static int grab_text(void *ud, int ncol, const char *const *names, const gqe_db_value *v) {
    snprintf(ud, 16, "%s", v[0].type == GQE_DB_TEXT ? v[0].s : "?");
    return 1;
}

static void test_concurrent_writers(void **state) {
    strcpy(dir, "/tmp/gqe_runlog_conc_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/runs.db", dir);

    /* Children block on the pipe until the parent closes it: a common start. */
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[WRITERS + 1];
    for (int w = 0; w <= WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {}
            _exit(w < WRITERS ? writer(w) : reader());
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int w = 0; w <= WRITERS; w++) {
        int st = -1;
        assert_int_equal(waitpid(pids[w], &st, 0), pids[w]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("process %d failed (status %d)", w, st);
    }

    gqe_runlog *db;
    CHECK_OK(gqe_runlog_open(&db, path));
    const int64_t nruns = WRITERS * RUNS;
    assert_int_equal(q_int(db, "SELECT count(*) FROM experiments"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM runs"), nruns);
    assert_int_equal(q_int(db, "SELECT count(*) FROM runs WHERE status = 'finished'"), nruns);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE step = %d", STEPS - 1);
    assert_int_equal(q_int(db, sql), nruns);
    assert_int_equal(q_int(db, "SELECT count(*) FROM params"), nruns * 2);
    /* train/loss + perf/tokens every step, val/loss once. */
    assert_int_equal(q_int(db, "SELECT count(*) FROM metrics"), nruns * (2 * STEPS + 1));
    assert_int_equal(q_int(db, "SELECT sum(count) FROM metric_summary"), nruns * (2 * STEPS + 1));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM metric_summary WHERE key = 'train/loss' "
             "AND count = %d AND last_step = %d AND max = 10", STEPS, STEPS - 1);
    assert_int_equal(q_int(db, sql), nruns);
    assert_int_equal(q_int(db, "SELECT count(*) FROM head_usage"), nruns * (STEPS / FLUSH_EVERY) * EXPERTS);
    assert_int_equal(q_int(db, "SELECT count(*) FROM evals"), nruns);
    assert_int_equal(q_int(db, "SELECT count(*) FROM run_overview WHERE best_val_loss IS NOT NULL"), nruns);
    assert_int_equal(q_int(db, "SELECT count(*) FROM experiment_varied_keys"), 2);
    char text[16] = "";
    CHECK_OK(gqe_runlog_query(db, "PRAGMA integrity_check", 0, NULL, NULL, grab_text, text));
    assert_string_equal(text, "ok");
    gqe_runlog_close(db);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_concurrent_writers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
