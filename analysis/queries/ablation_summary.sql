-- For each param :experiment varied, every value tried with the mean, min and
-- spread of the best validation loss over its counted runs (see counted_runs;
-- seeds pooled).
SELECT a.key, a.value, count(*) AS runs,
       avg(a.best_val_loss) AS mean_best_val_loss,
       min(a.best_val_loss) AS min_best_val_loss,
       max(a.best_val_loss) - min(a.best_val_loss) AS spread,
       avg(a.tokens_per_s) AS mean_tokens_per_s
FROM ablation a
JOIN experiment_varied_keys v ON v.experiment_id = a.experiment_id AND v.key = a.key
WHERE a.experiment = :experiment AND a.key <> 'seed'
GROUP BY a.key, a.value
ORDER BY a.key, min(a.num), a.value;
