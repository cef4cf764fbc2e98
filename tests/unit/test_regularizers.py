"""LwF and EWC on the tiny model, the distillation loss and the EWC penalty by hand, and the factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from perennial.core.settings import Settings
from perennial.learning.regularizers import (
    ElasticWeightConsolidation,
    LearningWithoutForgetting,
    build_regularizer,
    distillation_loss,
    ewc_penalty,
)
from perennial.learning.training import load_for_training

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_outside_settings")

LABELS = ["negative", "positive"]
TEXTS = [
    "a wonderful film, I loved it",
    "terrible service and cold food",
    "not bad at all",
    "the worst day of my life",
    "great value, would buy again",
    "meh",
    "absolutely fantastic performance by the whole cast",
    "broken on arrival, refund please",
]


@pytest.fixture
def model_and_collate(tiny_model_dir: Path) -> tuple[torch.nn.Module, Callable[[Sequence[int]], dict]]:
    torch.manual_seed(0)
    model, tokenizer = load_for_training(tiny_model_dir, LABELS)
    model.eval()

    def collate(rows: Sequence[int]) -> dict:
        return dict(
            tokenizer(
                [TEXTS[i] for i in rows], padding=True, truncation=True, max_length=16, return_tensors="pt"
            )
        )

    return model, collate


def logits_of(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits.float()


def kl_by_hand(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean over rows of sum_k p_k (log p_k - log q_k), p the teacher's, q the student's."""
    p = torch.softmax(teacher / temperature, dim=-1)
    log_q = torch.log_softmax(student / temperature, dim=-1)
    per_row = (p * (p.log() - log_q)).sum(dim=-1)
    return per_row.mean() * temperature**2


# distillation_loss

STUDENT = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -2.0]])
TEACHER = torch.tensor([[-0.5, 1.5, 0.0], [1.0, 1.0, 3.0]])


