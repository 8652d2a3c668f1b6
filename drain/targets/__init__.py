"""Where a drain run writes: `postgres` (default) or `snowflake`, chosen by WAREHOUSE.

Both keep one protocol (`drain.targets.protocol.Target`): the runner consumes and validates once
(`drain.batches.parse_batch`, with the target's `encoding`), streams the batches into
`target.loader()`, commits through the target (rows, next offsets and load stats in one
transaction), and then runs the target's `after_commit` steps (PostgreSQL: retention and the
data-quality checks), which can no longer lose a row.
"""

from __future__ import annotations

from drain.options import DrainOptions
from drain.targets.protocol import Target
from tickhouse.config import Settings


def open_target(settings: Settings, options: DrainOptions) -> Target:
    """The target `options.warehouse` names (WAREHOUSE), connected and ready to `start`."""
    if options.warehouse == "snowflake":
        from drain.targets.snowflake.target import SnowflakeTarget
        from tickhouse.snowflake.settings import connect

        return SnowflakeTarget(connect(), options)
    from drain.targets.postgres.target import PostgresTarget

    return PostgresTarget(settings, options)
