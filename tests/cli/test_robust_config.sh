#!/usr/bin/env bash
# Bad settings, one at a time as arguments of a training script: each must
# fail with a message naming the key and what is allowed, never crash, and
# leave no run marked running; through build/gqe the exit status is 1. Unknown keys, in
# overrides, in the script's table and in an experiment's grid, list the
# valid ones.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
head -c 20000 lua/gqe/train.lua > "$tmp/text.txt"

cat > "$tmp/run.lua" <<LUA
local gqe = require "gqe"
local cfg = {
  experiment = "config", name = "tiny",
  data  = { path = "$tmp/text.txt" },
  model = { dim = 16, layers = 1, experts = 4, groups = 2, k = 1, head_dim = 4 },
  train = { steps = 3, batch = 2, seq = 16, eval_every = 3, eval_batches = 1, db = "$db",
            checkpoint_dir = "$tmp/ckpt", progress = false },
}
gqe.config.apply(cfg, (gqe.config.parse_args({...})))
gqe.train(cfg)
LUA

# expect "message" override... (tests/cli/lib.sh): collected here, run by
# run_cases in one process; a few also go through the command line on their
# own (cli), for the exit status.

# model
expect "model.dim must be >= 1, got 0" model.dim=0
expect "model.layers must be >= 1, got -1" model.layers=-1
expect "model.dim must be a number, got 'abc'" model.dim=abc
expect "model.dim must be an integer, got '1.5'" model.dim=1.5
expect "model.experts \(3\) must be divisible by model.groups \(2\)" model.experts=3
expect "model.k must be in 1..2 .*got 3" model.k=3
expect "model.k must be >= 1, got 0" model.k=0
expect "model.groups must be >= 1, got 0" model.groups=0
expect "model.head_dim must be even when model.rope is on, got 3" model.head_dim=3
expect "model.head_dim is unset and model.dim \(30\) is not divisible by model.experts \(4\)" model.dim=30 model.head_dim=0
expect "model.attention must be one of gqe, gqa, mha, mqa, got 'foo'" model.attention=foo
expect "model.variant must be one of gqe, hard_concat, weighted_concat, got 'x'" model.variant=x
expect "model.router must be one of softmax, sigmoid, balanced, random, hash, got 'y'" model.router=y
expect "model.mlp must be one of gelu, swiglu, got 'relu'" model.mlp=relu
expect "model.rope must be true or false, got 'maybe'" model.rope=maybe
expect "model.vocab must be >= 0, got -1" model.vocab=-1
expect "model.vocab \(10\) is smaller than the vocabulary of the data \(256" model.vocab=10
expect "model.norm_eps must be > 0" model.norm_eps=0
expect "model.init_std must be > 0" model.init_std=-1
expect "model.rope_theta must be > 0" model.rope_theta=0
expect "model.rope_theta must be finite, got inf" model.rope_theta=1e999
expect "model.mlp_hidden must be >= 0, got -1" model.mlp_hidden=-1
expect "model.experts \(6\) must be divisible by model.groups \(4\)" model.attention=gqa model.experts=6 model.groups=4
expect "groups must be 1 for attention 'mqa', got 3" model.attention=mqa model.groups=3
expect "cannot allocate [0-9]+ bytes" model.dim=5000000 model.head_dim=0
# sizes that overflow are refused naming the key and the size, never a wrapped number
expect "model.mlp_hidden x model.dim \(an MLP weight\): size 1 x 4000000000 x 1000000000 is too large" model.dim=1000000000
expect "dim 4611686018427387904 is too large" model.dim=4611686018427387904
# optim
expect "optim.name must be one of adamw, sgd, got 'adam'" optim.name=adam
expect "optim.lr must be > 0, got 0" optim.lr=0
expect "optim.lr must be a number, got 'nan'" optim.lr=nan
expect "optim.beta1 must be in \[0, 1\), got 1.5" optim.beta1=1.5
expect "optim.beta2 must be in \[0, 1\), got -1" optim.beta2=-1
expect "optim.eps must be > 0" optim.eps=0
expect "optim.weight_decay must be >= 0" optim.weight_decay=-1
expect "optim.momentum must be >= 0" optim.name=sgd optim.momentum=-1
expect "optim.nesterov must be true or false, got 'sure'" optim.nesterov=sure
# schedule
expect "schedule.kind must be one of constant, cosine, wsd, got 'linear'" schedule.kind=linear
expect "schedule.warmup must be >= 0, got -1" schedule.warmup=-1
expect "schedule.warmup \(100\) must be less than train.steps \(3\)" schedule.warmup=100
expect "schedule.min_lr must be in \[0, 1\], got 2" schedule.min_lr=2
expect "schedule.decay_frac must be in \(0, 1\], got 2" schedule.decay_frac=2
expect "schedule.decay_frac .* before schedule.warmup" schedule.kind=wsd schedule.warmup=2 train.steps=4 schedule.decay_frac=0.9
# train
expect "train.steps must be >= 1, got 0" train.steps=0
expect "train.batch must be >= 1, got 0" train.batch=0
expect "train.seq must be >= 1, got 0" train.seq=0
expect "train.device must be one of cpu, cuda, got 'tpu'" train.device=tpu
expect "train.precision must be one of fp32, bf16, got 'fp16'" train.precision=fp16
expect "train.precision 'bf16' needs train.device=cuda" train.precision=bf16
expect "train.log_every must be >= 1, got 0" train.log_every=0
expect "train.eval_every must be >= 1, got 0" train.eval_every=0
expect "train.eval_batches must be >= 1, got 0" train.eval_batches=0
expect "train.grad_clip must be >= 0" train.grad_clip=-1
expect "train.aux_coef must be >= 0" train.aux_coef=-1
expect "train.on_nan must be one of stop, skip, got 'ignore'" train.on_nan=ignore
expect "train.checkpoint_every must be >= 0, got -1" train.checkpoint_every=-1
expect "train.checkpoint_dir: cannot create directory /proc/nonexistent/ckpt" train.checkpoint_dir=/proc/nonexistent/ckpt
echo 'local g = require "gqe"; os.exit(g.cuda_available and g.cuda_available() and 0 or 1)' > "$tmp/cuda.lua"
if ! "$GQE" "$tmp/cuda.lua" 2>/dev/null; then
  expect "train.device is 'cuda' but (this gqe was built without CUDA|the CUDA runtime found no usable device: NVIDIA driver)" train.device=cuda
