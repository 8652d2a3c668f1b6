"""The docs site's content without a database: every mart model and column has a description."""

from __future__ import annotations

from pathlib import Path

import pytest

from transform import docs_cli
from transform.dbt_runner import run_dbt
from transform.docs import load_json, undocumented_mart_columns

pytestmark = pytest.mark.unit


def test_every_mart_column_is_documented(tmp_path: Path) -> None:
    result = run_dbt(["--quiet", "parse", "--target-path", str(tmp_path)])
    assert result.success, result.exception
    manifest = load_json(tmp_path / "manifest.json")
    marts = [
        n for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["path"].startswith("marts/")
    ]
    assert {"fct_bars", "fct_technicals", "stock_analytics", "fct_alerts", "dim_symbols"} <= {
        n["name"] for n in marts
    }
    assert all(n["columns"] for n in marts), "a mart without documented columns"
    assert undocumented_mart_columns(manifest) == {}


def test_an_undocumented_column_is_reported() -> None:
    manifest = {
        "nodes": {
            "model.tickhouse.fct_x": {
                "resource_type": "model",
                "name": "fct_x",
                "path": "marts/fct_x.sql",
                "description": "x",
                "columns": {"a": {"description": "the a"}, "b": {"description": "  "}},
            },
            "model.tickhouse.int_y": {
                "resource_type": "model",
                "name": "int_y",
                "path": "intermediate/int_y.sql",
                "description": "",
                "columns": {},
            },
        }
    }
    catalog = {"nodes": {"model.tickhouse.fct_x": {"columns": {"A": {}, "c": {}}}}}
    assert undocumented_mart_columns(manifest) == {"fct_x": ["b"]}
    assert undocumented_mart_columns(manifest, catalog) == {"fct_x": ["b", "c"]}


def test_serving_without_a_generated_site_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert docs_cli.main(["--no-generate", "--dir", str(tmp_path), "--port", "0"]) == 1
    assert "run `tickhouse docs`" in capsys.readouterr().err
