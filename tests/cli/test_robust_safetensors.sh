#!/usr/bin/env bash
# Corrupt safetensors files, made from a real checkpoint: given to
# gqe.load_safetensors (a Lua error naming the file and the problem, no
# crash), to GQEAttention:load (names the tensor), and to `gqe resume` (exit
# 1, the file and problem named, the run marked failed and not running, and
# resumable again once the file is good).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "st", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 3, batch = 2, seq = 16, eval_every = 3, eval_batches = 1, db = "$db",
            checkpoint_every = 2, checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
"$GQE" "$tmp/run.lua" 2>"$tmp/err" || { cat "$tmp/err"; fail "training run"; }
good=$(q "SELECT path FROM checkpoints WHERE run_id=1 AND step=2")
[ -f "$good" ] || fail "no checkpoint at step 2"
cp "$good" "$tmp/good.safetensors"
# Pretend the run was killed after its step-2 checkpoint.
q "UPDATE runs SET status='killed' WHERE id=1; DELETE FROM checkpoints WHERE run_id=1 AND step=3"

# Each case is a copy of the good file with one thing broken:
#   hlen N        the 8-byte header length set to N
#   sub OLD NEW   the first OLD in the JSON header replaced by NEW (length re-packed)
#   cut N         the last N bytes dropped
#   move NAME     tensor NAME's data_offsets moved past the end of the file
# The cases run in one process (with CUDA built in, each gqe process pays
# seconds to load the CUDA libraries): for "both" cases the file goes to
# gqe.load_safetensors, then, for every case, in place of the checkpoint to
# `gqe resume` (cli.main, as the command line calls it); the run's status
# after each resume is printed (a failed resume leaves it killed, as it was),
# and reset to killed for the next case.
cat > "$tmp/batch.lua" <<'LUA'
local gqe = require "gqe"
local cli = require "gqe.cli"
local good, ckpt, bad, db_path, cases = ...
local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end
local function spit(p, s) local f = assert(io.open(p, "wb")); f:write(s); f:close() end
local src = slurp(good)
local function corrupt(mode, a, b)
  local n = string.unpack("<I8", src)
  local header, data = src:sub(9, 8 + n), src:sub(9 + n)
  if mode == "hlen" then return string.pack("<I8", math.tointeger(tonumber(a))) .. header .. data end
  if mode == "cut" then return src:sub(1, #src - tonumber(a)) end
  if mode == "sub" then
    local i, j = header:find(a, 1, true)
    assert(i, "pattern not in header: " .. a)
    header = header:sub(1, i - 1) .. b .. header:sub(j + 1)
  elseif mode == "move" then
    local pat = '("' .. a:gsub("%p", "%%%0") .. '":{[^}]-"data_offsets":%[)(%d+),(%d+)%]'
    local k
    header, k = header:gsub(pat, function(pre, b0, b1)
      return pre .. "999999999," .. (999999999 + tonumber(b1) - tonumber(b0)) .. "]"
    end, 1)
    assert(k == 1, "tensor not in header: " .. a)
  else
    error("unknown mode " .. mode)
  end
  return string.pack("<I8", #header) .. header .. data
end
local function line(what, ok, err)
  print(what .. "\t" .. (ok and "ok" or (tostring(err):gsub("\n", " | "))))
end
for spec in io.lines(cases) do
  local f = {}
  for x in (spec .. "\31"):gmatch("(.-)\31") do f[#f + 1] = x end
  local bytes = corrupt(f[2], f[3], f[4])
  if f[1] == "both" then
    spit(bad, bytes)
    line("load", pcall(gqe.load_safetensors, bad))
  end
  spit(ckpt, bytes)
  line("resume", pcall(cli.main, "resume", { "1", "--db", db_path }))
  local db = gqe.db.open(db_path)
  print("status\t" .. db:query("SELECT status FROM runs WHERE id = 1")[1].status)
  db:exec("UPDATE runs SET status = 'killed' WHERE id = 1")
  db:close()
  collectgarbage()
end
LUA
wants=(); : > "$tmp/cases"
add() { # kind "message (grep -E)" mode args...
  local kind=$1 want=$2; shift 2
  wants+=("$want")
  (IFS=$'\037'; printf '%s\n' "$kind$IFS$*") >> "$tmp/cases"
}
check() { add both "$@"; }          # corrupt: load_safetensors and resume refuse it
resume_fails() { add resume "$@"; } # well-formed but not this model's: resume refuses it

check "header length 1000000000000 exceeds the [0-9]+ bytes after the length field" hlen 1000000000000
check "header length 18446744073709551615 exceeds" hlen -1
check "header \(0 bytes\) is not valid JSON" hlen 0
check "header \([0-9]+ bytes\) is not valid JSON" sub '"__metadata__":' '"__metadata__"'
check "header \([0-9]+ bytes\) is not valid JSON" sub '"dtype":"F32"' '"dtype":F32'
check "tensor 'norm.weight': data_offsets \[999999999,1000000063\] outside the data section" move norm.weight
check "tensor 'tok_emb.weight': data_offsets \[[0-9]+,[0-9]+\] outside the data section" cut 100
check "tensor 'norm.weight': data_offsets \[7,[0-9]+,[0-9]+\] must hold two integers" sub '"norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[' '"norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[7,'
check "tensor 'norm.weight': data_offsets \[[0-9]+,[0-9]+\] span 64 bytes but F32 \[17\] needs 68" sub '"norm.weight":{"dtype":"F32","shape":[16]' '"norm.weight":{"dtype":"F32","shape":[17]'
check "tensor 'norm.weight': unsupported dtype 'F64' \(supported: F32, BF16, I32, I64\)" sub '"norm.weight":{"dtype":"F32"' '"norm.weight":{"dtype":"F64"'
check "tensor 'norm.weight': unsupported dtype 'XYZ'" sub '"norm.weight":{"dtype":"F32"' '"norm.weight":{"dtype":"XYZ"'
check "tensor 'norm.weight': .*shape" sub '"norm.weight":{"dtype":"F32","shape":[16]' '"norm.weight":{"dtype":"F32","shape":[-16]'
n=${#wants[@]}
resume_fails "(dtype|I32|i32).*(F32|f32)" sub '"norm.weight":{"dtype":"F32"' '"norm.weight":{"dtype":"I32"'
resume_fails "tensor 'blocks.0.mlp.fc_out.weight' has shape \(64, 16\), the model expects \(16, 64\)" sub '"shape":[16,64]' '"shape":[64,16]'
resume_fails "checksum mismatch" sub '"norm.weight":' '"nrm.weight":'
resume_fails "metadata 'step' is not an integer: two" sub '"step":"2"' '"step":"two"'
m=$((${#wants[@]} - n))

"$GQE" "$tmp/batch.lua" "$tmp/good.safetensors" "$good" "$tmp/bad.safetensors" "$db" "$tmp/cases" \
  >"$tmp/results" 2>"$tmp/batch.err" || { cat "$tmp/batch.err"; fail "the batch of cases did not complete"; }
i=0
while IFS= read -r spec; do
  what=$(cut -d $'\037' -f 2- <<<"$spec" | tr '\037' ' ')
  want=${wants[$i]}
  if [ "${spec%%$'\037'*}" = both ]; then
    IFS= read -r r <&3
    [ "${r#load$'\t'}" != ok ] || fail "$what: load_safetensors accepted it"
    grep -q -E -- "bad.safetensors.*$want" <<<"$r" || fail "$what: load message does not match '$want': $r"
  fi
  IFS= read -r r <&3
  [ "${r#resume$'\t'}" != ok ] || fail "$what: gqe resume accepted it"
  grep -q -E -- "$want" <<<"$r" || fail "$what: resume message does not match '$want': $r"
  grep -q -F -- "$good" <<<"$r" || fail "$what: resume message does not name the file: $r"
  IFS= read -r r <&3
  [ "$r" = $'status\tkilled' ] || fail "$what: after the failed resume the run is '${r#status?}', not killed as before"
  i=$((i + 1))
done < "$tmp/cases" 3< "$tmp/results"
[ "$i" = "${#wants[@]}" ] || fail "$i of ${#wants[@]} cases checked"

# Through the command line too: exit 1, "gqe: " and the message.
{ printf '\x40\x00\x00\x00\x00\x00\x00\x00'; printf '%-64s' '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}'; } > "$good"
set +e; "$GQE" resume 1 --db "$db" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "^gqe: .*$good.*tensor 'a': data_offsets \[0,99\] outside the data section" "$tmp/err" ||
  { cat "$tmp/err"; fail "gqe resume of a corrupt checkpoint: exit $rc"; }
[ "$(q "SELECT status FROM runs WHERE id=1")" = killed ] || fail "run not left killed after a failed gqe resume"
q "UPDATE runs SET status='killed' WHERE id=1"
cp "$good" "$tmp/bad.safetensors"
cat > "$tmp/load.lua" <<LUA
require("gqe").load_safetensors("$tmp/bad.safetensors")
LUA
set +e; "$GQE" "$tmp/load.lua" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "^gqe: .*load.lua:1: .*bad.safetensors: tensor 'a'" "$tmp/err" ||
  { cat "$tmp/err"; fail "load_safetensors of a corrupt file from a script: exit $rc"; }

# Through GQEAttention:load: a wrong shape names the tensor and the shapes.
cat > "$tmp/attn.lua" <<LUA
local gqe = require "gqe"
local a = gqe.nn.GQEAttention { dim = 16, experts = 4, groups = 2, k = 1, head_dim = 4 }
local st = gqe.load_safetensors("$tmp/good.safetensors")
local t = {}
for k, v in pairs(st) do
  local short = k:match("^blocks%.0%.attn%.(.*)$")
  if short then t[short] = v end
end
a:load(t)                                   -- the right shapes load
t["q_proj.weight"] = st["blocks.0.mlp.fc_in.weight"]
local ok, err = pcall(a.load, a, t)
assert(not ok, "a wrong shape loaded")
print(err)
LUA
"$GQE" "$tmp/attn.lua" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "GQEAttention:load script"; }
grep -q "q_proj.weight" "$tmp/out" || { cat "$tmp/out"; fail "GQEAttention:load message does not name the tensor"; }

# The good file back: the run resumes and finishes.
cp "$tmp/good.safetensors" "$good"
"$GQE" resume 1 --db "$db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "resume from the good file"; }
[ "$(q "SELECT status FROM runs WHERE id=1")" = finished ] || fail "run not finished after a good resume"
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
echo "test_robust_safetensors: $n corrupt files and $m mismatched checkpoints rejected"
