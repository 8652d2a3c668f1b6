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

pytest runs in two passes on the one stack (docs/operations.md#the-test-loop):

1. the tests not marked `serial` (nor `unit`, see 2), on TICKHOUSE_TEST_WORKERS
   pytest-xdist workers (default 3) that all read the same env file. `--dist loadgroup` with the
   scheduler of tests/conftest.py: a module's tests stay on one worker (its module fixtures are set
   up once), the tests of one `xdist_group` (those that drive the same Airflow DAGs) share one
   worker, one after another, and the longest work starts first (by tests/module_seconds.json, so
   that no long module starts last while the other workers idle);
2. the tests marked `serial`, one at a time: those that stop, restart or kill the shared services,
   fill a disk, start a stack of their own, or measure time (pyproject.toml's marker says the
   rule). Beside them, in a process of their own, run the unit tests (tests/unit, no services):
   the serial tests use about one of the machine's cores, and the parallel pass is bound by the
   CPU.

The passes respect the paths and the `-m` expression given. Each writes a junit file into the
state dir; the run's `--junitxml` is their merge, and the run ends with the 20 slowest tests of
both passes. TICKHOUSE_TEST_WORKERS=1 runs everything in one pass, one test at a time, as before.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.stack.manager import COMPONENTS, down, up
from ops.test_report import merge_junit, slowest_lines, suite_seconds
from tickhouse.config import (
    KAFKA_BROKER_PORT_STEP,
    KAFKA_JVM_PERFORMANCE_OPTS,
    KAFKA_PRINCIPALS,
    PROJECT_ROOT,
)

# what configures Tickhouse, or reaches outside services: never taken from the caller's environment
_NOT_PASSED_ON = (
    "TICKHOUSE_", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_CONTROLLER_PORT", "KAFKA_LOGIN_", "KAFKA_HEAP_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS",
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


# how often the test stack's Airflow parses each DAG file again (AIRFLOW_DAG_PARSE_SECONDS)
TEST_DAG_PARSE_SECONDS = 600

# the kernel's range of ports for outgoing connections (Linux); its usual start where it cannot be read
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(span: int = 0) -> int:
    """A TCP port nothing listens on now, below the kernel's ephemeral range (with the `span`
    ports above it below that range too). A port the OS may hand out (bind to port 0, an outgoing
    connection's own port) can be taken while the service on it restarts: by another test's
    `bind(0)`, or by a client retrying it that connects to itself."""
    top = _ephemeral_start() - span
    if top <= LOWEST_PORT:
        raise SystemExit(f"no ports below the ephemeral range ({EPHEMERAL_PORTS}) for the test stack")
    chooser = random.SystemRandom()
    for _ in range(500):
        port = chooser.randrange(LOWEST_PORT, top)
        if _bindable(port):
            return port
    raise SystemExit(f"found no free port between {LOWEST_PORT} and {top} on 127.0.0.1")


def free_port_run(count: int, step: int = KAFKA_BROKER_PORT_STEP, tries: int = 200) -> int:
    """A port p such that p, p + step, ... (count ports) are all free now: one per broker of a
    local Kafka cluster (KAFKA_BROKERS)."""
    for _ in range(tries):
        base = free_port(span=step * (count - 1))
        ports = [base + step * n for n in range(count)]
        if all(_bindable(port) for port in ports[1:]):
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
        # the test stack's brokers start many times and carry little: the JIT's first tier only
        # halves their CPU at start and when idle (docs/performance.md#make-test)
        "KAFKA_JVM_PERFORMANCE_OPTS": f"{KAFKA_JVM_PERFORMANCE_OPTS} -XX:TieredStopAtLevel=1",
        # the DAG files do not change while the tests run: each parse only costs CPU
        "AIRFLOW_DAG_PARSE_SECONDS": str(TEST_DAG_PARSE_SECONDS),
        **({"KAFKA_BROKERS": str(brokers)} if brokers > 1 else {}),
        **ports,
    }
    env = passed_on(environ)
    env.update(settings)
    env["TICKHOUSE_ENV_FILE"] = str(state / "test.env")
    env["TICKHOUSE_USER_STATE_DIR"] = str(user_state)  # for the test that proves it untouched
    env["KAFKA_LIBS_DIR"] = environ.get("KAFKA_LIBS_DIR") or str(user_state / "kafka" / "libs")
    # names this run for the passes' shared reports (tests/reliability/conftest.py's summary)
    env["TICKHOUSE_TEST_RUN"] = uuid.uuid4().hex[:12]
    return env, settings


