"""A service whose port is taken stops with one line naming the port and the variable that sets
it, and a non-zero exit; never a traceback. The port is really held by another socket."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT
from tickhouse.listen import PortUnavailableError, require_port_free, start_metrics_server

TICKHOUSE = PROJECT_ROOT / ".venv" / "bin" / "tickhouse"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["alerts"], "ALERTS_METRICS_PORT"),
        (["metrics"], "PIPELINE_METRICS_PORT"),
        (["dashboard"], "DASHBOARD_PORT"),
    ],
)
def test_service_with_its_port_taken_stops_with_one_line(
    command: list[str], variable: str, taken_port: int, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        variable: str(taken_port),
        "TICKHOUSE_STATE_DIR": str(tmp_path),
        "TICKHOUSE_ENV_FILE": str(tmp_path / "no.env"),
        "BI_READER_PASSWORD": "not-used",  # the dashboard refuses to start without one
        # nothing listens here: the service must stop before it reaches Kafka
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    done = subprocess.run([str(TICKHOUSE), *command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if str(taken_port) in line]
    assert line == (
        f"tickhouse {command[0]}: {variable}={taken_port} is in use: cannot listen on "
        f"127.0.0.1:{taken_port} (Address already in use); stop the program holding it, or set "
        f"{variable} to a free port"
    )


def test_a_free_port_is_served(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    require_port_free("127.0.0.1", port, "SOME_PORT")
    server, _thread = start_metrics_server(port, "127.0.0.1", "SOME_PORT")
    try:
        with pytest.raises(PortUnavailableError, match=f"SOME_PORT={port} is in use"):
            require_port_free("127.0.0.1", port, "SOME_PORT")
        with pytest.raises(PortUnavailableError, match="set SOME_PORT to a free port"):
            start_metrics_server(port, "127.0.0.1", "SOME_PORT")
    finally:
        server.shutdown()
        server.server_close()
