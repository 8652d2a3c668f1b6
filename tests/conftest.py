"""Shared fixtures. Integration and e2e tests talk to a real local stack: under `make test` the
test stack of ops/suite.py (never the user's), otherwise whatever `load_settings()` names. They
take every address and credential from `load_settings()`, exactly as the services do."""

from __future__ import annotations

import gc
import json
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.airflow_api import AirflowAPI
from ops.test_report import longest_first, read_module_seconds
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config

TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the folder it lives in: tests/unit, tests/integration, tests/e2e."""
    for item in items:
        path = Path(str(item.fspath))
        parts = path.relative_to(TESTS_DIR).parts if path.is_relative_to(TESTS_DIR) else ()
        if parts and parts[0] in {"unit", "integration", "e2e", "reliability"}:
            item.add_marker(getattr(pytest.mark, "integration" if parts[0] == "reliability" else parts[0]))


def _module_or_group(nodeid: str) -> str:
    """The work unit of a test under `make test`'s parallel pass: its xdist_group when it has one
    (pytest-xdist appends it to the node id under --dist loadgroup), else its module."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under --dist loadgroup, a module's tests stay on one worker, in order (its module-scoped
    fixtures, own warehouses and feeds, are set up once, not once per worker), and the tests of one
    xdist_group share one worker, one after another, and the units start longest first
    (tests/module_seconds.json). ops/suite.py runs the parallel pass so."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleOrGroupScheduling(LoadGroupScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return _module_or_group(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # before the first unit goes out: the longest units first, as recorded, so that the
            # pass does not end with one long module running while the other workers idle
            if not self.ordered:
                self.ordered = True
                order = longest_first(self.workqueue, read_module_seconds())
                self.workqueue = OrderedDict((scope, self.workqueue[scope]) for scope in order)
            super()._assign_work_unit(node)

    return ModuleOrGroupScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The reliability scenarios' figures a pytest-xdist worker recorded, for the run's summary."""
    rows = getattr(node, "workeroutput", {}).get("reliability_scenarios")
    if rows:
        from tests.reliability.conftest import SUMMARY

        SUMMARY.received.extend(json.loads(rows))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The reliability summary (tests/reliability/conftest.py), when reliability scenarios ran here
    or on this run's pytest-xdist workers."""
    module = sys.modules.get("tests.reliability.conftest")
    if module is not None and not hasattr(terminalreporter.config, "workerinput"):
        module.write_summary(terminalreporter)


@pytest.fixture(autouse=True)
def _root_log_filters_restored() -> Iterator[None]:
    """A test that installs a secret's redacting filter on the root logger's handlers (as the
    Finnhub clients do at start) takes it away again: a later test's log lines keep their text."""
    import logging

    handlers = logging.getLogger().handlers
    before = {id(handler): list(handler.filters) for handler in handlers}
    yield
    for handler in logging.getLogger().handlers:
        if id(handler) in before:
            handler.filters[:] = before[id(handler)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Release what the in-process warehouses still hold before the interpreter exits: dbt's
    adapters keep their connections (to fakesnow's DuckDB in the Snowflake tests), and the last
    failure's traceback keeps its frames. A DuckDB object alive at exit is reported by its bindings
    as "nanobind: leaked ...", which reads like a crash after a green run."""
    if "dbt.adapters.factory" in sys.modules:
        from dbt.adapters.factory import cleanup_connections, reset_adapters

        cleanup_connections()
        reset_adapters()
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        sys.__dict__.pop(name, None)
    gc.collect()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def unique_topic(settings: Settings) -> Iterator[str]:
    """A fresh single-use topic with 3 partitions, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture(scope="session")
def airflow_api(settings: Settings) -> AirflowAPI:
    from ops.stack.airflow import admin_password

    return AirflowAPI(settings.airflow_url, "admin", admin_password(settings))
