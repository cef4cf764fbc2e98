"""Mixed-precision training: which arithmetic `train_precision` picks, and what a bfloat16 step does."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from perennial.core import precision
from perennial.core.precision import resolve_precision
from perennial.core.settings import Settings
from perennial.learning.training import fine_tune, forward_logits, load_for_training, make_optimizer

LABELS = ["negative", "positive"]
TEXTS = [f"the {['plot', 'food'][i % 2]} was {['great', 'awful'][i % 2]} #{i}" for i in range(16)]


@pytest.mark.parametrize(
    ("setting", "device", "native_cpu", "cuda_bf16", "expected"),
    [
        ("auto", "cpu", True, False, "bfloat16"),  # AVX512-BF16 / AMX
        ("auto", "cpu", False, False, "float32"),  # emulated: slower than float32
        ("auto", "cuda", False, True, "bfloat16"),  # Ampere and later
        ("auto", "cuda", True, False, "float32"),  # an older GPU; the CPU's flags do not matter
        ("float32", "cpu", True, True, "float32"),  # an explicit choice is kept
        ("bfloat16", "cpu", False, False, "bfloat16"),
        ("bfloat16", "cuda", False, False, "bfloat16"),
    ],
)
def test_precision_detection(
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    device: str,
    native_cpu: bool,
    cuda_bf16: bool,
    expected: str,
) -> None:
    import torch

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    assert resolve_precision(setting, torch.device(device)) == expected


def test_the_setting_rejects_other_values() -> None:
    with pytest.raises(ValueError, match="train_precision"):
        Settings(train_precision="float16")


def _gradients(model_dir: Path, chosen: str) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model, tokenizer = load_for_training(model_dir, LABELS)
    model.train()
    for module in model.modules():  # no dropout: the two passes must see the same network
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    features = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    labels = torch.tensor([i % 2 for i in range(len(TEXTS))])
    logits = forward_logits(model, features, chosen, torch.device("cpu"))
    assert logits.dtype == torch.float32  # the loss is always computed in float32
    F.cross_entropy(logits, labels).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_bfloat16_step_moves_the_weights_like_a_float32_step(pretrained_tiny_model_dir: Path) -> None:
    import torch

    # A pretrained encoder, as in real fine-tuning: a random one's gradients are so small that
    # bfloat16's rounding of the activations is a large part of them (cosine ~0.9 measured).
    full = _gradients(pretrained_tiny_model_dir, "float32")
    mixed = _gradients(pretrained_tiny_model_dir, "bfloat16")
    assert full.keys() == mixed.keys()
    a = torch.cat([g.flatten() for g in full.values()])
    b = torch.cat([g.flatten() for g in mixed.values()])
    assert all(g.dtype == torch.float32 for g in mixed.values())  # gradients land on float32 weights
    # bfloat16 keeps ~3 significant digits: the same direction and size, not the same bits.
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    assert abs(b.norm() / a.norm() - 1) < 0.05
    assert not torch.equal(a, b)  # autocast really ran in bfloat16


def test_master_weights_and_optimizer_state_stay_float32(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    import torch.nn.functional as F

    model, tokenizer = load_for_training(tiny_model_dir, LABELS)
    optimizer = make_optimizer(model, Settings(workspace=tmp_path).optimizer)
    features = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits = forward_logits(model, features, "bfloat16", torch.device("cpu"))
    F.cross_entropy(logits, torch.tensor([i % 2 for i in range(len(TEXTS))])).backward()
    optimizer.step()

    assert all(p.dtype == torch.float32 for p in model.parameters())
    states = [t for state in optimizer.state.values() for t in state.values() if t.dim() > 0]
    assert states and all(t.dtype == torch.float32 for t in states)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


def _safetensors_dtypes(path: Path) -> set[str]:
    """The tensor dtypes in a safetensors file's header (its first 8 bytes give the header's size)."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_fine_tune_in_bfloat16_learns_and_saves_float32(tiny_model_dir: Path, tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": TEXTS, "label": [LABELS[i % 2] for i in range(len(TEXTS))]})
    settings = Settings(
        workspace=tmp_path,
        epochs=20,
        patience=20,
        learning_rate=3e-3,
        batch_size=16,
        max_length=16,
        warmup_ratio=0.0,
        train_precision="bfloat16",
    )
    result = fine_tune(
        tiny_model_dir, LABELS, frame, frame, settings.training, tmp_path / "out", progress=False
    )

    assert result.precision == "bfloat16"
    assert result.best_val_accuracy == 1.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert _safetensors_dtypes(tmp_path / "out" / "model.safetensors") == {"F32"}
