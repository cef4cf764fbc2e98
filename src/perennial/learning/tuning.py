"""Which weights a fine-tune moves: all of them, low-rank adapters (LoRA), or the head alone.

Whatever trains, what is saved is a plain transformers classifier: LoRA adapters are merged into the
weights before saving, so the registry serves one loadable model and the next cycle can warm-start
from it like from any other.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, cast, get_args

from perennial.core.settings import TuningPart

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from perennial.core.settings import LoraSettings, OptimizerSettings

TUNINGS: tuple[str, ...] = get_args(TuningPart)


def prepare_for_tuning(model: PreTrainedModel, tuning: str, lora: LoraSettings) -> PreTrainedModel:
    """Return the model to train: as is, wrapped with LoRA adapters, or with its encoder frozen."""
    if tuning == "full":
        return model
    if tuning == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        # TaskType.SEQ_CLS keeps the classification head fully trainable (modules_to_save), and peft
        # picks the attention projections to adapt for known architectures (query/value for BERT).
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=lora.lora_rank,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
        )
        with warnings.catch_warnings():  # peft calls a transformers API that warns of its own rename
            warnings.simplefilter("ignore", FutureWarning)
            # The peft wrapper forwards the model's interface (forward, save, .config) to it.
            return cast("PreTrainedModel", get_peft_model(model, config))
    if tuning == "head":
        encoder = getattr(model, model.base_model_prefix)
        for name, param in encoder.named_parameters():
            # The pooler sits between the encoder and the head; it trains with the head.
            param.requires_grad = "pooler" in name
        return model
    raise ValueError(f"unknown tuning {tuning!r}: choose one of {', '.join(TUNINGS)}")


def merged_for_saving(model: PreTrainedModel) -> PreTrainedModel:
    """A plain classifier: adapters folded into the weights, every parameter trainable again."""
    # A LoRA model was wrapped by peft, so peft is loaded; otherwise skip its ~3 s import.
    peft = sys.modules.get("peft")
    if peft is not None and isinstance(model, peft.PeftModel):
        model = model.merge_and_unload()
    for param in model.parameters():
        param.requires_grad = True
    return model


def trainable_fraction(model: PreTrainedModel) -> float:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable / total if total else 0.0


def learning_rate_for(optimizer: OptimizerSettings, tuning: str) -> float:
    """Full fine-tuning takes `learning_rate`; LoRA adapters and the head alone, few weights that
    start from scratch, take the larger `adapter_learning_rate`."""
    return optimizer.learning_rate if tuning == "full" else optimizer.adapter_learning_rate
