-- Every run with its status and how long ago it last reported, newest first.
SELECT r.id AS run_id, e.name AS experiment, r.name AS run, r.status, r.step,
       r.host, r.pid, r.device,
       round((julianday('now') - 2440587.5) * 86400.0 - r.heartbeat, 1) AS heartbeat_age_s,
       r.error
FROM runs r JOIN experiments e ON e.id = r.experiment_id
ORDER BY r.id DESC;
