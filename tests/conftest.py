"""Shared fixtures. Integration and e2e tests talk to the real local stack (`make up`); they take
every address and credential from `load_settings()`, exactly as the services do."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tickhouse.config import Settings, load_settings

TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the folder it lives in: tests/unit, tests/integration, tests/e2e."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS_DIR).parts
        if parts and parts[0] in {"unit", "integration", "e2e", "reliability"}:
            item.add_marker(getattr(pytest.mark, "integration" if parts[0] == "reliability" else parts[0]))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def unique_topic(settings: Settings) -> Iterator[str]:
    """A fresh single-use topic with 3 partitions, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


class AirflowAPI:
    """A tiny client for Airflow's REST API v2 with a bearer token from /auth/token."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None):
        self.base_url = base_url
        self.token: str | None = None
        self.token = self._login(username, password) if username and password else None

    def _login(self, username: str, password: str) -> str:
        status, body = self.request("POST", "/auth/token", {"username": username, "password": password})
        assert status in (200, 201), f"login as {username} failed: {status} {body}"
        token: str = body["access_token"]
        return token

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("GET", f"/api/v2/dags/{dag_id}")
            if status == 200:
                return dict(body)
            time.sleep(2)
        raise AssertionError(f"DAG {dag_id} not parsed within {timeout} s (last: {status} {body})")

    def run_dag(
        self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 300
    ) -> dict[str, Any]:
        """Unpause, trigger and wait for a terminal state; returns the final dag run."""
        self.wait_for_dag(dag_id)
        status, body = self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert status == 200, f"unpause {dag_id}: {status} {body}"
        status, run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        assert status in (200, 201), f"trigger {dag_id}: {status} {run}"
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run.get("state") in ("success", "failed"):
                return dict(run)
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} not finished within {timeout} s: {run}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        status, body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        assert status == 200, body
        return list(body["task_instances"])


@pytest.fixture(scope="session")
def airflow_api(settings: Settings) -> AirflowAPI:
    from tickhouse.stack.airflow import admin_password

    return AirflowAPI(settings.airflow_url, "admin", admin_password(settings))
