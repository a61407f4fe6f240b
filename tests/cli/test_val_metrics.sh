#!/usr/bin/env bash
# The validation metrics beyond val/loss, end to end on the CPU:
#   val/acc  top-1 accuracy over the targets the loss counts. A small model
#            on associative recall (data.kind=recall, vocabulary 64: 32
#            values, chance 1/32) is well above chance after 300 steps
#            (seed 1: 0.12 at the end, about one in eight: the model has
#            learnt to answer with a value of its context); it is logged at
#            every evaluation, as a count over 4 x 16 rows x 8 queries, and
#            `gqe compare --metric val/acc` ranks by it (higher is better).
#   val/bpb  for GPT-2 token shards: val/loss / ln 2 x tokens / bytes of the
#            whole validation split, the ratio recomputed here from the
#            shard file and the tokenizer's decode (end-of-text tokens
#            count as tokens of no bytes); without a tokenizer the run
#            finishes with one warning line and no val/bpb.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
for f in data/brown_gpt2_train.bin data/brown_gpt2_val.bin data/gpt2/encoder.json data/gpt2/vocab.bpe; do
  [ -s "$f" ] || fail "$f missing: run make data"
done

# 1. Recall accuracy.
cat > "$tmp/recall.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "recall", name = "tiny",
  data  = { kind = "recall", vocab = 64 },
  model = { dim = 64, layers = 2, experts = 4, groups = 2, k = 1, head_dim = 16 },
  optim = { lr = 3e-3 },
  train = { steps = 300, batch = 16, seq = 32, log_every = 50, eval_every = 50, eval_batches = 4, db = "$db",
            checkpoint_every = 0, progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print(string.format("recall %s val/loss %.4f val/acc %.4f", s.status, s.final_val_loss, s.val_acc))
LUA
out=$("$GQE" "$tmp/recall.lua" 2>"$tmp/err") || { cat "$tmp/err"; fail "recall run exited non-zero"; }
echo "$out"
[ "$(q "SELECT count(*) FROM metrics WHERE key='val/acc'")" = 6 ] || fail "val/acc not at each of the 6 evaluations"
[ "$(q "SELECT count(*) FROM evals WHERE split='val' AND key='acc'")" = 6 ] || fail "val/acc not in the evals table"
# a fraction of the 512 query positions evaluated
[ "$(q "SELECT count(*) FROM metrics WHERE key='val/acc' AND abs(value * 512 - round(value * 512)) > 1e-9")" = 0 ] ||
  fail "val/acc is not a count over 512 queries: $(q "SELECT group_concat(value) FROM metrics WHERE key='val/acc'")"
last=$(q "SELECT value FROM metrics WHERE key='val/acc' AND step=300")
awk -v a="$last" 'BEGIN { exit !(a > 2.5 / 32) }' || fail "val/acc $last is not clearly above chance (1/32)"
grep -q "val/acc $(printf '%.4f' "$last")" <<<"$out" || fail "the summary's val_acc is not the last val/acc"
"$GQE" compare recall --metric val/acc --db "$db" >"$tmp/cmp" 2>/dev/null || fail "compare --metric val/acc failed"
grep -q "max val/acc" "$tmp/cmp" || { cat "$tmp/cmp"; fail "compare does not rank val/acc as higher-is-better"; }
echo "ok: val/acc $last (chance 0.031) at every evaluation"

# 2. Bits per byte on GPT-2 token shards.
cat > "$tmp/shards.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "shards", name = "tiny",
  data  = { kind = "shards", path = "data/brown_gpt2_train.bin", val_path = "data/brown_gpt2_val.bin" },
  model = { dim = 32, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 8 },
  train = { steps = 10, batch = 2, seq = 32, log_every = 5, eval_every = 5, eval_batches = 2, db = "$db",
            checkpoint_every = 0, progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA
"$GQE" "$tmp/shards.lua" 2>"$tmp/err" || { cat "$tmp/err"; fail "shards run exited non-zero"; }
! grep -q warning "$tmp/err" || { cat "$tmp/err"; fail "a warning with the tokenizer present"; }
run=$(q "SELECT max(id) FROM runs")
# tokens / bytes of the validation shard: the file read here, every token
# but end-of-text decoded at once
cat > "$tmp/ratio.lua" <<'LUA'
local gqe = require "gqe"
local f = assert(io.open("data/brown_gpt2_val.bin", "rb")); local b = f:read("a"); f:close()
local n = string.unpack("<i4", b, 9)
local ids = {}
for i = 0, n - 1 do
  local id = string.unpack("<I2", b, 1025 + 2 * i)
  if id ~= 50256 then ids[#ids + 1] = id end
end
local tok = gqe.tokenizer.load("data/gpt2/encoder.json", "data/gpt2/vocab.bpe")
print(string.format("%.17g", n / #tok:decode(ids)))
LUA
ratio=$("$GQE" "$tmp/ratio.lua") || fail "the ratio script failed"
echo "validation tokens per byte: $ratio"
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$run AND key='val/bpb'")" = 2 ] || fail "val/bpb not at both evaluations"
bad=$(q "SELECT b.step || ': bpb ' || b.value || ', loss ' || l.value FROM metrics b
         JOIN metrics l ON l.run_id = b.run_id AND l.step = b.step AND l.key = 'val/loss'
         WHERE b.run_id=$run AND b.key='val/bpb' AND abs(b.value - l.value / ln(2) * $ratio) > 1e-9 * b.value")
[ -z "$bad" ] || fail "val/bpb is not val/loss / ln 2 x $ratio: $bad"
echo "ok: val/bpb = val/loss / ln 2 x tokens/byte"

# 3. No tokenizer: one warning line, no val/bpb, the run finishes.
"$GQE" "$tmp/shards.lua" eval.tokenizer="$tmp/none" name=notok 2>"$tmp/err" || { cat "$tmp/err"; fail "run without tokenizer failed"; }
[ "$(grep -c . "$tmp/err")" = 1 ] && grep -q "warning: val/bpb is not logged.*$tmp/none/encoder.json is missing" "$tmp/err" ||
  { cat "$tmp/err"; fail "expected one warning line naming the missing tokenizer"; }
run=$(q "SELECT max(id) FROM runs")
[ "$(q "SELECT status FROM runs WHERE id=$run")" = finished ] || fail "the run without tokenizer did not finish"
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$run AND key='val/bpb'")" = 0 ] || fail "val/bpb without a tokenizer"
[ "$(q "SELECT count(*) FROM metrics WHERE run_id=$run AND key='val/acc'")" = 2 ] || fail "val/acc missing on shards"
echo "ok: no tokenizer, one warning and no val/bpb"
