"""The inbox: which of its entries a run records, which it leaves alone, and which have settled.

Uploading safely: write the file under a name in progress, then rename it when complete (a rename
within one file system is atomic). Names in progress are left alone:

* hidden: `.reviews.csv`;
* a temporary suffix: `reviews.csv.part` (also `.partial`, `.tmp`, `.crdownload`, `.download`,
  `.filepart`), or a trailing `~`.

One that has not changed for a day gets one warning a run. A file written in place is taken once it
has not changed for `inbox_settle_seconds`, and even a writer that pauses longer loses nothing: a file
another process holds open for writing (asked of the kernel, on Linux), or whose size, modification
time or inode changed while it was read, is left for the next run and nothing is recorded (ingest
checks that while it reads: `perennial.data.ingest`).

Every other entry is recorded by a run (`perennial.data.ingest.ingest_file`), those it refuses included.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from perennial.core.settings import Settings
from perennial.data.batch_files import SUFFIXES, safe_name

# Split out of ingest: its log lines keep ingest's logger name, as log filters and tests expect.
log = logging.getLogger("perennial.data.ingest")

IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
STALE_UPLOAD_SECONDS = 24 * 3600  # a name in progress unchanged this long was probably abandoned


def in_progress_name(name: str) -> bool:
    """A name an upload is written under before it is renamed (see the module docstring): hidden, a
    temporary suffix, or a trailing '~'. Such an entry is left alone."""
    return name.startswith(".") or name.endswith("~") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def is_batch_name(name: str) -> bool:
    """A name ingest reads as a batch: a known suffix, not a name in progress."""
    return not in_progress_name(name) and Path(name).suffix.lower() in SUFFIXES


def inbox_entry(path: Path) -> os.stat_result | None:
    """The inbox entry's own status (a link is not followed), or None for a name in progress or an
    entry that is gone. Every other entry is for a run to record (ingest_file): a batch file, a file
    it refuses (unknown suffix, bad name, a link), or something that is not a file at all."""
    if in_progress_name(path.name):
        return None
    try:
        return path.lstat()
    except OSError:  # removed between listing and looking
        return None


def inbox_files(settings: Settings) -> list[Path]:
    """The inbox entries a run records, oldest first (by modification time, then name): everything
    but names in progress. Links and entries that are not files are listed too (never followed or
    opened), so that a run refuses and records them."""
    if not settings.inbox.is_dir():
        return []
    found = {p: entry for p in settings.inbox.iterdir() if (entry := inbox_entry(p)) is not None}
    return sorted(found, key=lambda p: (found[p].st_mtime, p.name))


def warn_stale_uploads(settings: Settings) -> list[Path]:
    """One warning for each name in progress that has not changed for a day (an upload abandoned, or
    one never renamed); returns them. Called once a run."""
    if not settings.inbox.is_dir():
        return []
    stale = []
    now = time.time()
    for path in sorted(settings.inbox.iterdir()):
        if not in_progress_name(path.name):
            continue
        try:
            age = now - path.lstat().st_mtime
        except OSError:
            continue
        if age >= STALE_UPLOAD_SECONDS:
            stale.append(path)
            log.warning(
                "%s: a name in progress (hidden or temporary) unchanged for %.0f hours, never ingested:"
                " rename it to its final name when it is complete, or remove it",
                safe_name(path.name),
                age / 3600,
            )
    return stale


def ready_inbox_files(settings: Settings) -> list[Path]:
    """The inbox entries a run may ingest: those that have not changed for `inbox_settle_seconds`.

    When some changed more recently, the run waits once (at most that long) and looks again; a file
    that changed meanwhile is still being written: it is left for the next run, with one log line, so
    a half-written file is never ingested. The inbox watcher applies the same rule between polls.
    ingest_file checks again while it reads (a writer that pauses longer than the wait).
    """
    warn_stale_uploads(settings)
    files = inbox_files(settings)
    settle = settings.inbox_settle_seconds
    now = time.time()
    young: dict[Path, tuple[int, int]] = {}
    youngest = settle
    for path in files:
        entry = inbox_entry(path)
        if entry is not None and now - entry.st_mtime < settle:
            young[path] = (entry.st_size, entry.st_mtime_ns)
            youngest = min(youngest, now - entry.st_mtime)
    if not young:
        return files
    time.sleep(min(settle, settle - youngest))
    left = set()
    for path, before in young.items():
        entry = inbox_entry(path)
        if entry is None or (entry.st_size, entry.st_mtime_ns) != before:
            left.add(path)
            if entry is not None:
                log.info(
                    "%s: still being written (changed within %.1f s); left for the next run",
                    safe_name(path.name),
                    settle,
                )
    return [p for p in files if p not in left]
