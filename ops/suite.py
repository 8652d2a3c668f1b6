"""`make test` on a stack of its own, so that a user's stack and data are never touched.

The suite runs against a local stack with its own state dir (`.local/test-stack`, or
TICKHOUSE_TEST_STATE_DIR), its own free ports and its own env file (`<state dir>/test.env`, named by
TICKHOUSE_ENV_FILE, so the project's `.env` is not read). It starts from Tickhouse's defaults: the
variables that configure Tickhouse or point at outside services (ports, credentials, topics,
WAREHOUSE, SNOWFLAKE_*, notifier secrets, AIRFLOW_*) are not passed on from the caller's
environment. This module starts what the tests need, runs ruff and pytest, and stops exactly what it
started, whether the user's stack is running or not; the stack's data stays in its state dir for
the next run.

    python -m ops.suite [PYTEST ARGS...]      (what scripts/run_tests.sh runs)

TICKHOUSE_TEST_COMPONENTS (default: postgres,kafka,airflow) and TICKHOUSE_TEST_LINT (default 1)
narrow a run; TICKHOUSE_TEST_KAFKA_BROKERS=3 runs it on a Kafka cluster (KAFKA_BROKERS).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ops.stack.manager import COMPONENTS, down, up
from tickhouse.config import KAFKA_BROKER_PORT_STEP, KAFKA_PRINCIPALS, PROJECT_ROOT

# what configures Tickhouse, or reaches outside services: never taken from the caller's environment
_NOT_PASSED_ON = (
    "TICKHOUSE_", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_CONTROLLER_PORT", "KAFKA_LOGIN_", "KAFKA_HEAP_OPTS",
    "KAFKA_ANONYMOUS_ACCESS", "KAFKA_BROKERS",
    "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_", "KAFKA_SSL_", "KAFKA_USERNAME", "KAFKA_PASSWORD",
    *(f"KAFKA_{p.upper()}_PASSWORD" for p in (*KAFKA_PRINCIPALS, "controller")), "TOPIC_",
    "TRADES_TOPIC", "QUOTES_TOPIC", "ALERTS_", "CANDLES_TOPIC", "POSTGRES_", "LOADER_", "DBT_",
    "BI_READER_", "AIRFLOW", "FINNHUB_", "SYMBOLS", "DRAIN_", "QUARANTINE_", "WAREHOUSE",
    "SNOWFLAKE_", "SLACK_", "SMTP_", "DASHBOARD_", "DOCS_", "PIPELINE_METRICS_", "PRODUCER_METRICS_", "DEMO_",
)
# ... except the knobs of this runner
_PASSED_ON = ("TICKHOUSE_TEST_",)
_PORTS = (
    "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_LOGIN_PORT", "POSTGRES_PORT", "AIRFLOW_PORT",
    "PRODUCER_METRICS_PORT", "PIPELINE_METRICS_PORT", "ALERTS_METRICS_PORT", "DASHBOARD_PORT", "DOCS_PORT",
)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int, step: int = KAFKA_BROKER_PORT_STEP, tries: int = 200) -> int:
    """A port p such that p, p + step, ... (count ports) are all free now: one per broker of a
    local Kafka cluster (KAFKA_BROKERS)."""
    for _ in range(tries):
        base = free_port()
        ports = [base + step * n for n in range(count)]
        if ports[-1] <= 65535 and all(_bindable(port) for port in ports[1:]):
            return base
    raise SystemExit(f"found no {count} free ports {step} apart on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def user_state_dir(environ: Mapping[str, str], project_root: Path = PROJECT_ROOT) -> Path:
    """Where the user's stack keeps its state (TICKHOUSE_STATE_DIR, default `.local`)."""
    return Path(environ.get("TICKHOUSE_STATE_DIR") or project_root / ".local").resolve()