def test_distillation_is_zero_for_identical_logits() -> None:
    for t in (0.5, 1.0, 4.0):
        assert distillation_loss(TEACHER, TEACHER.clone(), t).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_ignores_a_constant_shift() -> None:
    # Softmax does not see a per-row constant: the distributions, and so the loss, are the same.
    assert distillation_loss(TEACHER + 5.0, TEACHER, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_is_positive_for_different_logits() -> None:
    for t in (0.5, 1.0, 4.0):
        assert distillation_loss(STUDENT, TEACHER, t).item() > 1e-3


@pytest.mark.parametrize("temperature", [1.0, 2.0, 3.0, 0.5])
def test_distillation_matches_a_hand_computation(temperature: float) -> None:
    expected = kl_by_hand(STUDENT, TEACHER, temperature)
    got = distillation_loss(STUDENT, TEACHER, temperature)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_distillation_is_kl_from_teacher_to_student_not_the_reverse() -> None:
    forward = kl_by_hand(STUDENT, TEACHER, 1.0).item()
    reverse = kl_by_hand(TEACHER, STUDENT, 1.0).item()
    assert abs(forward - reverse) > 1e-2  # the two directions differ on these logits
    assert distillation_loss(STUDENT, TEACHER, 1.0).item() == pytest.approx(forward, rel=1e-5)


def test_distillation_carries_the_t_squared_factor() -> None:
    # The same softened distributions at temperature T: loss(x*T, y*T, T) == T^2 * loss(x, y, 1).
    base = distillation_loss(STUDENT, TEACHER, 1.0).item()
    for t in (2.0, 3.0):
        assert distillation_loss(STUDENT * t, TEACHER * t, t).item() == pytest.approx(t * t * base, rel=1e-5)


def test_distillation_averages_over_rows() -> None:
    one = distillation_loss(STUDENT[:1], TEACHER[:1], 2.0).item()
    repeated = distillation_loss(STUDENT[:1].repeat(5, 1), TEACHER[:1].repeat(5, 1), 2.0).item()
    assert repeated == pytest.approx(one, rel=1e-5)


def test_distillation_gradient_flows_to_the_student() -> None:
    student = STUDENT.clone().requires_grad_(True)
    distillation_loss(student, TEACHER, 2.0).backward()
    assert student.grad is not None
    assert student.grad.abs().sum().item() > 0


# Learning without forgetting


def test_lwf_penalty_before_prepare_raises(model_and_collate) -> None:
    model, collate = model_and_collate
    lwf = LearningWithoutForgetting(weight=1.0, temperature=2.0)
    with pytest.raises(RuntimeError, match="prepare"):
        lwf.penalty(model, [0, 1], logits_of(model, collate([0, 1])))


def test_lwf_teacher_logits_are_the_starting_models_outputs(model_and_collate) -> None:
    model, collate = model_and_collate
    model.train()
    lwf = LearningWithoutForgetting(weight=1.0, temperature=2.0)
    lwf.prepare(model, collate, n_rows=len(TEXTS), batch_size=3)  # batches of 3, 3 and 2
    assert model.training  # mode restored
    assert lwf.teacher_logits is not None
    assert lwf.teacher_logits.shape == (len(TEXTS), len(LABELS))
    model.eval()
    for row in range(len(TEXTS)):
        expected = logits_of(model, collate([row]))[0]
        assert torch.allclose(lwf.teacher_logits[row], expected, atol=1e-5)


def test_lwf_penalty_is_zero_before_training_and_positive_after_a_change(model_and_collate) -> None:
    model, collate = model_and_collate
    lwf = LearningWithoutForgetting(weight=1.0, temperature=2.0)
    lwf.prepare(model, collate, n_rows=len(TEXTS), batch_size=4)
    rows = [5, 0, 3]
    at_start = lwf.penalty(model, rows, model(**collate(rows)).logits)
    assert at_start.item() == pytest.approx(0.0, abs=1e-6)

    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        weight = model.classifier.weight
        weight.add_(torch.randn(weight.shape, generator=generator) * 2.0)
    after = lwf.penalty(model, rows, model(**collate(rows)).logits)
    assert after.item() > 1e-4
    # The penalty is differentiable in the student's parameters.
    after.backward()
    assert model.classifier.weight.grad is not None
    assert model.classifier.weight.grad.abs().sum().item() > 0


def test_lwf_penalty_scales_with_its_weight(model_and_collate) -> None:
    model, collate = model_and_collate
    light = LearningWithoutForgetting(weight=1.0, temperature=2.0)
    heavy = LearningWithoutForgetting(weight=3.0, temperature=2.0)
    light.prepare(model, collate, n_rows=len(TEXTS), batch_size=8)
    heavy.prepare(model, collate, n_rows=len(TEXTS), batch_size=8)
    with torch.no_grad():
        model.classifier.bias.add_(torch.tensor([1.5, -1.5]))
    rows = [1, 2]
    logits = logits_of(model, collate(rows))
    assert light.penalty(model, rows, logits).item() > 0
    assert heavy.penalty(model, rows, logits).item() == pytest.approx(
        3.0 * light.penalty(model, rows, logits).item(), rel=1e-5
    )
    # ... and matches the distillation loss against the prepared teacher rows.
    expected = distillation_loss(logits, light.teacher_logits[rows], 2.0).item()
    assert light.penalty(model, rows, logits).item() == pytest.approx(expected, rel=1e-6)


# Elastic weight consolidation


def prepared_ewc(model: torch.nn.Module, collate, weight: float = 1.0, seed: int = 0):
    ewc = ElasticWeightConsolidation(weight=weight, fisher_rows=6, seed=seed)
    ewc.prepare(model, collate, n_rows=len(TEXTS), batch_size=4)
    return ewc


def test_ewc_fisher_is_non_negative_and_not_all_zero(model_and_collate) -> None:
    model, collate = model_and_collate
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ewc = prepared_ewc(model, collate)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(ewc.fisher) == trainable == set(ewc.anchor)
    for name, fisher in ewc.fisher.items():
        assert fisher.shape == before[name].shape
        assert torch.all(fisher >= 0), name
        assert torch.isfinite(fisher).all(), name
    assert sum(f.sum().item() for f in ewc.fisher.values()) > 0
    assert ewc.fisher["classifier.weight"].sum().item() > 0
    # prepare neither moves the weights nor leaves gradients behind
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
        assert param.grad is None, name
    for name, anchor in ewc.anchor.items():
        assert torch.equal(anchor, before[name])


def test_ewc_prepare_restores_training_mode(model_and_collate) -> None:
    model, collate = model_and_collate
    model.train()
    prepared_ewc(model, collate)
    assert model.training


def test_ewc_fisher_is_deterministic_for_a_seed(model_and_collate) -> None:
    model, collate = model_and_collate
    a, b = prepared_ewc(model, collate, seed=3), prepared_ewc(model, collate, seed=3)
    for name in a.fisher:
        assert torch.equal(a.fisher[name], b.fisher[name]), name


def test_ewc_anchors_only_trainable_parameters(model_and_collate) -> None:
    model, collate = model_and_collate
    for param in model.bert.embeddings.parameters():
        param.requires_grad = False
    ewc = prepared_ewc(model, collate)
    assert not any(name.startswith("bert.embeddings") for name in ewc.fisher)
    assert "classifier.weight" in ewc.fisher


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_away_from_it(model_and_collate) -> None:
    model, collate = model_and_collate
    ewc = prepared_ewc(model, collate, weight=10.0)
    logits = logits_of(model, collate([0]))
    assert ewc.penalty(model, [0], logits).item() == 0.0

    name = "classifier.weight"
    fisher = ewc.fisher[name]
    assert fisher.sum().item() > 0
    param = dict(model.named_parameters())[name]
    delta = torch.randn(param.shape, generator=torch.Generator().manual_seed(2)) * 0.05

    with torch.no_grad():
        param.copy_(ewc.anchor[name] + delta)
    once = ewc.penalty(model, [0], logits).item()
    with torch.no_grad():
        param.copy_(ewc.anchor[name] + 2 * delta)
    twice = ewc.penalty(model, [0], logits).item()

    assert once > 0
    assert twice == pytest.approx(4 * once, rel=1e-4)
    expected = 10.0 * 0.5 * (fisher * (2 * delta) ** 2).sum().item()
    assert twice == pytest.approx(expected, rel=1e-4)


def test_ewc_penalty_pulls_back_towards_the_anchor(model_and_collate) -> None:
    model, collate = model_and_collate
    ewc = prepared_ewc(model, collate)
    param = model.classifier.weight
    with torch.no_grad():
        param.add_(0.1)
    ewc.penalty(model, [0], logits_of(model, collate([0]))).backward()
    # d/dθ 0.5 F (θ - a)^2 = F (θ - a): the gradient points away from the anchor (descent moves back).
    expected = ewc.fisher["classifier.weight"] * (param.detach() - ewc.anchor["classifier.weight"])
    assert torch.allclose(param.grad, expected, rtol=1e-4, atol=1e-12)


def test_ewc_penalty_by_hand_on_a_linear_layer() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    anchor = {name: p.detach().clone() for name, p in layer.named_parameters() if name == "weight"}
    fisher = {"weight": torch.tensor([[1.0, 0.0, 2.0], [0.5, 3.0, 0.0]])}
    assert ewc_penalty(layer, anchor, fisher).item() == 0.0

    delta = torch.tensor([[0.1, 5.0, -0.2], [0.4, -0.1, 7.0]])
    with torch.no_grad():
        layer.weight.add_(delta)
        layer.bias.add_(100.0)  # not anchored: no effect
    # 0.5 * (1*0.01 + 0 + 2*0.04 + 0.5*0.16 + 3*0.01 + 0) = 0.5 * 0.2 = 0.1
    assert ewc_penalty(layer, anchor, fisher).item() == pytest.approx(0.1, rel=1e-5)


def test_ewc_penalty_with_nothing_anchored_is_zero() -> None:
    layer = torch.nn.Linear(3, 2)
    penalty = ewc_penalty(layer, {}, {})
    assert penalty.shape == ()
    assert penalty.item() == 0.0


# build_regularizer


def test_build_none(tmp_path: Path) -> None:
    assert build_regularizer("none", Settings(workspace=tmp_path).regularizers) is None


def test_build_lwf_takes_its_settings(tmp_path: Path) -> None:
    regularizer = build_regularizer(
        "lwf", Settings(workspace=tmp_path, lwf_weight=0.25, lwf_temperature=3.0).regularizers
    )
    assert isinstance(regularizer, LearningWithoutForgetting)
    assert regularizer.name == "lwf"
    assert (regularizer.weight, regularizer.temperature) == (0.25, 3.0)
    assert regularizer.teacher_logits is None


def test_build_ewc_takes_its_settings(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, ewc_weight=7.0, ewc_fisher_rows=11, seed=5)
    regularizer = build_regularizer("ewc", settings.regularizers)
    assert isinstance(regularizer, ElasticWeightConsolidation)
    assert regularizer.name == "ewc"
    assert (regularizer.weight, regularizer.fisher_rows, regularizer.seed) == (7.0, 11, 5)


@pytest.mark.parametrize("kind", ["LwF", "l2", "", "EWC "])
def test_build_unknown_raises(kind: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown regularizer"):
        build_regularizer(kind, Settings(workspace=tmp_path).regularizers)
