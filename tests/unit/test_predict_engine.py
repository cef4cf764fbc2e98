"""`perennial predict` through ONNX Runtime: which engine runs, agreement with float32, the export cache."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from perennial.core.settings import Settings
from perennial.serving.onnx_predict import (
    ONNX_FILE,
    OnnxClassifier,
    choose_engine,
    predict_onnx,
    resolve_engine,
)

WORDS = ["plot", "food", "delivery", "battery"]
VERDICTS = ["great", "awful", "fine", "slow", "superb"]
# Short and long (truncated at 32 tokens), so batches are padded and cut; accents and an emoji too.
TEXTS = [f"the {WORDS[i % 4]} was {VERDICTS[i % 5]} #{i}" + " really" * (i % 23) for i in range(150)] + [
    "Ünïcödé crème brûlée 😀",
    "",
]


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny classifier: each test makes (or breaks) its own export."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "v1"))


def torch_float32(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from perennial.models.inference import load_model_dir, predict

    model, tokenizer = load_model_dir(model_dir, "cpu")
    return predict(model, tokenizer, texts, batch_size=16, max_length=32, device=torch.device("cpu"))


@pytest.mark.parametrize(
    ("setting", "device", "precision", "installed", "engine"),
    [
        ("auto", "cpu", "float32", True, "onnxruntime"),  # no native bfloat16: ONNX Runtime
        ("auto", "cpu", "bfloat16", True, "torch"),  # native bfloat16 CPU: torch autocast
        ("auto", "cuda", "float32", True, "torch"),  # a GPU: torch
        ("auto", "cuda", "bfloat16", True, "torch"),
        ("auto", "cpu", "float32", False, "torch"),  # onnxruntime not installed
        ("torch", "cpu", "float32", True, "torch"),
        ("onnxruntime", "cpu", "bfloat16", True, "onnxruntime"),  # an explicit choice is kept
        ("onnxruntime", "cuda", "float32", True, "onnxruntime"),
        ("onnxruntime", "cpu", "float32", False, "torch"),
    ],
)
def test_engine_choice(setting: str, device: str, precision: str, installed: bool, engine: str) -> None:
    assert choose_engine(setting, device, precision, installed) == engine


def test_settings_resolve_on_this_cpu(settings: Settings) -> None:
    base = settings.model_copy(update={"device": "cpu", "predict_precision": "float32"})
    assert resolve_engine(base) == ("onnxruntime", "float32")
    assert resolve_engine(base.model_copy(update={"predict_engine": "torch"})) == ("torch", "float32")
    bf16 = base.model_copy(update={"predict_precision": "bfloat16"})
    assert resolve_engine(bf16) == ("torch", "bfloat16")  # auto leaves bfloat16 to torch
    explicit = bf16.model_copy(update={"predict_engine": "onnxruntime"})
    assert resolve_engine(explicit) == ("onnxruntime", "float32")  # its CPU build has no bfloat16


def test_onnx_path_runs_without_torch(model_dir: Path, settings: Settings) -> None:  # no PERENNIAL_* env
    """Importing torch costs seconds of every `perennial predict`; once exported, it is not needed."""
    import ctypes
    import subprocess
    import sys

    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("an NVIDIA driver is here: device auto asks torch whether there is a GPU")
    except OSError:
        pass
    OnnxClassifier(model_dir)  # the export (torch) happens here, once
    script = f"""
import sys
from perennial.core.settings import Settings
from perennial.serving.onnx_predict import OnnxClassifier, resolve_engine
assert resolve_engine(Settings(device="auto", predict_precision="float32"))[0] == "onnxruntime"
ids, _ = OnnxClassifier({str(model_dir)!r}).predict(["great", "awful"], batch_size=2, max_length=8)
assert len(ids) == 2
print(sorted({{"torch", "transformers"}} & set(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_onnx_float32_agrees_with_torch_float32(model_dir: Path) -> None:
    ids32, probs32 = torch_float32(model_dir, TEXTS)
    classifier = OnnxClassifier(model_dir)
    ids, probs = classifier.predict(TEXTS, batch_size=16, max_length=32)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (ids == ids32).mean() >= 0.99
    assert np.allclose(probs, probs32, atol=1e-4)
    assert classifier.id2label == {0: "negative", 1: "positive"}
    empty_ids, empty_probs = classifier.predict([], batch_size=16, max_length=32)
    assert empty_ids.shape == (0,) and empty_probs.shape == (0, 2)


def test_onnx_tokenizes_as_transformers(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    expected = AutoTokenizer.from_pretrained(model_dir)(
        TEXTS, padding=True, truncation=True, max_length=32, return_tensors="np"
    )
    encoded = OnnxClassifier(model_dir).encode(TEXTS, 32)
    assert set(expected) <= set(encoded)
    for name in expected:
        assert np.array_equal(encoded[name], expected[name]), name


def test_export_is_made_once_and_reused(model_dir: Path) -> None:
    OnnxClassifier(model_dir)
    cached = model_dir / ONNX_FILE
    first = cached.stat()
    OnnxClassifier(model_dir)
    again = cached.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert not list(model_dir.glob(".*.tmp"))  # written through a temporary file, renamed into place


def test_unreadable_export_is_made_again(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    cached = model_dir / ONNX_FILE
    cached.write_bytes(b"\x08\x07 not an onnx model")
    ids32, _ = torch_float32(model_dir, TEXTS)
    with caplog.at_level(logging.WARNING):
        ids, _ = OnnxClassifier(model_dir).predict(TEXTS, batch_size=16, max_length=32)
    assert "exporting it again" in caplog.text
    assert cached.stat().st_size > 100_000 and (ids == ids32).mean() >= 0.99


def test_export_that_cannot_be_written_falls_back(
    model_dir: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A folder where the export should go: the rename fails, as on a full or read-only disk.
    (model_dir / ONNX_FILE).mkdir()
    (model_dir / ONNX_FILE / "keep").touch()
    with caplog.at_level(logging.WARNING):
        assert predict_onnx(model_dir, TEXTS, settings) is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("perennial")]
    assert len(warnings) == 1 and "predicting with torch" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # one line, no traceback
    assert not list(model_dir.glob(".*.tmp"))
