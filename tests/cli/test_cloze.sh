#!/usr/bin/env bash
# The Brown cloze task (data/brown_cloze.jsonl, `make data`) end to end.
#
# The task: >= 2000 examples of 4 choices, none from the training split,
# and choices exchangeable apart from the context: picking the shortest
# choice scores within 2 standard errors of chance (distractors drawn
# around the answer's length made the answer the shortest 13% of the
# time, and ties broken in document order made the file's first answers
# the longest; either put acc, a sum of log-probabilities, off chance).
#
# The claim, on all N examples (5,490; standard error of chance
# sqrt(0.25 * 0.75 / N) = 0.58 points): a byte-level GQE model trained
# 1,300 steps on the Brown training split (data.kind=text, seed 1, one
# thread: about 3 minutes of one core) beats chance with acc_norm >= 25%
# + 2 standard errors (26.17%; one-sided p < 0.023), and the same model
# untrained does not (acc and acc_norm below that bar). Measured: trained
# acc 26.47%, acc_norm 26.56% (2.53 bits/byte); untrained 25.19% and
# 25.19%. It does not reach 3 standard errors (26.75%): a choice's
# log-likelihood is dominated by how common its own text is, and a model
# this weak moves it little with the context (README, "The Brown cloze
# task", has baselines). A fixed seed, fixed data and one thread make the
# values exact on a machine; other CPUs' rounding may move them a little.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -s data/brown_cloze.jsonl ] && [ -s data/brown.txt ] || fail "data/brown_cloze.jsonl missing: run make data"
STEPS=1300
MODEL='dim = 64, layers = 4, experts = 4, groups = 2, k = 1, head_dim = 16'
SEQ=128 BATCH=16

N=$(wc -l < data/brown_cloze.jsonl)
[ "$N" -ge 2000 ] || fail "brown_cloze.jsonl has $N examples, expected >= 2000"
cp data/brown_cloze.jsonl "$tmp/cloze.jsonl"
# Held out: no example's sentence occurs in the training part of brown.txt
# (everything before the last 10% of its bytes, as data.kind=text splits).
size=$(wc -c < data/brown.txt)
head -c $((size - size / 10)) data/brown.txt > "$tmp/train_part.txt"
cat > "$tmp/check.lua" <<LUA
local json = require "gqe.json"
local f = io.open("$tmp/train_part.txt", "rb"); local train = f:read("a"); f:close()
local n, all = 0, 0
for line in io.lines("data/brown_cloze.jsonl") do
  local ex = json.decode(line)
  assert(#ex.choices == 4, "four choices")
  n = n + 1
  local last = ex.context:match("[^.!?]*$")   -- the sentence's first half
  if #last > 20 and train:find(last .. " " .. ex.choices[ex.label + 1], 1, true) then
    print("from the training split: " .. line); os.exit(1)
  end
  -- A scorer that reads the choices alone: the shortest, ties to the first.
  local best = 1
  for i, c in ipairs(ex.choices) do if #c < #ex.choices[best] then best = i end end
  if best == ex.label + 1 then all = all + 1 end
end
print(string.format("%.4f", all / n))
LUA
shortest=$("$GQE" "$tmp/check.lua") || { echo "$shortest"; fail "a cloze example comes from the training split"; }
bar=$(awk -v n=$N 'BEGIN { printf "%.4f", 0.25 + 2 * sqrt(0.25 * 0.75 / n) }')
echo "cloze: $N examples, chance 0.25, 2 standard errors above it $bar; picking the shortest choice scores $shortest"
awk -v a="$shortest" -v bar="$bar" 'BEGIN { exit !(a < bar && 0.5 - a < bar) }' ||
  fail "picking the shortest choice scores $shortest, not chance: length gives the answer away"

# Untrained (scored in the background while the trained one trains).
cat > "$tmp/untrained.lua" <<LUA
local gqe = require "gqe"
local lm = gqe.nn.LM { vocab = 256, $MODEL, max_seq = $SEQ, seed = 1 }
local s = gqe.eval.score(lm, gqe.evaluate.load_task("cloze", "$tmp/cloze.jsonl", 256), $BATCH, $SEQ)
print(string.format("%.4f %.4f %d", s.acc, s.acc_norm, s.n))
LUA
"$GQE" "$tmp/untrained.lua" > "$tmp/untrained" 2>&1 &
untrained_pid=$!

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "cloze", name = "bytes",
  data  = { kind = "text", path = "data/brown.txt" },
  model = { $MODEL },
  optim = { lr = 6e-3 },
  schedule = { warmup = 30 },
  train = { steps = $STEPS, batch = $BATCH, seq = $SEQ, seed = 1, log_every = 100, eval_every = $STEPS, eval_batches = 4,
            db = "$db", checkpoint_dir = "$tmp/ckpt" },
  eval  = { tasks = { cloze = "$tmp/cloze.jsonl" } },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
t0=$(date +%s)
"$GQE" "$tmp/run.lua" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "training with the cloze task failed"; }
t1=$(date +%s)
grep "cloze acc\|val/" "$tmp/err"
wait "$untrained_pid" || { cat "$tmp/untrained"; fail "scoring the untrained model failed"; }
[ "$(q "SELECT count(*) FROM evals WHERE split='cloze' AND key='acc' AND step=$STEPS")" = 1 ] || fail "cloze/acc at step $STEPS"
acc=$(q "SELECT printf('%.4f', value) FROM evals WHERE split='cloze' AND key='acc' AND step=$STEPS")
acc_norm=$(q "SELECT printf('%.4f', value) FROM evals WHERE split='cloze' AND key='acc_norm' AND step=$STEPS")
read -r u_acc u_norm u_n < "$tmp/untrained"
[ "$u_n" = $N ] || fail "untrained: $u_n examples scored"
echo "cloze, $N examples (chance 0.25, bar $bar): untrained acc $u_acc acc_norm $u_norm;" \
     "after $STEPS steps ($((t1 - t0)) s with its evaluations) acc $acc acc_norm $acc_norm"
awk -v a="$u_acc" -v b="$u_norm" -v bar="$bar" 'BEGIN { exit !(a < bar && b < bar) }' ||
  fail "an untrained model should not beat chance by 2 standard errors, got acc $u_acc acc_norm $u_norm"
awk -v b="$acc_norm" -v bar="$bar" 'BEGIN { exit !(b >= bar) }' ||
  fail "the trained model should beat chance by 2 standard errors (acc_norm >= $bar), got acc_norm $acc_norm"
echo "test_cloze: ok"
