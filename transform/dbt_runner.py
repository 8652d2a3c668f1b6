"""dbt on dbt_project/: `dbt build` the way the transform_marts DAG runs it, and `dbt parse`.

dbt runs in-process through its programmatic entry point (`dbtRunner`), with the project at
`dbt_project/` and the profile `tickhouse` read from `profiles.yml` at the repository root.
The profile takes its connection from environment variables, which are set here from
`load_settings()` so that the generated credentials (setup's secrets file) reach dbt.
`WAREHOUSE=snowflake` selects the profile's `snowflake` output (DBT_TARGET).

On PostgreSQL every dbt connection has a `lock_timeout` (DBT_LOCK_TIMEOUT_SECONDS, through
libpq's PGOPTIONS): a statement that needs a lock a long BI query holds (replacing a view the
query reads) fails after that long instead of queueing the BI queries behind it; `build` and the
hot runs then run the invocation again, up to DBT_LOCK_RETRIES more times.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tickhouse.config import (
    PROJECT_ROOT,
    Settings,
    load_settings,
    merged_environment,
)
from tickhouse.errors import TickhouseError

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
PROFILES_DIR = PROJECT_ROOT
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

log = logging.getLogger(__name__)

# PostgreSQL's message when lock_timeout cancels a statement (SQLSTATE 55P03)
LOCK_TIMEOUT_MESSAGE = "canceling statement due to lock timeout"


class TransformError(TickhouseError, RuntimeError):
    """dbt could not run or reported failures."""


def dbt_environment(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment variables profiles.yml reads, from the Tickhouse settings.

    `DBT_TARGET` (the profile's output) follows `WAREHOUSE` (postgres or snowflake) unless it is
    set explicitly; the SNOWFLAKE_* variables are passed on from the environment or `.env`.
    """
    from tickhouse.snowflake.settings import selected_warehouse

    merged = merged_environment(environ)
    values = {
        "POSTGRES_HOST": settings.postgres_host,
        "POSTGRES_PORT": str(settings.postgres_port),
        "POSTGRES_DB": settings.postgres_db,
        "DBT_USER": settings.dbt_user,
        "DBT_PASSWORD": settings.dbt_password,
        "BI_READER_USER": settings.bi_reader_user,
    }
    target = merged.get("DBT_TARGET", "").strip() or selected_warehouse(environ)
    if target != "postgres":  # profiles.yml's default
        values["DBT_TARGET"] = target
    values.update({k: v for k, v in merged.items() if k.startswith("SNOWFLAKE_")})
    if target == "postgres":
        values["PGOPTIONS"] = pg_options_with_lock_timeout(
            merged.get("PGOPTIONS", ""), settings.dbt_lock_timeout_seconds
        )
    return values


def pg_options_with_lock_timeout(pgoptions: str, seconds: float) -> str:
    """libpq's PGOPTIONS with `-c lock_timeout=<ms>` added (after, so it wins over one given)."""
    setting = f"-c lock_timeout={max(1, round(seconds * 1000))}"
    return f"{pgoptions.strip()} {setting}".strip()


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_dbt(args: Sequence[str], settings: Settings | None = None, manifest: Any = None) -> Any:
    """Invoke one dbt command (e.g. ["build", "--full-refresh"]) on the project; returns
    dbt's `dbtRunnerResult` (`.success`, `.result`, `.exception`). `manifest`: one a `parse`
    of this process returned, so that dbt does not parse the project again."""
    from dbt.cli.main import dbtRunner  # heavy import: only when dbt actually runs

    settings = settings or load_settings()
    command = [
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(PROFILES_DIR),
    ]
    start_children_before_secrets()  # before dbt's password is in the environment
    with _environment(dbt_environment(settings)):
        return dbtRunner(manifest=manifest).invoke(command)


def start_children_before_secrets() -> None:
    """Start now the child processes dbt's run would start, before a password is in os.environ.

    dbt's adapters make locks of the spawn context, whose first use starts Python's multiprocessing
    resource tracker: a child process that keeps, for the rest of this process's life, a copy of
    the environment it was started with. Started inside `run_dbt`'s environment it would hold
    DBT_PASSWORD (and a task's Kafka login) where anyone reading /proc as this user finds it. Call
    this before a password goes into os.environ; once running, the tracker is reused.
    """
    import platform
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    # the same for `uname -p`, which Python's platform module runs once per process (dbt asks for
    # the platform while it runs): asked now, the answer is cached and no child sees the password
    platform.processor()


