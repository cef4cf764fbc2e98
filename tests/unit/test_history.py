"""The champion's accuracy matrix and best-ever scores, rebuilt from recorded cycles."""

from __future__ import annotations

import math

import pytest

from perennial.data.ledger import Cycle
from perennial.evaluation.champion_history import (
    best_champion_accuracy,
    champion_matrix,
    champion_scores,
    metrics_over_versions,
)
from perennial.evaluation.continual_metrics import summarize


def acc(**values: float) -> dict[str, dict[str, float]]:
    return {name: {"accuracy": value, "macro_f1": value, "n": 10} for name, value in values.items()}


def cycle(n: int, batch: str, decision: str, challenger: dict, champion: dict | None) -> Cycle:
    return Cycle(
        cycle=n,
        batch_id=batch,
        run_id=f"run{n}",
        challenger_version=str(n),
        champion_version=None,
        decision=decision,
        reasons=[],
        metrics={"challenger": challenger, "champion": champion},
        finished_at="2026-01-01",
    )


# Cycle 1 promotes; cycle 2 promotes; cycle 3 is rejected (the cycle-2 champion stays).
CYCLES = [
    cycle(1, "a", "promote", acc(a=0.9), None),
    cycle(2, "b", "promote", acc(a=0.8, b=0.85), acc(a=0.9, b=0.6)),
    cycle(3, "c", "reject", acc(a=0.5, b=0.9, c=0.95), acc(a=0.8, b=0.85, c=0.7)),
]


def test_rows_are_the_champion_after_each_cycle() -> None:
    matrix = champion_matrix(CYCLES, names={"a": "01-a", "b": "02-b", "c": "03-c"})
    assert list(matrix.columns) == ["01-a", "02-b", "03-c"]
    assert list(matrix.index) == ["after 1: 01-a", "after 2: 02-b", "after 3: 03-c"]
    values = matrix.to_numpy()
    assert values[0, 0] == 0.9
    assert list(values[1, :2]) == [0.8, 0.85]
    # Rejected: the row is the old champion's scores from cycle 3, not the challenger's 0.5.
    assert list(values[2]) == [0.8, 0.85, 0.7]
    # Above the diagonal: the champion of the day on the next slice, before training on it.
    assert values[0, 1] == 0.6
    assert values[1, 2] == 0.7
    assert math.isnan(values[0, 2])


def test_matrix_feeds_the_continual_metrics() -> None:
    summary = summarize(champion_matrix(CYCLES))
    assert summary.avg_acc == pytest.approx((0.8 + 0.85 + 0.7) / 3)
    # BWT: (0.8 - 0.9 + 0.85 - 0.85) / 2; forgetting of a: max(0.9, 0.8) - 0.8.
    assert summary.bwt == pytest.approx(-0.05)
    assert summary.max_forgetting == pytest.approx(0.1)


def test_no_champion_after_a_rejected_first_cycle_leaves_a_gap() -> None:
    first = cycle(1, "a", "reject", acc(a=0.4), None)
    assert champion_scores(first) is None
    matrix = champion_matrix([first])
    assert math.isnan(matrix.iloc[0, 0])
    with pytest.raises(ValueError):
        summarize(matrix)


def test_best_champion_accuracy_ignores_rejected_challengers() -> None:
    best = best_champion_accuracy(CYCLES)
    assert best == {"a": 0.9, "b": 0.85, "c": 0.7}
    assert best_champion_accuracy([]) == {}


def test_metrics_over_versions_has_every_version_and_its_decision() -> None:
    frame = metrics_over_versions(CYCLES, {"a": "001-a", "b": "002-b", "c": "003-c"})
    assert list(frame.index) == ["v1", "v2", "v3"]
    assert list(frame.columns) == ["decision", "001-a", "002-b", "003-c"]
    assert list(frame["decision"]) == ["promote", "promote", "reject"]
    assert frame.loc["v3", "001-a"] == 0.5  # the rejected challenger's own scores, not the champion's
    assert math.isnan(frame.loc["v1", "002-b"])  # not yet a slice when v1 was scored
    assert metrics_over_versions([]).empty
