"""A failed Airflow task reaches the alert notifiers (alerts/airflow_failures.py).

A `backfill_history` run is triggered through the REST API and executed by the stack's own
scheduler and worker; the stack has no FINNHUB_API_KEY, so its task fails at once. The generic
webhook notifier of the bundled rules file points at a receiver of this test (set through the
stack's env file, which the worker and the dag processor read at each callback, and restored
afterwards). The task's failure arrives (that one-task DAG has no DAG-level callback), with
dag_id, task_id, run_id and the log URL, and no secret: not the webhook URL's token, not a
password of the stack. The DAG-level message is tested in tests/unit/alerts.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ops.airflow_api import AirflowAPI
from tickhouse.config import Settings, read_env_file

# one worker runs the tests that drive the shared Airflow's `backfill_history`, one after another
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("airflow-backfill_history")]

DAG_ID = "backfill_history"


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append({"path": self.path, "headers": dict(self.headers), "raw": body.decode(),
                                 "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings: Settings) -> Iterator[tuple[Receiver, str]]:
    env_path = Path(os.environ["TICKHOUSE_ENV_FILE"])
    assert "ALERTS_WEBHOOK_URL" not in read_env_file(env_path)
    assert not os.environ.get("FINNHUB_API_KEY") and not settings.finnhub_api_key
    receiver = Receiver()
    token = secrets.token_hex(16)
    before = env_path.read_text()
    env_path.write_text(
        before + ("" if before.endswith("\n") or not before else "\n")
        + f"ALERTS_WEBHOOK_URL=http://127.0.0.1:{receiver.port}/hook/{token}\n"
    )
    try:
        yield receiver, token
    finally:
        env_path.write_text(before)
        receiver.close()


def test_failed_task_and_run_post_to_the_webhook(
    settings: Settings, airflow_api: AirflowAPI, webhook: tuple[Receiver, str]
) -> None:
    receiver, token = webhook
    conf = {"symbols": "AAPL", "resolution": "D", "from": "2024-01-01", "to": "2024-01-31"}
    run = airflow_api.run_dag(DAG_ID, conf, timeout=240)
    airflow_api.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": True})
    run_id = run["dag_run_id"]
    assert run["state"] == "failed", run

    def ours() -> dict[str, dict[str, Any]]:
        return {p["body"]["rule"]: p for p in receiver.posts
                if p["body"].get("details", {}).get("run_id") == run_id}

    deadline = time.monotonic() + 90
    while not ours() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # nothing else follows: backfill_history has no DAG-level callback (see the DAG)
    posts = ours()
    assert set(posts) == {"airflow_task_failed"}, receiver.posts

    task = posts["airflow_task_failed"]
    body = task["body"]
    assert task["path"] == f"/hook/{token}"
    assert body["severity"] == "critical"
    assert task["headers"]["Idempotency-Key"] == body["alert_id"]
    details = body["details"]
    assert (details["dag_id"], details["task_id"], details["run_id"]) == (DAG_ID, "backfill", run_id)
    assert details["log_url"].startswith(settings.airflow_url)
    assert f"/dags/{DAG_ID}/runs/" in details["log_url"] and "/tasks/backfill" in details["log_url"]
    assert "FINNHUB_API_KEY" in details["error"]  # why it failed, in one line
    assert DAG_ID in body["message"] and "backfill" in body["message"] and run_id in body["message"]

    stack_secrets = [v for k, v in read_env_file(settings.secrets_file).items() if v and len(v) >= 6]
    stack_secrets += [settings.dbt_password, settings.loader_password, settings.bi_reader_password]
    assert stack_secrets
    for post in posts.values():
        assert token not in post["raw"]
        leaked = [s for s in stack_secrets if s and s in post["raw"]]
        assert not leaked, "a secret of the stack is in the failure message"
