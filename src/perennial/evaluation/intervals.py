"""How far an accuracy measured on a test slice can be trusted: its confidence interval.

A slice of 150 test rows measures accuracy to about ±6 points, so a reader comparing two cells of
the accuracy matrix needs the interval beside the number. Wilson's score interval (scipy's
`binomtest`), because it stays inside [0, 1] and keeps its coverage near 0 and 1, where the normal
approximation does neither.
"""

from __future__ import annotations


def accuracy_interval(accuracy: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on `n` rows."""
    from scipy.stats import binomtest

    if n <= 0:
        raise ValueError(f"an accuracy on {n} rows has no interval")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy {accuracy} is not in [0, 1]")
    interval = binomtest(round(accuracy * n), n).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)
