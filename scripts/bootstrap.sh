#!/usr/bin/env bash
# Install whatever is missing for the local stack: the Python venv (.venv, from the pinned lock) and
# the Apache Kafka broker jars (from Maven Central, via stack/kafka/pom.xml). Idempotent: each step
# is skipped when a stamp says its inputs have not changed. Caches (pip, ~/.m2) speed it up but are
# never required.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STATE="${TICKHOUSE_STATE_DIR:-$ROOT/.local}"
mkdir -p "$STATE"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- Python venv -------------------------------------------------------------------------------
venv_hash="$(hash_of requirements.txt requirements-dev.txt pyproject.toml)"
if [[ ! -x .venv/bin/python || "$(cat .venv/.tickhouse-stamp 2>/dev/null)" != "$venv_hash" ]]; then
  say "Python venv (.venv) from requirements-dev.txt (requirements.txt + tests and linters) — about 1.5 minutes the first time"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade "pip==$(grep -E '^pip==' requirements.txt | cut -d= -f3)"
  .venv/bin/pip install --progress-bar off -q --only-binary=dbt-core-experimental-parser -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  echo "$venv_hash" > .venv/.tickhouse-stamp
else
  say "Python venv is up to date"
fi

# --- Kafka broker jars -------------------------------------------------------------------------
jars_hash="$(hash_of stack/kafka/pom.xml)"
libs="$STATE/kafka/libs"
if [[ ! -d "$libs" || "$(cat "$STATE/kafka/.jars-stamp" 2>/dev/null)" != "$jars_hash" ]]; then
  say "Apache Kafka broker jars from Maven Central (stack/kafka/pom.xml)"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -f stack/kafka/pom.xml dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs"
  echo "$jars_hash" > "$STATE/kafka/.jars-stamp"
else
  say "Kafka broker jars are up to date"
fi
