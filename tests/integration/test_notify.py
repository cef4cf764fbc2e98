"""A promotion tells a webhook, through a real Prefect automation on the test server."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import PROMOTED
from perennial.deployments.notify import create_webhook_automation
from perennial.flows.continual_training import continual_training
from perennial.workspace import ledger_for
from processes import wait_for  # tests/ is on sys.path

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local webhook endpoint that keeps every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"content_type": self.headers.get("Content-Type"), **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()


def test_a_promotion_and_a_quarantine_are_posted_to_the_webhook(
    settings: Settings, drop: Callable[..., Path], receiver: tuple[str, list[dict]]
) -> None:
    url, received = receiver
    create_webhook_automation(settings, url, on=("promoted", "quarantined"), allow_private_urls=True)
    drop(settings, "reviews.csv")
    drop(settings, "bad_labels.csv")

    continual_training(settings, return_state=True)

    batches = {b.source: b for b in ledger_for(settings).batches()}
    assert batches["reviews.csv"].status == PROMOTED
    posts = wait_for(lambda: received if len(received) >= 2 else None, 90, "two webhook calls")
    by_event = {post["event"]: post for post in posts}
    promoted = by_event["perennial.model.promoted"]
    assert promoted["content_type"] == "application/json"
    assert promoted["payload"]["source"] == "reviews.csv" and promoted["payload"]["version"] == "1"
    assert promoted["payload"]["champion_version"] == "1" and promoted["payload"]["reasons"]
    assert promoted["workspace"] == str(settings.root)
    assert promoted["text"].endswith("reviews.csv: v1 promote, champion v1")
    quarantined = by_event["perennial.batch.quarantined"]
    assert quarantined["payload"]["source"] == "bad_labels.csv"
    assert quarantined["payload"]["reason"] in html.unescape(quarantined["text"])  # Slack's escapes


def test_only_known_events_can_be_asked_for(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown event"):
        create_webhook_automation(settings, "https://example.org/hook", on=("promotd",))
