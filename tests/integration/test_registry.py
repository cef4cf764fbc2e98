"""perennial.registry.mlflow_registry against a real MLflow (sqlite store in a temp workspace) and a
tiny BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.registry import mlflow_registry as registry

pytestmark = pytest.mark.integration


def _register(settings: Settings, model_dir: Path, batch_id: str, **tags: str) -> tuple[str, str]:
    run_id = registry.start_cycle_run(settings, batch_id, {"learning_rate": 1e-3, "epochs": 2})
    version = registry.register_model(settings, run_id, model_dir, {"batch_id": batch_id, **tags})
    registry.end_run(run_id)
    return run_id, version


def _stored_weights(settings: Settings, version: str) -> Path:
    """The version's safetensors file inside the workspace artifact store."""
    from mlflow import MlflowClient

    registry.connect(settings)
    mv = MlflowClient().get_model_version(settings.registered_model_name, version)
    model_id = mv.source.removeprefix("models:/")
    files = list(settings.mlflow_artifacts_dir.glob(f"models/{model_id}/artifacts/model/model.safetensors"))
    assert len(files) == 1, files
    return files[0]


def test_no_champion_before_anything_is_registered(settings: Settings) -> None:
    assert registry.champion(settings) is None
    assert registry.list_versions(settings) == []
    registry.delete_alias(settings, registry.CHAMPION)  # missing model and alias: no error


def test_register_promote_download_and_verify(settings: Settings, tiny_model_dir: Path) -> None:
    run_id, version = _register(settings, tiny_model_dir, "a" * 64, stage_note="first")
    assert version == "1"
    assert registry.version_tags(settings, version) == {"batch_id": "a" * 64, "stage_note": "first"}
    assert registry.champion(settings) is None  # registering alone does not promote

    registry.set_alias(settings, registry.CHAMPION, version)
    info = registry.champion(settings)
    assert info is not None
    assert (info.version, info.run_id) == ("1", run_id)
    assert info.tags["batch_id"] == "a" * 64

    # Artifacts stay inside the workspace.
    assert _stored_weights(settings, version).is_relative_to(settings.root)

    folder = registry.download_model(settings, version, settings.models_dir / "champion")
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    readme = (folder / "README.md").read_text(encoding="utf-8")  # a Hugging Face folder's card
    assert readme.startswith("---\n") and "library_name: transformers" in readme
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prediction = pipeline("text-classification", model=model, tokenizer=tokenizer)("a fine movie")[0]
    assert prediction["label"] in {"negative", "positive"}

    with pytest.raises(registry.RegistryError, match="not empty"):
        registry.download_model(settings, version, folder)
    registry.verify_loadable(settings, version)

    registry.set_version_tags(settings, version, {"promoted": "true"})
    assert registry.version_tags(settings, version)["promoted"] == "true"

    # The registry's copy: weights readable by others (not 0600), a licence note that is true.
    import mlflow

    raw = Path(mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model_name}/{version}"))
    stored = next((Path(settings.root) / "mlartifacts").rglob("model.safetensors"))  # the registry's copy
    assert stored.stat().st_mode & 0o044 == 0o044, oct(stored.stat().st_mode)
    licence = (raw / "LICENSE.txt").read_text(encoding="utf-8")
    assert "huggingface.co/" not in licence and settings.base_model in licence


def test_served_pyfunc_predicts_a_list_in_batches(
    settings: Settings, pretrained_tiny_model_dir: Path
) -> None:
    """What `mlflow models serve` loads batches a list of texts, and gives each text the label and
    score it gets alone (padding to the batch's longest text changes nothing)."""
    import mlflow

    _, version = _register(settings, pretrained_tiny_model_dir, "served")
    uri = f"models:/{settings.registered_model_name}/{version}"
    config = mlflow.models.get_model_info(uri).flavors["python_function"].get("config")
    assert config == {"batch_size": registry.SERVING_BATCH_SIZE}
    assert registry.SERVING_BATCH_SIZE > 1

    # Two full batches and a partial one, of very different lengths.
    texts = [
        ("a fine, warm movie " if i % 2 else "a dull and tiresome film ") * (1 + i % 7) + str(i)
        for i in range(2 * registry.SERVING_BATCH_SIZE + 3)
    ]
    batched = mlflow.pyfunc.load_model(uri).predict(texts)
    alone = mlflow.pyfunc.load_model(uri, model_config={"batch_size": 1}).predict(texts)
    assert len(batched) == len(texts)
    assert set(batched["label"]) <= {"negative", "positive"}
    assert batched["label"].tolist() == alone["label"].tolist()
    assert batched["score"].to_numpy() == pytest.approx(alone["score"].to_numpy(), abs=1e-4)