def stack_state_dir(environ: Mapping[str, str], project_root: Path = PROJECT_ROOT) -> Path:
    """The test stack's state dir: TICKHOUSE_TEST_STATE_DIR, default `.local/test-stack`."""
    return Path(environ.get("TICKHOUSE_TEST_STATE_DIR") or project_root / ".local" / "test-stack").resolve()


def passed_on(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without the variables that configure Tickhouse."""
    return {
        key: value
        for key, value in environ.items()
        if key.startswith(_PASSED_ON) or not key.startswith(_NOT_PASSED_ON)
    }


def run_environment(
    environ: Mapping[str, str], project_root: Path = PROJECT_ROOT
) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment of the test run, the settings written to its env file).

    The caller's environment without what configures Tickhouse, plus the test stack's state dir,
    free ports and the broker jars that setup installed for the user's stack.
    """
    user_state = user_state_dir(environ, project_root)
    state = stack_state_dir(environ, project_root)
    if state == user_state:
        raise SystemExit(
            f"the test stack's state dir {state} is the user's; set TICKHOUSE_TEST_STATE_DIR to "
            "another directory"
        )
    # TICKHOUSE_TEST_KAFKA_BROKERS=3: the suite's Kafka as a cluster, each broker's ports a step apart
    brokers = int(environ.get("TICKHOUSE_TEST_KAFKA_BROKERS", "").strip() or "1")
    ports = {
        name: str(free_port_run(brokers) if name.startswith("KAFKA_") else free_port()) for name in _PORTS
    }
    settings = {
        "TICKHOUSE_STATE_DIR": str(state),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports.pop('KAFKA_PORT')}",
        "POSTGRES_HOST": "127.0.0.1",
        "AIRFLOW_HOST": "127.0.0.1",
        "WAREHOUSE": "postgres",
        **({"KAFKA_BROKERS": str(brokers)} if brokers > 1 else {}),
        **ports,
    }
    env = passed_on(environ)
    env.update(settings)
    env["TICKHOUSE_ENV_FILE"] = str(state / "test.env")
    env["TICKHOUSE_USER_STATE_DIR"] = str(user_state)  # for the test that proves it untouched
    env["KAFKA_LIBS_DIR"] = environ.get("KAFKA_LIBS_DIR") or str(user_state / "kafka" / "libs")
    return env, settings


def write_env_file(path: Path, settings: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# The test stack of `make test` (ops/suite.py), rewritten at every run.\n"]
    path.write_text("".join(lines + [f"{key}={value}\n" for key, value in settings.items()]))


def run(pytest_args: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Start the test stack, run ruff and pytest against it, stop what was started; pytest's exit
    status (ruff's when it fails)."""
    caller = dict(os.environ if environ is None else environ)
    components = [
        c.strip() for c in caller.get("TICKHOUSE_TEST_COMPONENTS", ",".join(COMPONENTS)).split(",")
        if c.strip()
    ]
    lint = caller.get("TICKHOUSE_TEST_LINT", "1") != "0"
    env, settings = run_environment(caller)
    os.environ.clear()
    os.environ.update(env)
    state = Path(env["TICKHOUSE_STATE_DIR"])
    print(f"==> the test stack: {state} (the user's stack and data are not touched)", flush=True)
    down(say=lambda line: None)  # whatever an interrupted run left running, by its pid files
    write_env_file(Path(env["TICKHOUSE_ENV_FILE"]), settings)
    started: list[str] = []
    try:
        print(f"==> starting {', '.join(components)}", flush=True)
        up(components, say=lambda line: print(f"    {line}", flush=True), started=started)
        if lint:
            print("==> ruff", flush=True)
            code = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "."],
                                  cwd=PROJECT_ROOT, check=False).returncode
            if code:
                return code
        print("==> pytest", flush=True)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
            cwd=PROJECT_ROOT,
            check=False,
        ).returncode
    finally:
        print("==> stopping the test stack", flush=True)
        down(say=lambda line: print(f"    {line}", flush=True))


if __name__ == "__main__":
    try:
        sys.exit(run(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
