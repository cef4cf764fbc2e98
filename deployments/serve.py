"""`perennial serve`: serve the deployments and watch the inbox, in one long-running process."""

from __future__ import annotations

import logging
import threading

from perennial.config import Settings
from perennial.deployments.events import NoServer, emit_batch_arrived
from perennial.inbox_watch import InboxWatcher

log = logging.getLogger("perennial.serve")


def watch_inbox(settings: Settings, stop: threading.Event) -> None:
    """Emit `perennial.batch.arrived` for each complete file that lands in the inbox, until `stop`."""
    watcher = InboxWatcher(settings.inbox)
    while not stop.wait(settings.watch_interval_seconds):
        for path in watcher.poll():
            try:
                event_id = emit_batch_arrived(settings, path)
                log.info("%s arrived: event %s", path.name, event_id)
            except NoServer as error:  # the server may be restarting; the next run still ingests it
                log.warning("%s arrived but the event was not sent: %s", path.name, error)


def serve_forever(settings: Settings, *, watch: bool = True) -> None:
    """Register the deployments with the Prefect server and run their flow runs until interrupted."""
    from prefect import serve

    from perennial.deployments.definitions import build_deployments

    stop = threading.Event()
    if watch:
        threading.Thread(target=watch_inbox, args=(settings, stop), name="inbox-watch", daemon=True).start()
        log.info("watching %s every %.0f s", settings.inbox, settings.watch_interval_seconds)
    try:
        serve(*build_deployments(settings), print_starting_message=True)
    finally:
        stop.set()
