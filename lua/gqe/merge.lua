-- gqe merge OUT.db IN.db...: folds run logs written apart (one per node or
-- Slurm array task, each on local disk) into one. Each input is attached to
-- the output and copied in one transaction by SQLite itself:
--   experiments by name;
--   runs with new ids, every table with a run_id column following them;
--   rows are one run when they share experiment name + run name + config
--     hash + seed, or (both logs having run uids) a uid; of the rows of one
--     run the finished one wins, then the one with the most steps, and on a
--     tie the row already in OUT stays (so merging twice changes nothing);
--   tables without run_id (bench) get the rows they do not hold yet.
-- Inputs of a newer schema than this build's are refused before any write.
local gqe = require "gqe"

local merge = {}

local fail = require "gqe.fail"
local function quote(name) return '"' .. name:gsub('"', '""') .. '"' end

local function columns(db, schema, tbl)
  local cols = {}
  for _, c in ipairs(db:query("SELECT name, pk, type FROM pragma_table_info(?, ?)", tbl, schema)) do
    cols[#cols + 1] = c
    cols[c.name] = c
  end
  return cols
end

local function tables(db, schema)
  local t = {}
  for _, r in ipairs(db:query(string.format(
      "SELECT name FROM %s.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%%' ORDER BY name", schema))) do
    t[#t + 1] = r.name
  end
  return t
end

-- Columns (quoted) of main.tbl that src.tbl also has, less those in
-- `skip`: a column an older input lacks keeps its default.
local function shared_columns(db, tbl, skip)
  local dst, src = columns(db, "main", tbl), columns(db, "src", tbl)
  local out = {}
  for _, c in ipairs(dst) do
    if src[c.name] and not skip[c.name] then out[#out + 1] = quote(c.name) end
  end
  return out
end

-- The rowid alias of a table (an INTEGER PRIMARY KEY column), or nil.
local function rowid_column(db, schema, tbl)
  local pk = {}
  for _, c in ipairs(columns(db, schema, tbl)) do if c.pk > 0 then pk[#pk + 1] = c end end
  if #pk == 1 and pk[1].type:upper() == "INTEGER" then return pk[1].name end
  return nil
end

-- What makes two rows one run (alias r for runs, e for experiments):
-- experiment, run name, config hash and seed.
local RUN_KEY = "e.name || char(31) || r.name || char(31) || coalesce(r.config_hash, '') || char(31) || coalesce(r.seed, '')"

-- Best row per identity of schema s into temp table t: finished first, then
-- most steps, then (within one file) the latest row.
local function best_runs(s, t, ident)
  return string.format([[
CREATE TEMP TABLE %s AS
SELECT id, ident, fin, step FROM (
  SELECT r.id, %s AS ident, (r.status = 'finished') AS fin, r.step,
         row_number() OVER (PARTITION BY %s ORDER BY r.status = 'finished' DESC, r.step DESC, r.id DESC) AS rk
  FROM %s.runs r JOIN %s.experiments e ON e.id = r.experiment_id)
WHERE rk = 1;
CREATE INDEX %s_ident ON %s(ident);
]], t, ident, ident, s, s, t, t)
end

-- Checks the attached input: a gqe run log of this build's schema or older.
local function check_input(db, path)
  local ok, v = pcall(db.query, db, "PRAGMA src.user_version")
  if not ok then fail("merge: %s is not an SQLite database", path) end
  v = v[1] and v[1].user_version or 0
  if v > gqe.db.schema_version then
    fail("merge: %s has schema version %d, newer than this gqe build's (%d); merge it with a newer gqe",
         path, v, gqe.db.schema_version)
  end
  local have = {}
  for _, name in ipairs(tables(db, "src")) do have[name] = true end
  if v == 0 or not have.runs or not have.experiments then
    fail("merge: %s is not a gqe run log (no runs and experiments tables)", path)
  end
  local files = {}
  for _, r in ipairs(db:query("SELECT name, file FROM pragma_database_list")) do files[r.name] = r.file end
  if files.main ~= "" and files.main == files.src then fail("merge: %s is the output itself", path) end
end

-- Copies the attached input "src" into "main"; returns the counts.
local function merge_attached(db)
  local dst_cols, src_cols = columns(db, "main", "runs"), columns(db, "src", "runs")
  local stats = {}
  db:exec("DROP TABLE IF EXISTS temp.merge_src; DROP TABLE IF EXISTS temp.merge_dst; DROP TABLE IF EXISTS temp.merge_map; " ..
          "DROP TABLE IF EXISTS temp.merge_uid;")
  -- Where both logs carry run uids, an input row whose uid the output holds
  -- is that output run, whatever its name or config hash says now.
  local src_key = RUN_KEY
  if dst_cols.uid and src_cols.uid then
    db:exec("CREATE TEMP TABLE merge_uid AS SELECT r.uid, " .. RUN_KEY .. " AS ident FROM main.runs r " ..
            "JOIN main.experiments e ON e.id = r.experiment_id WHERE r.uid IS NOT NULL; " ..
            "CREATE INDEX temp.merge_uid_uid ON merge_uid(uid);")
    src_key = "coalesce((SELECT u.ident FROM temp.merge_uid u WHERE u.uid = r.uid), " .. RUN_KEY .. ")"
  end
  db:exec(best_runs("src", "merge_src", src_key) .. best_runs("main", "merge_dst", RUN_KEY))
  -- merge_map: input run id -> output id, for runs new here or better than
  -- the output's row (which is replaced in place, keeping its id).
  db:exec([[
CREATE TEMP TABLE merge_map AS
SELECT s.id AS src_id, d.id IS NOT NULL AS replacing, s.ident,
       coalesce(d.id, (SELECT coalesce(max(id), 0) FROM main.runs)
                      + row_number() OVER (PARTITION BY d.id IS NULL ORDER BY s.id)) AS dst_id
  FROM merge_src s LEFT JOIN merge_dst d ON d.ident = s.ident
 WHERE d.id IS NULL OR s.fin > d.fin OR (s.fin = d.fin AND s.step > d.step);
CREATE UNIQUE INDEX merge_map_src ON merge_map(src_id);
]])
  stats.replaced = db:query("SELECT count(*) AS n FROM temp.merge_map WHERE replacing")[1].n
  stats.runs_in = db:query("SELECT count(*) AS n FROM src.runs")[1].n
  stats.added = db:query("SELECT count(*) AS n FROM temp.merge_map")[1].n - stats.replaced
  stats.skipped = stats.runs_in - stats.added - stats.replaced

  local before = db:query("SELECT count(*) AS n FROM main.experiments")[1].n
  db:exec([[
INSERT INTO main.experiments(name, created)
SELECT name, created FROM src.experiments WHERE name NOT IN (SELECT name FROM main.experiments);
UPDATE main.experiments SET created = min(created, (SELECT s.created FROM src.experiments s WHERE s.name = experiments.name))
 WHERE name IN (SELECT name FROM src.experiments);
]])
  stats.experiments = db:query("SELECT count(*) AS n FROM main.experiments")[1].n - before

  -- Every output row of a replaced run goes (children by ON DELETE CASCADE).
  db:exec(string.format([[
DELETE FROM main.runs WHERE id IN (
  SELECT r.id FROM main.runs r JOIN main.experiments e ON e.id = r.experiment_id
   WHERE %s IN (SELECT ident FROM temp.merge_map WHERE replacing));
]], RUN_KEY))
  local cols = shared_columns(db, "runs", { id = true, experiment_id = true })
  local values = "r." .. table.concat(cols, ", r.")
  if dst_cols.uid and not src_cols.uid then   -- runs of an older log get their uid here
    cols[#cols + 1] = "uid"
    values = values .. ", lower(hex(randomblob(8)))"
  end
  db:exec(string.format([[
INSERT INTO main.runs(id, experiment_id, %s)
SELECT m.dst_id, (SELECT d.id FROM main.experiments d WHERE d.name = e.name), %s
  FROM src.runs r JOIN temp.merge_map m ON m.src_id = r.id JOIN src.experiments e ON e.id = r.experiment_id;
]], table.concat(cols, ", "), values))

  local src_has = {}
  for _, name in ipairs(tables(db, "src")) do src_has[name] = true end
  for _, tbl in ipairs(tables(db, "main")) do
    local dcols = columns(db, "main", tbl)
    if tbl ~= "runs" and tbl ~= "experiments" and src_has[tbl] then
      local rowid = rowid_column(db, "main", tbl)
      local skip = { run_id = true }
      if rowid then skip[rowid] = true end
      local shared = shared_columns(db, tbl, skip)
      if dcols.run_id then
        db:exec(string.format("INSERT INTO main.%s(run_id%s) SELECT m.dst_id%s FROM src.%s t JOIN temp.merge_map m ON m.src_id = t.run_id;",
          quote(tbl), #shared > 0 and ", " .. table.concat(shared, ", ") or "",
          #shared > 0 and ", t." .. table.concat(shared, ", t.") or "", quote(tbl)))
      elseif #shared > 0 then
        local same = {}
        for i, c in ipairs(shared) do same[i] = string.format("d.%s IS t.%s", c, c) end
        db:exec(string.format("INSERT INTO main.%s(%s) SELECT t.%s FROM src.%s t WHERE NOT EXISTS (SELECT 1 FROM main.%s d WHERE %s);",
          quote(tbl), table.concat(shared, ", "), table.concat(shared, ", t."), quote(tbl), quote(tbl),
          table.concat(same, " AND ")))
      end
    end
  end
  db:exec("DROP TABLE temp.merge_src; DROP TABLE temp.merge_dst; DROP TABLE temp.merge_map; DROP TABLE IF EXISTS temp.merge_uid;")
  return stats
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Merges the run logs at in_paths into out_path (created if missing).
-- report(path, stats) is called after each input. Returns the totals.
function merge.run(out_path, in_paths, report)
  if #in_paths == 0 then fail("usage: gqe merge OUT.db IN.db... (no input given)") end
  for _, p in ipairs(in_paths) do
    if not exists(p) then fail("merge: input %s does not exist", p) end
    if p == out_path then fail("merge: input %s is the output itself", p) end
  end
  local db = gqe.db.open(out_path)
  local ok, err = pcall(function()
    for _, p in ipairs(in_paths) do
      local attached = pcall(db.query, db, "ATTACH DATABASE ? AS src", p)
      if not attached then fail("merge: %s is not an SQLite database", p) end
      local ok2, res = pcall(function()
        check_input(db, p)
        db:exec("BEGIN IMMEDIATE")
        local ok3, stats = pcall(merge_attached, db)
        if not ok3 then
          pcall(db.exec, db, "ROLLBACK")
          fail("merge: %s: %s (nothing of it was written)", p, tostring(stats))
        end
        db:exec("COMMIT")
        return stats
      end)
      db:exec("DETACH DATABASE src")
      if not ok2 then error(res, 0) end
      if report then report(p, res) end
    end
    local ic = db:query("PRAGMA integrity_check")
    if #ic ~= 1 or ic[1].integrity_check ~= "ok" then
      fail("merge: %s failed PRAGMA integrity_check: %s", out_path, tostring(ic[1] and ic[1].integrity_check))
    end
    local fk = db:query("PRAGMA foreign_key_check")
    if #fk > 0 then fail("merge: %s has %d rows whose run or experiment is missing", out_path, #fk) end
    -- Fold the WAL into the file: the merged log is one file to copy.
    db:query("PRAGMA wal_checkpoint(TRUNCATE)")
  end)
  local totals = ok and db:query([[SELECT (SELECT count(*) FROM experiments) AS experiments,
    (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM runs WHERE status = 'finished') AS finished]])[1]
  db:close()
  if not ok then error(err, 0) end
  return totals
end

-- `gqe merge OUT.db IN.db...` (paths as parsed by the command line).
function merge.main(paths)
  local inputs = { table.unpack(paths, 2) }
  local totals = merge.run(paths[1], inputs, function(p, s)
    io.stdout:write(string.format("%s: %d runs: %d added, %d replaced a shorter or unfinished copy, %d skipped (as good a copy is there); %d new experiments\n",
                                  p, s.runs_in, s.added, s.replaced, s.skipped, s.experiments))
  end)
  io.stdout:write(string.format("%s: %d experiments, %d runs (%d finished); integrity ok\n",
                                paths[1], totals.experiments, totals.runs, totals.finished))
  return 0
end

return merge