def write_env_file(path: Path, settings: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# The test stack of `make test` (ops/suite.py), rewritten at every run.\n"]
    path.write_text("".join(lines + [f"{key}={value}\n" for key, value in settings.items()]))


# pytest-xdist workers of the first pass: on 2 cores, 3 keep the CPU busy; more make every test
# slower and the pass longer (docs/performance.md#make-test has the runs)
DEFAULT_WORKERS = 3
SERIAL_MARKER = "serial"
# the marker tests/conftest.py gives every test under tests/unit (no services)
UNIT_MARKER = "unit"
# pytest's exit status when a pass selected no test (a selection without serial tests, say)
NO_TESTS_COLLECTED = 5
SLOWEST = 20


@dataclass(frozen=True, slots=True)
class PytestArgs:
    """A run's pytest arguments, with the options the passes set themselves taken out."""

    marks: str | None  # -m EXPR
    junitxml: str | None  # --junitxml PATH
    workers: int | None  # -n N
    rest: tuple[str, ...]

    @property
    def exitfirst(self) -> bool:
        return any(a in ("-x", "--exitfirst") or a.startswith("--maxfail") for a in self.rest)


def split_pytest_args(args: Sequence[str]) -> PytestArgs:
    """Take -m, --junitxml (--junit-xml) and -n (--numprocesses) out of `args`, in any spelling."""
    taken: dict[str, str] = {}
    rest: list[str] = []
    spellings = {"-m": "marks", "--junitxml": "junitxml", "--junit-xml": "junitxml", "-n": "workers",
                 "--numprocesses": "workers"}
    items = iter(args)
    for arg in items:
        name, _, value = arg.partition("=")
        if arg in spellings:
            taken[spellings[arg]] = next(items, "")
        elif name.startswith("--") and name in spellings:
            taken[spellings[name]] = value
        elif arg[:2] in ("-m", "-n") and len(arg) > 2:
            taken[spellings[arg[:2]]] = arg[2:]
        else:
            rest.append(arg)
    workers = taken.get("workers")
    if workers == "auto":
        workers = str(os.cpu_count() or 1)
    return PytestArgs(taken.get("marks"), taken.get("junitxml"), int(workers) if workers else None,
                      tuple(rest))


@dataclass(frozen=True, slots=True)
class Pass:
    name: str
    args: list[str]
    junit: Path
    # a pytest run at the same time as this one, in a process of its own
    beside: Pass | None = None


def passes(args: PytestArgs, workers: int, state: Path) -> list[Pass]:
    """The pytest passes of a run: the parallel one and the serial one (one pass with 1 worker)."""
    if workers <= 1:
        marks = ["-m", args.marks] if args.marks else []
        return [Pass("all tests, one at a time", [*args.rest, *marks], state / "junit-all.xml")]
    user = f"({args.marks}) and " if args.marks else ""
    return [
        Pass(f"the tests not marked {SERIAL_MARKER} or {UNIT_MARKER}, on {workers} workers",
             [*args.rest, "-m", f"{user}not {SERIAL_MARKER} and not {UNIT_MARKER}", "-n", str(workers),
              "--dist", "loadgroup",
              # not the modules with the most tests first: tests/conftest.py's scheduler starts the
              # longest work first, by the seconds tests/module_seconds.json records
              "--no-loadscope-reorder"],
             state / "junit-parallel.xml"),
        Pass(f"the tests marked {SERIAL_MARKER}, one at a time",
             [*args.rest, "-m", f"{user}{SERIAL_MARKER}"], state / "junit-serial.xml",
             beside=Pass(f"the {UNIT_MARKER} tests, beside the {SERIAL_MARKER} ones",
                         [*args.rest, "-m", f"{user}{UNIT_MARKER} and not {SERIAL_MARKER}"],
                         state / "junit-unit.xml")),
    ]


def run_status(codes: Sequence[int]) -> int:
    """The run's exit status from its passes': the first failure's; a pass that selected no test
    fails the run only if no pass ran any."""
    ran = [code for code in codes if code != NO_TESTS_COLLECTED]
    if not ran:
        return NO_TESTS_COLLECTED if codes else 0
    return next((code for code in ran if code), 0)


def workers_of(args: PytestArgs, caller: Mapping[str, str]) -> int:
    if args.workers is not None:
        return args.workers
    raw = caller.get("TICKHOUSE_TEST_WORKERS", "").strip()
    return int(raw) if raw else DEFAULT_WORKERS


def _pytest_command(step: Pass) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={step.junit}",
            *step.args]