# pg_advisory_lock key of "one dbt build at a time" (any 64-bit constant; this spells "dbtbuild")
BUILD_LOCK_KEY = 0x6462746275696C64


@contextmanager
def one_build_at_a_time(settings: Settings) -> Iterator[None]:
    """Wait until no other build of this warehouse runs (PostgreSQL; a no-op elsewhere).

    The incremental models take their change sets from what the previous build wrote; two
    builds at once (`tickhouse transform` and a hot run) would each rebuild half of it.
    transform_marts' build takes the same lock model by model instead, in each hot model's
    transaction (`transform.hot.build_lock_environment`).
    """
    from tickhouse.snowflake.settings import selected_warehouse

    if selected_warehouse() != "postgres":
        yield
        return
    import psycopg

    with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (BUILD_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (BUILD_LOCK_KEY,))


def build(
    extra_args: Sequence[str] = (), settings: Settings | None = None, manifest: Any = None
) -> None:
    """`dbt build` of the whole project; raises TransformError when anything fails.
    `manifest`: as for `run_dbt` (one this process parsed for the same warehouse)."""
    settings = settings or load_settings()
    with one_build_at_a_time(settings):
        result = run_dbt_retrying_lock_timeouts(["build", *extra_args], settings, manifest=manifest)
    if not result.success:
        raise TransformError(failure_summary(result))


def run_dbt_retrying_lock_timeouts(
    args: Sequence[str], settings: Settings, manifest: Any = None
) -> Any:
    """`run_dbt`, run again (up to `settings.dbt_lock_retries` more times, a second apart) while
    it fails only because a statement timed out waiting for a lock (a BI query held it). A build
    is idempotent: the incremental models rebuild from the loads not yet recorded as transformed.
    """
    attempt = 0
    while True:
        result = run_dbt(args, settings, manifest=manifest)
        if result.success or not failed_on_lock_timeout(result) or attempt >= settings.dbt_lock_retries:
            return result
        attempt += 1
        log.warning(
            "dbt %s waited more than %.1f s for a lock a reader holds (%s); running it again (%d of %d)",
            args[0] if args else "",
            settings.dbt_lock_timeout_seconds,
            failure_summary(result),
            attempt,
            settings.dbt_lock_retries,
        )
        time.sleep(1.0)


def failed_on_lock_timeout(result: Any) -> bool:
    """Whether some node of a failed dbt result failed on lock_timeout, and none on anything else
    (a failed data test or a SQL error is not retried)."""
    if result.exception is not None:
        return LOCK_TIMEOUT_MESSAGE in str(result.exception)
    failed = [
        node_result
        for node_result in getattr(result.result, "results", None) or []
        if str(getattr(node_result, "status", "")).lower() in {"error", "fail", "runtime error"}
    ]
    return bool(failed) and all(
        LOCK_TIMEOUT_MESSAGE in str(node_result.message or "") for node_result in failed
    )


def dbt_parse(settings: Settings | None = None) -> Path:
    """`dbt parse`: writes dbt_project/target/manifest.json and the partial-parse state the DAGs'
    dbt runs start from; returns the manifest's path."""
    result = run_dbt(["--quiet", "parse"], settings)
    if not result.success or not MANIFEST_PATH.is_file():
        raise TransformError(f"dbt parse did not write {MANIFEST_PATH}: {failure_summary(result)}")
    return MANIFEST_PATH


def failure_summary(result: Any) -> str:
    """The failed nodes of a dbt result (or its exception), in one line."""
    if result.exception is not None:
        return f"dbt raised {type(result.exception).__name__}: {result.exception}"
    failures = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result, "status", ""))
        if status.lower() in {"error", "fail", "runtime error"}:
            failures.append(f"{node_result.node.name}: {status} {node_result.message or ''}".strip())
    return "; ".join(failures) or "dbt reported failure (see its log above)"
