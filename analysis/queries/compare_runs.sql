-- The counted runs of :experiment (see counted_runs) side by side, best
-- validation loss first, with the params the experiment varied.
SELECT run_id, run, status, varied, best_val_loss, final_val_loss, final_train_loss,
       tokens_per_s, round(wall_s, 1) AS wall_s, step
FROM run_overview
WHERE experiment = :experiment AND counted
ORDER BY best_val_loss IS NULL, best_val_loss, run_id;