fi
# data
expect "data.kind must be one of text, shards, recall, got 'csv'" data.kind=csv
expect "data.val_frac must be in \[0, 1\), got 1" data.val_frac=1
expect "data.val_frac must be > 0 for data.kind 'text'" data.val_frac=0
expect "data.val_path is for data.kind 'shards'" data.val_path=/somewhere
expect "data.path must name a file for data.kind 'text'" data.path=
expect "data.vocab must be >= 0, got -1" data.vocab=-1
expect "$tmp/nope.txt.*(No such file|cannot open)" data.path="$tmp/nope.txt"
expect "data.val_path must name the validation shards" data.kind=shards
expect "kind=recall: vocab 3 gives 1 distinct keys" data.kind=recall data.vocab=3
expect "kind=recall: seq 16 is shorter than 2\*num_pairs" data.kind=recall
expect "the train split holds [0-9]+ tokens but one batch of B=100000000" train.batch=100000000

# Unknown keys and sections: the valid ones are listed.
expect "unknown key model.kk; valid keys of model: attention, balance_gamma, balance_lr_scale, dim, experts, groups, head_dim, init_std, k," model.kk=2
expect "unknown key train.step; valid keys of train: .*steps" train.step=2
expect "unknown config section 'modle' in override 'modle.k'; valid: model, optim, schedule, data, train" modle.k=2
cat > "$tmp/typo.lua" <<LUA
require("gqe").train { model = { dim = 16, layrs = 2 }, data = { path = "$tmp/text.txt" }, train = { db = "$db" } }
LUA
set +e; "$GQE" "$tmp/typo.lua" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "unknown key model.layrs; valid keys of model: .*layers" "$tmp/err" || { cat "$tmp/err"; fail "typo in the script's table"; }
grep -q "typo.lua:1" "$tmp/err" || { cat "$tmp/err"; fail "the message does not point at the script's line"; }
cat > "$tmp/exp.lua" <<LUA
require("gqe").experiment { name = "bad-grid", base = { data = { path = "$tmp/text.txt" }, train = { db = "$db" } },
  grid = { ["model.routr"] = { "softmax", "hash" } } }
LUA
set +e; "$GQE" "$tmp/exp.lua" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "model.routr" "$tmp/err" && grep -q "router" "$tmp/err" || { cat "$tmp/err"; fail "typo in an experiment grid"; }

run_cases
n=$((${#wants[@]} + 2))
# The same through the command line: config, core and data errors.
cli "unknown key model.kk; valid keys of model:" model.kk=2
cli "model.k must be in 1..2" model.k=3
cli "groups must be 1 for attention 'mqa', got 3" model.attention=mqa model.groups=3
cli "$tmp/nope.txt.*(No such file|cannot open)" data.path="$tmp/nope.txt"
[ "$(sqlite3 "$db" "SELECT count(*) FROM runs WHERE status='running'")" = 0 ] || fail "a run was left running"

[ ! -f "$db" ] || [ "$(sqlite3 "$db" "SELECT count(*) FROM runs WHERE status NOT IN ('failed')")" = 0 ] ||
  fail "a run with a bad setting did not end as failed"
echo "test_robust_config: $n bad settings rejected"
