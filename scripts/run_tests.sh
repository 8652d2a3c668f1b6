#!/usr/bin/env bash
# `make test`: start whatever part of the local stack is not running, run ruff and the whole pytest
# suite against it, then stop exactly the components this run started. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
started_file="$(mktemp)"
cleanup() {
  local started
  started="$(paste -sd, "$started_file" 2>/dev/null || true)"
  if [[ -n "$started" ]]; then
    echo "==> stopping what this test run started: $started"
    .venv/bin/tickhouse down --only "$started" || true
  fi
  rm -f "$started_file"
}
trap cleanup EXIT

echo "==> headless Chromium for the dashboard test"
bash scripts/install_chromium.sh

echo "==> starting the local stack"
.venv/bin/tickhouse up --record "$started_file"

echo "==> ruff"
.venv/bin/ruff check .

echo "==> pytest"
mkdir -p test-artifacts
.venv/bin/pytest -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
