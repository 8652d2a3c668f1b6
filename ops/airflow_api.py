"""A small client for Airflow's REST API v2 (bearer token from `POST /auth/token`), used by the
demo and the tests to unpause, trigger and follow DAG runs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


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
