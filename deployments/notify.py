"""Tell people what a cycle decided: a Prefect automation that posts perennial's events to a webhook.

Each cycle emits `perennial.model.promoted` or `perennial.model.rejected`, and a bad batch
`perennial.batch.quarantined` (flows/continual_training.py), about its workspace's resource. An
automation on the Prefect server matches them and calls a Webhook block (Slack, Teams, a chat bot, an
incident tool: anything that takes a JSON POST). `perennial notify --webhook URL` creates both; the
same can be made by hand in Prefect's UI (Automations, trigger "custom", the event names above).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import cast
from uuid import UUID

from perennial.core.settings import Settings
from perennial.deployments.events import (
    BATCH_QUARANTINED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    workspace_resource,
)

EVENTS = {"promoted": MODEL_PROMOTED, "rejected": MODEL_REJECTED, "quarantined": BATCH_QUARANTINED}

# The JSON body posted, a Jinja template the Prefect server fills from the event; every value from
# data goes through `tojson`, so a quote in a file name or a reason cannot break the JSON. `text` is
# what Slack and Teams incoming webhooks show; the rest is for a program that reads it.
PAYLOAD = (
    "{%- set p = event.payload -%}"
    "{%- set text -%}perennial {{ event.resource['prefect.resource.name'] }}: {{ event.event }}: "
    "{{ p.source }}{% if p.version %}: v{{ p.version }} {{ p.decision }}, "
    "champion v{{ p.champion_version }}{% endif %}"
    "{% if p.reason %} ({{ p.reason }}){% endif %}{%- endset -%}"
    # Slack reads <...> as links and mentions (<!channel>): its escapes for & < > in `text`.
    "{\"text\": {{ text | replace('&', '&amp;') | replace('<', '&lt;') | replace('>', '&gt;') | tojson }}, "
    '"event": {{ event.event | tojson }}, '
    "\"workspace\": {{ event.resource['prefect.resource.name'] | tojson }}, "
    '"payload": {{ p | tojson }}}'
)


def check_webhook_url(url: str, allow_private_urls: bool = False) -> None:
    """ValueError when `url` is not an http(s) address, or (unless allowed) one Prefect's server
    would refuse to call (a private, local or metadata address): said now, not at the first event."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a webhook address: {url!r} (give an http:// or https:// URL)")
    if not allow_private_urls:
        from prefect.utilities.urls import validate_restricted_url

        try:
            validate_restricted_url(url)
        except ValueError as error:
            raise ValueError(f"{error} (--allow-private lets a private or local address through)") from None


def create_webhook_automation(
    settings: Settings,
    url: str,
    on: Sequence[str] = ("promoted",),
    name: str | None = None,
    allow_private_urls: bool = False,
) -> UUID:
    """A Webhook block for `url` and an automation calling it on the events `on` names (keys of
    EVENTS) for this workspace; returns the automation's id. `allow_private_urls` lets the server
    post to a private or local address (Prefect refuses those by default)."""
    from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
    from prefect.blocks.webhook import Webhook
    from prefect.types import SecretDict
    from pydantic import SecretStr

    unknown = sorted(set(on) - set(EVENTS))
    if unknown or not on:
        raise ValueError(f"unknown event(s) {unknown}: choose from {', '.join(EVENTS)}")
    check_webhook_url(url, allow_private_urls)
    on = sorted(set(on), key=list(EVENTS).index)
    resource = workspace_resource(settings)
    # One block and one automation per workspace, URL and events: asking again replaces them.
    digest = hashlib.sha256(f"{url} {' '.join(on)}".encode()).hexdigest()[:8]
    block_name = name or f"perennial-notify-{resource['prefect.resource.id'].rsplit('.', 1)[-1]}-{digest}"
    block = Webhook(
        method="POST",
        url=SecretStr(url),
        headers=SecretDict({"Content-Type": "application/json"}),
        allow_private_urls=allow_private_urls,
    )
    # Prefect's sync/async dual methods type as either; called outside an event loop they run sync.
    block_id = cast("UUID", block.save(block_name, overwrite=True))
    automation_name = f"{block_name}: {', '.join(on)}"
    with contextlib.suppress(ValueError):  # none yet
        cast("Automation", Automation.read(name=automation_name)).delete()
    automation = Automation(
        name=automation_name,
        description=f"perennial: post {', '.join(on)} of {resource['prefect.resource.name']} to a webhook",
        trigger=EventTrigger(
            expect={EVENTS[key] for key in on},
            match={"prefect.resource.id": resource["prefect.resource.id"]},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    ).create()
    created = cast("Automation", automation).id
    if created is None:  # the server answers with the id it gave; None would be a server fault
        raise RuntimeError("the Prefect server did not return the automation's id")
    return created
