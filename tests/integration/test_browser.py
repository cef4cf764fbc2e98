"""What a person sees, checked in a real browser: headless Chromium (Debian's, driven by Playwright)
opens the report, a Data Docs page and the MLflow UI after a tiny end-to-end run, with every request
that leaves 127.0.0.1 or the disk blocked, and saves screenshots under results/browser/."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import QUARANTINED
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.reporting.data_docs import page_path as data_docs_page
from perennial.reporting.report import build_report
from perennial.workspace import ledger_for
from processes import answers, free_port, stop_group, tiny_cli_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

BOOTSTRAP_BLUES = {"rgb(0, 123, 255)", "rgb(0, 105, 217)", "rgb(0, 98, 204)"}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "results" / "browser"


class OfflinePage:
    """A page that may load files and 127.0.0.1 only; everything else is refused and recorded."""

    def __init__(self, browser: object) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))

    def _route(self, route: object) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "http://127.0.0.1")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name}: a blank screenshot"
        return path


@contextlib.contextmanager
def mlflow_ui(settings: Settings, pretrained_tiny_model_dir: Path) -> Iterator[str]:
    """`perennial ui` in its own process group on a free port; yields its URL once it answers."""
    port = free_port()
    env = tiny_cli_env(settings.root, pretrained_tiny_model_dir, mlflow_ui_port=str(port))
    ui = subprocess.Popen(
        [sys.executable, "-m", "perennial.cli", "ui"],
        env=env, cwd=settings.root.parent, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/health"), 120, "the MLflow UI")
        yield url
    finally:
        stop_group(ui)  # like Ctrl-C, then the UI's workers too


def test_report_data_docs_and_mlflow_ui_show_the_champion_and_heatmap_offline(
    settings: Settings, drop, browser: object, pretrained_tiny_model_dir: Path
) -> None:
    for fixture in ("reviews.csv", "films.jsonl"):
        drop(settings, fixture)
        assert continual_training(settings, return_state=True).is_completed()
    drop(settings, "bad_labels.csv")
    assert continual_training(settings, return_state=True).is_failed()  # quarantined
    champion = registry.champion(settings)
    assert champion is not None
    report = build_report(settings)

    # The report: the champion badge in the header and the heatmap drawn, from the disk alone.
    view = OfflinePage(browser)
    page = view.page
    page.goto(report.as_uri())
    header = page.locator("header")
    assert header.locator(".badge.champion").first.is_visible()
    assert f"v{champion.version}" in header.inner_text()
    heatmap = page.locator("section#matrix img").first
    heatmap.scroll_into_view_if_needed()
    assert heatmap.is_visible()
    assert heatmap.evaluate("img => img.complete && img.naturalWidth > 100")
    # Every plot is shown at its natural size: its labels read at the size they were drawn.
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shown = page.locator("img").evaluate_all("imgs => imgs.map(i => i.width / i.naturalWidth)")
    assert shown and all(ratio > 0.99 for ratio in shown), shown
    view.screenshot("report.png")

    # Its link to the quarantined batch's Data Docs page leads to GX's page, styled with no network.
    bad = next(b for b in ledger_for(settings).batches() if b.status == QUARANTINED)
    page.locator("section#quarantined a", has_text="Data Docs").first.click()
    page.wait_for_load_state("load")
    assert page.url == data_docs_page(settings, bad.batch_id).as_uri()
    assert page.get_by_text("Failed", exact=False).first.is_visible()
    # Bootstrap's font stack and its blue buttons (plain, hover or active): the stylesheet loaded.
    assert "BlinkMacSystemFont" in page.evaluate("getComputedStyle(document.body).fontFamily")
    button = page.locator(".btn-primary").first
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") in BOOTSTRAP_BLUES
    assert page.evaluate("typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'")
    view.screenshot("data-docs.png")
    assert view.blocked == [] and view.failed == [], (view.blocked, view.failed)

    # The MLflow UI on 127.0.0.1: the champion alias sits on the champion's version.
    with mlflow_ui(settings, pretrained_tiny_model_dir) as url:
        ui = OfflinePage(browser)
        ui.page.goto(f"{url}/#/models/{settings.registered_model_name}")
        row = ui.page.get_by_role("row").filter(has_text=f"Version {champion.version}").first
        alias = row.get_by_text("@ champion", exact=True)
        alias.wait_for(timeout=60_000)
        assert alias.is_visible()
        ui.screenshot("mlflow-ui.png")
