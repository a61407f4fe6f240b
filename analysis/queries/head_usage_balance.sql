-- Load balance of run :run at its latest step, per layer and query group:
-- the busiest expert's share against a uniform share (1.0 = perfectly even),
-- experts that received no tokens, and the normalised routing entropy.
SELECT layer, grp, count(*) AS experts, sum(tokens) AS tokens,
       max(frac) * count(*) AS max_over_uniform,
       min(frac) * count(*) AS min_over_uniform,
       sum(tokens = 0) AS dead_experts,
       -sum(CASE WHEN frac > 0 THEN frac * ln(frac) ELSE 0 END) / nullif(ln(count(*)), 0) AS entropy
FROM head_usage_latest
WHERE run_id = :run
GROUP BY layer, grp
ORDER BY layer, grp;
