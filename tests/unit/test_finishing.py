"""The strategy's finishing steps on a saved model: weight averaging with the champion it started
from, and the head's bias correction for the label priors it trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification

from perennial.core.settings import Settings
from perennial.learning.bias_correction import class_priors, logit_adjustment
from perennial.learning.finishing import (
    TRAINED_LABELS_KEY,
    finish_model,
    record_trained_labels,
    trained_labels,
)
from perennial.learning.strategy import Strategy

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
    done = finish_model(
        Strategy("replay", merge="wise"), challenger, champion, ["a", "b"], LABELS, settings.finishing
    )
    assert done == {"wise_alpha": alpha}
    after = _weights(challenger)
    for key, value in after.items():
        expected = (
            (1 - alpha) * start[key] + alpha * before[key] if value.is_floating_point() else before[key]
        )
        assert torch.allclose(value, expected, atol=1e-6), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["challenger", "champion"]  # no leftovers


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_wise_keeps_the_challengers_rows_for_classes_the_champion_never_trained_on(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path, alpha: float
) -> None:
    # The champion trained on a and b; this cycle brought c. c's output row (weight and bias) is the
    # challenger's; everything else, a and b's rows included, is the plain average.
    champion, challenger = champion_and_challenger
    before, start = _weights(challenger), _weights(champion)
    settings = Settings(workspace=tmp_path / "ws", wise_alpha=alpha)
    done = finish_model(
        Strategy("replay", merge="wise"), challenger, champion, ["a", "b", "c"], LABELS, settings.finishing,
        champion_labels={"a", "b"},
    )  # fmt: skip
    assert done == {"wise_alpha": alpha, "wise_new_classes_kept": 1.0}
    after = _weights(challenger)
    for key, value in after.items():
        if not value.is_floating_point():
            continue
        mean = (1 - alpha) * start[key] + alpha * before[key]
        if key.startswith("classifier."):
            torch.testing.assert_close(value[2], before[key][2])  # c: the challenger's own
            torch.testing.assert_close(value[:2], mean[:2], atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(value, mean, atol=1e-6, rtol=0)


def test_wise_averages_every_row_when_the_champion_knew_every_trained_class(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    # c is declared but nobody trained on it: its row is averaged like the rest (nothing to keep).
    champion, challenger = champion_and_challenger
    before, start = _weights(challenger), _weights(champion)
    settings = Settings(workspace=tmp_path / "ws", wise_alpha=0.5)
    done = finish_model(
        Strategy("replay", merge="wise"), challenger, champion, ["a", "b"], LABELS, settings.finishing,
        champion_labels={"a", "b"},
    )  # fmt: skip
    assert done == {"wise_alpha": 0.5}
    for key, value in _weights(challenger).items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (start[key] + before[key]) / 2, atol=1e-6, rtol=0)


def test_every_finished_model_records_the_classes_it_and_its_ancestors_trained_on(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = champion_and_challenger
    settings = Settings(workspace=tmp_path / "ws")
    assert trained_labels(champion) is None  # saved before models recorded it: unknown
    # From the base model (no champion): what this cycle trained on, in label order.
    finish_model(Strategy("replay"), champion, None, ["b", "a", "b"], LABELS, settings.finishing)
    assert trained_labels(champion) == {"a", "b"}
    assert json.loads((champion / "config.json").read_text())[TRAINED_LABELS_KEY] == ["a", "b"]
    # Warm-started: the champion's classes and this cycle's, even with no replay of the old ones.
    finish_model(Strategy("naive"), challenger, champion, ["c"], LABELS, settings.finishing)
    assert trained_labels(challenger) == {"a", "b", "c"}
    BertForSequenceClassification.from_pretrained(challenger)  # still a loadable transformers model


def test_an_unknown_history_stays_unknown(champion_and_challenger: tuple[Path, Path], tmp_path: Path) -> None:
    champion, challenger = champion_and_challenger
    finish_model(
        Strategy("replay"), challenger, champion, ["c"], LABELS, Settings(workspace=tmp_path / "ws").finishing
    )
    assert trained_labels(challenger) is None  # not guessed as {"c"}: that would call a and b new
    assert trained_labels(tmp_path / "missing") is None


def test_wise_reads_the_champions_classes_from_its_config(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = champion_and_challenger
    record_trained_labels(champion, ["a", "b"])
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws", wise_alpha=0.5)
    # The fallback (memory labels, here claiming c is known) is ignored when the config says.
    done = finish_model(
        Strategy("replay", merge="wise"), challenger, champion, ["a", "c"], LABELS, settings.finishing,
        champion_labels={"a", "b", "c"},
    )  # fmt: skip
    assert done == {"wise_alpha": 0.5, "wise_new_classes_kept": 1.0}
    after = _weights(challenger)
    torch.testing.assert_close(after["classifier.weight"][2], before["classifier.weight"][2])
    assert trained_labels(challenger) == {"a", "b", "c"}


def test_nothing_to_average_without_a_champion(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    _, challenger = champion_and_challenger
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws")
    assert (
        finish_model(Strategy("replay", merge="wise"), challenger, None, ["a"], LABELS, settings.finishing)
        == {}
    )
    assert _unchanged(before, challenger)


def test_logit_adjust_shifts_only_the_head_bias_by_the_training_priors(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    _, challenger = champion_and_challenger
    before = _weights(challenger)
    trained_on = ["a"] * 30 + ["b"] * 10  # "c" not seen this cycle
    settings = Settings(workspace=tmp_path / "ws", logit_adjust_tau=0.5)
    done = finish_model(
        Strategy("naive", bias="logit-adjust"), challenger, None, trained_on, LABELS, settings.finishing
    )
    assert done == {"logit_adjust_tau": 0.5}
    after = _weights(challenger)
    among_trained = logit_adjustment(class_priors(trained_on, ["a", "b"]), 0.5)
    shift = torch.tensor([*among_trained, 0.0], dtype=torch.float32)  # "c" had no rows: no prior to correct
    assert torch.allclose(after["classifier.bias"], before["classifier.bias"] + shift, atol=1e-6)
    assert shift[1] > 0 > shift[0]  # the rarer trained class is lifted, the commoner lowered
    assert all(torch.equal(before[k], v) for k, v in after.items() if k != "classifier.bias")


def test_a_recorded_logit_adjustment_is_taken_out_before_the_next_cycle_trains(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    # Cycle 1 corrects its head and records the shift; a warm start from it (training, or a weight
    # average) sees the head as training left it, so cycles never stack their shifts.
    from perennial.learning.bias_correction import ADJUSTMENT_KEY
    from perennial.learning.training import load_for_training

    champion, challenger = champion_and_challenger
    trained = _weights(champion)
    settings = Settings(workspace=tmp_path / "ws")
    finish_model(
        Strategy("naive", bias="logit-adjust"),
        champion,
        None,
        ["a"] * 30 + ["b"] * 10,
        LABELS,
        settings.finishing,
    )
    recorded = json.loads((champion / "config.json").read_text())[ADJUSTMENT_KEY]
    shifted = _weights(champion)["classifier.bias"]
    assert len(recorded) == 3 and not torch.allclose(shifted, trained["classifier.bias"])
    torch.testing.assert_close(
        shifted, trained["classifier.bias"] + torch.tensor(recorded), atol=1e-6, rtol=0
    )

    model, _ = load_for_training(champion, LABELS)
    torch.testing.assert_close(model.classifier.bias.detach(), trained["classifier.bias"], atol=1e-6, rtol=0)
    assert getattr(model.config, ADJUSTMENT_KEY) is None  # a model saved from it records nothing

    # WiSE at alpha 0 is the champion as it trained, not as it was corrected.
    finish_model(Strategy("replay", merge="wise"), challenger, champion, ["a", "b"], LABELS,
                 settings.model_copy(update={"wise_alpha": 0.0}).finishing)  # fmt: skip
    torch.testing.assert_close(
        _weights(challenger)["classifier.bias"], trained["classifier.bias"], atol=1e-6, rtol=0
    )


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
    finish_model(
        Strategy("naive", bias="logit-adjust"), challenger, None, trained_on, LABELS, settings.finishing
    )
    assert _unchanged(before, challenger)


def test_the_default_strategy_finishes_nothing(
    champion_and_challenger: tuple[Path, Path], tmp_path: Path
) -> None:
    champion, challenger = champion_and_challenger
    before = _weights(challenger)
    settings = Settings(workspace=tmp_path / "ws")
    assert (
        finish_model(
            Strategy.from_settings(settings), challenger, champion, ["a"], LABELS, settings.finishing
        )
        == {}
    )
    assert _unchanged(before, challenger)
