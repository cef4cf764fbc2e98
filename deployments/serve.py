"""`perennial serve`: serve the deployments and watch the inbox, in one long-running process."""

from __future__ import annotations

import logging
import threading

from perennial.core.settings import Settings
from perennial.deployments.events import NoServer, emit_batch_arrived
from perennial.monitoring.inbox_watch import InboxWatcher

log = logging.getLogger("perennial.serve")


def watch_inbox(settings: Settings, stop: threading.Event) -> None:
    """Emit `perennial.batch.arrived` for each complete file that lands in the inbox, until `stop`.

    Starts once the training deployment exists (its trigger is registered with it), so files already
    waiting at start-up are not announced to nobody. Never dies: a failed poll or event is logged and
    the next poll goes on (the file stays in the inbox for the next run either way).
    """
    while not stop.is_set() and not _registered(settings):
        stop.wait(1.0)
    interval = settings.servers.watch_interval_seconds
    log.info("watching %s every %.1f s", settings.inbox, interval)
    watcher = InboxWatcher(settings.inbox)
    while not stop.wait(interval):
        try:
            arrived = watcher.poll()
        except Exception:
            log.exception("cannot read the inbox %s; trying again", settings.inbox)
            continue
        for path in arrived:
            try:
                event_id = emit_batch_arrived(settings, path)
                log.info("%s arrived: event %s", path.name, event_id)
            except NoServer as error:  # the server may be restarting; the next run still ingests it
                log.warning("%s arrived but the event was not sent: %s", path.name, error)
            except Exception:
                log.exception("%s arrived but the event was not sent", path.name)


def _registered(settings: Settings) -> bool:
    from perennial.deployments.events import training_deployment_registered

    try:
        return training_deployment_registered(settings)
    except Exception:  # the server may still be starting: ask again
        return False


def serve_forever(settings: Settings, *, watch: bool = True) -> None:
    """Register the deployments with the Prefect server and run their flow runs until interrupted."""
    from prefect import serve

    from perennial.deployments.definitions import build_deployments

    stop = threading.Event()
    if watch:
        threading.Thread(target=watch_inbox, args=(settings, stop), name="inbox-watch", daemon=True).start()
    try:
        serve(*build_deployments(settings), print_starting_message=True)
    finally:
        stop.set()
