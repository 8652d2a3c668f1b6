"""Crashes injected into a drain run at the windows that matter, from outside the production code.

A drain run commits its rows, offsets and load stats in one transaction and only then tells Kafka,
so a crash anywhere must neither lose nor double a message. A random kill rarely hits the narrow
windows between those steps; `crash_at(stage, action)` runs `action` (raise, or kill the process)
exactly there, by wrapping the method that marks the window, for the runs inside the `with`:

- `mid_copy`: right after the first block of rows reached the warehouse, more still to come
  (PostgreSQL: written into the open COPY; Snowflake: bulk-loaded into a staging table);
- `after_copy_before_commit`: everything loaded, the transaction not yet committed;
- `after_commit_before_kafka_commit`: committed in the warehouse, Kafka's offsets not yet moved;
- `in_transaction_before_commit` (Snowflake): rows moved into RAW, offsets and stats written, no
  COMMIT yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

STAGES = ("mid_copy", "after_copy_before_commit", "after_commit_before_kafka_commit")
SNOWFLAKE_STAGES = ("in_transaction_before_commit",)


def _after(method: Callable[..., Any], action: Callable[[], None], once: bool) -> Callable[..., Any]:
    fired: list[bool] = []

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        if not (once and fired):
            fired.append(True)
            action()
        return result

    return wrapper


def _before(method: Callable[..., Any], action: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        action()
        return method(*args, **kwargs)

    return wrapper


@contextmanager
def crash_at(stage: str, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` at `stage` of every drain run inside the block (`mid_copy`: once)."""
    from drain.consumer import KafkaSource
    from drain.targets.postgres.loader import CopyLoader
    from drain.targets.postgres.target import PostgresTarget
    from drain.targets.snowflake import target as snowflake_target
    from drain.targets.snowflake.loader import SnowflakeLoader
    from drain.targets.snowflake.target import SnowflakeTarget

    patches: list[tuple[Any, str, Callable[..., Any]]]
    if stage == "mid_copy":
        patches = [
            (CopyLoader, "_send", _after(CopyLoader._send, action, once=True)),
            (SnowflakeLoader, "_stage", _after(SnowflakeLoader._stage, action, once=True)),
        ]
    elif stage == "after_copy_before_commit":
        patches = [
            (PostgresTarget, "commit", _before(PostgresTarget.commit, action)),
            (SnowflakeTarget, "commit", _before(SnowflakeTarget.commit, action)),
        ]
    elif stage == "after_commit_before_kafka_commit":
        patches = [(KafkaSource, "commit", _before(KafkaSource.commit, action))]
    elif stage == "in_transaction_before_commit":
        # the last statement of the Snowflake transaction before its COMMIT
        load_stats = snowflake_target.write_load_stats
        patches = [(snowflake_target, "write_load_stats", _after(load_stats, action, once=False))]
    else:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES + SNOWFLAKE_STAGES}")
    with ExitStack() as stack:
        for owner, name, replacement in patches:
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield
