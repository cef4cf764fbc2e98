"""Retention through real cycles: Prefect, the MLflow sqlite registry and its artifact store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from perennial.core.settings import Settings
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import RollbackRefused, rollback
from perennial.registry.retention import DELETED, FILES_TAG
from perennial.serving.predict import predict_texts

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def _files(settings: Settings, version: str) -> Path:
    client = registry.connect(settings)
    uri = client.get_model_version_download_uri(settings.registered_model_name, version)
    return Path(urlparse(uri).path)


def test_older_rejected_challengers_lose_their_files_and_nothing_else(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    # Every later challenger is rejected (no model gains a full point); keep only the newest one.
    strict = settings.model_copy(update={"min_delta": 1.0, "keep_rejected_models": 1})
    drop(strict, "films.jsonl")
    assert continual_training(strict, return_state=True).is_completed()
    v2_files = _files(settings, "2")
    assert (v2_files / "model" / "model.safetensors").is_file()  # one rejected: within the budget

    drop(strict, "dated.csv")
    assert continual_training(strict, return_state=True).is_completed()

    versions = {v["version"]: v for v in registry.list_versions(settings)}
    assert [versions[n]["tags"]["decision"] for n in ("1", "2", "3")] == ["promote", "reject", "reject"]
    # v2's weights are gone from the artifact store and the workspace; its record stays readable.
    assert versions["2"]["tags"][FILES_TAG] == DELETED
    assert not (v2_files / "model" / "model.safetensors").exists()
    assert not (settings.models_dir / "v2").exists()
    assert versions["2"]["tags"]["reasons"] and versions["2"]["run_id"]
    # v3 (the newest rejected, the challenger alias) and v1 (the champion) keep everything.
    assert FILES_TAG not in versions["3"]["tags"] and FILES_TAG not in versions["1"]["tags"]
    assert (_files(settings, "3") / "model" / "model.safetensors").is_file()
    assert (_files(settings, "1") / "model" / "model.safetensors").is_file()
    assert versions["1"]["aliases"] == ["champion"] and versions["3"]["aliases"] == ["challenger"]

    # The champion still serves, and a rollback to the pruned version is refused with the reason.
    version, rows = predict_texts(settings, ["the plot was great"])
    assert version == "1" and rows[0]["label"] in {"negative", "positive"}
    registry.set_alias(settings, "champion", "3")  # so that v2 is not the current champion
    with pytest.raises(RollbackRefused, match="retention policy"):
        rollback(settings, to="2")
    assert registry.champion(settings).version == "3"


def test_retention_can_be_turned_off(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    keep_all = settings.model_copy(
        update={"min_delta": 1.0, "keep_rejected_models": 0, "prune_rejected_models": False}
    )
    drop(keep_all, "films.jsonl")
    assert continual_training(keep_all, return_state=True).is_completed()
    drop(keep_all, "dated.csv")
    assert continual_training(keep_all, return_state=True).is_completed()
    for n in ("2", "3"):
        assert FILES_TAG not in registry.version_tags(settings, n)
        assert (_files(settings, n) / "model" / "model.safetensors").is_file()
