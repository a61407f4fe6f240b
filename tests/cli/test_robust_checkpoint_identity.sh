#!/usr/bin/env bash
# Checkpoints belong to one run: two databases' run 1 never share a path; a
# resume checks each checkpoint's checksum, run uid, config hash and step,
# falls back to the newest valid one with a warning, and when none is valid
# leaves the run's status and reason as they were. A run held by a live
# process cannot be claimed twice; `:memory:` is no run log; retention keeps
# train.keep_checkpoints plus the final one; odd experiment names stay
# inside the checkpoint directory; temporary files are created exclusively.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 30000 lua/gqe/train.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = os.getenv("EXP") or "ident", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  schedule = { kind = "constant" },
  train = { steps = 10, batch = 2, seq = 16, log_every = 1, eval_every = 5, eval_batches = 1,
            checkpoint_every = 2, keep_checkpoints = 0, checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
qa() { sqlite3 -cmd ".timeout 5000" "$tmp/a.db" "$1"; }
qb() { sqlite3 -cmd ".timeout 5000" "$tmp/b.db" "$1"; }

# 1. Two databases, same experiment, same checkpoint directory: run 1 of
#    each writes under its own uid.
"$GQE" "$tmp/run.lua" train.db="$tmp/a.db" 2>"$tmp/err" || { cat "$tmp/err"; fail "run in a.db"; }
"$GQE" "$tmp/run.lua" train.db="$tmp/b.db" train.seed=2 2>"$tmp/err" || { cat "$tmp/err"; fail "run in b.db"; }
ua=$(qa "SELECT uid FROM runs WHERE id=1"); ub=$(qb "SELECT uid FROM runs WHERE id=1")
[[ "$ua" =~ ^[0-9a-f]{16}$ ]] || fail "run uid '$ua' is not 16 hex digits"
[ "$ua" != "$ub" ] || fail "two databases gave run 1 the same uid"
[ "$(qa "SELECT count(*) FROM checkpoints WHERE path LIKE '%run1-$ua/%'")" = 5 ] || fail "a.db's checkpoints are not under run1-$ua"
[ -z "$(comm -12 <(qa "SELECT path FROM checkpoints" | sort) <(qb "SELECT path FROM checkpoints" | sort))" ] ||
  fail "the two databases share checkpoint paths"
echo "two databases: run 1 checkpoints under run1-$ua and run1-$ub"

# 2. Resume after tampering: the run pretends to have been killed at step 10
#    with its newest checkpoints replaced by b.db's file, a flipped bit and a
#    truncated file; it must fall back to step 4, say why for each, and
#    finish.
qa "UPDATE runs SET status='killed', error='SIGTERM at step 10' WHERE id=1"
p10=$(qa "SELECT path FROM checkpoints WHERE run_id=1 AND step=10")
p8=$(qa "SELECT path FROM checkpoints WHERE run_id=1 AND step=8")
p6=$(qa "SELECT path FROM checkpoints WHERE run_id=1 AND step=6")
cp "$(qb "SELECT path FROM checkpoints WHERE run_id=1 AND step=10")" "$p10"
size=$(stat -c %s "$p8")
printf '\xff' | dd of="$p8" bs=1 seek=$((size - 5)) conv=notrunc status=none
truncate -s 4000 "$p6"
qa "UPDATE runs SET config = json_set(config, '$.train.steps', 12) WHERE id=1"
"$GQE" resume 1 --db "$tmp/a.db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume with a valid older checkpoint"; }
grep -q "$p10.*belongs to another run (uid $ub" "$tmp/err" || { cat "$tmp/err"; fail "no warning naming the foreign checkpoint"; }
grep -q "$p8.*checksum mismatch" "$tmp/err" || { cat "$tmp/err"; fail "no warning naming the damaged checkpoint"; }
grep -q "$p6" "$tmp/err" || { cat "$tmp/err"; fail "no warning naming the truncated checkpoint"; }
grep -q "resuming from the older checkpoint .*step 4.*rows are removed" "$tmp/err" || { cat "$tmp/err"; fail "no fall-back to step 4"; }
grep -q "the run log holds metrics up to step 10" "$tmp/err" || { cat "$tmp/err"; fail "re-logged steps not announced"; }
[ "$(qa "SELECT status || ' ' || step FROM runs WHERE id=1")" = "finished 12" ] || fail "resumed run did not finish at 12"
grep -q "resumed and finished at step 12" "$tmp/out" || { cat "$tmp/out"; fail "resume summary: $(cat "$tmp/out")"; }
echo "resume: foreign, damaged and truncated checkpoints skipped with warnings, resumed from step 4"

# A run killed after its last step resumes to "finished at step 12", not 0.
qa "UPDATE runs SET status='killed' WHERE id=1"
"$GQE" resume 1 --db "$tmp/a.db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume at the last step"; }
grep -q "resumed and finished at step 12" "$tmp/out" || { cat "$tmp/out"; fail "resume at the last step: $(cat "$tmp/out")"; }

# 3. No valid checkpoint: the resume fails naming each file, and the run keeps
#    its status and reason.
qa "UPDATE runs SET status='crashed', error='process 1 on x no longer exists', config = json_set(config, '$.train.steps', 14) WHERE id=1"
for p in $(qa "SELECT path FROM checkpoints WHERE run_id=1"); do [ -f "$p" ] && truncate -s 100 "$p"; done
set +e; "$GQE" resume 1 --db "$tmp/a.db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] || { cat "$tmp/err"; fail "resume without a valid checkpoint: exit $rc"; }
grep -q "no usable checkpoint" "$tmp/err" || { cat "$tmp/err"; fail "message: $(cat "$tmp/err")"; }
[ "$(qa "SELECT status || '|' || error FROM runs WHERE id=1")" = "crashed|process 1 on x no longer exists" ] ||
  fail "a failed resume changed the run: $(qa "SELECT status || '|' || error FROM runs WHERE id=1")"
