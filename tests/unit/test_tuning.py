"""Which weights train under full, head and LoRA tuning, and that a LoRA model saves as a plain one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perennial.core.settings import Settings
from perennial.learning.training import load_for_training
from perennial.learning.tuning import TUNINGS, merged_for_saving, prepare_for_tuning, trainable_fraction

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_outside_settings")

LABELS = ["negative", "positive"]
TEXTS = ["a wonderful film, I loved it", "terrible service and cold food", "meh", "not bad at all"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(workspace=tmp_path / "ws", lora_rank=4, lora_alpha=8, lora_dropout=0.1)


@pytest.fixture
def model_and_batch(tiny_model_dir: Path):
    model, tokenizer = load_for_training(tiny_model_dir, LABELS)
    model.eval()
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    return model, batch


def logits_of(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_tunings_are_the_three_known() -> None:
    assert set(TUNINGS) == {"full", "lora", "head"}


def test_full_trains_everything(model_and_batch, settings: Settings) -> None:
    model, _ = model_and_batch
    prepared = prepare_for_tuning(model, "full", settings.lora)
    assert prepared is model
    assert all(p.requires_grad for p in prepared.parameters())
    assert trainable_fraction(prepared) == 1.0


def test_head_freezes_the_encoder_but_not_the_pooler_or_classifier(
    model_and_batch, settings: Settings
) -> None:
    model, _ = model_and_batch
    prepared = prepare_for_tuning(model, "head", settings.lora)
    names = dict(prepared.named_parameters())
    assert any(n.startswith("bert.pooler") for n in names)
    for name, param in names.items():
        if name.startswith(("classifier", "bert.pooler")):
            assert param.requires_grad, name
        else:
            assert name.startswith("bert."), name
            assert not param.requires_grad, name
    fraction = trainable_fraction(prepared)
    assert 0 < fraction < 0.1
    expected = sum(p.numel() for n, p in names.items() if n.startswith(("classifier", "bert.pooler")))
    assert fraction == pytest.approx(expected / sum(p.numel() for p in names.values()))


def test_head_tuning_does_not_change_the_outputs(model_and_batch, settings: Settings) -> None:
    model, batch = model_and_batch
    before = logits_of(model, batch)
    assert torch.equal(logits_of(prepare_for_tuning(model, "head", settings.lora), batch), before)


def test_lora_trains_only_adapters_and_classifier(model_and_batch, settings: Settings) -> None:
    from peft import PeftModel

    model, batch = model_and_batch
    before = logits_of(model, batch)
    wrapped = prepare_for_tuning(model, "lora", settings.lora)
    assert isinstance(wrapped, PeftModel)
    trainable = trainable_names(wrapped)
    assert trainable
    for name in trainable:
        assert "lora_" in name or "classifier" in name, name
    assert any("lora_A" in n for n in trainable)
    assert any("lora_B" in n for n in trainable)
    assert any("classifier" in n for n in trainable)
    # The adapters have the configured rank and target the attention projections.
    lora_a = [p for n, p in wrapped.named_parameters() if "lora_A" in n]
    assert all(p.shape[0] == settings.lora_rank for p in lora_a)
    assert any(".query." in n for n in trainable) and any(".value." in n for n in trainable)
    # The encoder's own weights are frozen.
    frozen = {n for n, _ in wrapped.named_parameters()} - trainable
    assert any("word_embeddings" in n for n in frozen)
    assert 0 < trainable_fraction(wrapped) < 0.1
    # lora_B starts at zero: wrapping does not change what the model predicts.
    assert torch.allclose(logits_of(wrapped, batch), before, atol=1e-6)


def nudge_adapters_and_head(wrapped: torch.nn.Module) -> None:
    """What training would do: non-zero lora_B, and a trained copy of the classifier."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name or ("classifier" in name and param.requires_grad):
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)


def test_lora_merges_into_a_plain_classifier_with_the_same_outputs(
    model_and_batch, settings: Settings
) -> None:
    from peft import PeftModel
    from transformers import BertForSequenceClassification

    model, batch = model_and_batch
    original = logits_of(model, batch)
    wrapped = prepare_for_tuning(model, "lora", settings.lora)
    nudge_adapters_and_head(wrapped)
    adapted = logits_of(wrapped, batch)
    assert not torch.allclose(adapted, original, atol=1e-3)  # the adapters do matter now

    merged = merged_for_saving(wrapped)
    assert isinstance(merged, BertForSequenceClassification)
    assert not isinstance(merged, PeftModel)
    assert not any("lora" in name or "modules_to_save" in name for name, _ in merged.named_parameters())
    assert all(p.requires_grad for p in merged.parameters())
    assert trainable_fraction(merged) == 1.0
    assert torch.allclose(logits_of(merged, batch), adapted, atol=1e-5)


def test_merged_model_reloads_with_the_same_outputs(
    model_and_batch, settings: Settings, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification

    model, batch = model_and_batch
    wrapped = prepare_for_tuning(model, "lora", settings.lora)
    nudge_adapters_and_head(wrapped)
    merged = merged_for_saving(wrapped)
    expected = logits_of(merged, batch)

    merged.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert type(reloaded).__name__ == "BertForSequenceClassification"
    assert reloaded.config.id2label == {0: "negative", 1: "positive"}
    assert torch.allclose(logits_of(reloaded, batch), expected, atol=1e-5)


def test_merged_for_saving_unfreezes_a_plain_model(model_and_batch, settings: Settings) -> None:
    model, batch = model_and_batch
    before = logits_of(model, batch)
    head_only = prepare_for_tuning(model, "head", settings.lora)
    assert trainable_fraction(head_only) < 1.0
    merged = merged_for_saving(head_only)
    assert merged is model
    assert all(p.requires_grad for p in merged.parameters())
    assert torch.equal(logits_of(merged, batch), before)


@pytest.mark.parametrize("tuning", ["LoRA", "adapter", "", "freeze"])
def test_unknown_tuning_raises(model_and_batch, settings: Settings, tuning: str) -> None:
    model, _ = model_and_batch
    with pytest.raises(ValueError, match="unknown tuning"):
        prepare_for_tuning(model, tuning, settings.lora)
    assert all(p.requires_grad for p in model.parameters())  # left untouched


def test_trainable_fraction_of_an_empty_module() -> None:
    assert trainable_fraction(torch.nn.Sequential()) == 0.0


def test_trainable_fraction_counts_elements() -> None:
    layers = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))  # 20 + 5 parameters
    layers[0].weight.requires_grad = False  # 16 frozen
    assert trainable_fraction(layers) == pytest.approx(9 / 25)
