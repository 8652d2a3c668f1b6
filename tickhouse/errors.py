"""The root of every error Tickhouse raises on purpose.

Each package has one exception root that derives from `TickhouseError` (`ConfigError` here,
`producer.errors.ProducerError`, `drain.errors.DrainError`, `alerts.errors.AlertsError`,
`transform.dbt_runner.TransformError`, `ops.stack.processes.StackError`, ...), so a caller catches
one thing and the `tickhouse` command prints any of them as one line. A message says what was wrong,
with the offending value or the variable to change, and what to do; it never holds a secret.
"""

from __future__ import annotations


class TickhouseError(Exception):
    """Root of the errors Tickhouse raises on purpose; the message is meant for the user."""
