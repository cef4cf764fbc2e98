"""Notice batch files landing in the inbox, each once, and only when they have stopped growing.

Polling, not inotify: it works the same on every file system (network mounts and Docker volumes
included), and a poll every few seconds costs nothing next to a training run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from perennial.data.inbox import inbox_entry


@dataclass
class InboxWatcher:
    """Each `poll()` returns the files that arrived since the last one and are complete.

    A file is complete when its size and modification time did not change between two polls, so a
    copy still in progress is reported on a later poll. It reports the entries a run records
    (inbox.inbox_entry): everything but names in progress (hidden, or a temporary suffix like
    `batch.csv.part`), so unknown suffixes, bad names, links, folders and FIFOs are reported too
    (a run quarantines them with a reason). This only times the event: a run started for another
    reason ingests whatever is in the inbox, so uploaders should write under a name in progress and
    rename when done (see inbox's docstring). A run applies the same rule itself: it ingests a file
    once it has not changed for `inbox_settle_seconds`, waiting once if needed
    (inbox.ready_inbox_files), and leaves one still being written.
    """

    inbox: Path
    _seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (size, mtime_ns)
    _reported: set[str] = field(default_factory=set)

    def poll(self) -> list[Path]:
        current = self._candidates()
        arrived = [
            self.inbox / name
            for name, signature in sorted(current.items())
            if name not in self._reported and self._seen.get(name) == signature
        ]
        self._reported.update(p.name for p in arrived)
        # A name that left the inbox (ingested, moved away) may come back as a new file.
        self._reported &= set(current)
        self._seen = current
        return arrived

    def _candidates(self) -> dict[str, tuple[int, int]]:
        if not self.inbox.is_dir():
            return {}
        found: dict[str, tuple[int, int]] = {}
        for path in self.inbox.iterdir():
            # The entries a run records: all but names in progress (lstat only: a FIFO is never opened).
            entry = inbox_entry(path)
            if entry is not None:
                found[path.name] = (entry.st_size, entry.st_mtime_ns)
        return found
