"""The drift-monitor flow on a real workspace: tiny champion, monitored files, MLflow and Prefect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from perennial.core.settings import Settings
from perennial.data.vader import sample_domain
from perennial.flows.continual_training import continual_training
from perennial.flows.drift_monitor import drift_monitor
from perennial.monitoring.drift_check import (
    COOLDOWN,
    LABELS_NEEDED,
    NONE,
    RETRAIN,
    RETRAIN_NEEDED,
    SKIPPED,
    check_drift,
)
from perennial.registry import mlflow_registry as registry
from perennial.reporting.status import format_status, gather_status
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness", "one_torch_thread")]
DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def monitored(settings: Settings, drop) -> Settings:
    settings = settings.model_copy(update={"drift_min_rows": 20})
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    return settings


def _monitor(settings: Settings, texts: list[str]) -> None:
    shutil.rmtree(settings.monitor_dir, ignore_errors=True)
    settings.monitor_dir.mkdir(parents=True)
    pd.DataFrame({"text": texts}).to_csv(settings.monitor_dir / "inputs.csv", index=False)


def test_no_champion_or_too_few_inputs_is_skipped_with_the_reason(settings: Settings, drop) -> None:
    summary = drift_monitor(settings)
    assert summary.action == SKIPPED and "no champion yet" in summary.message
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    _monitor(settings, ["just one text"])
    summary = drift_monitor(settings)
    assert summary.action == SKIPPED and "only 1 monitored text" in summary.message


def test_inputs_like_the_training_data_raise_no_alarm(monitored: Settings) -> None:
    _monitor(monitored, pd.read_csv(DATA / "reviews.csv")["text"].tolist())
    summary = drift_monitor(monitored)
    assert summary.action == NONE and summary.drifted is False
    assert len(summary.report.tests) == 5


def test_a_real_shift_alarms_reports_and_asks_for_labels_then_retrains_once(monitored: Settings) -> None:
    _monitor(monitored, sample_domain("nyt", 80, seed=0)["text"].tolist())
    summary = drift_monitor(monitored)
    assert summary.drifted is True and summary.action == LABELS_NEEDED
    assert "labels are needed" in summary.message
    assert "text_length" in summary.triggered_by

    report = json.loads(Path(summary.report_path).read_text())
    assert report["champion_version"] == "1" and report["current_rows"] == 80
    assert Path(summary.plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Logged to MLflow against the champion's version, with the files.
    client = MlflowClient(monitored.mlflow_tracking_uri)
    run = client.get_run(summary.mlflow_run_id)
    assert run.data.tags["model_version"] == "1" and run.data.tags["perennial.kind"] == "drift"
    assert run.data.metrics["drift.drifted"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift")} == {
        f"drift/{Path(summary.report_path).name}",
        f"drift/{Path(summary.plot_path).name}",
    }
    assert registry.version_tags(monitored, "1")["drift.action"] == LABELS_NEEDED
    # Shown as a Prefect artifact, and by `perennial status`.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-report"]))
        )
    assert any("labels are needed" in (a.data or "") for a in artifacts)
    assert "LABELS NEEDED" in format_status(gather_status(monitored))

    # A labelled batch waits. No training deployment is served here, so the alarm asks for a manual
    # run; where one is served (can_trigger), it triggers a retrain, then the cooldown holds the next.
    shutil.copyfile(DATA / "films.jsonl", monitored.inbox / "films.jsonl")
    assert drift_monitor(monitored).action == RETRAIN_NEEDED
    assert check_drift(monitored, can_trigger=True).action == RETRAIN
    assert check_drift(monitored, can_trigger=True).action == COOLDOWN
    actions = [c.action for c in ledger_for(monitored).drift_checks()]
    assert actions == [LABELS_NEEDED, RETRAIN_NEEDED, RETRAIN, COOLDOWN]
