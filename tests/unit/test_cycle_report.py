"""The cycle's Prefect artifacts: the decision in words and the metrics side by side."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perennial.evaluation.contracts import Outcome, Scores
from perennial.evaluation.gate import PROMOTE, REJECT
from perennial.reporting.cycle_report import comparison_rows, decision_markdown, quarantine_markdown

NAMES = {"b1": "001-tweets", "b2": "002-movies"}
SCORES = Scores(
    new_slice="b2",
    challenger={
        "b1": {"accuracy": 0.90, "macro_f1": 0.89, "n": 150},
        "b2": {"accuracy": 0.80, "macro_f1": 0.79, "n": 150},
    },
    champion={
        "b1": {"accuracy": 0.93, "macro_f1": 0.92, "n": 150},
        "b2": {"accuracy": 0.70, "macro_f1": 0.65, "n": 150},
    },
)


def test_rows_compare_every_slice_and_mark_the_new_one() -> None:
    rows = comparison_rows(SCORES, NAMES)
    assert [r["slice"] for r in rows] == ["001-tweets", "002-movies"]
    assert [r["new"] for r in rows] == [False, True]
    assert rows[0]["delta_points"] == pytest.approx(-3.0)
    assert rows[1]["delta_points"] == pytest.approx(10.0)
    assert rows[1]["champion_macro_f1"] == 0.65 and rows[1]["n"] == 150


def test_without_a_champion_the_champion_columns_are_empty() -> None:
    rows = comparison_rows(Scores("b1", SCORES.challenger), NAMES)
    assert all(r["champion_accuracy"] is None and r["delta_points"] is None for r in rows)


def test_decision_markdown_tells_the_whole_story() -> None:
    outcome = Outcome(
        batch_id="b2",
        version="2",
        decision=REJECT,
        reasons=("gain within noise: +1.0 points", "forgot 001-tweets: -3.0 points"),
        champion_version="1",
        compared_with="1",
    )
    text = decision_markdown("002-movies.csv", "b2", 1500, outcome)
    assert "v2 rejected" in text and "compared with v1" in text and "champion is now v1" in text
    assert "002-movies.csv" in text and "1500 rows" in text and "validation: passed" in text
    assert all(f"- {reason}" in text for reason in outcome.reasons)
    first = decision_markdown("a.csv", "b1", 80, replace(outcome, decision=PROMOTE, compared_with=None))
    assert "no champion yet" in first and "promoted" in first


def test_quarantine_markdown_keeps_the_reason() -> None:
    text = quarantine_markdown("bad.csv", "b9", "labels outside the label set: ['maybe']")
    assert "quarantined" in text and "labels outside the label set: ['maybe']" in text
