"""Continual-learning metrics on hand-computed accuracy matrices."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perennial.evaluation.continual_metrics import (
    ContinualMetrics,
    accuracy_over_cycles,
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forgetting_at_any_cycle,
    forgetting_per_slice,
    format_summary,
    forward_transfer,
    maximum_forgetting,
    summarize,
)

NAN = math.nan


@pytest.fixture
def r3() -> pd.DataFrame:
    # Only the lower triangle measured, as after a normal run.
    return pd.DataFrame(
        [
            [0.90, NAN, NAN],
            [0.85, 0.80, NAN],
            [0.80, 0.78, 0.88],
        ],
        index=["cycle 1", "cycle 2", "cycle 3"],
        columns=["movies", "books", "electronics"],
    )


@pytest.fixture
def r4() -> pd.DataFrame:
    # Full matrix: entries above the diagonal feed forward transfer only.
    return pd.DataFrame(
        [
            [0.90, 0.60, 0.55, 0.50],
            [0.86, 0.78, 0.62, 0.58],
            [0.88, 0.84, 0.85, 0.66],
            [0.84, 0.81, 0.87, 0.89],
        ],
        columns=["s0", "s1", "s2", "s3"],
    )


def test_3x3_by_hand(r3: pd.DataFrame) -> None:
    # ACC = (0.80 + 0.78 + 0.88) / 3 = 2.46 / 3 = 0.82
    assert average_accuracy(r3) == pytest.approx(0.82)
    # BWT = ((0.80 - 0.90) + (0.78 - 0.80)) / 2 = (-0.10 - 0.02) / 2 = -0.06
    assert backward_transfer(r3) == pytest.approx(-0.06)
    # movies: max(0.90, 0.85) - 0.80 = 0.10; books: max(0.80) - 0.78 = 0.02
    forgetting = forgetting_per_slice(r3)
    assert list(forgetting) == ["movies", "books"]
    assert forgetting["movies"] == pytest.approx(0.10)
    assert forgetting["books"] == pytest.approx(0.02)
    # average (0.10 + 0.02) / 2 = 0.06; maximum 0.10
    assert average_forgetting(r3) == pytest.approx(0.06)
    assert maximum_forgetting(r3) == pytest.approx(0.10)
    # after cycle 1: 0.90; cycle 2: (0.85 + 0.80) / 2 = 0.825; cycle 3: 0.82
    assert accuracy_over_cycles(r3) == pytest.approx([0.90, 0.825, 0.82])
    # NaN above the diagonal: no R[j-1][j], so no forward transfer even with a baseline.
    assert forward_transfer(r3, [0.5, 0.5, 0.5]) is None


def test_4x4_by_hand_with_negative_forgetting_and_fwt(r4: pd.DataFrame) -> None:
    baseline = {"s0": 0.50, "s1": 0.50, "s2": 0.55, "s3": 0.52}
    m = summarize(r4, baseline)
    # ACC = (0.84 + 0.81 + 0.87 + 0.89) / 4 = 3.41 / 4 = 0.8525
    assert m.avg_acc == pytest.approx(0.8525)
    # BWT = ((0.84 - 0.90) + (0.81 - 0.78) + (0.87 - 0.85)) / 3 = (-0.06 + 0.03 + 0.02) / 3 = -0.01 / 3
    assert m.bwt == pytest.approx(-0.01 / 3)
    # s0: max(0.90, 0.86, 0.88) - 0.84 = 0.06
    # s1: max(0.78, 0.84) - 0.81 = 0.03   (the best was after cycle 2, not on the diagonal)
    # s2: max(0.85) - 0.87 = -0.02        (improved: the sign is kept)
    assert m.forgetting == pytest.approx({"s0": 0.06, "s1": 0.03, "s2": -0.02})
    # average (0.06 + 0.03 - 0.02) / 3 = 0.07 / 3; maximum 0.06
    assert m.avg_forgetting == pytest.approx(0.07 / 3)
    assert m.max_forgetting == pytest.approx(0.06)
    # FWT = ((0.60 - 0.50) + (0.62 - 0.55) + (0.66 - 0.52)) / 3 = (0.10 + 0.07 + 0.14) / 3 = 0.31 / 3
    assert m.fwt == pytest.approx(0.31 / 3)
    # (0.86 + 0.78) / 2 = 0.82; (0.88 + 0.84 + 0.85) / 3 = 2.57 / 3
    assert m.acc_over_cycles == pytest.approx([0.90, 0.82, 2.57 / 3, 0.8525])


def test_negative_forgetting_only() -> None:
    # Every old slice improved: forgetting is negative everywhere and BWT positive.
    r = np.array([[0.70, NAN], [0.75, 0.80]])
    assert forgetting_per_slice(r) == pytest.approx({0: -0.05})  # 0.70 - 0.75
    assert maximum_forgetting(r) == pytest.approx(-0.05)
    assert backward_transfer(r) == pytest.approx(0.05)


def test_forward_transfer_baseline_forms(r4: pd.DataFrame) -> None:
    expected = 0.31 / 3
    assert forward_transfer(r4, None) is None
    assert forward_transfer(r4, [0.50, 0.50, 0.55, 0.52]) == pytest.approx(expected)  # by position
    assert forward_transfer(r4, np.array([0.50, 0.50, 0.55, 0.52])) == pytest.approx(expected)
    series = pd.Series({"s3": 0.52, "s2": 0.55, "s1": 0.50, "s0": 0.50})  # by name, any order
    assert forward_transfer(r4, series) == pytest.approx(expected)
    # baseline[0] is never used: the first slice has no earlier model.
    assert forward_transfer(r4, {"s1": 0.50, "s2": 0.55, "s3": 0.52}) == pytest.approx(expected)


def test_forward_transfer_none_when_an_entry_is_missing(r4: pd.DataFrame) -> None:
    assert forward_transfer(r4, {"s1": 0.5, "s2": 0.5}) is None  # no baseline for s3
    assert forward_transfer(r4, [0.5, 0.5, NAN, 0.5]) is None
    gap = r4.copy()
    gap.iloc[1, 2] = NAN  # R[1][2] not measured
    assert forward_transfer(gap, [0.5, 0.5, 0.5, 0.5]) is None
    assert summarize(gap, [0.5, 0.5, 0.5, 0.5]).fwt is None


def test_forward_transfer_baseline_length_mismatch(r4: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="one accuracy per slice"):
        forward_transfer(r4, [0.5, 0.5])


def test_single_cycle() -> None:
    r = pd.DataFrame([[0.91]], columns=["movies"])
    m = summarize(r, baseline=[0.5])
    assert m.avg_acc == pytest.approx(0.91)
    assert m.bwt is None and m.avg_forgetting is None and m.max_forgetting is None and m.fwt is None
    assert m.forgetting == {}
    assert m.acc_over_cycles == pytest.approx([0.91])
    assert "91.0%" in format_summary(m)


def test_numpy_and_nested_list_inputs(r3: pd.DataFrame) -> None:
    as_list = r3.to_numpy().tolist()
    assert average_accuracy(as_list) == pytest.approx(0.82)
    assert set(forgetting_per_slice(np.array(as_list))) == {0, 1}  # positions when there are no names


def test_summarize_to_dict_is_json_ready(r4: pd.DataFrame) -> None:
    m = summarize(r4)
    data = m.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(ContinualMetrics)}
    assert data["fwt"] is None
    assert json.loads(json.dumps(data))["forgetting"]["s0"] == pytest.approx(0.06)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.avg_acc = 1.0  # type: ignore[misc]


def test_format_summary(r3: pd.DataFrame, r4: pd.DataFrame) -> None:
    text = format_summary(summarize(r3))
    assert "average accuracy 82.0%, BWT -6.0 points, max forgetting 10.0 points (movies)" in text
    assert "average forgetting 6.0 points" in text
    assert "FWT" not in text  # no baseline
    assert "90.0% → 82.5% → 82.0%" in text
    assert "FWT +10.3 points" in format_summary(summarize(r4, [0.50, 0.50, 0.55, 0.52]))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (pd.DataFrame(), "non-empty"),
        (np.zeros((2, 3)), "square"),
        (np.array([0.9, 0.8]), "2-D"),
        (np.array([[0.9, NAN], [0.8, NAN]]), "diagonal"),
        (np.array([[90.0, NAN], [85.0, 80.0]]), r"\[0, 1\]"),
    ],
)
def test_invalid_matrices(matrix: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(matrix)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        average_accuracy(matrix)  # type: ignore[arg-type]


def test_nan_in_a_needed_lower_triangle_entry(r3: pd.DataFrame) -> None:
    gap = r3.copy()
    gap.loc["cycle 2", "movies"] = NAN  # R[1][0]: needed for forgetting, not for ACC or BWT
    assert average_accuracy(gap) == pytest.approx(0.82)
    assert backward_transfer(gap) == pytest.approx(-0.06)
    with pytest.raises(ValueError, match=r"R\[1\]\[0\] \(movies\)"):
        forgetting_per_slice(gap)
    with pytest.raises(ValueError, match="lower triangle"):
        accuracy_over_cycles(gap)
    with pytest.raises(ValueError, match="lower triangle"):
        summarize(gap)
    final_gap = r3.copy()
    final_gap.loc["cycle 3", "books"] = NAN
    with pytest.raises(ValueError, match="final row"):
        average_accuracy(final_gap)
    with pytest.raises(ValueError, match="final row"):
        backward_transfer(final_gap)


def test_a_slice_that_collapses_and_recovers_shows_in_the_worst_drop_only() -> None:
    # Slice a: 0.9 when learned, 0.3 after cycle 2, back to 0.85 at the end.
    R = [[0.9, 0.1, 0.1], [0.3, 0.8, 0.2], [0.85, 0.7, 0.9]]
    assert forgetting_per_slice(R) == pytest.approx({0: 0.05, 1: 0.1})
    assert forgetting_at_any_cycle(R) == pytest.approx({0: 0.6, 1: 0.1})
    summary = summarize(R)
    assert summary.max_forgetting == pytest.approx(0.1)
    assert summary.max_forgetting_any_cycle == pytest.approx(0.6)
    assert "worst drop at any cycle 60.0 points" in format_summary(summary)


def test_a_summary_stored_before_the_worst_drop_existed_still_loads(r3: pd.DataFrame) -> None:
    stored = summarize(r3).to_dict()
    del stored["max_forgetting_any_cycle"]
    assert ContinualMetrics(**stored).max_forgetting_any_cycle is None
    assert "worst drop" not in format_summary(ContinualMetrics(**stored))


@given(
    st.integers(2, 6).flatmap(
        lambda n: st.lists(st.lists(st.floats(0, 1), min_size=n, max_size=n), min_size=n, max_size=n)
    )
)
def test_the_worst_drop_is_never_below_the_final_forgetting(rows: list[list[float]]) -> None:
    final, anytime = forgetting_per_slice(rows), forgetting_at_any_cycle(rows)
    assert final.keys() == anytime.keys()
    for name in final:
        assert anytime[name] >= final[name] - 1e-12
