"""Fine-tuning: load the base model or the champion, train with AdamW, stop early on validation.

A plain torch loop rather than `transformers.Trainer`: length-grouped batches with dynamic padding
keep short texts cheap, and the loop stays small enough to read in one sitting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perennial.config import Settings
from perennial.faults import fault_point
from perennial.regularizers import Regularizer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: str
    init_from: str
    train_rows: int
    val_rows: int
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    seconds: float
    samples_processed: int = 0  # training rows seen, summed over the epochs run
    tuning: str = "full"
    regularizer: str = "none"
    trainable_fraction: float = 1.0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_for_training(
    source: str | Path, labels: Sequence[str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder with a classification head for `labels` (a new head for the base model)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Weights only from safetensors (a pickle can run code when loaded), and never remote code.
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        use_safetensors=True,
        trust_remote_code=False,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    return model, tokenizer


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch holds similar lengths
    (little padding) while the order across batches stays random. Every index appears once."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend([list(map(int, chunk[i : i + batch_size])) for i in range(0, len(chunk), batch_size)])
    return [batches[i] for i in rng.permutation(len(batches))]


def _no_decay(name: str) -> bool:
    # Biases and LayerNorm weights are not decayed (the standard BERT fine-tuning recipe).
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def make_optimizer(model: torch.nn.Module, settings: Settings, tuning: str = "full") -> torch.optim.Optimizer:
    import torch

    lr = settings.learning_rate if tuning == "full" else settings.adapter_learning_rate
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not _no_decay(n)], "weight_decay": settings.weight_decay},
        {"params": [p for n, p in params if _no_decay(n)], "weight_decay": 0.0},
    ]
    # The fused kernel is ~100x faster than the default per-tensor loop on CPU (measured: 2.2 s vs
    # 0.013 s per MiniLM step): without it the optimizer step costs more than the forward pass.
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, foreach=True)


def fine_tune(
    init_from: str | Path,
    labels: Sequence[str],
    train: pd.DataFrame,
    val: pd.DataFrame,
    settings: Settings,
    out_dir: Path,
    progress: bool = True,
    *,
    tuning: str = "full",
    regularizer: Regularizer | None = None,
) -> TrainResult:
    """Fine-tune from `init_from` on `train`, keep the epoch with the best val accuracy, save it.

    `tuning` picks the weights that move (full, lora, head); `regularizer` adds a loss term that
    holds the starting model's knowledge (prepared from `init_from` before the first update)."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from perennial.evaluation import predict, resolve_device
    from perennial.tuning import merged_for_saving, prepare_for_tuning, trainable_fraction

    started = time.perf_counter()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    set_seed(settings.seed)
    device = resolve_device(settings.device)
    model, tokenizer = load_for_training(init_from, labels)
    model = prepare_for_tuning(model, tuning, settings)
    model.to(device)
    label2id = {label: i for i, label in enumerate(labels)}

    # Tokenise once, without padding; each batch is padded to its own longest text.
    encoded = tokenizer(list(train["text"]), truncation=True, max_length=settings.max_length)["input_ids"]
    targets = [label2id[label] for label in train["label"]]
    val_targets = np.array([label2id[label] for label in val["label"]])
    lengths = [len(ids) for ids in encoded]

    def collate(rows: Sequence[int]) -> dict:
        features = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
        return {k: v.to(device) for k, v in features.items()}

    if regularizer is not None:
        regularizer.prepare(model, collate, len(encoded), settings.eval_batch_size)

    steps_per_epoch = -(-len(encoded) // settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    optimizer = make_optimizer(model, settings, tuning)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * total_steps), total_steps
    )
    rng = np.random.default_rng(settings.seed)

    best_accuracy, best_epoch, best_state = -1.0, 0, None
    history: list[dict] = []
    epochs_without_gain = 0
    stopped_early = False
    for epoch in range(1, settings.epochs + 1):
        model.train()
        batches = length_grouped_batches(lengths, settings.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch", disable=not progress)
        running = 0.0
        for step, idx in enumerate(bar, start=1):
            labels_t = torch.tensor([targets[i] for i in idx], device=device)
            logits = model(**collate(idx)).logits
            loss = F.cross_entropy(logits, labels_t)
            if regularizer is not None:
                loss = loss + regularizer.penalty(model, idx, logits)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.item()
            bar.set_postfix(loss=f"{running / step:.4f}")
        bar.close()

        predictions, _ = predict(
            model,
            tokenizer,
            list(val["text"]),
            batch_size=settings.eval_batch_size,
            max_length=settings.max_length,
            device=device,
        )
        val_accuracy = float((predictions == val_targets).mean()) if len(val_targets) else 0.0
        history.append(
            {"epoch": epoch, "train_loss": running / max(1, len(batches)), "val_accuracy": val_accuracy}
        )
        log.info(
            "epoch %d: train loss %.4f, val accuracy %.4f", epoch, history[-1]["train_loss"], val_accuracy
        )
        fault_point("training", settings.root)
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch, epochs_without_gain = val_accuracy, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= settings.patience:
                stopped_early = epoch < settings.epochs
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    fraction = trainable_fraction(model)
    model = merged_for_saving(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fault_point("model-saving", settings.root)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return TrainResult(
        model_dir=str(out_dir),
        init_from=str(init_from),
        train_rows=len(train),
        val_rows=len(val),
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_val_accuracy=best_accuracy,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
        samples_processed=len(encoded) * len(history),
        tuning=tuning,
        regularizer=regularizer.name if regularizer is not None else "none",
        trainable_fraction=fraction,
        history=history,
    )
