-- The latest measurement of every benchmark (name, key, device).
SELECT name, key, value, unit, baseline, ratio, device, git_commit, notes,
       datetime(created, 'unixepoch') AS created
FROM (SELECT b.*, row_number() OVER (PARTITION BY name, key, device ORDER BY created DESC, id DESC) AS rank
      FROM bench b)
WHERE rank = 1
ORDER BY name, key, device;
