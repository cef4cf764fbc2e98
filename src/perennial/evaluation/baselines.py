"""The trivial predictors a first champion must beat on the new slice: the constant majority class
(from the batch's train split) and chance (guessing labels at random by the train priors).

A model no better than these has learned nothing worth serving, however high its accuracy looks on an
imbalanced slice (a constant "positive" scores 0.67 on a 67%-positive batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from perennial.evaluation.significance import PairedTest, paired_test


@dataclass(frozen=True)
class Baseline:
    """The trivial predictors on the new slice: the constant majority class of the batch's train
    split, and chance (guessing labels at random by the train priors). `paired` is the paired test of
    the challenger's per-row correctness against the majority predictor's (same rows)."""

    majority_label: str
    majority_accuracy: float
    majority_macro_f1: float
    chance_macro_f1: float
    paired: PairedTest

    @property
    def best(self) -> tuple[str, float]:
        """The stronger trivial baseline in macro-F1: (its name, its macro-F1)."""
        if self.chance_macro_f1 > self.majority_macro_f1:
            return "chance", self.chance_macro_f1
        return "majority class", self.majority_macro_f1

    def to_dict(self) -> dict:
        return asdict(self)  # JSON-friendly: the paired test becomes a dict too

    @classmethod
    def from_dict(cls, data: Mapping) -> Baseline:
        return cls(**{**data, "paired": PairedTest(**data["paired"])})


def _plain(value: object) -> Any:
    """A numpy scalar as its Python value; labels from pandas are Python objects already."""
    return value.item() if isinstance(value, np.generic) else value


def _shares(labels: Sequence) -> dict:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {_plain(value): count / counts.sum() for value, count in zip(values, counts, strict=True)}


def majority_label(labels: Sequence) -> Any:
    """The most frequent label; a tie goes to the first in sorted order, so the choice is stable."""
    if len(labels) == 0:
        raise ValueError("no labels to take a majority of")
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return _plain(values[int(np.argmax(counts))])  # argmax: the first of the tied, in sorted order


def macro_f1(predictions: Sequence | np.ndarray, references: Sequence | np.ndarray) -> float:
    """Macro-averaged F1 over the labels in either vector, as sklearn's f1_score(average="macro")
    computes it for the model (a label neither side has is left out)."""
    predicted, actual = np.asarray(predictions), np.asarray(references)
    if len(predicted) != len(actual) or len(actual) == 0:
        raise ValueError(f"need equal, non-empty vectors: {len(predicted)} predictions, {len(actual)} labels")
    per_label = []
    for label in np.union1d(predicted, actual):
        hits = np.count_nonzero((predicted == label) & (actual == label))
        # > 0: the label is in one vector or the other
        per_label.append(
            2 * hits / (np.count_nonzero(predicted == label) + np.count_nonzero(actual == label))
        )
    return float(np.mean(per_label))


def chance_macro_f1(train_labels: Sequence, references: Sequence) -> float:
    """Macro-F1 of guessing at random by the train priors q, from the expected confusion counts: per
    label 2pq / (p + q), p its share of `references`, averaged over the labels either side has (1/K
    when the priors match the slice's shares)."""
    q, p = _shares(train_labels), _shares(references)
    per_label = [2 * p.get(k, 0.0) * q.get(k, 0.0) / (p.get(k, 0.0) + q.get(k, 0.0)) for k in set(p) | set(q)]
    return float(np.mean(per_label))


def trivial_baseline(
    train_labels: Sequence,
    references: Sequence,
    challenger_correct: Sequence[bool] | np.ndarray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Baseline:
    """Score the trivial baselines on the new slice (`references`: its labels) and test the
    challenger's correctness per row against the majority-class predictor's."""
    majority = majority_label(train_labels)
    actual = np.asarray(references)
    majority_correct = actual == majority
    return Baseline(
        majority_label=str(majority),
        majority_accuracy=float(majority_correct.mean()),
        majority_macro_f1=macro_f1(np.full(len(actual), majority, dtype=object), actual.astype(object)),
        chance_macro_f1=chance_macro_f1(train_labels, references),
        paired=paired_test(
            majority_correct,
            np.asarray(challenger_correct, dtype=bool),
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        ),
    )
