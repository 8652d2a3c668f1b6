"""Listening on a service's TCP port: a port that is taken stops the service with one line naming
the port and the variable that sets it, never a traceback."""

from __future__ import annotations

import errno
import socket
from typing import Any

from tickhouse.errors import TickhouseError


class PortUnavailableError(TickhouseError):
    """A service cannot listen on its configured port."""


def port_unavailable(variable: str, host: str, port: int, error: OSError) -> PortUnavailableError:
    """The error for `error` raised when binding host:port, which `variable` configures."""
    reason = "is in use" if error.errno == errno.EADDRINUSE else "cannot be used"
    return PortUnavailableError(
        f"{variable}={port} {reason}: cannot listen on {host}:{port} ({error.strerror or error}); "
        f"stop the program holding it, or set {variable} to a free port"
    )


def require_port_free(host: str, port: int, variable: str) -> None:
    """Fail with PortUnavailableError when host:port cannot be bound now, for a server that binds it
    itself (SO_REUSEADDR as the servers set it, so a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise port_unavailable(variable, host, port, error) from error


def start_metrics_server(port: int, host: str, variable: str, **kwargs: Any) -> Any:
    """prometheus_client's `start_http_server` on host:port; PortUnavailableError when it cannot
    listen there. Returns what start_http_server returns (server, thread)."""
    from prometheus_client import start_http_server

    try:
        return start_http_server(port, addr=host, **kwargs)
    except OSError as error:
        raise port_unavailable(variable, host, port, error) from error
