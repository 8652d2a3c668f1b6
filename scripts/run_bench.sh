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
benches=()
for bench in bench/bench_*.py; do
  # the 30-minute soak measures the supervised services too: it runs last, on the whole stack, when
  # asked (BENCH_SOAK=1 make bench, or `make soak` alone)
  [[ $bench == bench/bench_soak.py ]] || benches+=("$bench")
done
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "no benchmarks yet under bench/"
  exit 0
fi
failed=()
for bench in "${benches[@]}"; do
  echo "==> $bench"
  .venv/bin/python "$bench" || failed+=("$bench")
done
if [[ ${BENCH_SOAK:-0} == 1 ]]; then
  echo "==> bench/bench_soak.py (the whole stack: tickhouse up)"
  { .venv/bin/tickhouse up && .venv/bin/python bench/bench_soak.py; } || failed+=(bench/bench_soak.py)
else
  echo "skipped bench/bench_soak.py (30 minutes): BENCH_SOAK=1 make bench, or make soak"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
