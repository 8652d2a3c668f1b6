"""dbt's documentation site: `dbt docs generate` into a target directory, and a static server for it.

`dbt docs generate` writes `index.html`, `manifest.json` and `catalog.json` (the catalog reads the
warehouse, so it needs a built database); the site is plain files, served here by the standard
library's HTTP server bound to 127.0.0.1 (dbt's own `docs serve` would open a browser).
"""

from __future__ import annotations

import functools
import http.server
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tickhouse.config import ConfigError, Settings, load_settings, merged_environment
from transform.dbt_runner import DBT_PROJECT_DIR, TransformError, failure_summary, run_dbt

DEFAULT_DOCS_PORT = 8580
DOCS_DIR = DBT_PROJECT_DIR / "target"
SITE_FILES = ("index.html", "manifest.json", "catalog.json")
MARTS_PATH_PREFIX = "marts/"


def docs_port(environ: dict[str, str] | None = None) -> int:
    """DOCS_PORT from the environment (or `.env`), default 8580."""
    raw = merged_environment(environ).get("DOCS_PORT", "").strip()
    if not raw:
        return DEFAULT_DOCS_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"DOCS_PORT must be a TCP port (1-65535), got {raw!r}")
    return int(raw)


def generate(target_path: Path = DOCS_DIR, settings: Settings | None = None) -> Path:
    """`dbt docs generate` into `target_path`; returns it. Raises TransformError on failure."""
    settings = settings or load_settings()
    result = run_dbt(["--quiet", "docs", "generate", "--target-path", str(target_path)], settings)
    missing = [name for name in SITE_FILES if not (target_path / name).is_file()]
    if not result.success or missing:
        raise TransformError(
            f"dbt docs generate failed ({', '.join(missing) or 'see its log'} missing in {target_path}): "
            f"{failure_summary(result)}"
        )
    return target_path


def site_ready(directory: Path = DOCS_DIR) -> bool:
    return all((directory / name).is_file() for name in SITE_FILES)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(
    directory: Path = DOCS_DIR, port: int = DEFAULT_DOCS_PORT, host: str = "127.0.0.1"
) -> http.server.ThreadingHTTPServer:
    """An HTTP server of the generated site (call `serve_forever()`); `port` 0 picks a free one."""
    if not site_ready(directory):
        raise TransformError(
            f"no generated docs in {directory}: run `tickhouse docs` (without --no-generate) first"
        )
    handler = functools.partial(_QuietHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer((host, port), handler)


def undocumented_mart_columns(
    manifest: dict[str, Any], catalog: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """{model: [column, ...]} of the marts' columns without a description.

    The columns are the yml's (the manifest) and, given a catalog, the relation's real columns too,
    so a column the SQL adds but the yml forgets counts as undocumented.
    """
    out: dict[str, list[str]] = {}
    catalog_nodes = (catalog or {}).get("nodes", {})
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") != "model" or not str(node.get("path", "")).startswith(
            MARTS_PATH_PREFIX
        ):
            continue
        described = {
            name.lower()
            for name, column in node.get("columns", {}).items()
            if str(column.get("description") or "").strip()
        }
        names: Sequence[str] = list(node.get("columns", {}))
        if unique_id in catalog_nodes:
            names = [*names, *catalog_nodes[unique_id].get("columns", {})]
        missing = sorted({n.lower() for n in names} - described)
        if not str(node.get("description") or "").strip():
            missing.insert(0, "(model description)")
        if missing:
            out[node["name"]] = missing
    return out


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
