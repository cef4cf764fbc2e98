"""The inbox, against inputs and timings nobody plans for: one batch's check never fails another, a
quarantine never blocks a retry, a file that kills the reader is set aside, a paused writer loses
nothing, links and entries that are not files are refused, and nothing is left silently."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import perennial.data.ingest as ingest
from perennial.core.faults import ENV
from perennial.core.settings import Settings
from perennial.data.batch_files import unsafe_name_problem
from perennial.data.batch_store import rows_path, write_parquet
from perennial.data.inbox import in_progress_name, inbox_files
from perennial.data.ingest import SKIPPED, ingest_file, open_for_writing, set_aside_dir
from perennial.data.ledger import PENDING, QUARANTINED, Ledger, LedgerError
from perennial.data.text_keys import text_key
from perennial.monitoring.inbox_watch import InboxWatcher
from perennial.pipeline.intake import ingest_inbox

ROWS = [("the screen was wonderful", "positive"), ("the delivery was terrible", "negative")] * 2
ROWS = [(f"{text} {i}", label) for i, (text, label) in enumerate(ROWS)]


def csv_text(rows: list[tuple[str, str]] = ROWS, header: str = "text,label") -> str:
    return header + "\n" + "".join(f"{t},{lab}\n" for t, lab in rows)


def jsonl_text(texts: list[str]) -> str:
    return "".join(json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(texts))


def make_settings(root: Path, **overrides: object) -> Settings:
    s = Settings(workspace=root / "ws", val_fraction=0.1, test_fraction=0.1, **overrides)
    s.inbox.mkdir(parents=True, exist_ok=True)
    return s


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PERENNIAL_"):
            monkeypatch.delenv(key)
    return make_settings(tmp_path)


@pytest.fixture
def ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def drop(settings: Settings, name: str, content: str | bytes) -> Path:
    path = settings.inbox / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# 1. A check on one batch never fails another


def test_a_pending_batch_without_a_text_column_never_fails_a_later_one(
    settings: Settings, ledger: Ledger
) -> None:
    odd = ingest_file(drop(settings, "odd.csv", csv_text(header="review,label")), settings, ledger)
    assert odd.status == PENDING  # validation, not ingest, refuses it later

    good = ingest_file(drop(settings, "good.csv", csv_text()), settings, ledger)

    assert good.status == PENDING, good.message
    assert ledger.batch(good.batch_id).rows == len(ROWS)


def test_an_earlier_batch_whose_rows_cannot_be_read_is_left_out_with_a_log_line(
    settings: Settings, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    first = ingest_file(drop(settings, "first.csv", csv_text()), settings, ledger)
    rows_path(settings, first.batch_id).write_bytes(b"PAR1 not parquet at all")  # damaged on disk

    with caplog.at_level(logging.WARNING, logger="perennial.data.ingest"):
        again = ingest_file(drop(settings, "again.csv", csv_text(ROWS + [("new", "a")])), settings, ledger)

    assert again.status == PENDING, again.message
    assert any(f"rows of batch {first.batch_id}" in r.getMessage() for r in caplog.records)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


NEAR_COPIES = [
    str.upper,
    lambda t: "  " + t.replace(" ", " \t ") + "\n",
    lambda t: "\u200b".join(t),  # zero-width spaces between letters
    lambda t: unicodedata.normalize("NFD", t),
    _fullwidth,
]
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüß0123456789 ", min_size=3, max_size=30)


@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(WORDS.filter(lambda t: text_key(t)), min_size=4, max_size=12, unique_by=text_key),
    how=st.lists(st.sampled_from(range(len(NEAR_COPIES))), min_size=12, max_size=12),
)
def test_near_copies_of_earlier_texts_count_as_repeats(texts: list[str], how: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp))
        ledger = Ledger(settings.ledger_path)
        first = ingest_file(drop(settings, "first.jsonl", jsonl_text(texts)), settings, ledger)
        assert first.status == PENDING, first.message
        copies = [NEAR_COPIES[k](t) for k, t in zip(how, texts, strict=False)]
        assert [text_key(c) for c in copies] == [text_key(t) for t in texts]
        assume(copies != texts)  # the very same bytes are a duplicate file, not a repeat

        again = ingest_file(drop(settings, "again.jsonl", jsonl_text(copies)), settings, ledger)

        assert again.status == QUARANTINED
        n = len(texts)
        assert f"{n} of {n} rows (100%) repeat texts of earlier batches" in again.message
        # Texts that differ in their letters are new, however they are written.
        fresh = [f"{t} plus something new {i}" for i, t in enumerate(copies)]
        new = ingest_file(drop(settings, "fresh.jsonl", jsonl_text(fresh)), settings, ledger)
        assert new.status == PENDING, new.message


# 2. A quarantine never blocks a retry


def test_the_same_bytes_as_a_quarantined_batch_are_a_retry_with_the_current_settings(
    settings: Settings, ledger: Ledger
) -> None:
    content = csv_text()
    strict = settings.model_copy(update={"max_file_bytes": 10})
    first = ingest_file(drop(settings, "reviews.csv", content), strict, ledger)
    assert first.status == QUARANTINED and "max_file_bytes" in first.message
    arrived = ledger.batch(first.batch_id).arrived_at
    time.sleep(0.01)

    retry = ingest_file(drop(settings, "reviews.csv", content), settings, ledger)  # the limit raised

    assert retry.status == PENDING and not retry.duplicate and retry.batch_id == first.batch_id
    assert f"retrying batch {first.batch_id}, quarantined earlier: reviews.csv is" in retry.message
    batch = ledger.batch(first.batch_id)
    assert (batch.status, batch.reason, batch.rows) == (PENDING, "", len(ROWS))
    assert batch.arrived_at > arrived and ledger.attempts(first.batch_id) == 2
    assert Path(batch.raw_path).read_text(encoding="utf-8") == content  # the raw copy kept
    assert len(ledger.batches()) == 1 and not list(settings.inbox.iterdir())
    # Once it is pending, the same bytes again are a duplicate.
    again = ingest_file(drop(settings, "reviews.csv", content), settings, ledger)
    assert again.duplicate and again.status == PENDING and "same content as batch" in again.message


def test_a_retry_that_fails_again_gets_the_new_reason_and_counts(settings: Settings, ledger: Ledger) -> None:
    content = csv_text()
    first = ingest_file(drop(settings, "a.csv", content), settings, ledger)
    ledger.transition(first.batch_id, QUARANTINED, "validation: label outside the label set")
    tight = settings.model_copy(update={"max_file_bytes": 20})

    retry = ingest_file(drop(settings, "a.csv", content), tight, ledger)

    assert retry.status == QUARANTINED and retry.batch_id == first.batch_id
    assert "quarantined earlier: validation: label outside the label set" in retry.message
    batch = ledger.batch(first.batch_id)
    assert "above the 20 bytes limit" in batch.reason and "validation" not in batch.reason
    assert batch.rows is None and not rows_path(settings, first.batch_id).exists()  # stale rows gone
    assert ledger.attempts(first.batch_id) == 2
    assert ingest_file(drop(settings, "a.csv", content), tight, ledger).status == QUARANTINED
    assert ledger.attempts(first.batch_id) == 3


# 3. A file that kills the process while it is read is set aside after twice


def test_content_with_two_unfinished_reads_is_set_aside_unread(settings: Settings, ledger: Ledger) -> None:
    content = csv_text()
    path = drop(settings, "huge.csv", content)
    sha = ingest.sha256_of(path)
    ledger.start_read(sha)  # two earlier runs died while reading it
    ledger.start_read(sha)

    result = ingest_file(path, settings, ledger)

    assert result.status == QUARANTINED
    assert "reading it stopped perennial twice (out of memory or killed?); set aside unread" in result.message
    batch = ledger.batch(result.batch_id)
    assert Path(batch.raw_path).read_text(encoding="utf-8") == content
    assert not rows_path(settings, result.batch_id).exists()  # never parsed
    assert ledger.unfinished_reads(sha) == 0 and not path.exists()
    # Dropped again (after giving perennial more memory): a retry that reads it.
    assert ingest_file(drop(settings, "huge.csv", content), settings, ledger).status == PENDING


def test_one_unfinished_read_is_tried_again(settings: Settings, ledger: Ledger) -> None:
    path = drop(settings, "once.csv", csv_text())
    sha = ingest.sha256_of(path)
    ledger.start_read(sha)
    assert ingest_file(path, settings, ledger).status == PENDING
    assert ledger.unfinished_reads(sha) == 0


def test_two_killed_runs_then_the_file_is_set_aside(settings: Settings) -> None:
    """Real processes killed while the file is being read (the fault point after the copy)."""
    path = drop(settings, "killer.csv", csv_text())
    code = (
        "import sys\nfrom pathlib import Path\nfrom perennial.core.settings import Settings\n"
        "from perennial.data.ingest import ingest_file\nfrom perennial.data.ledger import Ledger\n"
        "s = Settings(workspace=sys.argv[1])\n"
        "ingest_file(Path(sys.argv[2]), s, Ledger(s.ledger_path))\n"
    )
    env = {**os.environ, ENV: "ingest-copied:kill"}
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", code, str(settings.root), str(path)], env=env)
        assert killed.returncode == -9 and path.exists()
    ledger = Ledger(settings.ledger_path)
    assert ledger.batches() == []  # nothing recorded by the killed runs

    result = ingest_file(path, settings, ledger)

    assert result.status == QUARANTINED and "stopped perennial twice" in result.message
    assert not path.exists() and Path(ledger.batch(result.batch_id).raw_path).exists()


# 4. A writer that pauses longer than the settle time loses nothing


def test_a_file_held_open_for_writing_is_left_for_the_next_run(settings: Settings, ledger: Ledger) -> None:
    path = drop(settings, "upload.csv", csv_text()[:30])
    os.utime(path, (1_000, 1_000))  # paused for ages: the settle time alone would take it
    with path.open("ab") as writer:
        with path.open("rb") as probe:
            if open_for_writing(probe.fileno()) is None:
                pytest.skip("the kernel cannot tell here (no leases)")
        result = ingest_file(path, settings, ledger)
        assert result.status == SKIPPED and "still being written; left for the next run" in result.message
        assert ledger.batches() == [] and files_under(settings.raw_dir) == []
        writer.write(csv_text()[30:].encode())
    assert ingest_file(path, settings, ledger).status == PENDING  # complete, closed: taken whole
    assert Path(ledger.batches()[0].raw_path).read_text(encoding="utf-8") == csv_text()


def _during_the_read(monkeypatch: pytest.MonkeyPatch, action) -> None:
    """Run `action(raw)` once while ingest parses a file: a writer coming back after a pause."""
    real = ingest._checked_rows
    done = []

    def checked(raw, *args, **kwargs):
        if not done:
            done.append(action())
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(ingest, "_checked_rows", checked)


@pytest.mark.parametrize("change", ["append", "replace"])
def test_a_file_that_changes_while_it_is_read_is_left_whole(
    settings: Settings, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    head, tail = csv_text()[:40], csv_text()[40:]
    path = drop(settings, "paused.csv", head)

    def writer() -> None:
        if change == "append":
            with path.open("a", encoding="utf-8") as handle:
                handle.write(tail)
        else:  # the uploader renames the complete file over the partial one
            (settings.inbox / ".paused.csv").write_text(head + tail, encoding="utf-8")
            os.replace(settings.inbox / ".paused.csv", path)

    _during_the_read(monkeypatch, writer)
    result = ingest_file(path, settings, ledger)

    assert result.status == SKIPPED and "still being written; left for the next run" in result.message
    assert ledger.batches() == [] and files_under(settings.raw_dir) == []
    assert files_under(settings.batches_dir) == []  # no rows kept for a batch never recorded
    assert path.read_text(encoding="utf-8") == head + tail  # nothing lost
    monkeypatch.undo()
    taken = ingest_file(path, settings, ledger)
    assert taken.status == PENDING and ledger.batch(taken.batch_id).rows == len(ROWS)


def test_a_file_that_changes_after_it_is_recorded_is_not_removed(
    settings: Settings, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = drop(settings, "late.csv", csv_text())

    def fault(point: str, root=None) -> None:
        if point == "ingest-recorded":
            with path.open("a", encoding="utf-8") as handle:
                handle.write("one more row,positive\n")

    monkeypatch.setattr(ingest, "fault_point", fault)
    with caplog.at_level(logging.WARNING, logger="perennial.data.ingest"):
        result = ingest_file(path, settings, ledger)
    assert result.status == PENDING
    assert path.exists() and path.read_text(encoding="utf-8").endswith("one more row,positive\n")
    assert any("late.csv: changed after it was read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("name", "in_progress"),
    [
        (".reviews.csv", True),
        ("reviews.csv.part", True),
        ("reviews.csv.PARTIAL", True),
        ("reviews.csv.tmp", True),
        ("reviews.csv.crdownload", True),
        ("reviews.csv.download", True),
        ("reviews.csv.filepart", True),
        ("reviews.csv~", True),
        ("reviews.csv", False),
        ("reviews.txt", False),
        ("part.csv", False),
        ("data.csv ", False),
    ],
)
def test_names_in_progress(name: str, in_progress: bool) -> None:
    assert in_progress_name(name) is in_progress


def test_names_in_progress_are_left_alone_and_a_stale_one_warned_about_once_a_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    stale = drop(settings, ".abandoned.csv", csv_text())
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    old_part = drop(settings, "big.csv.part", csv_text())
    os.utime(old_part, (time.time() - 3 * 86400,) * 2)
    fresh = drop(settings, ".uploading.csv", csv_text())
    os.utime(fresh, (time.time() - 3600,) * 2)

    with caplog.at_level(logging.WARNING, logger="perennial.data.ingest"):
        results = ingest_inbox(settings)

    assert results == [] and sorted(p.name for p in settings.inbox.iterdir()) == [
        ".abandoned.csv", ".uploading.csv", "big.csv.part"
    ]  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if "name in progress" in r.getMessage()]
    assert len(warned) == 2
    assert warned[0].startswith(".abandoned.csv: ") and warned[1].startswith("big.csv.part: ")


# 5. Concurrent writers of one target


def test_write_parquet_from_many_threads_at_once(tmp_path: Path) -> None:
    target = tmp_path / "rows.parquet"
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(10):
                write_parquet(frame, target)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pd.read_parquet(target).equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["rows.parquet"]  # no temporary left


def test_a_batch_recorded_meanwhile_by_another_process_is_a_duplicate(
    settings: Settings, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = drop(settings, "race.csv", csv_text())
    sha = ingest.sha256_of(path)
    other = Ledger(settings.ledger_path)  # a process that did not wait for the ingest lock
    _during_the_read(monkeypatch, lambda: other.add_batch(sha[:16], sha, "race.csv", settings.raw_dir / "x"))

    result = ingest_file(path, settings, ledger)

    assert result.duplicate and "recorded by another process meanwhile" in result.message
    assert len(ledger.batches()) == 1 and not path.exists()


# 6. Hard links


def test_a_hard_link_to_a_file_outside_the_inbox_is_refused_unread(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password,hunter2\n" + csv_text(), encoding="utf-8")
    link = settings.inbox / "innocent.csv"
    os.link(secret, link)

    result = ingest_file(link, settings, ledger)

    assert result.status == QUARANTINED
    assert "innocent.csv has 2 names (a hard link)" in result.message
    assert "copy the file into the inbox instead" in result.message
    batch = ledger.batch(result.batch_id)
    for shown in (batch.reason, Path(batch.raw_path).read_text(encoding="utf-8")):
        assert "hunter2" not in shown and "password" not in shown  # never read, never shown
    assert not link.exists() and secret.read_text(encoding="utf-8").startswith("password,hunter2")
    assert ledger.unfinished_reads(ingest.sha256_of(secret)) == 0


def test_two_names_of_one_file_in_the_inbox_lose_nothing(settings: Settings, ledger: Ledger) -> None:
    first = drop(settings, "a.csv", csv_text())
    os.link(first, settings.inbox / "b.csv")
    os.utime(first, (1_000, 1_000))  # settled: the run does not wait

    results = ingest_inbox(settings)

    assert [r.status for r in results] == [QUARANTINED, PENDING]  # b.csv is then the only name
    assert [b.source for b in ledger.batches() if b.status == PENDING] == ["b.csv"]
    assert list(settings.inbox.iterdir()) == []


# 7. Nothing in the inbox is left silently


def _odd_entries(settings: Settings) -> dict[str, str]:
    """name -> words its reason must hold."""
    (settings.inbox / "folder.csv").mkdir()
    (settings.inbox / "folder.csv" / "inner.csv").write_text(csv_text(), encoding="utf-8")
    os.mkfifo(settings.inbox / "pipe.csv")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(settings.inbox / "sock"))
    server.close()
    drop(settings, "data.csv ", csv_text())
    drop(settings, "notes.txt", csv_text())
    drop(settings, "README", "hello\n")
    for path in settings.inbox.iterdir():
        os.utime(path, (1_000, 1_000), follow_symlinks=False)
    return {
        "folder.csv": "is a directory, not a batch file: it was never opened and was moved aside",
        "pipe.csv": "is a named pipe (FIFO)",
        "sock": "is a socket",
        "data.csv ": "leading or trailing spaces",
        "notes.txt": "unsupported file type '.txt'; it was kept but not read",
        "README": "no file type (no suffix)",
    }


def test_every_entry_is_recorded_with_a_reason_and_a_fifo_never_blocks(
    settings: Settings, ledger: Ledger
) -> None:
    expected = _odd_entries(settings)
    watcher = InboxWatcher(settings.inbox)
    watcher.poll()
    assert sorted(p.name for p in watcher.poll()) == sorted(expected)  # the watcher sees them all
    assert sorted(p.name for p in inbox_files(settings)) == sorted(expected)
    out: list = []
    worker = threading.Thread(target=lambda: out.append(ingest_inbox(settings)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "ingest blocked (opened the FIFO?)"

    batches = {b.source: b for b in ledger.batches()}
    assert sorted(batches) == sorted(expected)
    for name, words in expected.items():
        batch = batches[name]
        assert batch.status == QUARANTINED and words in batch.reason, (name, batch.reason)
        assert "\n" not in batch.reason and Path(batch.raw_path).is_file()
    for name in ("data.csv ", "notes.txt"):
        assert Path(batches[name].raw_path).read_text(encoding="utf-8") == csv_text()  # raw kept
    assert list(settings.inbox.iterdir()) == []
    aside = set_aside_dir(settings)
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        batches[n].batch_id for n in ("folder.csv", "pipe.csv", "sock")
    )
    assert (aside / batches["folder.csv"].batch_id / "inner.csv").read_text(encoding="utf-8") == csv_text()


def test_an_entry_that_cannot_be_moved_aside_stays_with_one_warning_a_run(
    settings: Settings, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    (settings.inbox / "folder").mkdir()
    os.utime(settings.inbox / "folder", (1_000, 1_000))
    set_aside_dir(settings).parent.mkdir(parents=True)
    set_aside_dir(settings).write_text("in the way")  # a file where the folder would go
    for run in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="perennial.data.ingest"):
            results = ingest_inbox(settings)
        warned = [r for r in caplog.records if "could not be moved out of the inbox" in r.getMessage()]
        assert len(warned) == 1 and (settings.inbox / "folder").is_dir()
        assert results[0].duplicate is (run == 1)
    [batch] = ledger.batches()
    assert batch.status == QUARANTINED and "could not be moved aside" in batch.reason


def test_a_file_named_outside_the_inbox_is_read_whatever_its_other_names(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    """`perennial ingest FILE`: its user chose the file; only inbox entries are refused as links,
    and what is not a file outside the inbox is not moved."""
    mine = tmp_path / "mine.csv"
    mine.write_text(csv_text(), encoding="utf-8")
    os.link(mine, tmp_path / "backup.csv")
    assert ingest_file(mine, settings, ledger).status == PENDING
    assert mine.exists()
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    result = ingest_file(folder, settings, ledger)
    assert result.status == SKIPPED and "not a regular file" in result.message and folder.is_dir()


def test_only_a_quarantined_batch_is_retried(settings: Settings, ledger: Ledger) -> None:
    pending = ledger.add_batch("b1", "sha-1", "a.csv", settings.raw_dir / "b1.csv", rows=3)
    with pytest.raises(LedgerError, match="only a quarantined batch is retried"):
        ledger.retry_batch(pending.batch_id, "a.csv", settings.raw_dir / "b1.csv", PENDING, rows=3)
    assert ledger.batch("b1") == pending and ledger.attempts("b1") == 1


@pytest.mark.parametrize("name", [" data.csv", "data.csv ", "data.csv\t", "\u00a0data.csv"])
def test_leading_or_trailing_spaces_are_a_bad_name(name: str) -> None:
    assert "leading or trailing spaces" in (unsafe_name_problem(name) or "")


def test_inner_spaces_are_a_good_name() -> None:
    assert unsafe_name_problem("my data 2024.csv") is None
