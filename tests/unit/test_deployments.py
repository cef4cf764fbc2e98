"""The deployments built from settings, and prefect.yaml describing the same ones for a work pool."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from perennial.core.settings import Settings
from perennial.deployments.definitions import build_deployments
from perennial.deployments.events import (
    BATCH_ARRIVED,
    DRIFT_DETECTED,
    DRIFT_FLOW,
    RETRAIN_LABEL,
    TRAINING_FLOW,
    workspace_resource,
)

PREFECT_YAML = Path(__file__).parents[2] / "deployments" / "prefect.yaml"


@pytest.fixture
def defaults(tmp_path: Path, no_outside_settings: None) -> Settings:
    return Settings(workspace=tmp_path / "ws")


def test_training_deployment_schedules_triggers_and_serialises(defaults: Settings) -> None:
    training, drift = build_deployments(defaults)
    assert (training.flow_name, training.name) == (TRAINING_FLOW, "perennial")
    assert (drift.flow_name, drift.name) == (DRIFT_FLOW, "perennial")
    assert [s.schedule.cron for s in training.schedules] == ["0 2 * * *"]
    assert [s.schedule.cron for s in drift.schedules] == ["0 * * * *"]
    assert training.concurrency_limit == 1
    # Settings travel as a parameter, with the workspace made absolute for the flow run's process.
    assert training.parameters["settings"]["workspace"] == str(defaults.root)
    assert training.parameters["settings"]["learning_rate"] == defaults.learning_rate

    batch, on_drift = training.triggers
    resource = workspace_resource(defaults)["prefect.resource.id"]
    assert batch.expect == {BATCH_ARRIVED}
    assert batch.match.model_dump()["prefect.resource.id"] == resource
    assert batch.posture == "Reactive" and batch.threshold == 1
    assert batch.within == batch.schedule_after == timedelta(seconds=30)
    assert batch.parameters["reason"] == "batch arrived: {{ event.payload.name }}"
    assert on_drift.expect == {DRIFT_DETECTED}
    assert on_drift.match.model_dump()[RETRAIN_LABEL] == "yes"
    assert on_drift.within == timedelta(hours=24)


def test_settings_change_the_deployments(tmp_path: Path, no_outside_settings: None) -> None:
    settings = Settings(
        workspace=tmp_path / "other",
        deployment_name="team-a",
        training_schedule="",
        drift_schedule="*/15 * * * *",
        schedule_timezone="Europe/Paris",
        burst_window_seconds=5,
        drift_cooldown_hours=2,
    )
    training, drift = build_deployments(settings)
    assert training.name == drift.name == "team-a"
    assert training.schedules == []  # an empty cron: event-driven only
    assert drift.schedules[0].schedule.cron == "*/15 * * * *"
    assert drift.schedules[0].schedule.timezone == "Europe/Paris"
    assert training.triggers[0].within == timedelta(seconds=5)
    assert training.triggers[1].within == timedelta(hours=2)
    default_resource = workspace_resource(Settings(workspace=tmp_path / "ws"))
    assert workspace_resource(settings) != default_resource  # one server, several workspaces


def test_prefect_yaml_describes_the_same_deployments(defaults: Settings) -> None:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    by_flow = {d["entrypoint"].rsplit(":", 1)[1]: d for d in document["deployments"]}
    built = {d.flow_name.replace("-", "_"): d for d in build_deployments(defaults)}
    assert by_flow.keys() == built.keys()
    for function, spec in by_flow.items():
        deployment = built[function]
        module = Path(spec["entrypoint"].split(":")[0])
        assert (PREFECT_YAML.parents[1] / module).is_file()
        assert spec["name"] == deployment.name
        assert spec["concurrency_limit"] == deployment.concurrency_limit
        assert [(s["cron"], s["timezone"]) for s in spec["schedules"]] == [
            (s.schedule.cron, s.schedule.timezone) for s in deployment.schedules
        ]
        assert set(spec["tags"]) == set(deployment.tags)
        triggers = spec.get("triggers", [])
        assert len(triggers) == len(deployment.triggers or [])
        for written, trigger in zip(triggers, deployment.triggers or [], strict=True):
            assert set(written["expect"]) == trigger.expect
            assert (written["posture"], written["threshold"]) == (trigger.posture, trigger.threshold)
            assert timedelta(seconds=written["within"]) == trigger.within
            assert timedelta(seconds=written.get("schedule_after", 0)) == trigger.schedule_after
            assert written["parameters"]["reason"] == trigger.parameters["reason"]
            extra = {k: v for k, v in trigger.match.model_dump().items() if k != "prefect.resource.id"}
            assert {k: v for k, v in written["match"].items() if k != "prefect.resource.id"} == extra
            assert written["match"]["prefect.resource.id"] == "perennial.workspace.*"
            assert written["for_each"] == ["prefect.resource.id"]  # each workspace its own window
