-- gqe run log, schema version 1. Applied once by core/runlog (migration 1),
-- inside one transaction; later changes are new migrations, never edits here.
-- Times are unix seconds (REAL). Integer keys everywhere; long-form tables so
-- any question is a WHERE/GROUP BY away.

CREATE TABLE experiments(
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);

CREATE TABLE runs(
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued','running','finished','failed','killed','diverged','crashed')),
    config        TEXT CHECK (config IS NULL OR json_valid(config)),
    config_hash   TEXT,
    git_commit    TEXT,
    git_dirty     INTEGER,
    host          TEXT,
    pid           INTEGER,
    device        TEXT,
    seed          INTEGER,
    started       REAL,
    ended         REAL,
    heartbeat     REAL,
    step          INTEGER NOT NULL DEFAULT 0,   -- highest step logged so far
    error         TEXT
);
CREATE INDEX runs_by_experiment ON runs(experiment_id, name);
CREATE INDEX runs_by_status ON runs(status);

-- The flattened config ("model.k" -> "2"); num holds the value when it parses
-- as a number so WHERE num > 1 and ORDER BY num work.
CREATE TABLE params(
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT,
    num    REAL,
    PRIMARY KEY(run_id, key)
) WITHOUT ROWID;
CREATE INDEX params_by_key ON params(key, value);

-- The bulk of the data. WITHOUT ROWID clusters rows by (run, key, step), so a
-- loss curve is one contiguous range scan at any table size. A step logged
-- twice keeps the last value. value is NULL for NaN (SQLite has no NaN).
CREATE TABLE metrics(
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    key    TEXT NOT NULL,
    value  REAL,
    wall   REAL,
    PRIMARY KEY(run_id, key, step)
) WITHOUT ROWID;

-- Kept on write, in the flush transaction: count is the number of metric
-- rows, last the value at last_step, min/max over every value written.
CREATE TABLE metric_summary(
    run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    last      REAL,
    last_step INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    count     INTEGER NOT NULL,
    PRIMARY KEY(run_id, key)
) WITHOUT ROWID;
CREATE INDEX metric_summary_by_key ON metric_summary(key);

-- Expert load per (layer, query group, expert): tokens routed, their share
-- of the group's routed tokens, and the mean router probability.
CREATE TABLE head_usage(
    run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step      INTEGER NOT NULL,
    layer     INTEGER NOT NULL,
    grp       INTEGER NOT NULL,
    expert    INTEGER NOT NULL,
    tokens    INTEGER,
    frac      REAL,
    mean_prob REAL,
    PRIMARY KEY(run_id, step, layer, grp, expert)
) WITHOUT ROWID;

-- Evaluation results; each is also recorded as metric "<split>/<key>".
CREATE TABLE evals(
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    split  TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY(run_id, split, key, step)
) WITHOUT ROWID;

CREATE TABLE checkpoints(
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    path    TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX checkpoints_by_run ON checkpoints(run_id, step);

-- Benchmarks: ratio = value / baseline, both measured in the same run.
CREATE TABLE bench(
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      REAL,
    unit       TEXT,
    baseline   REAL,
    ratio      REAL,
    device     TEXT,
    git_commit TEXT,
    created    REAL NOT NULL,
    notes      TEXT
);
CREATE INDEX bench_by_name ON bench(name, key, created);
