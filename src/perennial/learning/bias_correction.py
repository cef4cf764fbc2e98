"""Correcting a classifier's head for a label-prior shift (logit adjustment, Menon et al., 2021).

A cycle that trains mostly on new classes leaves the head's biases favouring them, so old classes
are under-predicted: a large part of what looks like forgetting. Logit adjustment subtracts
tau * log(prior) from each class's logit, where the prior is the class's share of the rows the model
was last trained on; folded into the output bias, the corrected model stays a plain transformers model.
The shift is also recorded in the model's config (ADJUSTMENT_KEY), so that a later cycle that
warm-starts from the model, or averages with it, first takes it out: otherwise every cycle would
train on top of the last cycle's shift and add its own (with LwF distilling the shifted outputs,
the shifts compound until the head predicts one class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def class_priors(labels: Sequence[str], classes: Sequence[str], smoothing: float = 1.0) -> np.ndarray:
    """Each class's share of `labels`, in the order of `classes`, Laplace-smoothed: `smoothing` is
    added to every count, so a class absent from `labels` still gets a small nonzero prior."""
    classes = list(classes)
    if not classes:
        raise ValueError("no classes given")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    if not (np.isfinite(smoothing) and smoothing >= 0):
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing}")
    index = {name: i for i, name in enumerate(classes)}
    counts = np.full(len(classes), float(smoothing))
    for label in labels:
        if label not in index:
            raise ValueError(f"label {label!r} is not one of the classes {classes}")
        counts[index[label]] += 1.0
    total = counts.sum()
    if total <= 0:
        raise ValueError("no labels and no smoothing: the priors are undefined")
    return counts / total


def logit_adjustment(priors: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """The vector to ADD to the logits: -tau * log(priors), centred to mean zero.

    A constant shift changes no prediction; centring makes balanced priors give exactly zero. Priors
    need not sum to one (the normalising constant is a constant shift)."""
    priors = np.asarray(priors, dtype=np.float64)
    if priors.ndim != 1 or priors.size == 0:
        raise ValueError(f"priors must be a non-empty vector, got shape {priors.shape}")
    if not (np.all(np.isfinite(priors)) and np.all(priors > 0)):
        raise ValueError(f"priors must be finite and positive, got {priors}")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    log_priors = np.log(priors)
    # Measured from the first class before centring: equal priors give exact zeros, which the mean of
    # n equal floats (rounded by the sum) would not always.
    relative = log_priors - log_priors[0]
    return tau * (relative.mean() - relative)


def output_bias(model: Any) -> torch.nn.Parameter:
    """The bias of a transformers sequence classifier's output layer: `classifier` (BERT, DistilBERT),
    `classifier.out_proj` (RoBERTa, ELECTRA) or `score` (GPT-2 and other decoders)."""
    head = getattr(model, "classifier", None)
    if head is not None and not isinstance(head, torch.nn.Linear):
        head = getattr(head, "out_proj", None)
    if head is None:
        head = getattr(model, "score", None)
    bias = getattr(head, "bias", None) if isinstance(head, torch.nn.Linear) else None
    if not isinstance(bias, torch.nn.Parameter):
        raise ValueError(
            f"{type(model).__name__} has no output bias to adjust (looked for classifier, "
            "classifier.out_proj and score, as a linear layer with a bias)"
        )
    return bias


def apply_logit_adjustment(model: Any, adjustment: np.ndarray) -> None:
    """Add `adjustment` (one value per label, in the model's label order) to the output bias, in place:
    every later logit is the old logit plus the adjustment."""
    bias = output_bias(model)
    adjustment = np.asarray(adjustment, dtype=np.float64)
    num_labels = model.config.num_labels
    if adjustment.shape != (num_labels,) or bias.shape != (num_labels,):
        raise ValueError(
            f"adjustment has shape {adjustment.shape}, the model has {num_labels} labels "
            f"(output bias of shape {tuple(bias.shape)})"
        )
    if not np.all(np.isfinite(adjustment)):
        raise ValueError(f"adjustment must be finite, got {adjustment}")
    with torch.no_grad():
        bias.add_(torch.as_tensor(adjustment, dtype=bias.dtype, device=bias.device))


ADJUSTMENT_KEY = "perennial_logit_adjustment"  # the shift folded into the output bias, in label order


def record_adjustment(model: Any, adjustment: np.ndarray) -> None:
    """Fold `adjustment` into the output bias and record it in the config (replacing any record)."""
    apply_logit_adjustment(model, adjustment)
    setattr(model.config, ADJUSTMENT_KEY, [float(x) for x in np.asarray(adjustment, dtype=np.float64)])


def remove_recorded_adjustment(model: Any) -> bool:
    """Take a recorded shift back out of the output bias (in place), leaving the head as training
    left it; False when there was none. A record of the wrong length (a head that grew) is dropped
    without touching the bias: it no longer says which class was shifted."""
    recorded = getattr(model.config, ADJUSTMENT_KEY, None)
    if not recorded:
        return False
    setattr(model.config, ADJUSTMENT_KEY, None)
    if len(recorded) != model.config.num_labels:
        return False
    apply_logit_adjustment(model, -np.asarray(recorded, dtype=np.float64))
    return True
