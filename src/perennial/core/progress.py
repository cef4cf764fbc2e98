"""Training progress for whoever shows it, without the trainer knowing who listens.

The terminal has tqdm's bar; a Prefect run shows a progress artifact instead. `fine_tune` lives in
a stage that must not import Prefect, so it only reports here, and a Prefect task that wants the
artifact listens around the call (`listening`). A listener that fails never stops the training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

# (percent done, what is happening) -> None
Listener = Callable[[float, str], None]
_listener: ContextVar[Listener | None] = ContextVar("perennial_progress_listener", default=None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the progress reported inside this block to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def report(percent: float, description: str) -> None:
    listener = _listener.get()
    if listener is None:
        return
    try:
        listener(min(100.0, max(0.0, percent)), description)
    except Exception as error:  # noqa: BLE001 - a progress display is never worth a failed training
        log.debug("progress not reported: %s", error)
