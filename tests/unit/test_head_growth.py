"""Head growth: a champion's head widened to labels it has never seen, kept a plain transformers model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from perennial.core.settings import Settings
from perennial.learning.head_growth import grow_head, output_layer
from perennial.learning.regularizers import ElasticWeightConsolidation, LearningWithoutForgetting
from perennial.learning.training import fine_tune, learned_outputs, load_for_training, starting_labels_known
from perennial.learning.weight_average import average_model_dirs
from perennial.models.inference import model_labels

OLD = ["negative", "positive"]
GROWN = ["negative", "positive", "mixed", "sarcastic"]
TEXTS = ["a good film", "a bad film", "not good at all", "great, just great", "fine I guess"]


def _logits(model: torch.nn.Module, tokenizer, texts=TEXTS) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits


@pytest.fixture
def champion(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A two-label model with a trained-looking head, saved as the registry would keep it."""
    folder = tmp_path / "champion"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    torch.manual_seed(3)
    with torch.no_grad():
        for param in model.classifier.parameters():
            param.add_(torch.randn_like(param))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_growth_keeps_the_old_labels_logits_and_adds_rows(champion: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(champion)
    tokenizer = AutoTokenizer.from_pretrained(champion)
    before = _logits(model, tokenizer)

    added = grow_head(model, GROWN)

    after = _logits(model, tokenizer)
    assert added == ["mixed", "sarcastic"]
    assert after.shape == (len(TEXTS), 4)
    torch.testing.assert_close(after[:, :2], before)  # old labels answer exactly as before
    assert model_labels(model) == GROWN and model.config.label2id["sarcastic"] == 3
    # New labels start below the old ones: the untrained rows take no inputs from them.
    bias = output_layer(model, 4)[2].bias
    assert bias is not None and torch.all(bias[2:] == bias[:2].min())


def test_growing_to_the_same_labels_changes_nothing(champion: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(champion)
    weight = model.classifier.weight.clone()
    assert grow_head(model, OLD) == []
    assert torch.equal(model.classifier.weight, weight)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(["positive", "negative", "mixed"], "reorders"), (["negative", "mixed"], "lacks the model's labels")],
)
def test_growth_refuses_a_set_that_reorders_or_drops_labels(
    champion: Path, labels: list[str], message: str
) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(champion)
    with pytest.raises(ValueError, match=message):
        grow_head(model, labels)


def test_a_grown_champion_saves_and_loads_as_a_plain_model_that_serves_new_labels(
    champion: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_for_training(champion, GROWN)
    assert starting_labels_known(champion, GROWN) == 2
    assert starting_labels_known(champion, OLD) is None
    with torch.no_grad():  # make the new label win on every input
        output_layer(model, 4)[2].bias[3] = 100.0
    model.save_pretrained(tmp_path / "grown")
    tokenizer.save_pretrained(tmp_path / "grown")

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "grown")
    assert model_labels(loaded) == GROWN
    predicted = _logits(loaded, AutoTokenizer.from_pretrained(tmp_path / "grown")).argmax(-1)
    assert [loaded.config.id2label[int(i)] for i in predicted] == ["sarcastic"] * len(TEXTS)


@pytest.mark.parametrize(
    ("tuning", "regularizer"),
    [
        ("full", LearningWithoutForgetting(1.0, 2.0)),
        ("full", ElasticWeightConsolidation(10.0, 4, 0)),
        ("full", None),
        ("lora", LearningWithoutForgetting(1.0, 2.0)),
        ("head", None),
    ],
)
def test_fine_tuning_from_a_champion_grows_its_head(
    champion: Path, tmp_path: Path, tuning: str, regularizer: object
) -> None:
    pairs = [("good", "positive"), ("meh", "mixed")] * 8
    frame = pd.DataFrame(
        [(f"{w} item {i}", label) for i, (w, label) in enumerate(pairs)], columns=["text", "label"]
    )
    settings = Settings(workspace=tmp_path, epochs=1, batch_size=8, max_length=16)
    out = tmp_path / "out"
    fine_tune(
        champion, GROWN[:3], frame, frame, settings.training, out, progress=False, tuning=tuning,
        regularizer=regularizer,  # type: ignore[arg-type]
    )  # fmt: skip
    grown = AutoModelForSequenceClassification.from_pretrained(out)
    assert model_labels(grown) == GROWN[:3]  # a plain model (LoRA merged) with the grown head
    assert grown.classifier.weight.shape == (3, grown.config.hidden_size)


