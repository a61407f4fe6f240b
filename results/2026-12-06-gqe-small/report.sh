#!/usr/bin/env bash
# Rebuilds the study's report from the committed run log (runs.db): the
# tables (tables.md) and one HTML report per experiment (report/NAME/).
#   bash results/2026-12-06-gqe-small/report.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ -x build/gqe ] || make all
db=$here/runs.db
# The run log is committed compressed (runs.db.xz); the working copy is made
# from it when missing.
[ -f "$db" ] || { [ -f "$db.xz" ] && xz -dkc "$db.xz" > "$db"; } || { echo "no run log at $db: run run.sh first" >&2; exit 1; }
build/gqe "$here/tables.lua" "$db" > "$here/tables.md"
for exp in $(build/gqe "$here/tables.lua" "$db" --experiments); do
  build/gqe report "$exp" --db "$db" --out "$here/report/$exp"
done
echo "tables: $here/tables.md; reports: $here/report/"
