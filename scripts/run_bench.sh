#!/usr/bin/env bash
# `make bench`: run every bench/bench_*.py against the local stack and print their figures.
# Benchmarks print ratios against a baseline measured in the same run; they assert nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/tickhouse up
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
