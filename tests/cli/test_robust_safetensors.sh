#!/usr/bin/env bash
# Corrupt safetensors files, made from a real checkpoint: given to
# gqe.load_safetensors (a Lua error naming the file and the problem, no
# crash), to GQEAttention:load (names the tensor), and to `gqe resume` (exit
# 1, the file and problem named, the run marked failed and not running, and
# resumable again once the file is good).
set -euo pipefail
cd "$(dirname "$0")/../.."
GQE=$PWD/build/gqe
[ -x "$GQE" ] || { echo "build/gqe missing: run make"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1
db=$tmp/runs.db
q() { sqlite3 "$db" "$1"; }
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

# corrupt OUT MODE ARGS: a copy of the good file with one thing broken.
#   hlen N        the 8-byte header length set to N
#   sub OLD NEW   the first OLD in the JSON header replaced by NEW (length re-packed)
#   cut N         the last N bytes dropped
#   move NAME     tensor NAME's data_offsets moved past the end of the file
cat > "$tmp/corrupt.lua" <<'LUA'
local src, out, mode, a, b = ...
local f = assert(io.open(src, "rb")); local s = f:read("a"); f:close()
local n = string.unpack("<I8", s)
local header, data = s:sub(9, 8 + n), s:sub(9 + n)
if mode == "hlen" then
  s = string.pack("<I8", math.tointeger(tonumber(a))) .. header .. data
elseif mode == "sub" then
  local i, j = header:find(a, 1, true)
  assert(i, "pattern not in header: " .. a)
  header = header:sub(1, i - 1) .. b .. header:sub(j + 1)
  s = string.pack("<I8", #header) .. header .. data
elseif mode == "move" then
  local pat = '("' .. a:gsub("%p", "%%%0") .. '":{[^}]-"data_offsets":%[)(%d+),(%d+)%]'
  local k
  header, k = header:gsub(pat, function(pre, b0, b1)
    return pre .. "999999999," .. (999999999 + tonumber(b1) - tonumber(b0)) .. "]"
  end, 1)
  assert(k == 1, "tensor not in header: " .. a)
  s = string.pack("<I8", #header) .. header .. data
elseif mode == "cut" then
  s = s:sub(1, #s - tonumber(a))
end
f = assert(io.open(out, "wb")); f:write(s); f:close()
LUA
corrupt() { "$GQE" "$tmp/corrupt.lua" "$tmp/good.safetensors" "$tmp/bad.safetensors" "$@"; }
cat > "$tmp/load.lua" <<LUA
local gqe = require "gqe"
local ok, err = pcall(gqe.load_safetensors, "$tmp/bad.safetensors")
if ok then print("loaded") os.exit(2) end
io.stderr:write(tostring(err), "\n")
os.exit(1)
LUA

n=0
# check "message (grep -E)" corrupt-args...: load_safetensors and resume both
# fail with the message; the run ends failed, never running.
check() {
  local want=$1; shift
  n=$((n + 1))
  corrupt "$@"
  set +e; "$GQE" "$tmp/load.lua" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/out" "$tmp/err"; fail "$*: load_safetensors exit $rc"; }
  grep -q -E -- "bad.safetensors.*$want" "$tmp/err" || { cat "$tmp/err"; fail "$*: load message does not match '$want'"; }
  resume_fails "$want" "$@"
}
# resume_fails "message" what...: the corrupt file in place of the checkpoint.
resume_fails() {
  local want=$1; shift
  cp "$tmp/bad.safetensors" "$good"
  set +e; "$GQE" resume 1 --db "$db" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
  [ "$rc" = 1 ] || { cat "$tmp/out" "$tmp/err"; fail "$*: gqe resume exit $rc"; }
  grep -q -E -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "$*: resume message does not match '$want'"; }
  grep -q -F -- "$good" "$tmp/err" || { cat "$tmp/err"; fail "$*: resume message does not name the file"; }
  [ "$(q "SELECT status FROM runs WHERE id=1")" = failed ] || fail "$*: run not marked failed"
  q "UPDATE runs SET status='killed' WHERE id=1"
}

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

# Well-formed files that do not fit the model: loadable, refused on resume.
m=0
corrupt sub '"norm.weight":{"dtype":"F32"' '"norm.weight":{"dtype":"I32"'
resume_fails "(dtype|I32|i32).*(F32|f32)" dtype; m=$((m + 1))
corrupt sub '"shape":[16,64]' '"shape":[64,16]'
resume_fails "fc_out.weight.*(shape|64)" shape; m=$((m + 1))
corrupt sub '"norm.weight":' '"nrm.weight":'
resume_fails "lacks tensor 'norm.weight'" missing; m=$((m + 1))
corrupt sub '"step":"2"' '"step":"two"'
resume_fails "step" metadata; m=$((m + 1))

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
