"""The hot path of the marts: the models a new trade must pass to be visible in `fct_bars`.

`HotTransform.run()` is one in-process `dbt run` of `HOT_MODELS` (the drain loads still pending →
the minutes they touch → minute bars → `int_bars` → `int_technicals`, and the loads recorded as
transformed last), under the same advisory lock as every other build. The marts `fct_bars` and
`fct_technicals` are views over `int_bars` / `int_technicals`, so they show the result at once.

It stays warm: the manifest is parsed once per process and handed to every later invocation
(`dbtRunner(manifest=...)`), which takes a run of a few changed minutes from ~4.6 s (cold) to
about a second. Everything else (the coarser analytics, every data test) is the slow path, the
`transform_marts` DAG's full build, which continues from what the hot runs wrote: `int_bars`'
consumers find their change sets by `updated_at` watermarks, not by the pending loads.

On a warehouse the full build has not run on yet (a new stack whose DAGs were just switched on),
the hot models' inputs (the staging views, the calendars, the symbol seed) and the views over them
(`marts.fct_bars`, `fct_technicals`, ...) do not exist: the first run of a process builds those
that are missing (PostgreSQL; elsewhere the full build has to run first), so the marts show the
first trades without waiting for `transform_marts`.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from tickhouse.config import Settings, load_settings
from transform.dbt_runner import (
    BUILD_LOCK_KEY,
    DBT_PROJECT_DIR,
    TransformError,
    failure_summary,
    one_build_at_a_time,
    run_dbt,
    run_dbt_retrying_lock_timeouts,
)

log = logging.getLogger(__name__)

# every model that reads the pending loads (int_raw_loads_transformed depends on all of them, and
# records a load as transformed only when they succeeded), plus the bars and indicators
HOT_MODELS = (
    "int_raw_loads_pending",
    "int_trades_minutes_to_rebuild",
    "int_trades_aggregated_to_minute_bars",
    "int_candles_deduplicated_to_bars",
    "int_alerts",
    "int_unknown_trade_conditions",
    "int_bars",
    "int_technicals",
    "int_raw_loads_transformed",
)


def build_lock_environment() -> dict[str, str]:
    """The environment with which a `dbt build` takes the build lock in each of HOT_MODELS' own
    transactions, and nowhere else (macros/utils/build_lock.sql): how transform_marts' full build
    and the hot runs (which hold the lock for their whole run) never write the same table at once,
    while the rest of the build runs beside the hot loop."""
    return {
        "TICKHOUSE_BUILD_LOCK_KEY": str(BUILD_LOCK_KEY),
        "TICKHOUSE_BUILD_LOCK_MODELS": ",".join(HOT_MODELS),
    }


class HotTransform:
    """Runs the hot models in this process, reusing the parsed manifest between runs."""

    def __init__(
        self, settings: Settings | None = None, target_path: Path | None = None, manifest: Any = None
    ) -> None:
        """`manifest`: a parse of the project for this warehouse that this process holds already
        (the tests parse once per process); None: `warm_up` parses."""
        self.settings = settings or load_settings()
        # a target directory of its own: target/ holds the parse state every dbt run starts from
        self.target_path = target_path or DBT_PROJECT_DIR / "target" / "hot"
        self._manifest: Any = manifest
        self._checked = False  # whether this process looked for missing inputs and views

    def warm_up(self) -> None:
        """Parse the project once (the cold part of the first run)."""
        if self._manifest is None:
            # start from the partial-parse state setup's `dbt parse` left (same project, same
            # profile): the first parse then reads only what changed since
            seed = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
            state = self.target_path / "partial_parse.msgpack"
            if seed.is_file() and not state.exists():
                self.target_path.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(seed, state)
            result = run_dbt(
                ["--quiet", "parse", "--target-path", str(self.target_path)], self.settings
            )
            if not result.success:
                raise TransformError(f"dbt parse failed: {failure_summary(result)}")
            self._manifest = result.result

    def run(self) -> float:
        """One `dbt run` of HOT_MODELS under the build lock; returns its seconds."""
        self.warm_up()
        started = time.monotonic()
        # --no-write-json: nothing reads a hot run's artifacts, and writing them (manifest.json,
        # graph.gpickle, run_results.json) was ~15 % of a warm run's CPU in this process
        target = ["--target-path", str(self.target_path), "--no-write-json"]
        with one_build_at_a_time(self.settings):
            seeds, models = ([], []) if self._checked else missing_relations(self._manifest, self.settings)
            if seeds or models:
                log.info("building what the warehouse lacks first: %s", ", ".join(seeds + models))
            if seeds:
                result = run_dbt_retrying_lock_timeouts(
                    ["--quiet", "seed", *target, "--select", *seeds], self.settings, manifest=self._manifest
                )
                if not result.success:
                    raise TransformError(f"dbt seed failed: {failure_summary(result)}")
            result = run_dbt_retrying_lock_timeouts(
                ["--quiet", "run", *target, "--select", *HOT_MODELS, *models],
                self.settings,
                manifest=self._manifest,
            )
        seconds = time.monotonic() - started
        if not result.success:
            raise TransformError(f"hot dbt run failed: {failure_summary(result)}")
        self._checked = True
        log.info("hot models rebuilt in %.2f s", seconds)
        return seconds


def missing_relations(manifest: Any, settings: Settings) -> tuple[list[str], list[str]]:
    """The seeds and models a hot run needs that the warehouse does not hold: the hot models'
    ancestors, and the views over them (the marts that show their rows at once), by name.
    PostgreSQL only (elsewhere: nothing found, the full build creates them)."""
    from tickhouse.snowflake.settings import selected_warehouse

    if selected_warehouse() != "postgres":
        return [], []
    nodes = manifest.nodes
    hot = {uid for uid, node in nodes.items() if node.resource_type == "model" and node.name in HOT_MODELS}
    needed: set[str] = set()
    todo = list(hot)
    while todo:  # ancestors
        for parent in _parents(nodes[todo.pop()]):
            if parent in nodes and parent not in needed:
                needed.add(parent)
                todo.append(parent)
    # the views over the hot models, directly or through other such views (fct_bars reads
    # int_bars through int_bars_split_adjusted), that read nothing else: the slow path builds the rest
    shown = set(hot)
    grew = True
    while grew:
        grew = False
        for uid, node in nodes.items():
            parents = [parent for parent in _parents(node) if parent in nodes]
            if (
                uid not in shown
                and node.resource_type == "model"
                and node.config.materialized == "view"
                and shown & set(parents)
                and all(parent in shown or parent in needed for parent in parents)
            ):
                shown.add(uid)
                grew = True
    needed |= shown - hot
    candidates = sorted(
        (node.schema, node.alias, node.name, "seed" if node.resource_type == "seed" else "model")
        for uid in needed - hot
        if (node := nodes[uid]).resource_type in ("model", "seed")
    )
    if not candidates:
        return [], []
    import psycopg

    with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
        present = conn.execute(
            "select array_agg(to_regclass(format('%%I.%%I', s, a)) is not null order by i)"
            " from unnest(%s::text[], %s::text[]) with ordinality as t(s, a, i)",
            ([c[0] for c in candidates], [c[1] for c in candidates]),
        ).fetchone()
    flags = present[0] if present and present[0] else [True] * len(candidates)
    missing = [c for c, there in zip(candidates, flags, strict=True) if not there]
    return (
        [name for _, _, name, kind in missing if kind == "seed"],
        [name for _, _, name, kind in missing if kind == "model"],
    )


def _parents(node: Any) -> list[str]:
    """The nodes `node` reads (a seed depends on macros only)."""
    return list(getattr(node.depends_on, "nodes", None) or ())
