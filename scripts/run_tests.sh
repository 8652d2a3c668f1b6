#!/usr/bin/env bash
# `make test`: ruff and the whole pytest suite against a stack of its own — its own state dir
# (.local/test-stack), free ports and env file — which it starts and stops (ops/suite.py). A
# user's stack and data are left alone, whether that stack is running or not. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> headless Chromium for the dashboard test"
bash scripts/install_chromium.sh

mkdir -p test-artifacts
exec .venv/bin/python -m ops.suite --junitxml=test-artifacts/junit.xml "$@"
