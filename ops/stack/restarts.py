"""Restart counts of the supervised services, kept in `<state dir>/run/restarts.json` (written by
the supervisor, shown by `tickhouse status`), and the supervisor's own process record."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from ops.stack.processes import Service


def supervisor_service(state_dir: Path) -> Service:
    return Service("supervisor", state_dir)


def restarts_file(state_dir: Path) -> Path:
    return state_dir / "run" / "restarts.json"


def read_restarts(state_dir: Path) -> dict[str, dict[str, object]]:
    """{app: {"restarts": n, "last_restart": iso time}} as the supervisor last wrote it."""
    try:
        data = json.loads(restarts_file(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def count_of(data: dict[str, dict[str, object]], name: str) -> int:
    """`name`'s restart count in what `read_restarts` returned (0 when absent or malformed)."""
    entry = data.get(name) or {}
    count = entry.get("restarts", 0) if isinstance(entry, dict) else 0
    return int(count) if isinstance(count, int) else 0


def restart_count(state_dir: Path, name: str) -> int:
    return count_of(read_restarts(state_dir), name)


def record_restart(state_dir: Path, name: str, backoff_s: float) -> int:
    """Count one more restart of `name` (with its time and the backoff waited); returns the count."""
    data = read_restarts(state_dir)
    count = count_of(data, name) + 1
    data[name] = {
        "restarts": count,
        "last_restart": datetime.now(UTC).isoformat(timespec="seconds"),
        "backoff_s": backoff_s,
    }
    write_restarts(state_dir, data)
    return count


def write_restarts(state_dir: Path, data: dict[str, dict[str, object]]) -> None:
    path = restarts_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: status never reads half a file


def reset_restarts(state_dir: Path, names: Iterable[str]) -> None:
    """Start counting afresh for apps that `tickhouse up` / the demo has just started."""
    data = read_restarts(state_dir)
    for name in names:
        data.pop(name, None)
    write_restarts(state_dir, data)
