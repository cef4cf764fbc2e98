"""The drift monitor: test recent inputs against the champion, report, and raise the alarm."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from perennial.core.console import set_up_in_flow
from perennial.core.environment import configure
from perennial.core.settings import Settings
from perennial.deployments.events import (
    DRIFT_DETECTED,
    RETRAIN_LABEL,
    training_deployment_registered,
    workspace_resource,
)
from perennial.monitoring.drift_check import RETRAIN, DriftSummary, drift_markdown
from perennial.tasks.drift import check_drift

# What the event carries: enough for an automation or a dashboard to act without opening the report.
EVENT_FIELDS = (
    "champion_version", "action", "message", "score", "triggered_by", "pending_batches", "report_path",
)  # fmt: skip


@flow(name="drift-monitor")
def drift_monitor(settings: Settings | None = None) -> DriftSummary:
    """Check drift once. On drift, emit `perennial.drift.detected`: labelled `perennial.retrain=yes`
    (the training deployment's trigger) when batches are waiting and the cooldown allows it."""
    settings = settings or Settings()
    configure(settings)  # a worker's flow-run process has not done it (offline, HF_HOME, folders)
    set_up_in_flow(settings.root)  # nor chosen its console and log file
    logger = get_run_logger()
    summary = check_drift(settings, can_trigger=training_deployment_registered(settings))
    logger.info("drift check: %s", summary.message)
    create_markdown_artifact(
        key="drift-report", markdown=drift_markdown(summary), description=summary.message
    )
    if summary.drifted:
        emit_event(
            event=DRIFT_DETECTED,
            resource={
                **workspace_resource(settings),
                RETRAIN_LABEL: "yes" if summary.action == RETRAIN else "no",
            },
            payload={key: summary.to_json()[key] for key in EVENT_FIELDS},
        )
        logger.warning("%s emitted: %s", DRIFT_DETECTED, summary.message)
    return summary
