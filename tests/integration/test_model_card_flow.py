"""Every registered version gets a model card: written to reports/, logged to its run, tagged."""

from __future__ import annotations

import html
import re

import pytest
from mlflow import MlflowClient

from perennial.core.settings import Settings
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_each_version_gets_a_card_naming_its_champion_decision_and_slices(settings: Settings, drop) -> None:
    for fixture in ("reviews.csv", "films.jsonl"):
        drop(settings, fixture)
        state = continual_training(settings, return_state=True)
        assert state.is_completed(), state.message

    cards = settings.reports_dir / "model_cards"
    for name in ("v1.md", "v1.html", "v2.md", "v2.html"):
        assert (cards / name).is_file(), name
    first, second = ledger_for(settings).cycles()
    assert (first.challenger_version, second.challenger_version) == ("1", "2")

    v1 = (cards / "v1.md").read_text(encoding="utf-8")
    assert v1.startswith(f"# {settings.registered_model_name} v1\n")
    assert "compared with no champion" in v1

    v2 = (cards / "v2.md").read_text(encoding="utf-8")
    assert v2.startswith(f"# {settings.registered_model_name} v2\n")
    assert "compared with champion v1" in v2
    assert f"**{second.decision}**" in v2
    # Values from data are Markdown-escaped in the card ("\\[+0.0", "&lt;"): compare the text it
    # renders as.
    shown = html.unescape(re.sub(r"\\(.)", r"\1", v2))
    assert second.reasons and all(f"- {reason}" in shown for reason in second.reasons)
    for slice_name in ("reviews", "films"):
        assert f"| {slice_name}" in v2  # in the lineage and evaluation tables
    assert "| films (new) |" in v2
    assert "films.jsonl" in v2 and "reviews.csv" in v2
    assert "warm-started from: champion v1" in v2
    assert "<table>" in (cards / "v2.html").read_text(encoding="utf-8")

    logged = {
        a.path for a in MlflowClient(settings.mlflow_tracking_uri).list_artifacts(second.run_id, "model_card")
    }
    assert logged == {"model_card/v2.md", "model_card/v2.html"}
    assert registry.version_tags(settings, "2")["model_card"] == "model_card/v2.md"
    assert registry.version_tags(settings, "1")["model_card"] == "model_card/v1.md"
    # The champion's folder carries the Hugging Face card: metadata with each slice's test scores.
    from huggingface_hub import ModelCard

    from perennial.registry.champion import champion_model_dir

    hub = ModelCard.load(champion_model_dir(settings, "1") / "README.md")
    assert hub.data.library_name == "transformers"
    assert {r.dataset_name for r in hub.data.eval_results} == {"reviews"}
    # The card is what MLflow's registry page shows for the version.
    version = MlflowClient(settings.mlflow_tracking_uri).get_model_version(
        settings.registered_model_name, "2"
    )
    assert version.description == v2
