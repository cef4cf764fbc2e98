"""Scoring, batched prediction and the accuracy-matrix report, with the shipped metrics and a tiny BERT."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.evaluation import scoring as evaluation
from perennial.evaluation.scoring import (
    accuracy_matrix,
    evaluate_model,
    format_matrix,
    load_metrics,
    metrics_table,
    score,
)
from perennial.models.inference import load_model_dir, predict, resolve_device
from perennial.reporting.plots import plot_accuracy_matrix

TEXTS = [
    "a",
    "the film was a long, slow and thoroughly tedious affair that I would not watch again",
    "great",
    "not bad at all, actually quite fun",
    "",
    "terrible acting, terrible plot, terrible everything",
    "ok",
]


@pytest.fixture(autouse=True)
def _local_hf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # evaluate reads HF_HOME when first imported, so point it at a temp folder before any load.
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model_dir(tiny_model_dir, "cpu")


def test_load_metrics_uses_shipped_evaluate_modules() -> None:
    import evaluate

    metrics = load_metrics()
    assert set(metrics) == {"accuracy", "f1"}
    assert all(isinstance(m, evaluate.EvaluationModule) for m in metrics.values())
    assert load_metrics() is metrics  # cached: loaded once per process
    # The module really is our script, not something fetched from the Hub.
    assert metrics["f1"].compute(predictions=[0, 1], references=[0, 0], average="micro") == {"f1": 0.5}


def test_score_matches_hand_computed_values() -> None:
    # preds [0,1,1,0] vs refs [0,1,0,0]: 3 of 4 right.
    # class 0: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8
    # class 1: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3
    result = score([0, 1, 1, 0], [0, 1, 0, 0])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert all(type(v) is float for v in result.values())


def test_score_accepts_numpy_and_perfect_predictions() -> None:
    result = score(np.array([2, 1, 0]), np.array([2, 1, 0]))
    assert result == {"accuracy": 1.0, "macro_f1": 1.0}


def test_score_rejects_empty_and_mismatched_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(ValueError, match="length"):
        score([0, 1], [0])


def test_resolve_device() -> None:
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_predict_batched_equals_one_by_one_in_original_order(tiny) -> None:
    model, tokenizer = tiny
    preds, probs = predict(model, tokenizer, TEXTS, batch_size=3, max_length=32)
    assert preds.shape == (len(TEXTS),)
    assert probs.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(preds, probs.argmax(axis=1))

    for i, text in enumerate(TEXTS):
        single_pred, single_prob = predict(model, tokenizer, [text], batch_size=1, max_length=32)
        assert single_pred[0] == preds[i]
        np.testing.assert_allclose(single_prob[0], probs[i], atol=1e-5)


def test_predict_empty_input(tiny) -> None:
    model, tokenizer = tiny
    preds, probs = predict(model, tokenizer, [], batch_size=4, max_length=32)
    assert preds.shape == (0,)
    assert probs.shape == (0, 2)


def test_load_model_dir_is_eval_mode_on_device(tiny_model_dir: Path) -> None:
    model, _ = load_model_dir(tiny_model_dir, "cpu")
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    assert model.config.id2label == {0: "negative", 1: "positive"}
    with pytest.raises(FileNotFoundError):
        load_model_dir(tiny_model_dir / "nope", "cpu")


def test_evaluate_model_reports_each_slice(tiny) -> None:
    model, tokenizer = tiny
    settings = Settings(device="cpu", eval_batch_size=4, max_length=32)
    slices = {
        "batch-1": pd.DataFrame({"text": TEXTS, "label": ["negative", "positive"] * 3 + ["negative"]}),
        "batch-2": pd.DataFrame({"text": TEXTS[:3], "label": ["positive"] * 3}),
    }
    results = evaluate_model(model, tokenizer, slices, {"negative": 0, "positive": 1}, settings.inference)

    assert list(results) == ["batch-1", "batch-2"]
    assert results["batch-1"]["n"] == len(TEXTS)
    assert results["batch-2"]["n"] == 3
    preds, _ = predict(model, tokenizer, TEXTS[:3], batch_size=4, max_length=32)
    assert results["batch-2"]["accuracy"] == pytest.approx(float(np.mean(preds == 1)))
    for metrics in results.values():
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert 0.0 <= metrics["macro_f1"] <= 1.0

    bad = {"x": pd.DataFrame({"text": ["hi"], "label": ["neutral"]})}
    with pytest.raises(ValueError, match="neutral"):
        evaluate_model(model, tokenizer, bad, {"negative": 0, "positive": 1}, settings.inference)


def test_metrics_table_is_long() -> None:
    table = metrics_table(
        {
            "v1": {"b1": {"accuracy": 0.9, "macro_f1": 0.8, "n": 10}},
            "v2": {
                "b1": {"accuracy": 0.85, "macro_f1": 0.8, "n": 10},
                "b2": {"accuracy": 0.7, "macro_f1": 0.6, "n": 5},
            },
        }
    )
    assert list(table.columns) == ["model", "slice", "accuracy", "macro_f1", "n"]
    assert table[["model", "slice"]].values.tolist() == [["v1", "b1"], ["v2", "b1"], ["v2", "b2"]]
    assert table["n"].tolist() == [10, 10, 5]


@pytest.fixture
def matrix() -> pd.DataFrame:
    return accuracy_matrix(
        [
            ("after cycle 1 (v1)", {"b1": 0.91}),
            ("after cycle 2 (v2)", {"b1": 0.885, "b2": 0.7, "ignored": 0.1}),
        ],
        ["b1", "b2"],
    )


def test_accuracy_matrix_has_nan_where_missing(matrix: pd.DataFrame) -> None:
    assert list(matrix.index) == ["after cycle 1 (v1)", "after cycle 2 (v2)"]
    assert list(matrix.columns) == ["b1", "b2"]
    assert matrix.loc["after cycle 2 (v2)", "b2"] == pytest.approx(0.7)
    assert math.isnan(matrix.loc["after cycle 1 (v1)", "b2"])


def test_format_matrix(matrix: pd.DataFrame) -> None:
    text = format_matrix(matrix)
    lines = text.splitlines()
    assert "0.910" in text and "0.885" in text and "0.700" in text
    assert "—" in lines[-2]  # v1 was never scored on b2
    assert any("after cycle 1 (v1)" in line for line in lines)


def test_plot_accuracy_matrix_writes_png(matrix: pd.DataFrame, tmp_path: Path) -> None:
    out = plot_accuracy_matrix(matrix, tmp_path / "reports" / "matrix.png", "Accuracy after each cycle")
    assert out == tmp_path / "reports" / "matrix.png"
    data = out.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, perennial.evaluation.scoring; "
        "print(','.join(m for m in ('torch', 'transformers', 'evaluate', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert evaluation.METRICS_DIR.is_dir()


def test_predictions_are_put_in_the_label_sets_order(tiny_model_dir: Path) -> None:
    """A champion whose head lacks the newest label scores 0 on it; ids follow the label set."""
    from transformers import AutoModelForSequenceClassification

    from perennial.evaluation.scoring import in_label_order

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)  # negative, positive
    predictions, probabilities = np.array([1, 0]), np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    grown = in_label_order(model, {"negative": 0, "positive": 1, "mixed": 2}, predictions, probabilities)
    assert grown[0].tolist() == [1, 0]
    np.testing.assert_allclose(grown[1], [[0.2, 0.8, 0.0], [0.9, 0.1, 0.0]])
    swapped = in_label_order(model, {"positive": 0, "negative": 1}, predictions, probabilities)
    assert swapped[0].tolist() == [0, 1]
    np.testing.assert_allclose(swapped[1], [[0.8, 0.2], [0.1, 0.9]])
    same = in_label_order(model, {"negative": 0, "positive": 1}, predictions, probabilities)
    assert same[1] is probabilities
    placeholders = in_label_order(model, {"LABEL_0": 0, "LABEL_1": 1}, predictions, probabilities)
    assert placeholders[1] is probabilities  # names none of ours: taken as in our order
    with pytest.raises(ValueError, match=r"outside the label set \['negative', 'mixed'\]: \['positive'\]"):
        in_label_order(model, {"negative": 0, "mixed": 1}, predictions, probabilities)


def test_the_new_slice_is_split_by_the_labels_the_champion_lacks() -> None:
    from perennial.pipeline.evaluate_step import split_by_known_labels

    references = np.array(["a", "b", "c", "c", "a", "b", "c", "a"], dtype=object)
    correct = {
        "challenger": np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=bool),
        "champion": np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool),
    }
    split = split_by_known_labels(references, ["c"], 3, correct)
    assert split is not None and split.labels == ("c",)
    assert (split.new_rows, split.old_rows) == (3, 5)
    assert split.challenger_new == pytest.approx(2 / 3)
    assert (split.challenger_old, split.champion_old) == (pytest.approx(0.8), pytest.approx(0.8))
    assert split.champion_ceiling == pytest.approx(5 / 8)
    assert split.per_label == (("c", 3, pytest.approx(2 / 3)),)
    assert split_by_known_labels(references, ["d"], 4, correct) is None
    assert split_by_known_labels(references, ["c"], 3, {"challenger": correct["challenger"]}) is None


@settings(max_examples=50, deadline=None)
@given(
    counts=st.integers(1, 4).flatmap(
        lambda k: st.lists(st.lists(st.integers(0, 6), min_size=k, max_size=k), min_size=k, max_size=k)
    )
)
def test_per_class_from_confusion_matches_scikit_learn(counts: list[list[int]]) -> None:
    from sklearn.metrics import precision_recall_fscore_support

    from perennial.evaluation.scoring import per_class_from_confusion

    labels = [f"label {i}" for i in range(len(counts))]
    truth = [i for i, row in enumerate(counts) for j, n in enumerate(row) for _ in range(n)]
    guess = [j for i, row in enumerate(counts) for j, n in enumerate(row) for _ in range(n)]
    rows = per_class_from_confusion(labels, counts)
    assert [r["support"] for r in rows] == [sum(row) for row in counts]
    if not truth:
        assert all(r["precision"] is None and r["recall"] is None for r in rows)
        return
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, guess, labels=list(range(len(labels))), zero_division=0
    )
    for i, row in enumerate(rows):
        for key, expected in (("precision", precision[i]), ("recall", recall[i])):
            # None only where there is nothing to divide by (no predictions, or no true rows).
            assert (row[key] is None) == (
                expected == 0
                and (
                    key == "precision"
                    and not sum(c[i] for c in counts)
                    or key == "recall"
                    and not sum(counts[i])
                )
            )
            assert row[key] is None or abs(row[key] - expected) < 1e-12
        assert row["f1"] is None or abs(row["f1"] - f1[i]) < 1e-12
