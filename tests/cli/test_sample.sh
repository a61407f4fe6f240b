#!/usr/bin/env bash
# Models from runs: gqe.load_run rebuilds a run's model from its stored config
# and latest checkpoint (weights equal to the file's, optimizer on request);
# `gqe sample` prints text for a byte-level run, reproducibly per seed, and
# refuses what it cannot do with a clear message.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 60000 README.md > "$tmp/text.txt"
cat > "$tmp/exp.lua" <<LUA
local gqe = require "gqe"
gqe.experiment{ name = "smp", base = {
  data = { kind = "text", path = "$tmp/text.txt" },
  model = { dim = 16, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 4, router = "balanced" },
  train = { steps = 6, batch = 2, seq = 32, eval_every = 6, eval_batches = 1, log_every = 2, progress = false,
            checkpoint_every = 3, checkpoint_dir = "$tmp/ck" } },
  grid = { ["data.kind"] = { "text", "recall" } }, seeds = { 1 } }
LUA
"$GQE" "$tmp/exp.lua" --db "$db" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "training"; }
text_id=$(q "SELECT id FROM runs WHERE name LIKE 'kind=text%'")
recall_id=$(q "SELECT id FROM runs WHERE name LIKE 'kind=recall%'")
ckpt=$(q "SELECT path FROM checkpoints WHERE run_id = $text_id ORDER BY step DESC LIMIT 1")

cat > "$tmp/load.lua" <<'LUA'
local gqe = require "gqe"
local id, db, ckpt = tonumber(arg[1]), arg[2], arg[3]
local lm, opt, info = gqe.load_run(id, { db = db })
assert(opt == nil, "an optimizer nobody asked for")
assert(info.step == 6 and info.path == ckpt and info.run_id == id, "info")
assert(info.config.model.layers == 2 and info.config.model.router == "balanced", "config")
local file = gqe.load_safetensors(ckpt)
local n = 0
for name, t in pairs(lm:state()) do
  local a, b = t:totable(), file[name]:totable()
  assert(#a == #b, name)
  for i = 1, #a do
    local ra, rb = a[i], b[i]
    if type(ra) == "table" then for j = 1, #ra do assert(ra[j] == rb[j], name) end else assert(ra == rb, name) end
  end
  n = n + 1
end
local lm2, opt2 = gqe.load_run(ckpt, { optimizer = true })
assert(opt2 ~= nil, "optimizer asked for")
local g1 = lm:generate({ 72, 101 }, 10, { seed = 5, top_k = 4 })
local g2 = lm2:generate({ 72, 101 }, 10, { seed = 5, top_k = 4 })
assert(table.concat(g1, ",") == table.concat(g2, ","), "run id and path give different models")
local ok, err = pcall(gqe.load_run, 999, { db = db })
assert(not ok and err:find("no run 999", 1, true), err)
ok, err = pcall(gqe.load_run, id, { db = db, bogus = 1 })
assert(not ok and err:find("unknown option 'bogus'", 1, true), err)
print("loaded " .. n .. " tensors")
LUA
"$GQE" "$tmp/load.lua" "$text_id" "$db" "$ckpt" || fail "gqe.load_run"

"$GQE" sample "$text_id" --db "$db" --prompt "The run" --tokens 20 --seed 7 --top-k 5 > "$tmp/s1"
"$GQE" sample "$text_id" --db "$db" --prompt "The run" --tokens 20 --seed 7 --top-k 5 > "$tmp/s2"
"$GQE" sample "$ckpt" --prompt "The run" --tokens 20 --seed 7 --top-k 5 --temperature 1 > "$tmp/s3"
cmp -s "$tmp/s1" "$tmp/s2" && cmp -s "$tmp/s1" "$tmp/s3" || fail "same seed, different samples"
[ "$(head -c 7 "$tmp/s1")" = "The run" ] || fail "the sample does not start with the prompt"
[ "$(wc -c < "$tmp/s1")" -eq 28 ] || fail "expected 7 + 20 bytes and a newline, got $(wc -c < "$tmp/s1")"

bad() {  # message, args...
  local want=$1; shift
  if "$GQE" sample "$@" >"$tmp/o" 2>"$tmp/e"; then fail "sample $* succeeded"; fi
  grep -qF -- "$want" "$tmp/e" || { cat "$tmp/e"; fail "sample $*: no '$want'"; }
}
bad "data.kind 'recall' (synthetic token ids): it has no text to sample" "$recall_id" --db "$db" --prompt x --tokens 2
bad "exceed the model's max_seq 32" "$text_id" --db "$db" --prompt abc --tokens 40
bad "--prompt TEXT is required" "$text_id" --db "$db"
bad "unknown flag --top_k for \`gqe sample\` (did you mean --top-k?)" "$text_id" --db "$db" --prompt x --top_k 3
bad "--tokens must be an integer >= 0, got 'many'" "$text_id" --db "$db" --prompt x --tokens many
bad "--temperature must be a positive number, got 'nan'" "$text_id" --db "$db" --prompt x --temperature nan
bad "no run 42 in" 42 --db "$db" --prompt x
bad "no run id or checkpoint file 'nope.safetensors'" nope.safetensors --prompt x
"$GQE" sample --help > "$tmp/help"
grep -q "usage: gqe sample" "$tmp/help" || fail "--help"
# A damaged newest checkpoint: the next older one is loaded, with a warning naming the file.
cp "$ckpt" "$tmp/good.safetensors"
head -c 1000 "$tmp/good.safetensors" > "$ckpt"
cat > "$tmp/fallback.lua" <<'LUA'
local gqe = require "gqe"
local _, _, info = gqe.load_run(tonumber(arg[1]), { db = arg[2] })
print(info.step)
LUA
step=$("$GQE" "$tmp/fallback.lua" "$text_id" "$db" 2>"$tmp/warn") || { cat "$tmp/warn"; fail "no fall-back"; }
[ "$step" = 3 ] || fail "loaded step $step, expected the older checkpoint at 3"
grep -q "warning: skipped newer checkpoints: .*$(basename "$ckpt")" "$tmp/warn" || { cat "$tmp/warn"; fail "no warning"; }
rm -f "$tmp"/ck/*/*/step*.safetensors
bad "no usable checkpoint" "$text_id" --db "$db" --prompt x --tokens 2
echo "test_sample: ok"
