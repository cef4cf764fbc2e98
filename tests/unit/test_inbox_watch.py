"""The inbox watcher reports each complete file once, and never a file still being written."""

from __future__ import annotations

import os
from pathlib import Path

from perennial.monitoring.inbox_watch import InboxWatcher


def test_a_file_is_reported_once_when_it_has_stopped_changing(tmp_path: Path) -> None:
    watcher = InboxWatcher(tmp_path)
    assert watcher.poll() == []
    (tmp_path / "a.csv").write_text("text,label\nx,y\n")
    assert watcher.poll() == []  # first sighting: maybe still being copied
    assert watcher.poll() == [tmp_path / "a.csv"]
    assert watcher.poll() == []  # never twice


def test_a_growing_file_waits_until_it_is_complete(tmp_path: Path) -> None:
    watcher = InboxWatcher(tmp_path)
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n')
    watcher.poll()
    with path.open("a") as handle:  # the writer is still appending
        handle.write('{"text": "c", "label": "d"}\n')
    assert watcher.poll() == []
    assert watcher.poll() == [path]


def test_names_in_progress_are_ignored_and_everything_else_reported(tmp_path: Path) -> None:
    watcher = InboxWatcher(tmp_path)
    (tmp_path / ".upload.csv").write_text("x")
    (tmp_path / "batch.csv.part").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "sub.csv").mkdir()
    (tmp_path / "ok.parquet").write_bytes(b"PAR1")
    watcher.poll()
    # The run records an unknown suffix and a folder (nothing is left silently): reported too.
    assert watcher.poll() == [tmp_path / "notes.md", tmp_path / "ok.parquet", tmp_path / "sub.csv"]


def test_a_name_that_leaves_and_comes_back_is_a_new_arrival(tmp_path: Path) -> None:
    watcher = InboxWatcher(tmp_path)
    path = tmp_path / "daily.csv"
    path.write_text("text,label\nx,y\n")
    watcher.poll()
    assert watcher.poll() == [path]
    path.unlink()  # ingested
    assert watcher.poll() == []
    path.write_text("text,label\nz,w\n")
    os.utime(path, ns=(1, 1))
    watcher.poll()
    assert watcher.poll() == [path]


def test_a_missing_inbox_is_empty(tmp_path: Path) -> None:
    assert InboxWatcher(tmp_path / "nope").poll() == []


def test_a_link_is_reported_like_a_file_for_the_run_to_refuse(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "link.csv").symlink_to(outside / "missing.csv")  # dangling: still an arrival
    watcher = InboxWatcher(inbox)
    watcher.poll()
    assert watcher.poll() == [inbox / "link.csv"]
