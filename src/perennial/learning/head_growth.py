"""Head growth: give a trained classifier output rows for labels it has never seen.

When the label set grows (perennial.data.new_labels), the next challenger starts from the champion
with a wider head. The model stays a plain transformers model, so the registry serves it as before:

- the champion's output rows are copied for its labels, which keep their positions (the label set
  only appends), so before training the old labels' logits are the champion's own;
- each new row gets weights drawn as transformers initialises a fresh head (normal, standard
  deviation `initializer_range`) and a bias equal to the lowest old bias, so an untrained new label
  starts below the old ones instead of taking their inputs at random before it has learned anything;
- `num_labels`, `id2label` and `label2id` in the config name the grown set.

The output layer is found, not assumed: the last linear layer of the head whose outputs are the
labels (`classifier` in BERT-style models, `classifier.out_proj` in RoBERTa, `score` in decoders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from perennial.models.inference import model_labels

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

# Module names that hold a sequence classifier's head in transformers models.
HEAD_NAMES = ("classifier", "score")


def output_layer(model: torch.nn.Module, num_labels: int) -> tuple[torch.nn.Module, str, torch.nn.Linear]:
    """(parent module, attribute name, layer) of the head's last linear layer with one output per label."""
    import torch

    found = None
    for name, module in model.named_modules():
        head = any(part in HEAD_NAMES for part in name.split("."))
        if head and isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
            found = name
    if found is None:
        raise ValueError(f"no output layer with {num_labels} outputs in the model's head")
    parent_name, _, attribute = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attribute, getattr(parent, attribute)


def grow_head(model: PreTrainedModel, labels: Sequence[str]) -> list[str]:
    """Widen the model's head (in place) to `labels`, which must start with the model's own labels in
    their order; returns the labels added. A model that already has `labels` is left as it is."""
    import torch

    old = model_labels(model)
    labels = [str(label) for label in labels]
    if labels == old:
        return []
    if labels[: len(old)] != old:
        missing = [label for label in old if label not in labels]
        what = f"lacks the model's labels {missing}" if missing else "reorders the model's labels"
        raise ValueError(f"cannot grow the head: the label set {labels} {what} {old}")
    parent, attribute, layer = output_layer(model, len(old))
    added = labels[len(old) :]
    grown = torch.nn.Linear(layer.in_features, len(labels), bias=layer.bias is not None)
    grown.to(device=layer.weight.device, dtype=layer.weight.dtype)
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        grown.weight[: len(old)] = layer.weight
        grown.weight[len(old) :].normal_(mean=0.0, std=std)
        if layer.bias is not None and grown.bias is not None:
            grown.bias[: len(old)] = layer.bias
            grown.bias[len(old) :] = layer.bias.min() if len(old) else 0.0
    grown.weight.requires_grad_(layer.weight.requires_grad)
    setattr(parent, attribute, grown)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    if hasattr(model, "num_labels"):  # BERT-style models keep their own copy for the loss
        setattr(model, "num_labels", len(labels))  # noqa: B010 - nn.Module types attributes as modules
    return added
