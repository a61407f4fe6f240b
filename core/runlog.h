/* The run log: one SQLite database (WAL) that every run writes to and every
 * report reads from. Schema and views: analysis/schema.sql, analysis/views.sql
 * (compiled in). Several processes may log into one file at once.
 *
 * Metrics, head usage and evals are buffered in memory and written by
 * gqe_runlog_flush in one transaction; a failed flush keeps the buffer, so a
 * later successful flush loses nothing. Runs, checkpoints and bench rows are
 * written at once. A handle is for one thread; fork() before opening. */
#ifndef GQE_RUNLOG_H
#define GQE_RUNLOG_H
#include <stdint.h>
#include "error.h"

typedef struct gqe_runlog gqe_runlog;

/* Opens (creating and migrating as needed) the database at path. Fails with
 * a message naming the path for a read-only file, a directory, or a file that
 * is not an SQLite database. */
gqe_status gqe_runlog_open(gqe_runlog **db, const char *path);
/* Flushes what is buffered (best effort), then closes. NULL is a no-op. */
void gqe_runlog_close(gqe_runlog *db);
/* How long a write waits for other writers before failing (default 60 s). */
void gqe_runlog_set_timeout(gqe_runlog *db, double seconds);
/* The schema version this build writes (PRAGMA user_version after open). */
int gqe_runlog_schema_version(void);

/* The id of the experiment called name, created if new. */
gqe_status gqe_runlog_experiment(gqe_runlog *db, const char *name, int64_t *id);
/* The newest finished run of the experiment with this name and config hash
 * (any hash when config_hash is NULL), or *run_id = 0 if there is none. */
gqe_status gqe_runlog_find_finished(gqe_runlog *db, int64_t experiment_id, const char *run_name,
                                    const char *config_hash, int64_t *run_id);

typedef struct gqe_run_info {
    int64_t experiment_id;
    const char *name;
    const char *config_json;        /* NULL or valid JSON */
    const char *config_hash;
    int nparams;                    /* flattened config: "model.k" -> "2" */
    const char *const *param_keys;
    const char *const *param_values;
    const char *git_commit;
    int git_dirty;                  /* 0, 1, or -1 for unknown */
    const char *host;               /* NULL: this machine's hostname */
    int64_t pid;                    /* <= 0: this process */
    const char *device;
    int64_t seed;
} gqe_run_info;

/* Inserts the run as 'running' (started = heartbeat = now) with its params.
 * Every flush on this handle refreshes the heartbeat of its running runs. */
gqe_status gqe_runlog_run_begin(gqe_runlog *db, const gqe_run_info *info, int64_t *run_id);
/* Flushes, then sets status (finished|failed|killed|diverged|crashed), the end
 * time and the error message (NULL for none). A failed flush blocks only
 * "finished": a stopped run gets its status, and its rows stay buffered. */
gqe_status gqe_runlog_run_end(gqe_runlog *db, int64_t run_id, const char *status, const char *error);

/* What a claimed run was before its claim (strings malloc'd; ended < 0: NULL). */
typedef struct gqe_run_prev { char *status, *error; double ended; } gqe_run_prev;
void gqe_run_prev_free(gqe_run_prev *p);
/* Claims a stopped run (killed, crashed, failed, diverged) for this process,
 * atomically: in one write transaction it becomes running here (host, pid,
 * heartbeat now, no end, no error) and *prev receives what it was. A running
 * or queued run is refused with a message naming the process and host that
 * hold it; a finished one too. Flushes on this handle beat for it. */
gqe_status gqe_runlog_run_claim(gqe_runlog *db, int64_t run_id, gqe_run_prev *prev);
/* Puts a claimed run back as it was (a resume that failed before training). */
gqe_status gqe_runlog_run_unclaim(gqe_runlog *db, int64_t run_id, const gqe_run_prev *prev);

/* Buffered. A NaN value is stored as NULL. Logging a (run, key, step) twice
 * keeps the last value. */
gqe_status gqe_runlog_metric(gqe_runlog *db, int64_t run_id, int64_t step, const char *key, double value);
gqe_status gqe_runlog_head_usage(gqe_runlog *db, int64_t run_id, int64_t step, int layer, int grp,
                                 int expert, int64_t tokens, double frac, double mean_prob);
/* Buffered; also recorded as metric "<split>/<key>" (so val/loss feeds the views). */
gqe_status gqe_runlog_eval(gqe_runlog *db, int64_t run_id, int64_t step, const char *split,
                           const char *key, double value);
/* Written at once. */
gqe_status gqe_runlog_checkpoint(gqe_runlog *db, int64_t run_id, int64_t step, const char *path);
/* The same, and in the same transaction deletes the run's checkpoint rows
 * beyond the newest `keep` (by step; 0 keeps all). Each deleted path that no
 * remaining row names goes to pruned(ud, path), called inside the
 * transaction: collect the paths there, remove the files after the call
 * returns GQE_OK (a callback may run again if the write is retried). */
typedef void (*gqe_runlog_path_fn)(void *ud, const char *path);
gqe_status gqe_runlog_checkpoint_keep(gqe_runlog *db, int64_t run_id, int64_t step, const char *path,
                                      int64_t keep, gqe_runlog_path_fn pruned, void *ud);

/* Writes the buffer in one transaction, retrying while other writers hold the
 * lock. On failure returns GQE_ERR_DB and keeps the buffer. */
gqe_status gqe_runlog_flush(gqe_runlog *db);
/* Rows waiting in the buffer (metrics + head usage + evals). */
int64_t gqe_runlog_pending(const gqe_runlog *db);

/* Marks 'running' runs crashed: on this_host those whose pid no longer
 * exists; on other hosts those whose heartbeat is older than stale_seconds
 * (skipped when stale_seconds <= 0). *changed gets the count (may be NULL). */
gqe_status gqe_runlog_mark_crashed(gqe_runlog *db, const char *this_host, double stale_seconds,
                                   int64_t *changed);

/* One benchmark measurement; ratio = value / baseline when baseline != 0. */
gqe_status gqe_runlog_bench(gqe_runlog *db, const char *name, const char *key, double value,
                            const char *unit, double baseline, const char *device,
                            const char *git_commit, const char *notes);

/* Generic access for the bindings and tools. */
typedef enum gqe_db_type { GQE_DB_NULL, GQE_DB_INT, GQE_DB_REAL, GQE_DB_TEXT, GQE_DB_BLOB } gqe_db_type;
typedef struct gqe_db_value {
    gqe_db_type type;
    int64_t i;
    double d;
    const char *s;      /* TEXT (NUL-terminated) or BLOB bytes */
    int64_t len;        /* bytes of s */
} gqe_db_value;

/* Called once per row; the values live until the callback returns. A non-zero
 * return stops the query (gqe_runlog_query then returns GQE_OK). */
typedef int (*gqe_db_row_fn)(void *ud, int ncol, const char *const *names, const gqe_db_value *vals);

/* Runs one SQL statement. binds[i] binds parameter i+1, or, when names is
 * not NULL, the parameter called names[i] (":experiment", or "experiment"
 * which matches :experiment, @experiment and $experiment). */
gqe_status gqe_runlog_query(gqe_runlog *db, const char *sql, int nbinds, const gqe_db_value *binds,
                            const char *const *names, gqe_db_row_fn fn, void *ud);
/* Runs SQL text without results (several statements allowed). */
gqe_status gqe_runlog_exec(gqe_runlog *db, const char *sql);

/* The text of a saved query (analysis/queries/<name>.sql), or NULL. */
const char *gqe_runlog_saved_query(const char *name);

#endif
