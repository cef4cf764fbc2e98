"""Scoring a classifier: batched prediction, per-slice metrics, and the accuracy matrix report.

Metrics come from `evaluate` modules shipped inside the package (``perennial/metrics/*``) because the
Hub copies cannot be fetched offline. Heavy libraries are imported inside functions so that importing
this module (e.g. from the CLI) stays cheap.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    import evaluate
    from perennial.config import Settings

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


def score(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
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


def resolve_device(setting: str) -> torch.device:
    """Turn the ``device`` setting into a torch device; "auto" picks CUDA when there is one."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return device


def model_device(model: Any) -> torch.device:
    """Where the model's weights are (CPU for a model without parameters)."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def encoded_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    device: torch.device,
    desc: str,
) -> Iterator[tuple[list[int], Any]]:
    """Tokenised batches of `texts` on `device`, with the input positions of their rows.

    Similar lengths share a batch, so per-batch padding stays short. Longest first: a batch that does
    not fit in memory fails at once rather than at the end. Characters are a cheap proxy for tokens.
    """
    for idx in longest_first_batches(texts, batch_size, desc):
        encoded = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        yield idx, encoded.to(device)


def longest_first_batches(texts: Sequence[str], batch_size: int, desc: str) -> Iterator[list[int]]:
    """The input positions of `texts` in batches of similar lengths, longest first (see
    `encoded_batches`), with a progress bar named `desc` on a terminal for long runs."""
    n = len(texts)
    order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
    starts: Iterable[int] = range(0, n, batch_size)
    # A bar only helps for runs long enough to watch, and only on a terminal (not in logs).
    if n >= 2 * batch_size and sys.stderr.isatty():
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    for start in starts:
        yield order[start : start + batch_size]


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class ids ``[n]`` and class probabilities ``[n, k]``, in the order of ``texts``."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    n = len(texts)
    num_labels = int(model.config.num_labels)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, num_labels), dtype=np.float32)

    if device is None:
        device = model_device(model)
    elif model_device(model) != device:
        model.to(device)
    model.eval()

    probs = np.empty((n, num_labels), dtype=np.float32)
    with torch.inference_mode():
        for idx, encoded in encoded_batches(
            tokenizer, texts, batch_size=batch_size, max_length=max_length, device=device, desc="predict"
        ):
            logits = model(**encoded).logits
            # Softmax in float32 so half-precision models still give probabilities that sum to 1.
            probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()

    return probs.argmax(axis=1).astype(np.int64), probs


def predict_slices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: Settings,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(predicted ids, reference ids) on each named slice (frames with ``text`` and ``label``)."""
    scored = predict_slices_with_probabilities(model, tokenizer, slices, label2id, settings)
    return {name: (predictions, references) for name, (predictions, references, _) in scored.items()}


def predict_slices_with_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: Settings,
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
        results[name] = (predictions, references, probabilities)
    return results


def score_slices(predicted: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Accuracy, macro F1 and row count per slice, from `predict_slices` output."""
    return {name: {**score(p, r), "n": len(r)} for name, (p, r) in predicted.items()}


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    slices: Mapping[str, pd.DataFrame],
    label2id: Mapping[str, int],
    settings: Settings,
) -> dict[str, dict[str, float]]:
    """Accuracy, macro F1 and row count on each named slice (frames with ``text`` and ``label``)."""
    return score_slices(predict_slices(model, tokenizer, slices, label2id, settings))


def load_model_dir(
    path: str | Path, device: torch.device | str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved classifier and its tokenizer, in eval mode on ``device``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    # Model folders come from our own training runs; never execute code shipped alongside them.
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, trust_remote_code=False
    )
    model.to(device)
    model.eval()
    return model, tokenizer


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
