"""The two deployments perennial serves, built from settings, so code and `prefect.yaml` agree.

- `continual-training/<deployment_name>`: nightly (cron), on `perennial.batch.arrived`, and on
  `perennial.drift.detected` when labelled batches are waiting. Concurrency limit 1: runs queue
  rather than overlap, so a queued run trains from the champion the previous run promoted.
- `drift-monitor/<deployment_name>`: hourly (cron), compares recent inputs with the champion's data.

A burst of files yields one run: the batch trigger fires on the first event, ignores the rest of
its window (`within`), and schedules the run for the window's end (`schedule_after`), by which time
every file of the burst is in the inbox.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from perennial.core.settings import ServerSettings, Settings
from perennial.deployments.events import (
    BATCH_ARRIVED,
    DRIFT_DETECTED,
    RETRAIN_LABEL,
    workspace_resource,
)


def settings_parameter(settings: Settings) -> dict[str, Any]:
    """The settings as a deployment parameter: visible in the Prefect UI, editable per custom run."""
    # The workspace absolute: a flow run's working directory is not the serving process's.
    return {**settings.model_dump(mode="json"), "workspace": str(settings.root)}


def training_triggers(settings: Settings) -> list[Any]:
    from prefect.events import DeploymentEventTrigger
    from prefect.events.schemas.automations import Posture

    servers = settings.servers
    resource_id = workspace_resource(settings)["prefect.resource.id"]
    window = timedelta(seconds=servers.burst_window_seconds)
    parameters = settings_parameter(settings)
    return [
        DeploymentEventTrigger(
            name=f"{servers.deployment_name}: train on new batches",
            description="One run per burst of files: the first event starts the window.",
            expect={BATCH_ARRIVED},
            match={"prefect.resource.id": resource_id},
            posture=Posture.Reactive,
            threshold=1,
            within=window,
            schedule_after=window,
            parameters={"settings": parameters, "reason": "batch arrived: {{ event.payload.name }}"},
        ),
        DeploymentEventTrigger(
            name=f"{servers.deployment_name}: train on drift",
            description="Drift with labelled batches waiting; at most once per cooldown.",
            expect={DRIFT_DETECTED},
            match={"prefect.resource.id": resource_id, RETRAIN_LABEL: "yes"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(hours=servers.drift_cooldown_hours),
            parameters={"settings": parameters, "reason": "drift detected"},
        ),
    ]


def _schedules(cron: str, servers: ServerSettings) -> list[Any]:
    from prefect.schedules import Cron

    return [Cron(cron, timezone=servers.schedule_timezone)] if cron.strip() else []


def training_deployment(settings: Settings) -> Any:
    from perennial.flows.continual_training import continual_training

    return continual_training.to_deployment(
        name=settings.servers.deployment_name,
        description="Ingest, validate, fine-tune, evaluate against the champion, promote or reject.",
        schedules=_schedules(settings.training_schedule, settings.servers),
        parameters={"settings": settings_parameter(settings), "reason": "schedule or manual run"},
        triggers=training_triggers(settings),
        concurrency_limit=1,
        tags=["perennial", "training"],
    )


def drift_deployment(settings: Settings) -> Any:
    from perennial.flows.drift_monitor import drift_monitor

    return drift_monitor.to_deployment(
        name=settings.servers.deployment_name,
        description="Recent production inputs against the champion's reference data.",
        schedules=_schedules(settings.drift_schedule, settings.servers),
        parameters={"settings": settings_parameter(settings)},
        concurrency_limit=1,
        tags=["perennial", "drift"],
    )


def build_deployments(settings: Settings) -> list[Any]:
    return [training_deployment(settings), drift_deployment(settings)]
