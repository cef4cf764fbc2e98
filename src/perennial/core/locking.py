"""One writer per workspace: an exclusive lock on `<workspace>/.perennial.lock`.

Prefect's concurrency limit keeps deployment runs apart, but a `perennial run` typed in a terminal, a
second Prefect server or a rollback does not go through it. The lock is `fcntl.flock`: the kernel
drops it when its holder exits or is killed (even SIGKILL), so there is never a stale lock to clear.
The file says who holds it, so the process that is turned away can say by whom.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from perennial.core.settings import Settings

LOCK_NAME = ".perennial.lock"
_POLL_SECONDS = 0.5
# Held in this process: path -> depth. A nested `workspace_lock` (a rollback inside a run, a flow
# calling a flow) must not wait for itself: flock treats each open() as a separate owner.
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace lock."""


def lock_path(settings: Settings) -> Path:
    return settings.root / LOCK_NAME


def holder(settings: Settings) -> str:
    """Who holds the lock, in words, from what the holder wrote (may be stale if nobody holds it)."""
    try:
        info = json.loads(lock_path(settings).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    if not info:
        return "another process"
    where = f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    return f"{info.get('purpose', 'a run')} ({where})"


@contextmanager
def workspace_lock(settings: Settings, purpose: str, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the workspace for `purpose`; wait up to `wait_seconds` (default: the `lock_wait_seconds`
    setting) for another holder, then raise WorkspaceBusy naming it."""
    path = lock_path(settings)
    with _held_guard:
        if _held.get(path):
            _held[path] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[path] -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, settings, settings.lock_wait_seconds if wait_seconds is None else wait_seconds)
        _describe(fd, purpose)
        with _held_guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(path, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, settings: Settings, wait_seconds: float) -> None:
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait_seconds:.0f} s" if wait_seconds > 0 else ""
                raise WorkspaceBusy(
                    f"workspace {settings.root} is busy{waited}: held by {holder(settings)}; "
                    "nothing was done, pending batches stay for the next run"
                ) from None
            time.sleep(_POLL_SECONDS)


def _describe(fd: int, purpose: str) -> None:
    info = {
        "purpose": purpose,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
