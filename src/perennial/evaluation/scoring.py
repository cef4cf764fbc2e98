"""Scoring a classifier: per-slice metrics and the accuracy matrix report (prediction itself is in
`perennial.models.inference`).

Metrics come from `evaluate` modules shipped inside the package (``perennial/evaluation/metrics/*``)
because the Hub copies cannot be fetched offline. Heavy libraries are imported inside functions so
that importing this module (e.g. from the CLI) stays cheap.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perennial.models.inference import model_labels, predict, resolve_device

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    import evaluate
    from perennial.core.settings import InferenceSettings

METRICS_DIR = Path(__file__).parent / "metrics"
METRIC_COLUMNS = ["accuracy", "macro_f1"]
_MISSING = "—"

# Metric objects are cached per process and keep state between add_batch() and compute(),
# so concurrent callers (threaded Prefect tasks) must take turns.
_SCORE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def load_metrics() -> dict[str, evaluate.EvaluationModule]:
    """The shipped accuracy and F1 metrics, loaded once per process."""
    import evaluate

    metrics = {}
    for name in ("accuracy", "f1"):
        path = METRICS_DIR / name
        if not (path / f"{name}.py").is_file():
            raise FileNotFoundError(f"metric script missing from the package: {path / f'{name}.py'}")
        # keep_in_memory: no Arrow cache files or file locks on disk for a few thousand integers.
        metrics[name] = evaluate.load(str(path), keep_in_memory=True)
    return metrics


def score(
    predictions: Sequence[int] | np.ndarray, references: Sequence[int] | np.ndarray
) -> dict[str, float]:
    """Accuracy and macro-averaged F1 of predicted against reference class ids."""
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} != {len(references)}"
        )
    if len(predictions) == 0:
        raise ValueError("cannot score an empty set of predictions: accuracy and F1 are undefined")
    preds = [int(p) for p in predictions]
    refs = [int(r) for r in references]
    metrics = load_metrics()
    with _SCORE_LOCK:
        accuracy = metrics["accuracy"].compute(predictions=preds, references=refs)["accuracy"]
        # average passed to F1 alone: evaluate.combine would forward it to accuracy as well.
        f1 = metrics["f1"].compute(predictions=preds, references=refs, average="macro")["f1"]
    return {"accuracy": float(accuracy), "macro_f1": float(f1)}


def predict_slices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: InferenceSettings,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(predicted ids, reference ids) on each named slice (frames with ``text`` and ``label``)."""
    scored = predict_slices_with_probabilities(model, tokenizer, slices, label2id, settings)
    return {name: (predictions, references) for name, (predictions, references, _) in scored.items()}


def predict_slices_with_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: InferenceSettings,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(predicted ids, reference ids, class probabilities [n, k]) on each named slice."""
    device = resolve_device(settings.device)
    results: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, frame in slices.items():
        missing = {"text", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"slice {name!r} lacks column(s) {sorted(missing)}")
        if frame.empty:
            raise ValueError(f"slice {name!r} is empty; there is nothing to evaluate")
        unknown = sorted(set(frame["label"]) - set(label2id))
        if unknown:
            raise ValueError(f"slice {name!r} has labels the model does not know: {unknown}")
        references = np.array([label2id[label] for label in frame["label"]], dtype=np.int64)
        predictions, probabilities = predict(
            model,
            tokenizer,
            frame["text"].tolist(),
            batch_size=settings.eval_batch_size,
            max_length=settings.max_length,
            device=device,
        )
        predictions, probabilities = in_label_order(model, label2id, predictions, probabilities)
        results[name] = (predictions, references, probabilities)
    return results


def in_label_order(
    model: PreTrainedModel, label2id: Mapping[str, int], predictions: np.ndarray, probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ids and probabilities [n, k] in `label2id`'s order, from the model's own output
    order. A champion whose head predates the newest labels has fewer outputs: its probability of a
    label it lacks is 0. A model whose head names none of the labels (transformers' placeholders,
    LABEL_0, ...) is taken as being in label-set order; one that names some but not all cannot be
    mapped, and raises rather than score rows against the wrong labels."""
    own = model_labels(model)
    outside = [label for label in own if label not in label2id]
    if not own or len(outside) == len(own):
        return predictions, probabilities
    if outside:
        raise ValueError(f"the model predicts labels outside the label set {list(label2id)}: {outside}")
    to_ours = np.array([label2id[label] for label in own], dtype=np.int64)
    if np.array_equal(to_ours, np.arange(len(label2id))):
        return predictions, probabilities
    ours = np.zeros((len(probabilities), len(label2id)), dtype=probabilities.dtype)
    ours[:, to_ours] = probabilities
    return to_ours[predictions], ours


