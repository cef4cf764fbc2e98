"""Score texts with the current champion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from perennial.core.settings import Settings

if TYPE_CHECKING:
    import numpy as np


class NoChampion(RuntimeError):
    """Nothing has been promoted yet."""


def predict_texts(
    settings: Settings, texts: Sequence[str], version: str | None = None, alias: str | None = None
) -> tuple[str, list[dict]]:
    """Return the version used (default: the champion; else the `version` or `alias` named) and, per
    text, its label, probability and whether it was cut to `max_length` tokens."""
    from perennial.registry import mlflow_registry as registry
    from perennial.registry.champion import champion_model_dir
    from perennial.serving.onnx_predict import predict_onnx, resolve_engine

    if version is None and alias is None:
        champ = registry.champion(settings)
        if champ is None:
            raise NoChampion("no champion yet: run `perennial run` on a labelled batch first")
        version = champ.version
    else:
        version = registry.resolve_version(settings, version, alias)
    model_dir = champion_model_dir(settings, version)
    texts = list(texts)
    cut = truncated(model_dir, texts, settings.max_length)
    engine, precision = resolve_engine(settings)
    scored = predict_onnx(model_dir, texts, settings) if engine == "onnxruntime" else None
    if scored is None:  # torch chosen, or ONNX Runtime could not run (it said why)
        scored = _predict_torch(settings, model_dir, texts, precision)
    ids, probabilities, id2label = scored
    rows = [
        {"text": text, "label": id2label[int(i)], "score": float(p[int(i)]), "truncated": c}
        for text, i, p, c in zip(texts, ids, probabilities, cut, strict=True)
    ]
    return version, rows


def truncated(model_dir: Path, texts: Sequence[str], max_length: int) -> list[bool]:
    """Per text, whether it is longer than `max_length` tokens (special tokens included), so that
    the model saw only its beginning. Through the `tokenizers` library, as the ONNX path (no torch)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - no fast tokenizer file (a slow-only model): nothing to tell
        return [False] * len(texts)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return [len(encoding.ids) > max_length for encoding in tokenizer.encode_batch(list(texts))]


def _predict_torch(
    settings: Settings, model_dir: Path, texts: list[str], precision: str
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    from perennial.core.precision import inference_precision
    from perennial.models.inference import load_model_dir, predict, resolve_device

    device = resolve_device(settings.device)
    model, tokenizer = load_model_dir(model_dir, device)
    with inference_precision(precision, device):
        ids, probabilities = predict(
            model,
            tokenizer,
            texts,
            batch_size=settings.eval_batch_size,
            max_length=settings.max_length,
            device=device,
        )
    return ids, probabilities, {int(i): str(label) for i, label in (model.config.id2label or {}).items()}
