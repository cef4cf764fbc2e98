"""`perennial demo` end to end on the tiny model: real VADER rows, real Prefect flows and MLflow.
The tiny model rarely earns a first champion on two small domains, which is the case that once
ended the demo with a traceback (an empty accuracy matrix cannot be plotted)."""

from __future__ import annotations

import pytest

from perennial.core.settings import Settings
from perennial.demo import run_demo

pytestmark = pytest.mark.integration


def test_the_demo_runs_to_the_end_and_writes_its_pages(
    settings: Settings, prefect_harness, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = run_demo(settings, rows_per_domain=60, domains=("tweets", "movies"))
    out = capsys.readouterr().out
    assert "=== cycle 1:" in out and "=== cycle 2:" in out
    assert out.count("decision for ") == 2
    assert (settings.reports_dir / "accuracy_matrix.csv").is_file()
    assert (settings.reports_dir / "index.html").is_file()
    assert "demo finished in" in out
    # An empty matrix (no champion after any cycle) is said, not plotted.
    assert ("empty: no champion yet" in out) == matrix.empty
    assert ("plot:   " in out) == (not matrix.empty)
