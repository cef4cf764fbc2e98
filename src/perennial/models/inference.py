"""Models at run time: loading a saved classifier, the device it runs on, and batched prediction.

Shared by training (validation accuracy), evaluation, drift (embeddings) and serving. torch and
transformers are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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


def model_labels(model: PreTrainedModel) -> list[str]:
    """The model's labels in output order (its config's `id2label`)."""
    return config_labels(model.config)


def config_labels(config: Any) -> list[str]:
    """A model config's labels in output order (transformers' placeholders, LABEL_0, ..., when the
    model has no head of ours)."""
    id2label: dict[Any, Any] = dict(config.id2label or {})  # int keys (typed as str)
    return [str(id2label.get(i)) for i in range(int(config.num_labels))]


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
    num_labels = int(model.config.num_labels)  # type: ignore[arg-type]  # typed optional, always set
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, num_labels), dtype=np.float32)

    if device is None:
        device = model_device(model)
    elif model_device(model) != device:
        model.to(device)  # type: ignore[arg-type]  # transformers types .to() oddly
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
