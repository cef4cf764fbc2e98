"""Continual-learning metrics from the accuracy matrix R.

R[i][j] is the accuracy (0..1) of the model after cycle i on test slice j, rows and columns both in
cycle order. Definitions follow Lopez-Paz & Ranzato 2017 (GEM: ACC, BWT, FWT) and Chaudhry et al. 2018
(forgetting). Entries above the diagonal are optional and only feed forward transfer.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

MatrixLike: TypeAlias = pd.DataFrame | np.ndarray | Sequence[Sequence[float]]
Baseline: TypeAlias = Mapping[Hashable, float] | pd.Series | np.ndarray | Sequence[float]


def _matrix(R: MatrixLike) -> tuple[np.ndarray, list[Hashable]]:
    """The values as a float array plus the column names (positions for arrays), validated."""
    if isinstance(R, pd.DataFrame):
        values, names = R.to_numpy(dtype=float), list(R.columns)
    else:
        values = np.asarray(R, dtype=float)
        names = list(range(values.shape[1])) if values.ndim == 2 else []
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"accuracy matrix must be a non-empty 2-D table, got shape {values.shape}")
    rows, cols = values.shape
    if rows != cols:
        raise ValueError(
            f"accuracy matrix must be square (one row and one column per cycle), got {rows}x{cols}"
        )
    finite = values[~np.isnan(values)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        # Catches percentages passed where fractions are expected, which would scale every metric by 100.
        raise ValueError("accuracy matrix values must be fractions in [0, 1]")
    _require(values, [(i, i) for i in range(rows)], "the diagonal", names)
    return values, names


def _require(values: np.ndarray, cells: list[tuple[int, int]], what: str, names: list[Hashable]) -> None:
    """Raise if any of the cells is NaN: a metric silently averaging fewer slices would mislead."""
    missing = [(i, j) for i, j in cells if math.isnan(values[i, j])]
    if missing:
        shown = ", ".join(f"R[{i}][{j}] ({names[j]})" for i, j in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"accuracy matrix has NaN in {what}: {shown}{more}")


def _lower_triangle(values: np.ndarray, names: list[Hashable]) -> None:
    T = values.shape[0]
    _require(values, [(i, j) for i in range(T) for j in range(i + 1)], "the lower triangle", names)


def average_accuracy(R: MatrixLike) -> float:
    """Mean accuracy of the final model over every slice seen (GEM's ACC)."""
    values, names = _matrix(R)
    T = values.shape[0]
    _require(values, [(T - 1, j) for j in range(T)], "the final row", names)
    return float(values[T - 1].mean())


def backward_transfer(R: MatrixLike) -> float | None:
    """Mean change on old slices between learning them and the end (negative = forgetting); None if T < 2."""
    values, names = _matrix(R)
    T = values.shape[0]
    if T < 2:
        return None
    _require(values, [(T - 1, j) for j in range(T - 1)], "the final row", names)
    return float(np.mean([values[T - 1, j] - values[j, j] for j in range(T - 1)]))


def _old_slices(R: MatrixLike) -> tuple[np.ndarray, list[Hashable], int]:
    """The matrix, its names and T, with every cell a forgetting measure reads checked (T >= 2)."""
    values, names = _matrix(R)
    T = values.shape[0]
    if T >= 2:
        cells = [(i, j) for j in range(T - 1) for i in range(j, T)]
        _require(values, cells, "the lower triangle", names)
    return values, names, T


def forgetting_per_slice(R: MatrixLike) -> dict[Hashable, float]:
    """Per old slice: best accuracy before the final cycle minus final accuracy (negative = improved)."""
    values, names, T = _old_slices(R)
    return {names[j]: float(values[j : T - 1, j].max() - values[T - 1, j]) for j in range(T - 1)}


def average_forgetting(R: MatrixLike) -> float | None:
    """Mean of `forgetting_per_slice`; None if T < 2."""
    forgetting = forgetting_per_slice(R)
    return float(np.mean(list(forgetting.values()))) if forgetting else None


def maximum_forgetting(R: MatrixLike) -> float | None:
    """Worst slice's forgetting; None if T < 2."""
    forgetting = forgetting_per_slice(R)
    return max(forgetting.values()) if forgetting else None


def forgetting_at_any_cycle(R: MatrixLike) -> dict[Hashable, float]:
    """Per old slice: the deepest drop at any later cycle below the best accuracy before it. A slice
    can collapse and recover; final-row forgetting hides that, this does not."""
    values, names, T = _old_slices(R)
    return {
        names[j]: float(max(values[j:i, j].max() - values[i, j] for i in range(j + 1, T)))
        for j in range(T - 1)
    }


def forward_transfer(R: MatrixLike, baseline: Baseline | None) -> float | None:
    """Mean of R[j-1][j] - baseline[j] for j >= 1: how much earlier cycles help on a slice not yet trained on.

    `baseline` holds the untrained starting model's accuracy per slice, by column name (mapping or
    Series) or by position. None when there is no baseline, T < 2, or a needed entry is missing.
    """
    values, names = _matrix(R)
    T = values.shape[0]
    if baseline is None or T < 2:
        return None
    base = _baseline(baseline, names)
    gains = [values[j - 1, j] - base[j] for j in range(1, T)]
    if any(math.isnan(g) for g in gains):
        return None
    return float(np.mean(gains))


def _baseline(baseline: Baseline, names: list[Hashable]) -> list[float]:
    if isinstance(baseline, Mapping | pd.Series):
        return [float(baseline.get(name, math.nan)) for name in names]
    base = np.asarray(baseline, dtype=float)
    if base.shape != (len(names),):
        raise ValueError(f"baseline must have one accuracy per slice ({len(names)}), got shape {base.shape}")
    return base.tolist()


def accuracy_over_cycles(R: MatrixLike) -> list[float]:
    """Average accuracy after each cycle i over the slices seen so far: mean of R[i][0..i]."""
    values, names = _matrix(R)
    _lower_triangle(values, names)
    return [float(values[i, : i + 1].mean()) for i in range(values.shape[0])]


@dataclass(frozen=True)
class ContinualMetrics:
    avg_acc: float
    bwt: float | None
    avg_forgetting: float | None
    max_forgetting: float | None
    fwt: float | None
    forgetting: dict[Hashable, float] = field(default_factory=dict)
    acc_over_cycles: list[float] = field(default_factory=list)
    max_forgetting_any_cycle: float | None = None  # worst drop at any cycle, not only the last

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready copy (slice names as strings), e.g. for MLflow or a report."""
        data = asdict(self)
        data["forgetting"] = {str(k): v for k, v in self.forgetting.items()}
        return data


def summarize(R: MatrixLike, baseline: Baseline | None = None) -> ContinualMetrics:
    """Every metric at once; validates the whole lower triangle up front so errors surface together."""
    values, names = _matrix(R)
    _lower_triangle(values, names)
    forgetting = forgetting_per_slice(R)
    return ContinualMetrics(
        avg_acc=average_accuracy(R),
        bwt=backward_transfer(R),
        avg_forgetting=average_forgetting(R),
        max_forgetting=maximum_forgetting(R),
        fwt=forward_transfer(R, baseline),
        forgetting=forgetting,
        acc_over_cycles=accuracy_over_cycles(R),
        max_forgetting_any_cycle=max(forgetting_at_any_cycle(R).values(), default=None),
    )


def format_summary(m: ContinualMetrics) -> str:
    """A few human-readable lines, accuracies in percent and differences in percentage points."""
    first = f"average accuracy {100 * m.avg_acc:.1f}%"
    if m.bwt is None or m.max_forgetting is None or m.avg_forgetting is None:
        first += " (BWT and forgetting need at least 2 cycles)"
        lines = [first]
    else:
        worst = max(m.forgetting, key=lambda name: m.forgetting[name])
        first += (
            f", BWT {100 * m.bwt:+.1f} points, max forgetting {100 * m.max_forgetting:.1f} points ({worst})"
        )
        second = f"average forgetting {100 * m.avg_forgetting:.1f} points"
        if m.max_forgetting_any_cycle is not None and m.max_forgetting_any_cycle > m.max_forgetting:
            second += f"; worst drop at any cycle {100 * m.max_forgetting_any_cycle:.1f} points"
        lines = [first, second]
    if m.fwt is not None:
        lines.append(f"FWT {100 * m.fwt:+.1f} points")
    if m.acc_over_cycles:
        lines.append(
            "average accuracy over cycles: " + " → ".join(f"{100 * a:.1f}%" for a in m.acc_over_cycles)
        )
    return "\n".join(lines)