def test_lwf_distils_only_the_labels_the_champion_knew(champion: Path) -> None:
    model, tokenizer = load_for_training(champion, GROWN)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")

    def collate(rows):
        return {k: v[list(rows)] for k, v in encoded.items()}

    lwf = LearningWithoutForgetting(weight=1.0, temperature=2.0)
    lwf.prepare(model, collate, len(TEXTS), batch_size=2, known_outputs=[0, 1])
    assert lwf.teacher_logits is not None and lwf.teacher_logits.shape == (len(TEXTS), 2)
    model.eval()  # no dropout: the same outputs as the teacher's
    logits = model(**collate(range(len(TEXTS)))).logits
    penalty = lwf.penalty(model, list(range(len(TEXTS))), logits)
    assert float(penalty.detach()) == pytest.approx(0.0, abs=1e-5)
    penalty = lwf.penalty(model, list(range(len(TEXTS))), logits + torch.tensor([0.0, 0.0, 5.0, -5.0]))
    assert float(penalty.detach()) == pytest.approx(0.0, abs=1e-5)  # moving the new labels costs nothing


def test_ewc_leaves_the_new_labels_rows_unanchored(champion: Path) -> None:
    model, tokenizer = load_for_training(champion, GROWN)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ewc = ElasticWeightConsolidation(weight=1.0, fisher_rows=5, seed=0)
    ewc.prepare(
        model,
        lambda rows: {k: v[list(rows)] for k, v in encoded.items()},
        len(TEXTS),
        2,
        known_outputs=[0, 1],
    )
    weight, bias = ewc.fisher["classifier.weight"], ewc.fisher["classifier.bias"]
    assert torch.all(weight[2:] == 0) and torch.all(bias[2:] == 0)
    assert weight[:2].sum() > 0  # the old labels stay anchored


def test_averaging_a_grown_challenger_with_its_champion(champion: Path, tmp_path: Path) -> None:
    model, tokenizer = load_for_training(champion, GROWN)
    torch.manual_seed(5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)  # as if a cycle had trained it
    model.save_pretrained(tmp_path / "challenger")
    tokenizer.save_pretrained(tmp_path / "challenger")
    challenger = model.state_dict()
    start = AutoModelForSequenceClassification.from_pretrained(champion).state_dict()

    average_model_dirs(champion, tmp_path / "challenger", 0.5, tmp_path / "merged")

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert model_labels(merged) == GROWN
    weights = merged.state_dict()
    expected_old = 0.5 * start["classifier.weight"] + 0.5 * challenger["classifier.weight"][:2]
    torch.testing.assert_close(weights["classifier.weight"][:2], expected_old)
    torch.testing.assert_close(weights["classifier.weight"][2:], challenger["classifier.weight"][2:])


def test_the_regularisers_hold_only_the_outputs_the_champion_learned(champion: Path, tmp_path: Path) -> None:
    """Grown rows were never trained; nor was a row the champion's head holds for a label that came
    with a rejected batch (its config's record of trained labels leaves it out)."""
    from perennial.learning.finishing import record_trained_labels

    assert learned_outputs(champion, GROWN) == [0, 1]
    assert learned_outputs(champion, OLD) is None  # a head it fully learned: hold everything
    model, tokenizer = load_for_training(champion, GROWN[:3])
    widened = tmp_path / "widened"
    model.save_pretrained(widened)
    tokenizer.save_pretrained(widened)
    record_trained_labels(widened, OLD)  # 'mixed' in the head, no row of it ever trained
    assert learned_outputs(widened, GROWN[:3]) == [0, 1]
    assert learned_outputs(widened, GROWN) == [0, 1]
    record_trained_labels(widened, GROWN[:3])
    assert learned_outputs(widened, GROWN[:3]) is None

    model, tokenizer = load_for_training(widened, GROWN[:3])
    record_trained_labels(widened, OLD)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ewc = ElasticWeightConsolidation(weight=1.0, fisher_rows=5, seed=0)
    ewc.prepare(model, lambda rows: {k: v[list(rows)] for k, v in encoded.items()}, len(TEXTS), 2, [0, 1])
    assert torch.all(ewc.fisher["classifier.weight"][2] == 0)
    assert ewc.fisher["classifier.weight"][:2].sum() > 0


@pytest.mark.parametrize(
    "labels", [["positive", "negative"], ["positive", "negative", "mixed"], ["mixed", *OLD]]
)
def test_a_champion_whose_labels_do_not_start_the_set_is_refused(champion: Path, labels: list[str]) -> None:
    """Loaded under other names its rows would answer for the wrong labels: a clear error instead.
    A model that records no trained labels is a base model, whose head is replaced, not grown."""
    from perennial.learning.finishing import record_trained_labels

    model, _ = load_for_training(champion, labels)  # as a base model: a fresh head for `labels`
    assert model_labels(model) == labels
    record_trained_labels(champion, OLD)  # as perennial keeps a champion
    with pytest.raises(ValueError, match="is not the start of the label set"):
        load_for_training(champion, labels)
