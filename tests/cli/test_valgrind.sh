#!/usr/bin/env bash
# A short training run under valgrind's memcheck: no invalid reads or writes,
# no uses of uninitialised values, no definite leaks. Covers a run that
# checkpoints and finishes, `gqe resume` loading a checkpoint, and two
# failure paths (missing data, a corrupt safetensors file), whose cleanup
# code is where leaks hide.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if ! command -v valgrind >/dev/null; then echo "skipped: valgrind not installed"; exit 77; fi
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"
VG=(valgrind --error-exitcode=1 --errors-for-leak-kinds=definite --leak-check=full
    --suppressions="$PWD/tests/valgrind.supp"
    --log-file="$tmp/vg.%p.log")
# Runs the command under memcheck; passes when valgrind's summary counts no
# errors (definite leaks count as errors here), whatever the command's own
# exit status, which the caller asserts: a failing command exits 1 too.
vg() { # label, args...
  local label=$1; shift
  rm -f "$tmp"/vg.*.log
  set +e; "${VG[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  # One log per process: forks for os.execute (mkdir, git) leave a header-only log.
  if grep -l -E "ERROR SUMMARY: [1-9]" "$tmp"/vg.*.log >/dev/null 2>&1; then
    cat "$tmp"/vg.*.log; fail "$label: valgrind reported errors"
  fi
  grep -q "ERROR SUMMARY: 0 errors" "$tmp"/vg.*.log || { cat "$tmp"/vg.*.log; fail "$label: no valgrind summary"; }
  echo "$label: clean (exit $rc)"
  return $rc
}

# One process does it all: with CUDA built in, loading the CUDA libraries
# under valgrind costs seconds per process.
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}      ' > "$tmp/bad.safetensors"
cat > "$tmp/all.lua" <<LUA
local gqe = require "gqe"
local function config()
  return {
    experiment = "valgrind", name = "tiny",
    data  = { path = "$tmp/text.txt" },
    model = { dim = 16, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 4 },
    train = { steps = 3, batch = 2, seq = 16, log_every = 1, eval_every = 2, eval_batches = 1,
              db = "$db", checkpoint_dir = "$tmp/ckpt", checkpoint_every = 2, progress = false },
  }
end
-- 1. A finished run with checkpoints at steps 2 and 3.
local s = gqe.train(config())
assert(s.status == "finished", "run 1 did not finish")
-- 2. Resume from step 2: pretend the run was killed after its first checkpoint.
local db = gqe.db.open("$db")
db:exec("UPDATE runs SET status = 'killed' WHERE id = 1; DELETE FROM checkpoints WHERE run_id = 1 AND step = 3")
db:close()
assert(require("gqe.cli").main("resume", { "1", "--db", "$db" }) == 0, "resume failed")
-- 3. Failure paths: a missing data file, a corrupt safetensors file.
local c = config()
c.data.path = "$tmp/none.txt"
local ok, err = pcall(gqe.train, c)
assert(not ok and tostring(err):find("none.txt", 1, true), "missing data: " .. tostring(err))
ok, err = pcall(gqe.load_safetensors, "$tmp/bad.safetensors")
assert(not ok and tostring(err):find("bad.safetensors", 1, true), "corrupt safetensors: " .. tostring(err))
print("all done")
LUA
vg "train, resume, failures" "$GQE" "$tmp/all.lua" || { cat "$tmp/out" "$tmp/err"; fail "script under valgrind"; }
grep -q "all done" "$tmp/out" || { cat "$tmp/out" "$tmp/err"; fail "script did not finish"; }
[ "$(q "SELECT status || ' ' || step FROM runs WHERE id=1")" = "finished 3" ] || fail "resumed run not finished"
[ "$(q "SELECT status FROM runs WHERE id=2")" = failed ] || fail "missing-data run not failed"
echo "test_valgrind: ok"
