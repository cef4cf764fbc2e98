"""The strategy's finishing steps on a saved model: weight averaging with the champion it started
from, and the head's bias correction for the label priors it trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from perennial.bias_correction import class_priors, logit_adjustment
from perennial.config import Settings
from perennial.finishing import finish_model
from perennial.strategy import Strategy

LABELS = ["a", "b", "c"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {
        k: v.clone() for k, v in BertForSequenceClassification.from_pretrained(folder).state_dict().items()
    }


def _unchanged(before: dict[str, torch.Tensor], folder: Path) -> bool:
    return all(torch.equal(before[k], v) for k, v in _weights(folder).items())


@pytest.fixture
def champion_and_challenger(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    from transformers import AutoTokenizer

    champion = tmp_path / "champion"
    three_labels = BertForSequenceClassification.from_pretrained(
        tiny_model_dir,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        ignore_mismatched_sizes=True,  # the tiny model's 2-label head becomes a 3-label one
    )
    three_labels.save_pretrained(champion)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(champion)
    challenger = tmp_path / "challenger"
    shutil.copytree(champion, challenger)
    model = BertForSequenceClassification.from_pretrained(challenger)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)  # as if a cycle had trained it
    model.save_pretrained(challenger)
    return champion, challenger


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_wise_leaves_the_average_of_champion_and_challenger(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path, alpha: float
) -> None:
    champion, challenger = champion_and_challenger
    before = _weights(challenger)
    start = _weights(champion)
    settings = Settings(workspace=tmp_path / "ws", wise_alpha=alpha)
    done = finish_model(Strategy("replay", merge="wise"), challenger, champion, ["a", "b"], LABELS, settings)
    assert done == {"wise_alpha": alpha}
    after = _weights(challenger)
    for key, value in after.items():
        expected = (
            (1 - alpha) * start[key] + alpha * before[key] if value.is_floating_point() else before[key]
        )
        assert torch.allclose(value, expected, atol=1e-6), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["challenger", "champion"]  # no leftovers


def test_nothing_to_average_without_a_champion(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    _, challenger = champion_and_challenger
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws")
    assert finish_model(Strategy("replay", merge="wise"), challenger, None, ["a"], LABELS, settings) == {}
    assert _unchanged(before, challenger)


def test_logit_adjust_shifts_only_the_head_bias_by_the_training_priors(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    _, challenger = champion_and_challenger
    before = _weights(challenger)
    trained_on = ["a"] * 30 + ["b"] * 10  # "c" not seen this cycle
    settings = Settings(workspace=tmp_path / "ws", logit_adjust_tau=0.5)
    done = finish_model(
        Strategy("naive", bias="logit-adjust"), challenger, None, trained_on, LABELS, settings
    )
    assert done == {"logit_adjust_tau": 0.5}
    after = _weights(challenger)
    among_trained = logit_adjustment(class_priors(trained_on, ["a", "b"]), 0.5)
    shift = torch.tensor([*among_trained, 0.0], dtype=torch.float32)  # "c" had no rows: no prior to correct
    assert torch.allclose(after["classifier.bias"], before["classifier.bias"] + shift, atol=1e-6)
    assert shift[1] > 0 > shift[0]  # the rarer trained class is lifted, the commoner lowered
    assert all(torch.equal(before[k], v) for k, v in after.items() if k != "classifier.bias")


@pytest.mark.parametrize(
    "trained_on",
    [["b"] * 9, LABELS * 7, ["a", "b"] * 5],
    ids=["one class trained: nothing to balance", "balanced over all", "balanced over those trained"],
)
def test_logit_adjust_changes_nothing_without_an_imbalance(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path, trained_on: list[str]
) -> None:
    _, challenger = champion_and_challenger
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws")
    finish_model(Strategy("naive", bias="logit-adjust"), challenger, None, trained_on, LABELS, settings)
    assert _unchanged(before, challenger)


def test_the_default_strategy_finishes_nothing(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = champion_and_challenger
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws")
    assert finish_model(Strategy.from_settings(settings), challenger, champion, ["a"], LABELS, settings) == {}
    assert _unchanged(before, challenger)