def _start_beside(step: Pass, state: Path) -> subprocess.Popen[bytes]:
    """Start `step` in the background, its output into a log file (printed when it ends)."""
    with _beside_log(step, state).open("wb") as out:
        return subprocess.Popen(_pytest_command(step), cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


def _beside_log(step: Pass, state: Path) -> Path:
    return state / f"{step.junit.stem}.log"


def _finish_beside(step: Pass, process: subprocess.Popen[bytes], state: Path) -> tuple[int, float | None]:
    """Wait for a run started by `_start_beside` and print its output: (exit status, the seconds
    pytest reports in its junit file)."""
    code = process.wait()
    seconds = suite_seconds(step.junit)
    took = f"{seconds:.0f} s, " if seconds is not None else ""
    print(f"==> {step.name}: its output ({took}exit {code})", flush=True)
    print(_beside_log(step, state).read_text(errors="replace"), end="", flush=True)
    return code, seconds


def run_pytest(pytest_args: list[str], environ: Mapping[str, str]) -> int:
    """pytest's passes (see the module's docstring); the run's exit status."""
    args = split_pytest_args(pytest_args)
    workers = workers_of(args, environ)
    state = Path(environ["TICKHOUSE_STATE_DIR"])
    planned = passes(args, workers, state)
    codes: list[int] = []
    times: list[str] = []
    started = time.monotonic()
    runs = [run for step in planned for run in (step, step.beside) if run is not None]
    for each in runs:
        each.junit.unlink(missing_ok=True)
    for number, step in enumerate(planned, 1):
        print(f"==> pytest, pass {number} of {len(planned)}: {step.name}", flush=True)
        began = time.monotonic()
        beside = _start_beside(step.beside, state) if step.beside else None
        code = subprocess.run(_pytest_command(step), cwd=PROJECT_ROOT, check=False).returncode
        codes.append(code)
        times.append(f"pass {number} {time.monotonic() - began:.0f} s (exit {code})")
        if beside is not None and step.beside is not None:
            beside_code, seconds = _finish_beside(step.beside, beside, state)
            codes.append(beside_code)
            took = f"{seconds:.0f} s " if seconds is not None else ""
            times.append(f"beside it {took}(exit {beside_code})")
            code = code or beside_code
        if code in (2, 3, 4) or (code == 1 and args.exitfirst):
            break  # interrupted, an internal or a usage error (the next pass would repeat it), or -x
    junits = [each.junit for each in runs]
    if args.junitxml:
        merge_junit(junits, Path(args.junitxml) if Path(args.junitxml).is_absolute()
                    else PROJECT_ROOT / args.junitxml)
    lines = slowest_lines(junits, SLOWEST)
    if lines:
        print(f"==> the {len(lines)} slowest tests of the run (setup + call + teardown, every pass)")
        print("\n".join(lines))
    status = run_status(codes)
    print(f"==> pytest took {time.monotonic() - started:.0f} s: {', '.join(times)}; exit {status}",
          flush=True)
    return status


def run(pytest_args: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Start the test stack, run ruff and pytest's passes against it, stop what was started; the
    passes' exit status (ruff's when it fails)."""
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
        return run_pytest(pytest_args, env)
    finally:
        print("==> stopping the test stack", flush=True)
        down(say=lambda line: print(f"    {line}", flush=True))


if __name__ == "__main__":
    try:
        sys.exit(run(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
