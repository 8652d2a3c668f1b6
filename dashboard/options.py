"""The dashboard's own settings (environment variables), validated once at start.

Warehouse addresses and credentials come from `tickhouse.config.load_settings()`; these are only
what is specific to the web app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tickhouse.config import ConfigError

# The dashboard only ever listens on loopback: it serves warehouse data without a login.
HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_REFRESH_SECONDS = 15
DEFAULT_MAX_BARS = 1000


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    """What the dashboard process needs besides the warehouse settings."""

    port: int = DEFAULT_PORT
    refresh_seconds: int = DEFAULT_REFRESH_SECONDS
    max_bars: int = DEFAULT_MAX_BARS

    def as_env(self) -> dict[str, str]:
        return {
            "DASHBOARD_PORT": str(self.port),
            "DASHBOARD_REFRESH_SECONDS": str(self.refresh_seconds),
            "DASHBOARD_MAX_BARS": str(self.max_bars),
        }


def _int(name: str, raw: str, low: int, high: int, meaning: str) -> int:
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name}={raw!r} is not {meaning}; set it to a whole number from {low} to {high}")
    return int(raw)


def parse_port(name: str, raw: str) -> int:
    return _int(name, raw, 1, 65535, "a TCP port")


def parse_refresh_seconds(name: str, raw: str) -> int:
    """Seconds between automatic refreshes; 0 turns auto-refresh off."""
    return _int(name, raw, 0, 86400, "a refresh interval in seconds (0 = off)")


def parse_max_bars(name: str, raw: str) -> int:
    return _int(name, raw, 1, 100_000, "a number of bars")


def load_options(environ: Mapping[str, str] | None = None) -> DashboardOptions:
    """Read DASHBOARD_PORT, DASHBOARD_REFRESH_SECONDS and DASHBOARD_MAX_BARS (empty = default)."""
    env = os.environ if environ is None else environ

    def get(name: str, default: int) -> str:
        return env.get(name, "").strip() or str(default)

    return DashboardOptions(
        port=parse_port("DASHBOARD_PORT", get("DASHBOARD_PORT", DEFAULT_PORT)),
        refresh_seconds=parse_refresh_seconds(
            "DASHBOARD_REFRESH_SECONDS", get("DASHBOARD_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS)
        ),
        max_bars=parse_max_bars("DASHBOARD_MAX_BARS", get("DASHBOARD_MAX_BARS", DEFAULT_MAX_BARS)),
    )
