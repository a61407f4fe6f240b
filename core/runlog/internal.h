/* Private to core/runlog/: the handle, its write buffer and the helpers the
 * files share. */
#ifndef GQE_RUNLOG_INTERNAL_H
#define GQE_RUNLOG_INTERNAL_H
#include <sqlite3.h>
#include "runlog.h"

typedef struct rl_metric { int64_t run_id, step; int key; double value, wall; } rl_metric;
typedef struct rl_head {
    int64_t run_id, step, tokens;
    int layer, grp, expert;
    double frac, mean_prob;
} rl_head;
typedef struct rl_eval { int64_t run_id, step; int split, key, metric; double value, wall; } rl_eval;

/* Statements prepared on first use and kept for the handle's lifetime. */
enum {
    RL_ST_METRIC_INSERT, RL_ST_METRIC_UPDATE, RL_ST_SUMMARY, RL_ST_HEAD, RL_ST_EVAL,
    RL_ST_HEARTBEAT, RL_ST_COUNT
};

struct gqe_runlog {
    sqlite3 *db;
    char *path;
    double timeout_s;
    /* Interned metric/eval key strings: rows store an index, not a copy. */
    char **keys;
    int nkeys, capkeys, last_key;
    rl_metric *m; int64_t nm, capm;
    rl_head *h;   int64_t nh, caph;
    rl_eval *e;   int64_t ne, cape;
    /* Runs begun on this handle and not yet ended: every flush beats for them. */
    int64_t *active; int nactive, capactive;
    /* Run ids known to exist: a row for any other id is refused when logged,
     * so a bad id cannot poison the buffer and fail every later flush. */
    int64_t *known; int nknown, capknown;
    sqlite3_stmt *st[RL_ST_COUNT];
};

double rl_now(void);
/* GQE_ERR_DB with a message naming the database and, for the usual causes
 * (read-only, disk full, locked, not a database), what to do. */
gqe_status rl_fail(gqe_runlog *db, int rc, const char *what, const char *sqlite_msg);
/* The statement `which`, prepared from sql on first use. */
int rl_stmt(gqe_runlog *db, int which, const char *sql, sqlite3_stmt **out);
/* Runs body inside BEGIN IMMEDIATE ... COMMIT. While another writer holds the
 * lock it rolls back, waits with backoff and runs body again, for up to the
 * handle's timeout. body returns an SQLite code. */
typedef int (*rl_body_fn)(gqe_runlog *db, void *ud);
gqe_status rl_write(gqe_runlog *db, const char *what, rl_body_fn body, void *ud);
/* GQE_OK if run_id names a run (cached), else GQE_ERR_ARG naming it. */
gqe_status rl_check_run(gqe_runlog *db, int64_t run_id, const char *what);
/* Binds text or NULL. */
int rl_bind_text(sqlite3_stmt *st, int i, const char *s);
/* One step of a statement that returns no rows, reset afterwards. */
int rl_step_done(sqlite3_stmt *st);

#endif
