-- Training and validation loss of run :run (a run id), by step.
SELECT step, key, value, wall
FROM metrics
WHERE run_id = :run AND key IN ('train/loss', 'val/loss')
ORDER BY key, step;
