-- The counted run (see counted_runs) with the lowest best validation loss in
-- every experiment.
SELECT experiment, run_id, run, varied, best_val_loss, final_train_loss, n_finished
FROM (SELECT o.*,
             row_number() OVER (PARTITION BY experiment_id ORDER BY best_val_loss) AS rank,
             count(*) OVER (PARTITION BY experiment_id) AS n_finished
      FROM run_overview o
      WHERE counted AND best_val_loss IS NOT NULL)
WHERE rank = 1
ORDER BY experiment;
