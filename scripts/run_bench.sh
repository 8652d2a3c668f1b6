#!/usr/bin/env bash
# `make bench`: run every bench/bench_*.py against the local stack and print their figures.
# Benchmarks print ratios against a baseline measured in the same run; they assert nothing.
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
for bench in "${benches[@]}"; do
  echo "==> $bench"
  .venv/bin/python "$bench"
done
