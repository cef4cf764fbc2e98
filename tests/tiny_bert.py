"""Randomly initialised tiny BERT classifiers: the stand-in for MiniLM wherever a test needs weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def random_tiny_bert(
    labels: Sequence[str],
    vocab_size: int,
    seed: int = 0,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 1,
    intermediate_size: int = 37,
    **config: Any,
) -> Any:
    """A BertForSequenceClassification with a head for `labels`, its weights drawn from `seed`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    bert_config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **config,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config)
