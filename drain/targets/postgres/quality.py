"""Great Expectations (1.x) checks of the rows one drain run loaded, run inside PostgreSQL.

Each checked batch is a query over the run's own rows (its topic and offset ranges, pruned to its
event-time span), so the expectations become SQL and no rows travel back to Python. The suite is
built in code in an ephemeral context: there are no GX files to keep or hand-edit. Results go to
`raw.dq_results` and a summary to the log; what a failure means is decided by the caller
(DRAIN_DQ_POLICY), never by dropping rows: they are committed before this runs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg

from drain.options import DrainOptions
from drain.stats import DrainResult, TopicStats
from tickhouse.config import Settings
from tickhouse.schemas import RESOLUTIONS, SEVERITIES

log = logging.getLogger(__name__)

KEY_COLUMNS = {
    "trades": ("symbol", "price", "volume", "ts", "event_time"),
    "quotes": ("symbol", "price", "high", "low", "ts", "event_time"),
    "alerts": ("alert_id", "symbol", "rule", "severity", "trade_ts", "event_time"),
    "candles": (
        "symbol", "resolution", "bar_start", "event_time", "open", "high", "low", "close", "volume",
    ),
}
COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset")


@dataclass(frozen=True, slots=True)
class CheckResult:
    table: str
    expectation: str
    column: str | None
    success: bool
    unexpected: int | None
    observed: Any
    checked_rows: int


def partition_ranges(stats: TopicStats) -> list[tuple[int, int, int]]:
    """(partition, first offset expected, last offset consumed) for every partition drained.

    The first offset expected is where the previous run stopped, so a hole between runs fails the
    contiguity check as well as one inside this run.
    """
    return [
        (p, stats.resumed_from.get(p, first), last)
        for p, (first, last) in sorted(stats.offsets.items())
    ]


def _ranges_sql(ranges: list[tuple[int, int, int]]) -> str:
    return " or ".join(
        f"(kafka_partition = {int(p)} and kafka_offset between {int(lo)} and {int(hi)})"
        for p, lo, hi in ranges
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def batch_query(stats: TopicStats) -> str:
    """SQL selecting exactly the rows of `stats.table` this run loaded from `stats.topic`."""
    ranges = partition_ranges(stats)
    where = f"kafka_topic = {_literal(stats.topic)} and ({_ranges_sql(ranges) or 'false'})"
    if stats.min_event_ms is not None and stats.max_event_ms is not None:
        # lets PostgreSQL skip the partitions this run did not touch
        where += (
            f" and event_time between to_timestamp({stats.min_event_ms} / 1000.0)"
            f" and to_timestamp({stats.max_event_ms} / 1000.0)"
        )
    return f"select * from {stats.table} where {where}"


def contiguity_query(stats: TopicStats) -> str:
    """Partitions whose offsets, raw rows and quarantine together, are not each there once."""
    ranges = partition_ranges(stats)
    values = ", ".join(f"({int(p)}, {int(lo)}::bigint, {int(hi)}::bigint)" for p, lo, hi in ranges)
    topic = _literal(stats.topic)
    return (
        "with ranges (kafka_partition, first_offset, last_offset) as (values "
        f"{values or '(0, 0::bigint, -1::bigint)'}), "
        "seen as ("
        " select kafka_partition, kafka_offset from {batch} as batch"
        " union all"
        " select kafka_partition, kafka_offset from raw.quarantine"
        f" where kafka_topic = {topic} and ({_ranges_sql(ranges) or 'false'})) "
        "select r.kafka_partition, r.first_offset, r.last_offset,"
        " count(s.kafka_offset) as rows_seen, count(distinct s.kafka_offset) as distinct_offsets "
        "from ranges r left join seen s on s.kafka_partition = r.kafka_partition"
        " and s.kafka_offset between r.first_offset and r.last_offset "
        "group by 1, 2, 3 "
        "having count(s.kafka_offset) <> r.last_offset - r.first_offset + 1"
        " or count(distinct s.kafka_offset) <> count(s.kafka_offset)"
    )


def build_suite(stats: TopicStats, options: DrainOptions, now: datetime) -> list[Any]:
    """The expectations for one table's batch (GX objects; imported lazily: GX is slow to load)."""
    gxe: Any = importlib.import_module("great_expectations.expectations")
    kind = stats.kind
    suite: list[Any] = [
        gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (*KEY_COLUMNS[kind], *COORDINATES)
    ]
    # Not GX's ExpectCompoundColumnsToBeUnique: PostgreSQL runs its query (the batch joined with
    # its own group counts) as a nested loop, quadratic in the batch (20k rows: 3 minutes, which
    # a 500k-row batch turns into hours past the task's timeout). The same check as one GROUP BY:
    suite.append(
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=(
                f"select {', '.join(COORDINATES)}, count(*) as copies from {{batch}}"
                " group by 1, 2, 3 having count(*) > 1"
            ),
            description="Kafka coordinates (kafka_topic, kafka_partition, kafka_offset) unique",
        )
    )
    min_time = datetime(
        options.dq_min_event_time.year,
        options.dq_min_event_time.month,
        options.dq_min_event_time.day,
        tzinfo=UTC,
    )
    suite.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="event_time", min_value=min_time, max_value=now + timedelta(days=1)
        )
    )
    if kind in ("trades", "quotes"):
        suite.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="price", min_value=0, strict_min=True, max_value=options.dq_max_price
            )
        )
    if kind == "trades":
        suite.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="volume", min_value=0, max_value=options.dq_max_volume
            )
        )
    if kind == "quotes":
        suite.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", or_equal=True
            )
        )
    if kind == "candles":
        suite += [
            gxe.ExpectColumnValuesToBeBetween(
                column="low", min_value=0, strict_min=True, max_value=options.dq_max_price
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="high", min_value=0, strict_min=True, max_value=options.dq_max_price
            ),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", or_equal=True
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="resolution", value_set=list(RESOLUTIONS)
            ),
        ]
    if kind == "alerts":
        suite.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="severity", value_set=list(SEVERITIES)
            )
        )
    suite.append(
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=contiguity_query(stats),
            description="offsets contiguous per partition: every offset consumed is in the raw "
            "table or in raw.quarantine exactly once, starting where the previous run stopped",
        )
    )
    return suite


