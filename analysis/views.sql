-- gqe run log views: each answers "compare these runs" in one SELECT.
-- Applied by core/runlog after the tables; every view is dropped first so the
-- file can be re-applied by a later migration when a view changes.
-- Metric names the views read: train/loss, val/loss (or eval split 'val',
-- key 'loss'), perf/tokens (cumulative tokens processed).

DROP VIEW IF EXISTS ablation;
DROP VIEW IF EXISTS counted_runs;
DROP VIEW IF EXISTS run_overview;
DROP VIEW IF EXISTS run_results;
DROP VIEW IF EXISTS experiment_varied_keys;
DROP VIEW IF EXISTS param_values;
DROP VIEW IF EXISTS head_usage_latest;

-- Which row counts for a run. A run is one distinct config of an experiment
-- (config_hash, which covers the seed; the name for rows logged without a
-- hash). Its counted row is its latest finished row. Rows that did not finish
-- (failed, killed, diverged, crashed, running) and finished rows superseded by
-- a later finished row of the same config are not counted. `gqe compare`,
-- `gqe report`, the `ablation` view and the README's recipes read this.
CREATE VIEW counted_runs AS
SELECT r.id AS run_id, r.experiment_id, e.name AS experiment, r.name AS run
FROM runs r
JOIN experiments e ON e.id = r.experiment_id
WHERE r.status = 'finished'
  AND r.id = (SELECT max(r2.id) FROM runs r2
               WHERE r2.experiment_id = r.experiment_id AND r2.status = 'finished'
                 AND coalesce(r2.config_hash, 'name:' || r2.name) = coalesce(r.config_hash, 'name:' || r.name));

-- params with jvalue: the value typed for JSON (2 not "2", 0.001 not "0.001",
-- true not "true").
CREATE VIEW param_values AS
SELECT run_id, key, value, num,
       CASE WHEN value IN ('true', 'false') THEN json(value)
            WHEN num IS NULL THEN value
            WHEN num = CAST(num AS INTEGER) AND abs(num) < 1e15 THEN CAST(num AS INTEGER)
            ELSE num END AS jvalue
FROM params;

-- Keys whose value differs between the counted runs of one experiment (or
-- that some of them lack): the knobs an experiment turned.
CREATE VIEW experiment_varied_keys AS
SELECT c.experiment_id, c.experiment, p.key,
       count(DISTINCT p.value) AS n_values
FROM params p
JOIN counted_runs c ON c.run_id = p.run_id
GROUP BY c.experiment_id, p.key
HAVING count(DISTINCT p.value) > 1
    OR count(*) < (SELECT count(*) FROM counted_runs c2 WHERE c2.experiment_id = c.experiment_id);

-- One row per run row with its headline numbers (no params; cheap to join);
-- counted is 1 for the rows counted_runs counts, 0 for the others.
CREATE VIEW run_results AS
SELECT r.id AS run_id, r.experiment_id, e.name AS experiment, r.name AS run, r.status,
       EXISTS (SELECT 1 FROM counted_runs c WHERE c.run_id = r.id) AS counted,
       vl.last AS final_val_loss, vl.min AS best_val_loss,
       tl.last AS final_train_loss, tl.min AS best_train_loss,
       tk.last AS tokens,
       coalesce(r.ended, r.heartbeat) - r.started AS wall_s,
       tk.last / nullif(coalesce(r.ended, r.heartbeat) - r.started, 0) AS tokens_per_s,
       r.step, r.seed, r.host, r.device, r.git_commit, r.git_dirty, r.config_hash,
       r.started, r.ended, r.error
FROM runs r
JOIN experiments e ON e.id = r.experiment_id
LEFT JOIN metric_summary vl ON vl.run_id = r.id AND vl.key = 'val/loss'
LEFT JOIN metric_summary tl ON tl.run_id = r.id AND tl.key = 'train/loss'
LEFT JOIN metric_summary tk ON tk.run_id = r.id AND tk.key = 'perf/tokens';

-- run_results plus the run's params as JSON: `varied` holds only the keys its
-- experiment varies (what tells runs apart), `params` all of them.
CREATE VIEW run_overview AS
SELECT o.run_id, o.experiment, o.run, o.status, o.counted,
       (SELECT json_group_object(p.key, p.jvalue) FROM param_values p
         WHERE p.run_id = o.run_id
           AND p.key IN (SELECT v.key FROM experiment_varied_keys v
                          WHERE v.experiment_id = o.experiment_id)) AS varied,
       (SELECT json_group_object(p.key, p.jvalue) FROM param_values p
         WHERE p.run_id = o.run_id) AS params,
       o.final_val_loss, o.best_val_loss, o.final_train_loss, o.tokens, o.tokens_per_s,
       o.wall_s, o.step, o.seed, o.started, o.ended, o.experiment_id
FROM run_results o;

-- One row per (counted run, param): SELECT value, avg(best_val_loss) FROM
-- ablation WHERE experiment = 'x' AND key = 'model.k' GROUP BY value.
CREATE VIEW ablation AS
SELECT o.run_id, o.experiment, o.run, o.status, p.key, p.value, p.num,
       o.final_val_loss, o.best_val_loss, o.final_train_loss, o.tokens_per_s,
       o.seed, o.experiment_id
FROM run_results o
JOIN params p ON p.run_id = o.run_id
WHERE o.counted;

-- head_usage at each run's latest logged step.
CREATE VIEW head_usage_latest AS
SELECT h.run_id, e.name AS experiment, r.name AS run, h.step, h.layer, h.grp, h.expert,
       h.tokens, h.frac, h.mean_prob
FROM head_usage h
JOIN runs r ON r.id = h.run_id
JOIN experiments e ON e.id = r.experiment_id
WHERE h.step = (SELECT max(h2.step) FROM head_usage h2 WHERE h2.run_id = h.run_id);
