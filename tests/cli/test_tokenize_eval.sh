#!/usr/bin/env bash
# GPT-2 token shards from text (`gqe data tokenize`), a BPE model trained on
# them with a multiple-choice task evaluated during training and afterwards
# (`gqe eval`), and the bad inputs of both: each a clear error, before
# training where the config can tell. Needs data/gpt2 (`make data`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -s data/gpt2/encoder.json ] && [ -s data/gpt2/vocab.bpe ] || fail "data/gpt2 missing: run make data"

# 1. Shards: two files, one document each, small shards.
cat README.md > "$tmp/a.txt"
cat docs/GQE.md > "$tmp/b.txt"
"$GQE" data tokenize "$tmp/a.txt" "$tmp/b.txt" --out "$tmp/shards" --name doc --val-frac 0.3 \
  --shard-tokens 4000 >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "tokenize failed"; }
cat "$tmp/out"
grep -q "tokenize \[#*\] 100.0%" "$tmp/err" || { cat "$tmp/err"; fail "no progress bar"; }
grep -q "train 1 documents" "$tmp/out" || fail "train split: the first document"
grep -q "val   1 documents" "$tmp/out" || fail "val split: the last document"
ntrain=$(ls "$tmp"/shards/doc_train_*.bin | wc -l)
[ "$ntrain" -ge 2 ] || fail "expected several train shards of 4000 tokens, got $ntrain"
[ "$(od -An -tu4 -N12 "$tmp/shards/doc_train_000000.bin" | tr -s ' ')" = " 20240520 1 4000" ] || fail "shard header"
[ "$(od -An -tu2 -j1024 -N2 "$tmp/shards/doc_train_000000.bin" | tr -d ' ')" = 50256 ] || fail "document must start with <|endoftext|>"
[ "$(od -An -tu2 -j1024 -N2 "$tmp/shards/doc_val_000000.bin" | tr -d ' ')" = 50256 ] || fail "val document must start with <|endoftext|>"
ls "$tmp"/shards/*.tmp 2>/dev/null && fail "temporary files left"

# 2. Training on the shards, with a task evaluated at eval_every and at the end.
cat > "$tmp/task.jsonl" <<'JSONL'
{"context": "The model is trained on", "choices": ["the CPU.", "a banana", "ninety nine red balloons"], "label": 0}
{"context": "Grouped query", "choices": ["experts", "of", "attention heads route tokens"], "label": 0}
{"context": "One, two,", "choices": ["three", "cat"], "label": 0}
JSONL
cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "bpe", name = "tiny",
  data  = { kind = "shards", path = "$tmp/shards/doc_train_*.bin", val_path = "$tmp/shards/doc_val_*.bin" },
  model = { dim = 16, layers = 1, experts = 2, groups = 1, k = 1, head_dim = 8 },
  train = { steps = 4, batch = 2, seq = 16, log_every = 2, eval_every = 2, eval_batches = 1, db = "$db",
            checkpoint_dir = "$tmp/ckpt" },
  eval  = { tasks = { tiny = "$tmp/task.jsonl" } },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print(string.format("run %d %s", s.run_id, s.status))
LUA
"$GQE" "$tmp/run.lua" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "training on shards failed"; }
grep -q "run 1 finished" "$tmp/out" || fail "run not finished"
grep -q "tiny acc [0-9.]* acc_norm [0-9.]* (n=3)" "$tmp/err" || { cat "$tmp/err"; fail "no task progress line"; }
[ "$(q "SELECT count(*) FROM evals WHERE split='tiny' AND key IN ('acc','acc_norm')")" = 4 ] || fail "evals rows at steps 2 and 4"
[ "$(q "SELECT count(*) FROM metrics WHERE key='tiny/acc'")" = 2 ] || fail "metric tiny/acc"
[ "$(q "SELECT count(*) FROM metrics WHERE key='tiny/acc_norm'")" = 2 ] || fail "metric tiny/acc_norm"
q "SELECT value FROM params WHERE key='eval.tasks'" | grep -q '"tiny":' || fail "eval.tasks not in params"

# 3. gqe eval: the run's checkpoint on a task given on the command line.
"$GQE" eval 1 --task again="$tmp/task.jsonl" --db "$db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "gqe eval failed"; }
grep -q "again *acc [0-9.]*  acc_norm [0-9.]*  n 3" "$tmp/out" || { cat "$tmp/out"; fail "gqe eval output"; }
[ "$(q "SELECT count(*) FROM evals WHERE split='again' AND step=4")" = 2 ] || fail "gqe eval not logged at the checkpoint's step"
# An llm.c eval file (GPT-2 ids) on the same model.
"$GQE" eval 1 --task hs=tests/golden/eval/tiny_llmc.bin --db "$db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "gqe eval of an llm.c file failed"; }
grep -q "hs *acc [0-9.]*  acc_norm [0-9.]*  n 12" "$tmp/out" || { cat "$tmp/out"; fail "gqe eval llm.c output"; }

# gqe sample decodes the GPT-2 run's tokens to text.
"$GQE" sample 1 --prompt "The model is" --tokens 5 --db "$db" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "gqe sample failed"; }
grep -q "^The model is" "$tmp/out" || { cat "$tmp/out"; fail "gqe sample: no prompt text"; }
[ "$(wc -c < "$tmp/out")" -gt 14 ] || fail "gqe sample: no generated text"

# 4. Bad inputs, each failing before the first training step.
bad() { # message-pattern, overrides...
  local want=$1; shift
  if "$GQE" "$tmp/run.lua" "$@" >"$tmp/out" 2>"$tmp/err"; then fail "$*: accepted"; fi
  grep -q -E -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "$*: message does not match '$want'"; }
  local id; id=$(q "SELECT max(id) FROM runs")
  [ "$(q "SELECT count(*) FROM metrics WHERE run_id=$id AND key='train/loss'")" = 0 ] || fail "$*: training started"
}
printf '%s\n' '{"context": "a", "choices": ["b", "c"], "label": 0}' '{"context": "a", "choices": ["b"' > "$tmp/badjson.jsonl"
bad "badjson.jsonl:2: invalid JSON" eval.tasks=x="$tmp/badjson.jsonl"
printf '%s\n' '{"context": "a", "choices": ["b", "c"], "label": 5}' > "$tmp/badlabel.jsonl"
bad "badlabel.jsonl:1: label 5 is out of range for 2 choices" eval.tasks=x="$tmp/badlabel.jsonl"
printf '%s\n' '{"context": "a", "choices": [], "label": 0}' > "$tmp/nochoice.jsonl"
bad "nochoice.jsonl:1: \"choices\" must be a non-empty list" eval.tasks=x="$tmp/nochoice.jsonl"
bad "eval task x: cannot open $tmp/none.jsonl" eval.tasks=x="$tmp/none.jsonl"
bad "GPT-2 tokenizer file /nonexistent/encoder.json is missing" eval.tokenizer=/nonexistent
cp "$tmp/shards/doc_val_000000.bin" "$tmp/shard_as_task.bin"
bad "magic number 20240520, expected 20240522 .*token shard" eval.tasks=x="$tmp/shard_as_task.bin"
head -c 1030 tests/golden/eval/tiny_llmc.bin > "$tmp/trunc.bin"
bad "trunc.bin: .*truncated" eval.tasks=x="$tmp/trunc.bin"
# llm.c tasks hold GPT-2 tokens: a byte-level model cannot take them.
bad "holds GPT-2 tokens \(llm.c eval format\) but the model's vocabulary is 256" data.kind=text data.path=README.md \
  data.val_path= eval.tasks=x=tests/golden/eval/tiny_llmc.bin

# 5. Bad uses of the commands.
if "$GQE" data tokenize "$tmp/nope.txt" --out "$tmp/s2" 2>"$tmp/err"; then fail "missing input accepted"; fi
grep -q "cannot read $tmp/nope.txt" "$tmp/err" || { cat "$tmp/err"; fail "missing input message"; }
if "$GQE" data tokenize "$tmp/a.txt" --out "$tmp/s2" --val-frac 2 2>"$tmp/err"; then fail "--val-frac 2 accepted"; fi
grep -q -- "--val-frac must be in \[0, 1)" "$tmp/err" || { cat "$tmp/err"; fail "--val-frac message"; }
if "$GQE" data tokenize "$tmp/a.txt" --out "$tmp/s2" --bogus 2>"$tmp/err"; then fail "unknown flag accepted"; fi
grep -q -- "unknown flag --bogus" "$tmp/err" || { cat "$tmp/err"; fail "unknown flag message"; }
if "$GQE" data tokenize "$tmp/a.txt" 2>"$tmp/err"; then fail "no --out accepted"; fi
grep -q -- "--out DIR is required" "$tmp/err" || { cat "$tmp/err"; fail "--out message"; }
if "$GQE" eval 99 --task t="$tmp/task.jsonl" --db "$db" 2>"$tmp/err"; then fail "unknown run accepted"; fi
grep -q "no run 99" "$tmp/err" || { cat "$tmp/err"; fail "unknown run message"; }
if "$GQE" eval 1 --task nonsense --db "$db" 2>"$tmp/err"; then fail "bad --task accepted"; fi
grep -q "must look like NAME=PATH" "$tmp/err" || { cat "$tmp/err"; fail "--task message"; }
echo "test_tokenize_eval: ok"
