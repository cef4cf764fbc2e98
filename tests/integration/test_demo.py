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


def test_the_class_incremental_demo_grows_the_label_set(
    settings: Settings, prefect_harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """TREC question types, two a batch, none declared: whatever the tiny model's decisions, every
    batch is accepted, the label set ends with all six types in arrival order, and the champions'
    matrix is scored over slices whose labels they may not know."""
    from perennial.data.trec import CLASS_ORDER
    from perennial.workspace import labels_for

    relaxed = settings.model_copy(update={"require_significant_gain": False, "max_forgetting": 1.0})
    matrix = run_demo(relaxed, rows_per_domain=40, stream="trec-classes")
    out = capsys.readouterr().out
    assert out.count("decision for ") == 3 and "quarantined" not in out
    assert labels_for(relaxed) == [
        *sorted(CLASS_ORDER[:2]),
        *sorted(CLASS_ORDER[2:4]),
        *sorted(CLASS_ORDER[4:]),
    ]
    assert f"labels: {', '.join(labels_for(relaxed))}" in out
    assert "demo finished in" in out and "drift" not in out.split("labels: ")[-1]
    if not matrix.empty:  # each champion is scored on every slice, known labels or not
        assert matrix.shape[1] == 3 and ((matrix >= 0) & (matrix <= 1)).all().all()
