"""perennial's Prefect events: what they are called, which workspace they concern, how they are sent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from perennial.core.secrets import redact
from perennial.core.settings import Settings

BATCH_ARRIVED = "perennial.batch.arrived"
DRIFT_DETECTED = "perennial.drift.detected"
# What a cycle decided, for automations that tell people (deployments/notify.py).
MODEL_PROMOTED = "perennial.model.promoted"
MODEL_REJECTED = "perennial.model.rejected"
BATCH_QUARANTINED = "perennial.batch.quarantined"
# Resource label on drift events: "yes" when labelled batches are waiting (a retrain can help),
# "no" when labels are needed first. The training trigger matches only "yes".
RETRAIN_LABEL = "perennial.retrain"
# The flows' names, as deployments and the API know them (`<flow>/<deployment_name>`).
TRAINING_FLOW = "continual-training"
DRIFT_FLOW = "drift-monitor"


class NoServer(RuntimeError):
    """The Prefect server did not answer."""


def workspace_resource(settings: Settings) -> dict[str, str]:
    """The event resource naming this workspace, so one server can host several workspaces."""
    digest = hashlib.sha256(str(settings.root).encode()).hexdigest()[:12]
    return {
        "prefect.resource.id": f"perennial.workspace.{digest}",
        "prefect.resource.name": str(settings.root),
    }


def emit(
    settings: Settings, event: str, payload: dict[str, Any], labels: dict[str, str] | None = None
) -> str:
    """Send one event to the Prefect server now (synchronously, so a CLI can exit right after).

    Returns the event's id; raises NoServer with the URL it tried when the server does not answer.
    """
    import httpx
    from prefect.events import Event, Resource

    resource = Resource({**workspace_resource(settings), **(labels or {})})
    message = Event(event=event, resource=resource, payload=payload)
    url = f"{settings.prefect_api_url.rstrip('/')}/events"
    try:
        response = httpx.post(url, json=[message.model_dump(mode="json")], headers=auth_headers(), timeout=10)
    except httpx.HTTPError as error:
        raise NoServer(f"no Prefect server at {redact(settings.prefect_api_url)} ({error})") from error
    if response.status_code >= 400:
        raise NoServer(f"Prefect server at {url} refused the event: HTTP {response.status_code}")
    return str(message.id)


def auth_headers() -> dict[str, str]:
    """The credentials Prefect's own client would send: an API key, or a self-hosted auth string."""
    import base64

    key, basic = os.environ.get("PREFECT_API_KEY"), os.environ.get("PREFECT_API_AUTH_STRING")
    if key:
        return {"Authorization": f"Bearer {key}"}
    if basic:
        return {"Authorization": f"Basic {base64.b64encode(basic.encode()).decode()}"}
    return {}


def emit_batch_arrived(settings: Settings, path: Path) -> str:
    try:
        size: int | None = path.stat().st_size
    except OSError:  # already ingested and removed by a run: the event still names it
        size = None
    return emit(settings, BATCH_ARRIVED, {"file": str(path), "name": path.name, "bytes": size})


def server_is_up(settings: Settings, timeout: float = 1.0) -> bool:
    import httpx

    try:
        url = f"{settings.prefect_api_url.rstrip('/')}/health"
        return httpx.get(url, headers=auth_headers(), timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def training_deployment_registered(settings: Settings) -> bool:
    """Whether the Prefect API this process talks to has the training deployment (and so its
    triggers): only then does a drift event start a run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(f"{TRAINING_FLOW}/{settings.deployment_name}")
    except ObjectNotFound:
        return False
    return True
