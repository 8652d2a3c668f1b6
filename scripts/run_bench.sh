#!/usr/bin/env bash
# `make bench`: run every bench/bench_*.py against the local stack and print their figures.
# Benchmarks print ratios against a baseline measured in the same run; they assert no speed. A
# bench that finds a run it timed wrong (bench_split_restatement, bench_trade_conditions check
# theirs) exits non-zero: the others still run, and this script exits 1 naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
# the stack only: the supervised services (alerts, exporter, dashboard) would compete for the CPU
.venv/bin/tickhouse up --only postgres,kafka,airflow
shopt -s nullglob
benches=(bench/bench_*.py)
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "no benchmarks yet under bench/"
  exit 0
fi
failed=()
for bench in "${benches[@]}"; do
  echo "==> $bench"
  .venv/bin/python "$bench" || failed+=("$bench")
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
