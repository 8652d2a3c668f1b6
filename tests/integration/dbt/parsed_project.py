"""dbt_project/ parsed once per test process, handed to each test warehouse's dbt runs.

Every dbt test builds in a database of its own (`own_warehouse`), and dbt writes the database's
name into what it parses: each node's and source's `database` and `relation_name`, and the
partial-parse state's profile hash (so a parse state made for another database is thrown away
and the project parsed from scratch, ~10 s, more under load, for each test). `manifest_for`
instead takes one parse of the project (made for a placeholder database, once per process and
environment) and puts the test's database into exactly those fields: what `dbt parse` would
return for that database (tests/integration/dbt/test_parsed_project.py compares the two). The
dbt runs get it as `dbtRunner(manifest=...)`, the way transform.hot's runs reuse theirs.

Each call returns a copy of its own: a dbt run compiles into the manifest it is given.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
import threading
from typing import Any

from tickhouse.config import Settings
from transform.dbt_runner import dbt_environment, failure_summary, run_dbt

# never a database: dbt parse connects to none, and the name is replaced before any run
PLACEHOLDER_DATABASE = "tickhouse_parsed_project_placeholder"

# pickled parses: (the environment profiles.yml and the project read, the variables the project's
# files read at parse time with their values, the manifest)
_parsed: list[tuple[dict[str, str], dict[str, str], bytes]] = []
_lock = threading.Lock()
# how many times this process parsed the project (test_parsed_project checks that it is once)
parses = 0


def _parsed_manifest(settings: Settings) -> bytes:
    """The pickled manifest of one `dbt parse` for the placeholder database, made once per
    process and environment: parsed again when what profiles.yml reads or a variable the parse
    read (`env_var()` in a model, macro or property file) differs, as dbt's partial parsing does."""
    global parses
    placeholder, environment = _placeholder_of(settings)
    with _lock:
        serving = _serving(environment)
        if serving is not None:
            return serving[2]
        parses += 1
        with tempfile.TemporaryDirectory(prefix="dbt-parse-") as target:
            result = run_dbt(["--quiet", "parse", "--target-path", target], placeholder)
        if not result.success:
            raise AssertionError(f"dbt parse failed: {failure_summary(result)}")
        _parsed.append((environment, dict(result.result.env_vars), pickle.dumps(result.result)))
        return _parsed[-1][2]


def _placeholder_of(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """`settings` with the placeholder database, and the environment dbt parses in for it."""
    placeholder = dataclasses.replace(settings, postgres_db=PLACEHOLDER_DATABASE)
    return placeholder, dbt_environment(placeholder)


def _serving(environment: dict[str, str]) -> tuple[dict[str, str], dict[str, str], bytes] | None:
    """The parse that is still valid in `environment` (None: the project must be parsed)."""
    for parsed in _parsed:
        parsed_in, read, _manifest = parsed
        if parsed_in == environment and all(
            _value_at_parse(name, environment) == value for name, value in read.items()
        ):
            return parsed
    return None


def variables_read(settings: Settings) -> dict[str, str]:
    """The variables the parse serving `settings` read at parse time, with the values dbt recorded
    ({} before any parse for them)."""
    _placeholder, environment = _placeholder_of(settings)
    with _lock:
        serving = _serving(environment)
    return dict(serving[1]) if serving is not None else {}


def _value_at_parse(name: str, environment: dict[str, str]) -> str:
    """What a parse now would record for variable `name`: its value, or dbt's placeholder for an
    unset variable that `env_var()` read with a default (that is how dbt records those)."""
    from dbt.constants import DEFAULT_ENV_PLACEHOLDER

    return environment.get(name, os.environ.get(name, DEFAULT_ENV_PLACEHOLDER))


def manifest_for(settings: Settings) -> Any:
    """A manifest of dbt_project/ for `settings.postgres_db`, equal to what `dbt parse` returns
    for it, without parsing again."""
    manifest = pickle.loads(_parsed_manifest(settings))
    retarget(manifest, PLACEHOLDER_DATABASE, settings.postgres_db)
    return manifest


def retarget(manifest: Any, old: str, new: str) -> None:
    """Put database `new` where the parse wrote `old`: the `database` and `relation_name` of
    every node and source (no other field of a parsed manifest names it)."""
    old_prefix, new_prefix = f'"{old}".', f'"{new}".'
    for node in (*manifest.nodes.values(), *manifest.sources.values()):
        if getattr(node, "database", None) == old:
            node.database = new
        relation_name = getattr(node, "relation_name", None)
        if relation_name and relation_name.startswith(old_prefix):
            node.relation_name = new_prefix + relation_name[len(old_prefix) :]
    if manifest.flat_graph:  # the node dicts dbt's `graph` variable shows: made from the nodes
        manifest.build_flat_graph()
