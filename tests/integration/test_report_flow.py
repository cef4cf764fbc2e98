"""`perennial report` over a real workspace: two cycles, a quarantined batch and a drift check, read
back from the page as a newcomer would see it."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from markupsafe import escape  # as the report's template engine escapes text

from perennial.cli import main
from perennial.core.settings import Settings
from perennial.data.ledger import QUARANTINED
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.reporting.data_docs import data_docs_dir
from perennial.reporting.data_docs import page_path as data_docs_page
from perennial.reporting.model_card import card_paths
from perennial.reporting.report import build_report
from perennial.workspace import ledger_for, validation_path

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

FAKE_PNG = b"\x89PNG\r\n\x1a\nnot really a drift plot"


def section(page: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}">.*?</section>', page, re.S)
    assert found, f"no section {anchor}"
    return found.group(0)


def version_row(page: str, version: str) -> str:
    rows = [
        r for r in re.findall(r"<tr>.*?</tr>", section(page, "versions"), re.S) if f"<b>v{version}</b>" in r
    ]
    assert len(rows) == 1, f"v{version}: {len(rows)} rows"
    return rows[0]


def resolves_to(page_path: Path, fragment: str, target: Path) -> bool:
    """Whether some link in `fragment` points, relative to the page, at the file `target`."""
    for href in re.findall(r'href="([^"]+)"', fragment):
        assert not href.startswith(("/", "file:")), f"not a relative link: {href}"
        linked = (page_path.parent / unquote(html.unescape(href))).resolve()
        if linked == target.resolve() and linked.is_file():
            return True
    return False


def record_drift_check(settings: Settings, version: str) -> Path:
    """A check as the monitor leaves it: a JSON report with its plot beside it, and a ledger row."""
    settings.drift_dir.mkdir(parents=True, exist_ok=True)
    report = settings.drift_dir / f"drift-20250101T000000Z-v{version}.json"
    report.write_text("{}")
    report.with_suffix(".png").write_bytes(FAKE_PNG)
    ledger_for(settings).record_drift_check(
        version, True, "labels-needed", "drift in text_length: label recent inputs", 0.0123, str(report)
    )
    return report


def test_report_names_champion_decisions_slices_quarantine_and_links(
    settings: Settings, drop, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fixture in ("reviews.csv", "films.jsonl"):
        drop(settings, fixture)
        state = continual_training(settings, return_state=True)
        assert state.is_completed(), state.message
    drop(settings, "bad_labels.csv")
    assert continual_training(settings, return_state=True).is_failed()  # quarantine fails the run
    champion = registry.champion(settings)
    assert champion is not None
    drift_report = record_drift_check(settings, champion.version)

    path = build_report(settings)

    assert path == settings.reports_dir / "index.html" and path.is_file()
    page = path.read_text(encoding="utf-8")
    header = re.search(r"<header.*?</header>", page, re.S).group(0)
    assert f'v{champion.version} <span class="badge champion">champion</span>' in header
    assert 'class="badge champion">champion</span>' in version_row(page, champion.version)

    cycles = ledger_for(settings).cycles()
    assert [c.challenger_version for c in cycles] == ["1", "2"]
    for cycle in cycles:
        row = version_row(page, cycle.challenger_version)
        assert cycle.decision in row
        assert cycle.reasons and all(escape(reason) in row for reason in cycle.reasons)

    matrix = section(page, "matrix")
    for slice_name in ("reviews", "films"):
        assert f"<th>{slice_name}</th>" in matrix
    assert "data:image/png;base64," in matrix  # the heatmap
    assert "data:image/png;base64," in section(page, "over-versions")

    bad = next(b for b in ledger_for(settings).batches() if b.source == "bad_labels.csv")
    assert bad.status == QUARANTINED
    quarantined = section(page, "quarantined")
    assert escape(bad.reason) in quarantined
    assert resolves_to(path, quarantined, Path(bad.raw_path))
    assert resolves_to(path, quarantined, data_docs_page(settings, bad.batch_id))

    assert resolves_to(path, version_row(page, "1"), card_paths(settings, "1")[1])
    batches = section(page, "batches")
    for batch in ledger_for(settings).batches():
        assert resolves_to(path, batches, validation_path(settings, batch.batch_id)), batch.source
        assert resolves_to(path, batches, data_docs_page(settings, batch.batch_id)), batch.source
    assert resolves_to(path, batches, data_docs_dir(settings) / "index.html")

    drift = section(page, "drift")
    assert "drift in text_length: label recent inputs" in drift
    assert resolves_to(path, drift, drift_report)
    assert f"data:image/png;base64,{base64.b64encode(FAKE_PNG).decode()}" in drift

    # The command, writing elsewhere: links are relative to where the page is.
    elsewhere = tmp_path / "published" / "dash.html"
    assert main(["--workspace", str(settings.root), "report", "--out", str(elsewhere)]) == 0
    printed = capsys.readouterr().out
    assert str(elsewhere) in printed and elsewhere.as_uri() in printed
    moved = elsewhere.read_text(encoding="utf-8")
    assert resolves_to(elsewhere, version_row(moved, "1"), card_paths(settings, "1")[1])


def test_report_on_an_empty_workspace_says_no_versions_yet(settings: Settings) -> None:
    path = build_report(settings)

    page = path.read_text(encoding="utf-8")
    assert "No versions yet" in section(page, "versions") and "none yet" in page
    assert "<img" not in page
    assert str(settings.root) in page
    assert not list(path.parent.glob(".index.html.*"))  # no temporary file left behind
