"""The Hugging Face model card: README.md metadata the Hub tooling reads."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from perennial.core.settings import DEFAULT_BASE_MODEL
from perennial.reporting.hub_card import DEFAULT_BASE_REPO, hub_base_model, hub_model_card

SLICES = {
    "reviews": {"accuracy": 0.91234, "macro_f1": 0.9, "n": 20},
    "films": {"accuracy": 0.8, "macro_f1": 0.75},
}


def test_the_card_carries_the_slices_scores_and_the_base_model() -> None:
    card = hub_model_card("perennial-classifier", DEFAULT_BASE_MODEL, ["negative", "positive"], SLICES)

    loaded = ModelCard(str(card))  # as a reader of README.md parses it
    data = loaded.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.base_model == DEFAULT_BASE_REPO and data.license == "apache-2.0"
    scores = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert scores == {
        ("reviews", "accuracy"): 0.9123,
        ("reviews", "f1"): 0.9,
        ("films", "accuracy"): 0.8,
        ("films", "f1"): 0.75,
    }
    assert "`negative`, `positive`" in loaded.text


def test_a_local_base_model_is_not_named_as_a_hub_repository(tmp_path: Path) -> None:
    assert hub_base_model(str(tmp_path)) == (None, None)
    assert hub_base_model("acme/encoder") == ("acme/encoder", None)
    card = ModelCard(str(hub_model_card("m", str(tmp_path), ["a", "b"], {})))
    assert card.data.base_model is None and card.data.license is None and not card.data.eval_results


def test_hostile_labels_stay_inside_their_code_spans() -> None:
    text = ModelCard(str(hub_model_card("m", DEFAULT_BASE_MODEL, ["a`b", "<script>x</script>"], SLICES))).text
    assert "``a`b``" in text and "`<script>x</script>`" in text
