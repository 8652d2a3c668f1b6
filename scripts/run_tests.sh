#!/usr/bin/env bash
# `make test`: ruff and the whole pytest suite against stacks of its own — their own state dirs
# (.local/test-stack, and .local/test-stack-serial for the tests that restart services), free ports
# and env files — which it starts and stops (ops/suite.py). A user's stack and data are left alone,
# whether that stack is running or not. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> headless Chromium for the dashboard test"
bash scripts/install_chromium.sh

mkdir -p test-artifacts
exec .venv/bin/python -m ops.suite --junitxml=test-artifacts/junit.xml "$@"
