"""The arithmetic `perennial predict` runs in: detection, resolution, and bfloat16 against float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perennial.core import precision
from perennial.core.precision import cpu_has_native_bf16, inference_precision, resolve_precision


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    with_bf16 = tmp_path / "with"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without = tmp_path / "without"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_native_bf16(with_bf16)
    assert not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # not Linux: float32


def test_auto_picks_bf16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bfloat16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"  # an explicit choice is kept
    assert resolve_precision("float32", cpu) == "float32"


def test_bf16_predictions_agree_with_float32(tiny_model_dir: Path) -> None:
    import torch

    from perennial.models.inference import load_model_dir, predict

    model, tokenizer = load_model_dir(tiny_model_dir, "cpu")
    words = ["plot", "food", "delivery", "battery"]
    verdicts = ["great", "awful", "fine", "slow", "superb"]
    texts = [f"the {words[i % 4]} was {verdicts[i % 5]} #{i}" for i in range(120)]
    cpu = torch.device("cpu")
    kwargs = {"batch_size": 16, "max_length": 32, "device": cpu}
    with inference_precision("float32", cpu):
        ids32, probs32 = predict(model, tokenizer, texts, **kwargs)
    exact, _ = predict(model, tokenizer, texts, **kwargs)
    assert np.array_equal(ids32, exact)  # float32 is the plain path
    with inference_precision("bfloat16", cpu):
        ids16, probs16 = predict(model, tokenizer, texts, **kwargs)
    assert probs16.dtype == np.float32 and np.allclose(probs16.sum(axis=1), 1.0, atol=1e-5)
    # bfloat16 keeps ~3 significant digits: probabilities move by little, labels rarely flip.
    assert np.abs(probs16 - probs32).max() < 0.05
    assert (ids16 == ids32).mean() >= 0.9