def test_second_version_moves_the_alias(settings: Settings, tiny_model_dir: Path) -> None:
    _, first = _register(settings, tiny_model_dir, "batch-one")
    registry.set_alias(settings, registry.CHAMPION, first)
    run_two, second = _register(settings, tiny_model_dir, "batch-two")
    registry.set_alias(settings, "challenger", second)
    registry.set_alias(settings, registry.CHAMPION, second)
    registry.set_alias(settings, "previous-champion", first)

    rows = registry.list_versions(settings)
    assert [row["version"] for row in rows] == ["1", "2"]
    assert rows[0]["aliases"] == ["previous-champion"]
    assert rows[1]["aliases"] == ["challenger", "champion"]
    assert rows[1]["run_id"] == run_two
    assert rows[1]["tags"] == {"batch_id": "batch-two"}
    assert rows[0]["created"] <= rows[1]["created"]

    registry.delete_alias(settings, "challenger")
    registry.delete_alias(settings, "challenger")  # second time: no error
    assert registry.list_versions(settings)[1]["aliases"] == ["champion"]
    with pytest.raises(registry.RegistryError, match="no version 7"):
        registry.set_alias(settings, registry.CHAMPION, "7")


def test_corrupted_version_fails_verification_and_champion_is_kept(
    settings: Settings, tiny_model_dir: Path
) -> None:
    _, good = _register(settings, tiny_model_dir, "good")
    registry.set_alias(settings, registry.CHAMPION, good)
    _, bad = _register(settings, tiny_model_dir, "bad")
    weights = _stored_weights(settings, bad)
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated in the artifact store

    with pytest.raises(registry.RegistryError, match=f"version {bad} is not loadable"):
        registry.verify_loadable(settings, bad)
    info = registry.champion(settings)
    assert info is not None and info.version == good
    registry.verify_loadable(settings, good)


def test_register_refuses_broken_or_unsafe_folders(
    settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    run_id = registry.start_cycle_run(settings, "broken", {})
    garbage = Path(shutil.copytree(tiny_model_dir, tmp_path / "garbage"))
    (garbage / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(registry.RegistryError, match="cannot load"):
        registry.register_model(settings, run_id, garbage, {})

    pickled = Path(shutil.copytree(tiny_model_dir, tmp_path / "pickled"))
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(registry.RegistryError, match="no safetensors"):
        registry.register_model(settings, run_id, pickled, {})
    registry.end_run(run_id, "FAILED")
    assert registry.list_versions(settings) == []


def test_run_params_metrics_tags_and_artifacts_read_back(settings: Settings, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_id = registry.start_cycle_run(settings, "0123456789abcdef", {"epochs": 2, "base": "tiny"})
    registry.log_metrics(run_id, {"val_accuracy": 0.5}, step=0)
    registry.log_metrics(run_id, {"val_accuracy": 0.75}, step=1)
    registry.log_metrics(run_id, {"test_accuracy": 0.7})
    registry.set_run_tags(run_id, {"decision": "promoted"})
    registry.log_dict_artifact(run_id, {"gate": {"passed": True}}, "gate.json")
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    registry.log_file_artifact(run_id, report, "reports")
    with pytest.raises(FileNotFoundError):
        registry.log_file_artifact(run_id, tmp_path / "missing.txt")
    registry.end_run(run_id, "FAILED")
    with pytest.raises(ValueError):
        registry.end_run(run_id, "DONE")

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.run_name == "cycle-0123456789ab"
    assert run.info.status == "FAILED"
    assert run.data.params == {"epochs": "2", "base": "tiny"}
    assert run.data.metrics == {"val_accuracy": 0.75, "test_accuracy": 0.7}
    assert [m.value for m in client.get_metric_history(run_id, "val_accuracy")] == [0.5, 0.75]
    assert run.data.tags["batch_id"] == "0123456789abcdef"
    assert run.data.tags["decision"] == "promoted"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == registry.EXPERIMENT_NAME
    assert experiment.artifact_location == settings.mlflow_artifacts_dir.as_uri()

    paths = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "reports")
    }
    assert {"gate.json", "reports/report.md"} <= paths
    local = Path(client.download_artifacts(run_id, "gate.json", str(tmp_path)))
    assert json.loads(local.read_text()) == {"gate": {"passed": True}}
