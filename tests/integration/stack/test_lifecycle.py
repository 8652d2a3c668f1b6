"""`tickhouse up` / `down` behave: a second `up` is harmless, a taken port is a clear error naming
the variable to change, and `down` stops exactly what `up` started (by pid, waiting for exit)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.stack import kafka_broker
from ops.stack.processes import pid_alive, port_open
from ops.suite import free_port
from tickhouse.config import Settings

# serial (pyproject.toml): starts and stops stacks of its own (`tickhouse up` / `down`)
pytestmark = pytest.mark.serial

TICKHOUSE = str(Path(sys.executable).parent / "tickhouse")


def _run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TICKHOUSE, *args],
        env={**os.environ, **(env or {})},
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_second_up_starts_nothing(tmp_path: Path) -> None:
    record = tmp_path / "started"
    result = _run(["up", "--record", str(record)])
    assert result.returncode == 0, result.stderr
    assert record.read_text() == ""  # everything was already running
    assert "ready" in result.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_taken_port_is_a_clear_error(tmp_path: Path, busy_port: int) -> None:
    result = _run(
        ["up", "--only", "kafka"],
        env={"TICKHOUSE_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{busy_port}"},
    )
    assert result.returncode == 1
    assert f"port {busy_port}" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_down_stops_exactly_what_up_started(tmp_path: Path, settings: Settings) -> None:
    port, controller, login = free_port(), free_port(), free_port()
    env = {
        "TICKHOUSE_STATE_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_LOGIN_PORT": str(login),
        "KAFKA_HEAP_OPTS": "-Xms64m -Xmx256m",
        "KAFKA_LIBS_DIR": str(kafka_broker.libs_dir(settings)),
    }
    record = tmp_path / "started"
    result = _run(["up", "--only", "kafka", "--record", str(record)], env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert record.read_text() == "kafka\n"
    pid = int((tmp_path / "run" / "kafka.pid").read_text())
    assert pid_alive(pid) and port_open("127.0.0.1", port)
    try:
        result = _run(["down", "--only", "kafka"], env=env)
        assert result.returncode == 0, result.stderr
        assert not pid_alive(pid)
        assert not port_open("127.0.0.1", port)
        assert not (tmp_path / "run" / "kafka.pid").exists()
    finally:
        if pid_alive(pid):
            os.kill(pid, 9)
    # the main stack's broker was not touched
    assert port_open(settings.kafka_host, settings.kafka_port)
