"""The champion's accuracy history, rebuilt from the ledger's cycles without re-running any model.

Each cycle scored the challenger and the champion of the day on every slice it knew, so the matrix
R[i][j] (the champion after cycle i on slice j, for j <= i) is already recorded: the challenger's
scores when it was promoted, the old champion's when it was not. R[i-1][i], the champion's score on
a slice before training on it, comes from the same records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from perennial.core.settings import Settings
from perennial.data.ledger import Cycle
from perennial.evaluation.continual_metrics import summarize
from perennial.evaluation.gate import PROMOTE
from perennial.workspace import ledger_for, slice_names

METRIC = "accuracy"


def champion_scores(cycle: Cycle) -> dict[str, dict] | None:
    """The scores of the model that was champion once `cycle` finished (None before any)."""
    if cycle.decision == PROMOTE:
        return cycle.metrics.get("challenger")
    return cycle.metrics.get("champion")


def champion_matrix(cycles: Sequence[Cycle], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """R[i][j]: accuracy of the champion after cycle i on cycle j's slice; rows and columns in cycle
    order, named by slice. Entries above the diagonal are filled only at [i-1][i] (the champion of
    the day on the next slice, before training on it); the rest are NaN."""
    names = names or {}
    columns = [names.get(c.batch_id, c.batch_id) for c in cycles]
    data = [[math.nan] * len(cycles) for _ in cycles]
    for i, cycle in enumerate(cycles):
        after = champion_scores(cycle) or {}
        for j, other in enumerate(cycles[: i + 1]):
            if other.batch_id in after:
                data[i][j] = float(after[other.batch_id][METRIC])
        before = cycle.metrics.get("champion") or {}
        if i > 0 and cycle.batch_id in before:
            data[i - 1][i] = float(before[cycle.batch_id][METRIC])
    labels = [f"after {n + 1}: {column}" for n, column in enumerate(columns)]
    return pd.DataFrame(
        data, index=pd.Index(labels, name="champion"), columns=pd.Index(columns, name="test slice")
    )


def best_champion_accuracy(cycles: Sequence[Cycle]) -> dict[str, float]:
    """Per slice (batch id), the best accuracy any champion had on it in the recorded cycles:
    the reference from which the gate measures forgetting."""
    best: dict[str, float] = {}
    for cycle in cycles:
        for role in ("champion", "challenger"):
            if role == "challenger" and cycle.decision != PROMOTE:
                continue  # a rejected challenger never served
            for batch_id, metrics in (cycle.metrics.get(role) or {}).items():
                best[batch_id] = max(best.get(batch_id, -1.0), float(metrics[METRIC]))
    return best


def metrics_over_versions(cycles: Sequence[Cycle], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per registered version, in order: its accuracy on every slice it was scored on (NaN
    for slices that came later), and whether it was promoted (column `decision`)."""
    names = names or {}
    rows, index = [], []
    for cycle in cycles:
        if cycle.challenger_version is None:
            continue
        scores = cycle.metrics.get("challenger") or {}
        rows.append(
            {
                "decision": cycle.decision,
                **{names.get(b, b): float(m[METRIC]) for b, m in scores.items()},
            }
        )
        index.append(f"v{cycle.challenger_version}")
    frame = pd.DataFrame(rows, index=pd.Index(index, name="version"))
    slices = [names.get(c.batch_id, c.batch_id) for c in cycles]
    ordered = [s for s in dict.fromkeys(slices) if s in frame.columns]
    return frame[["decision", *ordered]] if not frame.empty else frame


def continual_metrics(settings: Settings) -> tuple[pd.DataFrame, dict | None]:
    """The champion's accuracy matrix over the recorded cycles and its summary (average accuracy,
    backward transfer, forgetting); the summary is None while it is undefined (no champion yet)."""
    matrix = champion_matrix(ledger_for(settings).cycles(), slice_names(settings))
    try:
        return matrix, summarize(matrix).to_dict()
    except ValueError:  # a cycle ended with no champion: its row has no scores
        return matrix, None