def _connection_string(settings: Settings) -> str:
    return (
        f"postgresql+psycopg://{quote(settings.loader_user, safe='')}:"
        f"{quote(settings.loader_password, safe='')}@{settings.postgres_host}:"
        f"{settings.postgres_port}/{settings.postgres_db}"
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _exception_message(info: Any) -> str | None:
    """GX reports errors either flat or keyed by metric; the first message, if any."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def validate_batches(
    settings: Settings, options: DrainOptions, run_id: str, batches: list[TopicStats]
) -> list[CheckResult]:
    """Run the suite over each topic's batch; returns one result per expectation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # GX logs every step at INFO on its own loggers; the summary below is what the task log needs
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_postgres(
        name=f"warehouse_{run_id[:8]}", connection_string=_connection_string(settings)
    )
    now = datetime.now(UTC)
    results: list[CheckResult] = []
    for stats in batches:
        asset = source.add_query_asset(name=f"{stats.topic}", query=batch_query(stats))
        batch = asset.add_batch_definition_whole_table(name="run").get_batch()
        suite = gx.ExpectationSuite(name=f"{stats.table}:{run_id}")
        for expectation in build_suite(stats, options, now):
            suite.add_expectation(expectation)
        outcome = batch.validate(suite)
        for r in outcome.results:
            config = r.expectation_config
            kwargs = config.kwargs if config is not None else {}
            column = kwargs.get("column") or (
                ",".join(kwargs["column_list"]) if "column_list" in kwargs else None
            ) or (f"{kwargs['column_A']}>={kwargs['column_B']}" if "column_A" in kwargs else None)
            details = r.result or {}
            error = _exception_message(r.exception_info)
            if error is not None:
                details = {"exception": error[:2000]}
            results.append(
                CheckResult(
                    table=stats.table,
                    expectation=config.type if config is not None else "unknown",
                    column=column,
                    success=bool(r.success),
                    unexpected=details.get("unexpected_count"),
                    observed=_jsonable(
                        details.get("observed_value", details.get("partial_unexpected_list"))
                        if "exception" not in details
                        else details
                    ),
                    checked_rows=stats.loaded,
                )
            )
    return results


def store_results(settings: Settings, run_id: str, results: list[CheckResult]) -> None:
    with psycopg.connect(settings.conninfo("loader")) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into raw.dq_results (run_id, target_table, expectation, column_name, success,"
            " unexpected, observed, checked_rows) values (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
            [
                (
                    run_id, r.table, r.expectation, r.column, r.success, r.unexpected,
                    json.dumps(r.observed), r.checked_rows,
                )
                for r in results
            ],
        )


def describe_failure(r: CheckResult) -> str:
    where = f"({r.column})" if r.column else ""
    count = f": {r.unexpected} unexpected" if r.unexpected else ""
    return f"{r.table} {r.expectation}{where}{count} observed={json.dumps(r.observed)[:200]}"


def check_run(settings: Settings, options: DrainOptions, result: DrainResult) -> list[str]:
    """Validate, store and log the run's batches; returns a description of each failure."""
    batches = [s for s in result.topics if s.consumed]
    if not batches:
        return []
    results = validate_batches(settings, options, result.run_id, batches)
    store_results(settings, result.run_id, results)
    failures = [describe_failure(r) for r in results if not r.success]
    log.info(
        "data quality run %s: %d of %d expectations passed over %s",
        result.run_id[:8],
        len(results) - len(failures),
        len(results),
        ", ".join(f"{s.table} ({s.loaded} rows)" for s in batches),
    )
    for failure in failures:
        log.warning("data quality FAILED: %s", failure)
    return failures
