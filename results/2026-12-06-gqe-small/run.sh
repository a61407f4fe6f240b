#!/usr/bin/env bash
# Reproduces the whole study: builds gqe and the data if needed, trains
# every run of recall.lua, recall8.lua, brown.lua and long.lua (on this
# machine's GPUs) and bytes.lua (on its CPUs) into runs.db here, then
# rebuilds the report. Rerunning skips finished runs and
# resumes killed ones from their checkpoints (gqe's rerun rule), so the
# study can be done in several sittings.
#   bash results/2026-12-06-gqe-small/run.sh             (every visible GPU)
#   PER_GPU=8 GPUS=0 bash results/2026-12-06-gqe-small/run.sh recall   (some of recall, recall8, brown, long, bytes)
# Only the long-context arm's throughput is measured alone on a GPU; the
# small runs share GPUs (PER_GPU at once), so their tokens/s are not speeds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ -x build/gqe ] || make all
[ -f data/brown_gpt2_val.bin ] && [ -f data/brown_cloze.jsonl ] || make data
db=$here/runs.db
[ -f "$db" ] || [ ! -f "$db.xz" ] || xz -dkc "$db.xz" > "$db"   # the committed log, continued
ckpt=${CKPT_DIR:-checkpoints/study}
gpus=()
[ -n "${GPUS:-}" ] && gpus=(--gpus "$GPUS")
run() { build/gqe "$here/$1" "${gpus[@]}" --per-gpu "$2" --db "$db" "train.checkpoint_dir=$ckpt" "${@:3}"; }
parts=("$@"); [ ${#parts[@]} -gt 0 ] || parts=(recall recall8 brown long bytes)
for p in "${parts[@]}"; do
  case $p in
    recall) run recall.lua "${PER_GPU:-8}" ;;
    recall8) run recall8.lua "${PER_GPU:-8}" ;;
    brown) run brown.lua "${PER_GPU:-4}" ;;
    long) run long.lua 1 ;;
    bytes) build/gqe "$here/bytes.lua" --jobs "${JOBS:-2}" --db "$db" "train.checkpoint_dir=$ckpt" ;;
    *) echo "run.sh: unknown part '$p' (recall, recall8, brown, long, bytes)" >&2; exit 2 ;;
  esac
done
[ "${SKIP_REPORT:-0}" = 1 ] || bash "$here/report.sh"
xz -9 -kfc "$db" > "$db.xz"   # what to commit
