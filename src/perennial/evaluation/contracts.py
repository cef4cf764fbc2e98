"""What the stages of a cycle hand each other, as frozen records.

train_step returns a `Challenger`, evaluate_step its `Scores`, the gate a `Decision`
(perennial.evaluation.gate) and promotion an `Outcome`. Prefect passes them between tasks as they
are; only the ledger and MLflow see plain JSON (`Scores.for_ledger`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from perennial.evaluation.baselines import Baseline
from perennial.evaluation.gate import NewLabelScores, Verdict
from perennial.evaluation.label_check import LabelCheck
from perennial.evaluation.significance import PairedTest

SliceScores = Mapping[str, Mapping[str, float]]  # slice -> metric (accuracy, macro_f1, n) -> value


@dataclass(frozen=True)
class Challenger:
    """A trained model folder and its MLflow run, before evaluation."""

    batch_id: str
    run_id: str
    model_dir: str
    champion_version: str | None  # the champion it is compared with (and warm-started from, unless joint)
    lineage: tuple[str, ...] = ()  # the batches behind it, oldest first, this one last
    strategy: str = ""
    attempt: int = 1  # 2 for the protective retry (perennial.evaluation.retry)
    retry_of: str | None = None  # the first attempt's run, on a retry
    # Classes of this batch the champion never trained on (a retry does not average them away).
    new_classes: tuple[str, ...] = ()
    # What training reported; the model card shows those that are set.
    train_rows: int | None = None
    replay_rows: int | None = None
    train_samples: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    stopped_early: bool | None = None
    best_val_accuracy: float | None = None
    seconds: float | None = None
    train_precision: str | None = None

    def training_result(self) -> dict[str, Any]:
        """The training facts that are known, by name."""
        keys = (
            "train_rows",
            "replay_rows",
            "train_samples",
            "epochs_run",
            "best_epoch",
            "stopped_early",
            "best_val_accuracy",
            "seconds",
            "train_precision",
        )
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}

    def retrying(self, first: Challenger) -> Challenger:
        """This second attempt, linked to the first."""
        return replace(self, retry_of=first.run_id)


@dataclass(frozen=True)
class Scores:
    """Challenger and champion on the new slice and every earlier one, with the paired tests."""

    new_slice: str  # the batch id of the slice this cycle brought
    challenger: SliceScores
    champion: SliceScores | None = None  # None before the first champion
    paired: PairedTest | None = None  # challenger against champion on the new slice
    baseline: Baseline | None = None  # the trivial predictors a first champion must beat
    label_check: LabelCheck | None = (
        None  # the champion's confident errors (perennial.evaluation.label_check)
    )
    # role -> slice -> label -> {"accuracy", "n"}: each label's accuracy on its own rows
    per_class: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]] = field(default_factory=dict)
    new_labels: NewLabelScores | None = None  # the new slice's labels the champion lacks, scored apart
    labels: tuple[str, ...] = ()  # the label set, in model order
    confusion: tuple[tuple[int, ...], ...] = ()  # the challenger's rows per (true, predicted) label

    def for_ledger(self) -> dict[str, Any]:
        """The JSON the ledger keeps with the decision."""
        return {
            "challenger": _plain(self.challenger),
            "champion": _plain(self.champion) if self.champion is not None else None,
            "paired": asdict(self.paired) if self.paired else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "per_class": {role: _plain_nested(by_slice) for role, by_slice in self.per_class.items()},
            "new_labels": asdict(self.new_labels) if self.new_labels else None,
            "confusion": {"labels": list(self.labels), "counts": [list(row) for row in self.confusion]},
        }


@dataclass(frozen=True)
class Outcome:
    """What a decided cycle did: the registered version and where the champion alias points now."""

    batch_id: str
    version: str
    decision: Verdict
    reasons: tuple[str, ...]
    champion_version: str | None  # after the decision
    compared_with: str | None  # the champion the challenger met

    def line(self) -> str:
        return f"batch {self.batch_id}: v{self.version} {self.decision} (champion v{self.champion_version})"


def _plain_nested(by_slice: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict:
    return {
        name: {label: dict(values) for label, values in labels.items()} for name, labels in by_slice.items()
    }


def _plain(scores: SliceScores) -> dict[str, dict[str, float]]:
    return {name: dict(metrics) for name, metrics in scores.items()}
