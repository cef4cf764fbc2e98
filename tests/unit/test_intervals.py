"""The Wilson interval on an accuracy, against its closed form and its defining properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perennial.evaluation.intervals import accuracy_interval

Z95 = 1.959963984540054


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 / denominator * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return centre - half, centre + half


@settings(deadline=None)  # the first call imports scipy
@given(n=st.integers(1, 5000), data=st.data())
def test_matches_the_closed_form_and_holds_the_accuracy(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    low, high = accuracy_interval(k / n, n)
    assert (low, high) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_more_rows_narrow_it() -> None:
    widths = [high - low for low, high in (accuracy_interval(0.9, n) for n in (20, 150, 1000))]
    assert widths == sorted(widths, reverse=True)
    assert 0.04 < widths[1] / 2 < 0.06  # 150 rows: about ±5 points at 90%


@pytest.mark.parametrize(("accuracy", "n"), [(0.5, 0), (1.2, 10), (-0.1, 10)])
def test_refuses_what_has_no_interval(accuracy: float, n: int) -> None:
    with pytest.raises(ValueError):
        accuracy_interval(accuracy, n)
