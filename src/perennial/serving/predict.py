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


def predict_texts(settings: Settings, texts: Sequence[str]) -> tuple[str, list[dict]]:
    """Return the champion's version and, per text, its label and probability."""
    from perennial.registry import mlflow_registry as registry
    from perennial.registry.champion import champion_model_dir
    from perennial.serving.onnx_predict import predict_onnx, resolve_engine

    champ = registry.champion(settings)
    if champ is None:
        raise NoChampion("no champion yet: run `perennial run` on a labelled batch first")
    model_dir = champion_model_dir(settings, champ.version)
    texts = list(texts)
    engine, precision = resolve_engine(settings)
    scored = predict_onnx(model_dir, texts, settings) if engine == "onnxruntime" else None
    if scored is None:  # torch chosen, or ONNX Runtime could not run (it said why)
        scored = _predict_torch(settings, model_dir, texts, precision)
    ids, probabilities, id2label = scored
    rows = [
        {"text": text, "label": id2label[int(i)], "score": float(p[int(i)])}
        for text, i, p in zip(texts, ids, probabilities, strict=True)
    ]
    return champ.version, rows


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
