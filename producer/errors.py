"""The producer's one exception root: callers (the CLIs, the backfill DAG) catch `ProducerError`.

Every message says what was wrong (the file and line, the argument, Finnhub's answer) and what to
do, and never holds the API key."""

from __future__ import annotations

from tickhouse.errors import TickhouseError


class ProducerError(TickhouseError):
    """Root of every error the producer and the backfills raise on purpose."""
