"""The dbt docs site as an analyst sees it: generated from a built warehouse of the test's own,
served by `tickhouse docs --no-generate`, read in headless Chromium.

The catalog (the relations' real columns) must have a description for every column of every mart,
and the site must show a mart's documented columns and its lineage.
A screenshot is kept in test-artifacts/docs.png.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.suite import free_port
from tests.e2e.browser import CHROMIUM, INSTALL_HINT, Browser, served
from tests.integration.dbt.conftest import own_warehouse
from tickhouse.config import Settings
from transform.dbt_runner import build
from transform.docs import generate, load_json, undocumented_mart_columns

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VWAP_DOC = "Volume-weighted average price"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    target = tmp_path_factory.mktemp("dbt-docs")
    with own_warehouse("docs_e2e") as settings:
        build(["--target-path", str(target)], settings)
        generate(target, settings)
        yield settings, target


@pytest.fixture(scope="module")
def docs_url(site: tuple[Settings, Path]) -> Iterator[str]:
    settings, target = site
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with served("tickhouse docs",
                [sys.executable, "-m", "ops.cli", "docs", "--no-generate", "--dir", str(target)],
                cwd=settings.project_root,
                env={**os.environ, **settings.as_env(), "DOCS_PORT": str(port)},
                log_path=ARTIFACTS / "docs-server.log", probe_url=f"{url}catalog.json"):
        yield url


def test_catalog_columns_of_every_mart_are_documented(site: tuple[Settings, Path]) -> None:
    _, target = site
    manifest = load_json(target / "manifest.json")
    catalog = load_json(target / "catalog.json")
    marts = {
        uid for uid, n in manifest["nodes"].items()
        if n["resource_type"] == "model" and n["path"].startswith("marts/")
    }
    # every mart was built, so the catalog holds its real columns
    assert marts <= set(catalog["nodes"]), marts - set(catalog["nodes"])
    assert undocumented_mart_columns(manifest, catalog) == {}


def test_the_site_shows_a_mart_with_its_documented_columns_and_lineage(docs_url: str) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(INSTALL_HINT.format(path=CHROMIUM), pytrace=False)
    browser = Browser(width=1400, height=1000)
    try:
        browser.navigate(f"{docs_url}#!/model/model.tickhouse.fct_bars")
        text = browser.wait_for(
            "fct_bars' page with the vwap column and its description",
            lambda: (
                t
                if "vwap" in (t := browser.evaluate("document.body ? document.body.innerText : ''"))
                and VWAP_DOC in t
                else None
            ),
            timeout=60,
        )
        assert "bar_interval" in text and "bar_source" in text
        # lineage: the model page lists what it depends on and what reads it
        assert "int_bars" in text
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "docs.png")
        # the full lineage graph opens from the page and draws the nodes around fct_bars
        browser.evaluate(
            "(() => { const b = [...document.querySelectorAll('a, button, div')]"
            ".find(e => /lineage graph/i.test(e.getAttribute('title') || e.innerText || '')"
            " && e.children.length <= 2); if (b) b.click(); return !!b; })()"
        )
        browser.wait_for(
            "the lineage graph panel drawn (a canvas of cytoscape)",
            lambda: browser.evaluate(
                "document.body.innerText.includes('Lineage Graph') && [...document.querySelectorAll"
                "('canvas')].some(c => c.getBoundingClientRect().height > 100)"
            ),
            timeout=30,
        )
        browser.screenshot(ARTIFACTS / "docs-lineage.png")
    finally:
        browser.close()
