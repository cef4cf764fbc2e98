"""Data Docs pages: GX's own rendering of a real validation result, with every resource bundled."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.validation import validate
from perennial.reporting.data_docs import (
    ASSETS,
    CDN_TO_LOCAL,
    DataDocsError,
    install_static,
    localise,
    render_suite_page,
    render_validation_page,
)

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def failed_result() -> dict:
    """A real GX result for a batch with a label outside the set."""
    frame = pd.DataFrame(
        {
            "text": [f"review number {i}" for i in range(40)],
            "label": ["positive", "negative"] * 19 + ["meh"] * 2,
        }
    )
    report = validate(frame, Settings(min_rows=10).validation, LABELS)
    assert not report.success
    return json.loads(json.dumps(report.result))  # as stored on disk


def local_references(page: str) -> list[str]:
    return [
        unquote(html.unescape(u))
        for u in re.findall(r'<(?:script|link|img)\b[^>]*?(?:src|href)="([^"#]+)"', page)
    ]


def test_every_bundled_file_matches_its_manifest_checksum() -> None:
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    for name, entry in manifest.items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == entry["sha256"], name
    for local in CDN_TO_LOCAL.values():
        assert local in manifest, local


def test_localise_points_cdn_links_at_the_bundle_and_drops_sri() -> None:
    url = "https://code.jquery.com/jquery-3.7.1.min.js"
    page = f'<script src="{url}" integrity="sha384-abc" crossorigin="anonymous"></script>'
    page += '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
    out = localise(page, "../static/")
    assert (
        out
        == '<script src="../static/jquery/jquery.min.js"></script><img src="../static/images/logo-long.png">'
    )


def test_localise_refuses_a_cdn_it_does_not_know() -> None:
    with pytest.raises(DataDocsError, match="unpkg.com/new-lib"):
        localise('<script src="https://unpkg.com/new-lib@1/x.js"></script>', "static/")


def test_localise_keeps_ordinary_links_to_websites() -> None:
    page = '<a href="https://greatexpectations.io/">GX</a>'
    assert localise(page, "static/") == page


def test_validation_page_shows_the_failure_and_loads_nothing_remote(
    failed_result: dict, tmp_path: Path
) -> None:
    page = render_validation_page(failed_result, source="bad-labels.csv", run_name="batch-1")

    assert "bad-labels.csv" in page and "batch-1" in page  # GX would print "None" and "__none__"
    assert "Failed" in page and "meh" in page  # the failed set expectation and its unexpected value
    assert not re.search(r"<(script|link|img)\b[^>]*(src|href)=\"https?://", page)
    # Every resource resolves inside reports/data_docs/ once the static files are installed.
    settings = Settings(workspace=tmp_path)
    static = install_static(settings)
    validations = static.parent / "validations"
    refs = local_references(page)
    assert any(r.endswith("bootstrap.min.css") for r in refs)
    for ref in refs:
        assert (validations / ref).resolve().is_file(), ref


def test_suite_page_lists_the_expectations_of_the_result(failed_result: dict) -> None:
    page = render_suite_page(failed_result)
    assert "perennial-batch" in page
    assert "negative" in page and "positive" in page  # the label set
    assert "https://cdn" not in page and "https://unpkg" not in page
