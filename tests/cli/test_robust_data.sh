#!/usr/bin/env bash
# Bad data files through a training script with data.kind=shards (llm.c
# token shards) or text: missing, empty, truncated, wrong magic or version,
# trailing bytes, tokens outside the vocabulary, no file matching a glob, a
# directory, and files shorter than one batch. Each must fail with a message
# naming the file and the problem (exit 1 through build/gqe), before the
# first step, leaving the run marked failed (never running). Valid shards
# train.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Shards written with string.pack, several per gqe process: mkshard PATH
# NTOKENS [MAGIC VERSION COUNT VOCAB] queues one, make_shards writes them.
cat > "$tmp/mkshard.lua" <<'LUA'
for spec in io.lines(...) do
  local path, n, magic, version, count, vocab = spec:match("^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
  n = tonumber(n); magic = tonumber(magic); version = tonumber(version)
  count = tonumber(count ~= "-" and count or n); vocab = tonumber(vocab)
  local f = assert(io.open(path, "wb"))
  f:write(string.pack("<i4i4i4", magic, version, count), string.rep("\0", 253 * 4))
  local t = {}
  for i = 1, n do t[i] = string.pack("<I2", (i * 7919) % vocab) end
  f:write(table.concat(t))
  f:close()
end
LUA
: > "$tmp/shards"
mkshard() { echo "$1 $2 ${3:-20240520} ${4:-1} ${5:--} ${6:-512}" >> "$tmp/shards"; }
make_shards() { "$GQE" "$tmp/mkshard.lua" "$tmp/shards"; : > "$tmp/shards"; }
mkdir -p "$tmp/sh"
mkshard "$tmp/sh/train_000.bin" 4000
mkshard "$tmp/sh/train_001.bin" 4000
mkshard "$tmp/sh/val.bin" 1000
make_shards

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "data", name = "tiny",
  data  = { kind = "shards", path = "$tmp/sh/train_*.bin", val_path = "$tmp/sh/val.bin", vocab = 512 },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 3, batch = 2, seq = 16, eval_every = 3, eval_batches = 1, db = "$db",
            checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
local s = gqe.train(cfg)
print("status " .. s.status)
LUA

# 0. Valid shards train.
"$GQE" "$tmp/run.lua" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "valid shards did not train"; }
grep -q "status finished" "$tmp/out" || fail "valid shards: not finished"

# expect "message" override... (tests/cli/lib.sh): collected, then run in
# one process by run_cases; two also go through build/gqe on their own
# (cli), for the exit status.

# Shards.
expect "$tmp/sh/none.bin: shard file not found" data.val_path="$tmp/sh/none.bin"
expect "no shard files match '$tmp/sh/nothing_\*.bin'" data.path="$tmp/sh/nothing_*.bin"
: > "$tmp/sh/empty.bin"
expect "$tmp/sh/empty.bin: empty file" data.val_path="$tmp/sh/empty.bin"
head -c 100 "$tmp/sh/val.bin" > "$tmp/sh/short.bin"
expect "$tmp/sh/short.bin: 100 bytes, shorter than the 1024-byte shard header" data.val_path="$tmp/sh/short.bin"
head -c 1500 "$tmp/sh/val.bin" > "$tmp/sh/trunc.bin"
expect "$tmp/sh/trunc.bin: truncated: the header says 1000 tokens but the file holds 238" data.val_path="$tmp/sh/trunc.bin"
mkshard "$tmp/sh/magic.bin" 1000 12345
expect "$tmp/sh/magic.bin: magic number 12345, expected 20240520" data.val_path="$tmp/sh/magic.bin"
mkshard "$tmp/sh/version.bin" 1000 20240520 2
expect "$tmp/sh/version.bin: shard version 2, expected 1" data.val_path="$tmp/sh/version.bin"
mkshard "$tmp/sh/count.bin" 1000 20240520 1 -5
expect "$tmp/sh/count.bin: negative token count -5" data.val_path="$tmp/sh/count.bin"
mkshard "$tmp/sh/trail.bin" 1000 20240520 1 990
expect "$tmp/sh/trail.bin: 20 trailing bytes after the 990 tokens" data.val_path="$tmp/sh/trail.bin"
mkshard "$tmp/sh/vocab.bin" 1000 20240520 1 1000 60000
expect "$tmp/sh/vocab.bin: token [0-9]+ at position [0-9]+ is outside the vocabulary \(vocab 512\)" data.val_path="$tmp/sh/vocab.bin"
# One bad shard among good ones is named.
mkdir -p "$tmp/sh2"; cp "$tmp/sh/train_000.bin" "$tmp/sh2/train_000.bin"; mkshard "$tmp/sh2/train_001.bin" 1000 12345
expect "$tmp/sh2/train_001.bin: magic number 12345" data.path="$tmp/sh2/train_*.bin"
mkshard "$tmp/sh/tiny.bin" 20
expect "$tmp/sh/tiny.bin.*holds 20 tokens but one batch of B=2 x \(T\+1\)=17 needs 34" data.val_path="$tmp/sh/tiny.bin"
expect "$tmp/sh.*(directory|cannot)" data.val_path="$tmp/sh"
expect "data.vocab must be <= 65536" data.vocab=70000

# Text.
printf 'too short' > "$tmp/short.txt"
expect "$tmp/short.txt.*one batch of B=2 x \(T\+1\)=17 needs 34" data.kind=text data.path="$tmp/short.txt" data.val_path= data.vocab=0
: > "$tmp/empty.txt"
expect "$tmp/empty.txt.*(empty|0 bytes|needs)" data.kind=text data.path="$tmp/empty.txt" data.val_path= data.vocab=0
# Long enough to train on, but its 10% validation tail is shorter than a batch.
head -c 300 lua/gqe/train.lua > "$tmp/val_short.txt"
expect "$tmp/val_short.txt.*val split.*needs 34" data.kind=text data.path="$tmp/val_short.txt" data.val_path= data.vocab=0
expect "$tmp/missing.txt.*(No such file|cannot open)" data.kind=text data.path="$tmp/missing.txt" data.val_path= data.vocab=0
expect "$tmp.*(directory|cannot)" data.kind=text data.path="$tmp" data.val_path= data.vocab=0

make_shards
run_cases
# Every run a bad file started failed before its first step, with the reason.
[ "$(q "SELECT count(*) FROM runs WHERE id > 1 AND NOT (status = 'failed' AND step = 0 AND error <> '')")" = 0 ] ||
  fail "a run with bad data did not fail before its first step: $(q "SELECT id, status, step FROM runs WHERE id > 1")"
[ "$(q "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run was left running"
cli "$tmp/sh/magic.bin: magic number 12345, expected 20240520" data.val_path="$tmp/sh/magic.bin"
cli "$tmp/short.txt.*one batch of B=2 x \(T\+1\)=17 needs 34" data.kind=text data.path="$tmp/short.txt" data.val_path= data.vocab=0
[ "$(q "PRAGMA integrity_check")" = ok ] || fail "integrity_check"
echo "test_robust_data: ${#wants[@]} bad data files rejected"
