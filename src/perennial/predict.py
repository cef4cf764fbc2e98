"""Score texts with the current champion."""

from __future__ import annotations

from collections.abc import Sequence

from perennial.config import Settings


class NoChampion(RuntimeError):
    """Nothing has been promoted yet."""


def predict_texts(settings: Settings, texts: Sequence[str]) -> tuple[str, list[dict]]:
    """Return the champion's version and, per text, its label and probability."""
    from perennial import registry
    from perennial.cycle import champion_model_dir
    from perennial.evaluation import load_model_dir, predict, resolve_device
    from perennial.precision import inference_precision, resolve_precision

    champ = registry.champion(settings)
    if champ is None:
        raise NoChampion("no champion yet: run `perennial run` on a labelled batch first")
    device = resolve_device(settings.device)
    model, tokenizer = load_model_dir(champion_model_dir(settings, champ.version), device)
    with inference_precision(resolve_precision(settings.predict_precision, device), device):
        ids, probabilities = predict(
            model,
            tokenizer,
            list(texts),
            batch_size=settings.eval_batch_size,
            max_length=settings.max_length,
            device=device,
        )
    id2label = model.config.id2label
    rows = [
        {"text": text, "label": id2label[int(i)], "score": float(p[int(i)])}
        for text, i, p in zip(texts, ids, probabilities, strict=True)
    ]
    return champ.version, rows