echo "resume without a valid checkpoint: refused, run left crashed with its reason"

# 4. A run held by a live process: a second resume is refused naming it.
sleep 300 & holder=$!
cleanup() { kill $holder 2>/dev/null || true; }
qb "UPDATE runs SET status='running', pid=$holder, host='$(hostname)' WHERE id=1"
set +e; "$GQE" resume 1 --db "$tmp/b.db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "held by process $holder on $(hostname)" "$tmp/err" ||
  { cat "$tmp/err"; fail "resume of a running run: exit $rc"; }
[ "$(qb "SELECT status || ' ' || pid FROM runs WHERE id=1")" = "running $holder" ] || fail "the holder lost its run"
kill $holder; wait $holder 2>/dev/null || true
echo "resume of a running run: refused, naming process $holder"

# 5. :memory: is no run log.
set +e; "$GQE" "$tmp/run.lua" train.db=:memory: >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "':memory:' is not a file path" "$tmp/err" || { cat "$tmp/err"; fail ":memory: accepted (exit $rc)"; }
set +e; "$GQE" runs --db :memory: >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] || fail "gqe runs --db :memory: exit $rc"

# 6. Retention: keep 2, every 2 steps of 10: steps 6 and 8 plus the final 10.
"$GQE" "$tmp/run.lua" train.db="$db" train.keep_checkpoints=2 2>"$tmp/err" || { cat "$tmp/err"; fail "retention run"; }
[ "$(q "SELECT group_concat(step) FROM (SELECT step FROM checkpoints WHERE run_id=1 ORDER BY step)")" = "6,8,10" ] ||
  fail "kept checkpoints: $(q "SELECT group_concat(step) FROM checkpoints")"
dir=$(dirname "$(q "SELECT path FROM checkpoints WHERE step=10")")
[ "$(ls "$dir" | tr '\n' ' ')" = "step00000006.safetensors step00000008.safetensors step00000010.safetensors " ] ||
  fail "files left: $(ls "$dir")"
echo "retention: steps 6, 8 and the final 10 kept, rows and files"

# 7. Names: '..' and names with separators stay inside the checkpoint
#    directory, and two names that differ only in such bytes do not meet.
for name in .. "a/b" "a_b" "../../x"; do
  EXP=$name "$GQE" "$tmp/run.lua" train.db="$db" train.steps=2 2>"$tmp/err" || { cat "$tmp/err"; fail "experiment '$name'"; }
done
bad=$(find "$tmp" -name '*.safetensors' ! -path "$tmp/ckpt/*" | head -1)
[ -z "$bad" ] || fail "a checkpoint outside the checkpoint directory: $bad"
[ "$(ls -A "$tmp/ckpt" | wc -l)" = 5 ] || fail "experiment folders: $(ls -A "$tmp/ckpt" | tr '\n' ' ')"
ls -A "$tmp/ckpt" | grep -q -x "a_b" || fail "a plain name was rewritten: $(ls -A "$tmp/ckpt")"
! ls -A "$tmp/ckpt" | grep -q -x -e "\.\." -e "\." || fail "'..' became a folder name"
echo "names: '..', 'a/b', 'a_b', '../../x' each get their own folder inside the checkpoint directory"

# 8. A file planted where the temporary file used to go (PATH.tmp) is never
#    written through: temporary files are created exclusively, under a name
#    nobody can predict.
echo victim > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/out.safetensors.tmp"
cat > "$tmp/save.lua" <<LUA
local gqe = require "gqe"
gqe.save_safetensors("$tmp/out.safetensors", { x = gqe.ones({ 1000 }) })
LUA
"$GQE" "$tmp/save.lua" 2>"$tmp/err" || { cat "$tmp/err"; fail "save beside a planted link"; }
[ "$(cat "$tmp/victim")" = victim ] || fail "a planted symlink was written through"
[ -z "$(ls "$tmp" | grep 'out.safetensors.tmp.')" ] || fail "a temporary file was left behind"
echo "temporary files: a planted symlink is not followed"
# 9. A database from before run uids (schema version 1) opens, migrates, and
#    its runs get uids.
cat analysis/schema.sql analysis/views.sql > "$tmp/v1.sql"
echo "PRAGMA user_version = 1; INSERT INTO experiments VALUES (1, 'old', 0);
INSERT INTO runs(id, experiment_id, name, status) VALUES (1, 1, 'r', 'killed');" >> "$tmp/v1.sql"
sqlite3 "$tmp/v1.db" < "$tmp/v1.sql"
"$GQE" runs --db "$tmp/v1.db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "a version-1 database does not open"; }
[[ "$(sqlite3 "$tmp/v1.db" "SELECT uid FROM runs WHERE id=1")" =~ ^[0-9a-f]{16}$ ]] || fail "migrated run has no uid"
[ "$(sqlite3 "$tmp/v1.db" "PRAGMA user_version")" -ge 2 ] || fail "not migrated"
echo "a version-1 database migrates: its runs get uids"
echo "test_robust_checkpoint_identity: ok"
