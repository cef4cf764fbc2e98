"""Evaluating the challenger and the champion on the new slice and every earlier one,
with the trivial baselines, the paired test and the champion's confident errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perennial.core.faults import fault_point
from perennial.core.settings import Settings
from perennial.data.batch_store import load_split, split_path
from perennial.evaluation.contracts import Challenger, Scores
from perennial.evaluation.gate import NewLabelScores
from perennial.evaluation.label_check import LabelCheck
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import champion_model_dir
from perennial.workspace import (
    earlier_batches,
    in_workspace,
    labels_for,
    slice_names,
)


# Evaluate
def evaluation_slices(settings: Settings, batch_id: str) -> dict[str, pd.DataFrame]:
    """The new batch's test split plus every earlier accepted (and unflagged) batch's test split."""
    ids = [*earlier_batches(settings, batch_id), batch_id]
    return {b: load_split(settings, b, "test") for b in ids}


def _label_check(
    predicted: dict[str, tuple], new_slice: str, champion_version: str | None, known: np.ndarray
) -> LabelCheck:
    """The champion's confident rows and its confident errors on the new slice vs the earlier ones,
    on the rows of the labels it knows (`known` ids): a label its head lacks is no contradiction."""
    from perennial.evaluation.label_check import CONFIDENT, confident_errors

    def errors(slice_name: str) -> tuple[int, int]:
        _, references, probabilities = predicted[slice_name]
        rows = np.isin(references, known)
        return confident_errors(probabilities[rows], references[rows], CONFIDENT)

    new = errors(new_slice)
    earlier = [errors(k) for k in predicted if k != new_slice]
    return LabelCheck(
        champion_version=champion_version,
        threshold=CONFIDENT,
        new_confident=new[0],
        new_wrong=new[1],
        earlier_confident=sum(c for c, _ in earlier),
        earlier_wrong=sum(w for _, w in earlier),
        # The rows the check ran on: a label the champion lacks is left out of both counts.
        new_rows=int(np.isin(predicted[new_slice][1], known).sum()),
    )


def evaluate_challenger(settings: Settings, batch_id: str, challenger: Challenger) -> Scores:
    """Score the challenger and the current champion on every slice; log the table to MLflow. Also
    the trivial baselines on the new slice (what a first champion must beat) and the champion's
    confident errors (whether a rejected batch's labels contradict it): see
    perennial.evaluation.label_check."""
    from perennial.evaluation.baselines import trivial_baseline
    from perennial.evaluation.scoring import (
        confusion_counts,
        metrics_table,
        per_class_accuracy,
        predict_slices_with_probabilities,
        score_slices,
    )
    from perennial.evaluation.significance import paired_test
    from perennial.models.inference import load_model_dir, resolve_device

    device = resolve_device(settings.device)
    slices = evaluation_slices(settings, batch_id)
    labels = labels_for(settings)
    label2id = {label: i for i, label in enumerate(labels)}
    models = {"challenger": Path(challenger.model_dir)}
    if challenger.champion_version:
        models["champion"] = champion_model_dir(settings, challenger.champion_version)
    run_id = challenger.run_id
    try:
        scores: dict[str, dict] = {}
        per_class: dict[str, dict] = {}
        confusion: list[list[int]] = []
        correct_on_new: dict[str, np.ndarray] = {}
        label_check: LabelCheck | None = None
        champion_lacks: list[str] = []
        for role, folder in models.items():
            model, tokenizer = load_model_dir(folder, device)
            with_probabilities = predict_slices_with_probabilities(
                model, tokenizer, slices, label2id, settings.inference
            )
            if role == "champion":  # its confidence too, for the label check
                champion_knows = known_labels(model, folder)
                known = np.array([label2id[x] for x in labels if x in champion_knows], dtype=np.int64)
                champion_lacks = [label for label in labels if label not in champion_knows]
                label_check = _label_check(with_probabilities, batch_id, challenger.champion_version, known)
            predicted = {k: (p, r) for k, (p, r, _) in with_probabilities.items()}
            scores[role] = score_slices(predicted)
            per_class[role] = {k: per_class_accuracy(p, r, labels) for k, (p, r) in predicted.items()}
            if role == "challenger":  # the version's own confusion matrix, over every test slice
                confusion = confusion_counts(predicted.values(), len(labels))
            predictions, references = predicted[batch_id]
            correct_on_new[role] = predictions == references
            del model
        # Both paired tests (against the majority class, against the champion) run alike.
        test_options: dict[str, Any] = {
            "resamples": settings.bootstrap_resamples,
            "confidence": 1 - settings.significance_level,
            "seed": settings.seed,
        }
        # The trivial predictors a first champion must beat; logged for every cycle, for comparison.
        baseline = trivial_baseline(
            load_split(settings, batch_id, "train")["label"].to_numpy(),
            slices[batch_id]["label"].to_numpy(),
            correct_on_new["challenger"],
            **test_options,
        )
        registry.log_metrics(
            run_id,
            {
                "baseline.majority_accuracy": baseline.majority_accuracy,
                "baseline.majority_macro_f1": baseline.majority_macro_f1,
                "baseline.chance_macro_f1": baseline.chance_macro_f1,
                "baseline.paired.p_value": baseline.paired.p_value,
            },
        )
        paired = None
        if "champion" in correct_on_new:
            # Same rows, both models: a paired test says whether the gain is more than noise.
            paired = paired_test(correct_on_new["champion"], correct_on_new["challenger"], **test_options)
            registry.log_metrics(
                run_id,
                {
                    "paired.p_value": paired.p_value,
                    "paired.ci_low": paired.ci_low,
                    "paired.ci_high": paired.ci_high,
                }
                if paired.ci_low is not None and paired.ci_high is not None
                else {"paired.p_value": paired.p_value},
            )
        names = slice_names(settings)
        registry.log_datasets(
            run_id,
            [
                registry.DatasetUse(
                    f"{names.get(slice_id, slice_id[:12])}/test",
                    frame,
                    in_workspace(settings, split_path(settings, slice_id, "test")),
                    "evaluation",
                )
                for slice_id, frame in slices.items()
            ],
        )
        keys = registry.metric_slice_keys(names)  # names, not ids, in the charts
        for role, per_slice in scores.items():
            for slice_id, metrics in per_slice.items():
                key = keys.get(slice_id, slice_id)
                registry.log_metrics(run_id, {f"{role}.{key}.{k}": v for k, v in metrics.items() if k != "n"})
        new_labels = split_by_known_labels(
            slices[batch_id]["label"].to_numpy(), champion_lacks, len(labels), correct_on_new
        )
        registry.log_dict_artifact(run_id, per_class, "per_class.json")
        registry.log_dict_artifact(run_id, {"labels": labels, "counts": confusion}, "confusion.json")
        table = metrics_table(scores)
        table.insert(2, "source", table["slice"].map(names))
        registry.log_dict_artifact(run_id, {"rows": table.to_dict(orient="records")}, "evaluation.json")
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    fault_point("evaluated", settings.root)
    return Scores(
        new_slice=batch_id,
        challenger=scores["challenger"],
        champion=scores.get("champion"),
        paired=paired,
        baseline=baseline,
        label_check=label_check,
        per_class=per_class,
        new_labels=new_labels,
        labels=tuple(labels),
        confusion=tuple(tuple(row) for row in confusion),
    )


def known_labels(model: Any, model_dir: Path) -> set[str]:
    """The labels a champion can be expected to predict: those of its head that it (or an ancestor)
    trained on. A head can hold a label without rows behind it: the label arrived with a batch whose
    challenger was rejected, and a later champion grew its head by it while training on other rows."""
    from perennial.learning.finishing import trained_labels
    from perennial.models.inference import model_labels

    head = set(model_labels(model))
    trained = trained_labels(model_dir)
    return head if trained is None else head & trained


def split_by_known_labels(
    references: np.ndarray, lacking: list[str], label_count: int, correct: dict[str, np.ndarray]
) -> NewLabelScores | None:
    """The new slice's rows of labels the champion lacks apart from the others, with each model's
    accuracy on them (`correct`: per role, whether each row was right); None when there are none."""
    is_new = np.isin(references.astype(str), lacking)
    if "champion" not in correct or not is_new.any():
        return None

    def accuracy(role: str, rows: np.ndarray) -> float:
        return float(correct[role][rows].mean()) if rows.any() else 0.0

    present = tuple(label for label in lacking if label in set(references.astype(str)))
    rows_of = {label: references.astype(str) == label for label in present}
    return NewLabelScores(
        labels=present,
        label_count=label_count,
        new_rows=int(is_new.sum()),
        challenger_new=accuracy("challenger", is_new),
        old_rows=int((~is_new).sum()),
        challenger_old=accuracy("challenger", ~is_new),
        champion_old=accuracy("champion", ~is_new),
        per_label=tuple(
            (label, int(rows.sum()), accuracy("challenger", rows)) for label, rows in rows_of.items()
        ),
    )