def per_class_accuracy(
    predictions: np.ndarray, references: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Each label's accuracy on its own rows (its recall) and its row count, for the labels present."""
    found: dict[str, dict[str, float]] = {}
    for label_id, label in enumerate(labels):
        rows = references == label_id
        if rows.any():
            found[label] = {"accuracy": float((predictions[rows] == label_id).mean()), "n": int(rows.sum())}
    return found


def confusion_counts(predicted: Iterable[tuple[np.ndarray, np.ndarray]], num_labels: int) -> list[list[int]]:
    """Rows per (true label, predicted label), summed over (predictions, references) pairs of ids."""
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    for predictions, references in predicted:
        np.add.at(counts, (references, predictions), 1)
    return counts.tolist()


def per_class_from_confusion(labels: Sequence[str], counts: Sequence[Sequence[int]]) -> list[dict]:
    """Each label's precision, recall, F1 and support (true rows) from a confusion matrix (rows:
    true label, columns: predicted), in label order; None where a ratio has no rows to divide by."""
    matrix = np.asarray(counts, dtype=np.int64).reshape(len(labels), len(labels))
    rows = []
    for i, label in enumerate(labels):
        right, predicted, support = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i, :].sum())
        precision = right / predicted if predicted else None
        recall = right / support if support else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else (0.0 if precision is not None and recall is not None else None)
        )
        rows.append({"label": label, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def score_slices(predicted: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Accuracy, macro F1 and row count per slice, from `predict_slices` output."""
    return {name: {**score(p, r), "n": len(r)} for name, (p, r) in predicted.items()}


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: InferenceSettings,
) -> dict[str, dict[str, float]]:
    """Accuracy, macro F1 and row count on each named slice (frames with ``text`` and ``label``)."""
    return score_slices(predict_slices(model, tokenizer, slices, label2id, settings))


def metrics_table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """Long table, one row per (model, slice), with columns model, slice, accuracy, macro_f1, n."""
    rows = [
        {
            "model": model_name,
            "slice": slice_name,
            "accuracy": metrics.get("accuracy", math.nan),
            "macro_f1": metrics.get("macro_f1", math.nan),
            "n": metrics.get("n"),
        }
        for model_name, per_slice in results.items()
        for slice_name, metrics in per_slice.items()
    ]
    table = pd.DataFrame(rows, columns=["model", "slice", *METRIC_COLUMNS, "n"])
    table[METRIC_COLUMNS] = table[METRIC_COLUMNS].astype(float)
    table["n"] = table["n"].astype("Int64")  # nullable: a result may lack a row count
    return table


def accuracy_matrix(rows: Sequence[tuple[str, Mapping[str, float]]], columns: Sequence[str]) -> pd.DataFrame:
    """Models (rows) by test slices (columns) of accuracy; NaN where a model was not scored on a slice."""
    columns = list(columns)
    data = [[float(values.get(column, math.nan)) for column in columns] for _, values in rows]
    matrix = pd.DataFrame(
        data,
        index=pd.Index([label for label, _ in rows], name="model"),
        columns=pd.Index(columns, name="test slice"),
        dtype=float,
    )
    return matrix


def format_matrix(matrix: pd.DataFrame) -> str:
    """The matrix as a plain-text table: three decimals, '—' where a value is missing."""
    if matrix.empty:
        return "(no results)"
    return matrix.to_string(float_format=lambda v: f"{v:.3f}", na_rep=_MISSING)
