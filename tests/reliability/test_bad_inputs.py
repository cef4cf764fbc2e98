"""Bad inputs: each one is quarantined with a one-line reason, its raw bytes kept, a ledger entry, the
inbox emptied and the other batch of the same run untouched; or accepted when it is only unusual (a
byte-order mark, quoted CSV, extra columns), or left for a later run while it is still being written.

Every case goes through the real stages (`ingest_inbox`, then `validate_batch` with the real Great
Expectations suite) in a fresh workspace, next to a good companion batch. One flow test runs a mixed
inbox through real Prefect and MLflow. `CASES` is the list the README's "Bad input" table counts.
"""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.batch_store import load_split, rows_path, split_batch, split_path
from perennial.data.ingest import ingest_file, open_for_writing
from perennial.data.ledger import PENDING, PROMOTED, QUARANTINED, Batch
from perennial.pipeline.intake import ingest_inbox, pending_batches, validate_batch
from perennial.registry import mlflow_registry as registry
from perennial.workspace import ledger_for, validation_path

pytestmark = [pytest.mark.reliability]

LABELS = ["negative", "positive"]
N = 40  # rows per batch (the tests' settings need 20)
COMPANION = "good.csv"


def texts(prefix: str, n: int = N) -> list[str]:
    return [f"{prefix} sentence number {i} says something" for i in range(n)]


def labels(kinds: list[str] = LABELS, n: int = N) -> list[str]:
    return [kinds[i % 2] for i in range(n)]


def csv_bytes(rows: list[tuple], header: str = "text,label") -> bytes:
    frame = pd.DataFrame(rows, columns=header.split(","))
    return frame.to_csv(index=False).encode("utf-8")


def good_csv(prefix: str = "case", kinds: list[str] = LABELS) -> bytes:
    return csv_bytes(list(zip(texts(prefix), labels(kinds), strict=True)))


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def latin1_csv() -> bytes:
    lines = ["text,label", *(f"{t},{lab}" for t, lab in zip(texts("case"), labels(), strict=True))]
    lines[6] = "the café was lovely,positive"
    return "\n".join(lines).encode("latin-1") + b"\n"


def mixed_encodings_csv() -> bytes:
    lines = ["text,label", *(f"{t},{lab}" for t, lab in zip(texts("case"), labels(), strict=True))]
    lines[2] = "a naïve but kind review,positive"
    good = "\n".join(lines[:30]).encode("utf-8") + b"\n"
    return good + "\n".join(["the café was lovely,positive", *lines[31:]]).encode("latin-1") + b"\n"


def quoted_csv() -> bytes:
    rows = list(zip(texts("case"), labels(), strict=True))
    rows[0] = ('first line\nsecond line, with a comma and "quotes"', "positive")
    rows[1] = ('"quoted", then more', "negative")
    return csv_bytes(rows)


def unterminated_quote_csv() -> bytes:
    lines = ["text,label", *(f"{t},{lab}" for t, lab in zip(texts("case"), labels(), strict=True))]
    lines[4] = '"an opening quote that never closes,negative'  # line 5 of the file
    return "\n".join(lines).encode("utf-8") + b"\n"


def repeats_companion() -> bytes:
    rows = list(zip(texts("companion")[:30] + texts("case")[:10], labels(), strict=True))
    return csv_bytes(rows)


BIG_TEXT = 4_000_000  # characters: a single text of several megabytes


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # the README's words for the bad input
    outcome: str  # ... and for what happens to it
    name: str
    content: Callable[[], bytes]
    expect: str = QUARANTINED  # quarantined | accepted | skipped | waiting
    needles: tuple[str, ...] = ()  # in the reason; "{companion}" is the companion batch's id
    overrides: dict = field(default_factory=dict)
    check: Callable[[pd.DataFrame], None] | None = None  # on an accepted batch's stored rows
    before_companion: bool = False  # arrives first, so the companion's checks meet it


def _bom_rows(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["batch_id", "text", "label"]  # not '\ufefftext'
    assert frame["text"].iloc[0] == texts("case")[0] and len(frame) == N


def _quoted_rows(frame: pd.DataFrame) -> None:
    assert len(frame) == N
    assert frame["text"].iloc[0] == 'first line\nsecond line, with a comma and "quotes"'
    assert frame["text"].iloc[1] == '"quoted", then more'
    assert frame["label"].iloc[:2].tolist() == ["positive", "negative"]


def _retried_rows(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["batch_id", "text", "label"] and len(frame) == N


def _extra_rows(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["batch_id", "text", "label", "source", "meta"]
    assert frame["meta"].iloc[0] == "{'a': [1, 2]}"  # a nested extra value is kept as a string


CASES = [
    Case(
        "empty-file",
        "empty file (0 bytes)",
        "quarantined: empty",
        "empty.csv",
        lambda: b"",
        needles=("empty (0 bytes)",),
    ),
    Case(
        "header-only",
        "header line only",
        "quarantined: no rows",
        "header.csv",
        lambda: b"text,label\n",
        needles=("has no rows (only a header: text, label)",),
    ),
    Case(
        "missing-column",
        "a required column missing",
        "quarantined, names the column",
        "missing.csv",
        lambda: csv_bytes([(t,) for t in texts("case")], header="text"),
        needles=("missing required column 'label'", "the file has columns: text"),
    ),
    Case(
        "misspelled-column",
        "a misspelled column",
        "quarantined, suggests the close match",
        "misspelled.csv",
        lambda: csv_bytes(list(zip(texts("case"), labels(), strict=True)), header="text,lable"),
        needles=("missing required column 'label' (found 'lable': misspelled?)",),
    ),
    Case(
        "extra-columns-rejected",
        "extra columns, `extra_columns = reject`",
        "quarantined, names them",
        "extra.csv",
        lambda: csv_bytes(
            [(t, lab, "web", "x") for t, lab in zip(texts("case"), labels(), strict=True)],
            "text,label,source,notes",
        ),
        needles=("extra columns 'source', 'notes' not allowed (extra_columns = reject)",),
        overrides={"extra_columns": "reject"},
    ),
    Case(
        "extra-columns-allowed",
        "extra columns (default `allow`), nested values in them",
        "accepted; kept in the rows, left out of the splits",
        "extra.jsonl",
        lambda: jsonl_bytes(
            [
                {"text": t, "label": lab, "source": "web", "meta": {"a": [1, 2]}}
                for t, lab in zip(texts("case"), labels(), strict=True)
            ]
        ),
        expect="accepted",
        check=_extra_rows,
    ),
    Case(
        "latin-1",
        "not UTF-8 (Latin-1)",
        "quarantined: byte offset, line, re-save as UTF-8",
        "latin1.csv",
        latin1_csv,
        needles=(
            "not UTF-8 at byte offset {latin1_offset} (line 7, byte 0xE9)",
            "re-save the whole file as UTF-8",
        ),
    ),
    Case(
        "mixed-encodings",
        "mixed encodings (UTF-8 then Latin-1)",
        "quarantined: byte offset, line, says it mixes encodings",
        "mixed.csv",
        mixed_encodings_csv,
        needles=("(line 31, byte 0xE9)", "the file mixes encodings"),
    ),
    Case(
        "utf8-bom-csv",
        "UTF-8 byte-order mark (CSV)",
        "accepted; header is `text`, not `\\ufefftext`",
        "bom.csv",
        lambda: b"\xef\xbb\xbf" + good_csv(),
        expect="accepted",
        check=_bom_rows,
    ),
    Case(
        "utf8-bom-jsonl",
        "UTF-8 byte-order mark (JSON Lines)",
        "accepted",
        "bom.jsonl",
        lambda: (
            b"\xef\xbb\xbf"
            + jsonl_bytes([{"text": t, "label": lab} for t, lab in zip(texts("case"), labels(), strict=True)])
        ),
        expect="accepted",
        check=_bom_rows,
    ),
    Case(
        "label-outside-set",
        "labels outside the label set",
        "quarantined: rows and examples",
        "neutral.csv",
        lambda: csv_bytes(
            [
                (t, "neutral" if i % 10 == 3 else lab)
                for i, (t, lab) in enumerate(zip(texts("case"), labels(), strict=True))
            ]
        ),
        needles=(
            "label outside the label set ['negative', 'positive']: 4 of 40 rows (rows 4, 14, 24, 34)",
            "'neutral'",
        ),
        overrides={"labels": LABELS},
    ),
    Case(
        "numeric-labels-for-names",
        "numeric labels where the label set has names",
        "quarantined: says type mismatch",
        "numeric.jsonl",
        lambda: jsonl_bytes([{"text": t, "label": i % 2} for i, t in enumerate(texts("case"))]),
        needles=("type mismatch, numeric labels where the label set holds names",),
        overrides={"labels": LABELS},
    ),
    Case(
        "named-labels-for-numbers",
        "named labels where the label set has numbers",
        "quarantined: says type mismatch",
        "named.csv",
        good_csv,
        needles=("type mismatch, named labels where the label set holds numbers",),
        overrides={"labels": ["0", "1"]},
    ),
    Case(
        "null-blank-whitespace-texts",
        "null, empty and whitespace-only texts",
        "quarantined: each kind, with rows",
        "blanks.jsonl",
        lambda: jsonl_bytes(
            [
                {"text": {3: None, 5: "", 8: " \t "}.get(i, t), "label": lab}
                for i, (t, lab) in enumerate(zip(texts("case"), labels(), strict=True))
            ]
        ),
        needles=(
            "text is null: 1 of 40 rows (row 4)",
            "text is blank or whitespace only: 2 of 40 rows (rows 6, 9)",
        ),
    ),
    Case(
        "multi-megabyte-text",
        f"one text of {BIG_TEXT / 1e6:.0f} MB",
        "quarantined by `max_text_chars`; the stored result keeps 1,000 characters of it",
        "huge.csv",
        lambda: csv_bytes(
            [
                ("x" * BIG_TEXT if i == 7 else t, lab)
                for i, (t, lab) in enumerate(zip(texts("case"), labels(), strict=True))
            ]
        ),
        needles=("text longer than 5000 characters: 1 of 40 rows (row 8)", f"({BIG_TEXT} chars)"),
    ),
    Case(
        "file-over-size-limit",
        "a file above `max_file_bytes`",
        "quarantined unread",
        "big.csv",
        lambda: good_csv("a rather longer case"),
        needles=("big.csv is 2,561 bytes, above the 2,200 bytes limit (max_file_bytes); it was not read",),
        overrides={"max_file_bytes": 2200},
    ),
    Case(
        "duplicate-rows-in-batch",
        "duplicated rows within the batch",
        "quarantined: counts and examples",
        "dups.csv",
        lambda: csv_bytes([(texts("case")[i % 20], labels()[i % 20]) for i in range(N)]),
        needles=("too many duplicate texts: 20 of 40 texts repeat an earlier one",),
    ),
    Case(
        "repeats-earlier-batch",
        "rows that repeat an earlier batch",
        "quarantined: names the earlier batch and the count",
        "again.csv",
        repeats_companion,
        needles=(
            "30 of 40 rows (75%) repeat texts of earlier batches",
            "batch {companion} (good.csv, pending)",
        ),
    ),
    Case(
        "identical-file-twice",
        "the same file dropped again",
        "skipped as a duplicate (no new entry)",
        "good-again.csv",
        lambda: good_csv("companion"),
        expect="skipped",
    ),
    Case(
        "quoted-csv",
        "CSV with quoted newlines, quotes and commas",
        "accepted with the right rows",
        "quoted.csv",
        quoted_csv,
        expect="accepted",
        check=_quoted_rows,
    ),
    Case(
        "unterminated-quote",
        "CSV with an unterminated quote",
        "quarantined: the line where the quote opens",
        "broken.csv",
        unterminated_quote_csv,
        needles=("unterminated quote: the quoted field starting on line 5 never closes",),
    ),
    Case(
        "binary-garbage",
        "binary data named .csv",
        "quarantined: not a text file",
        "photo.csv",
        lambda: bytes((i * 37 + 11) % 256 for i in range(4096)),
        needles=("cannot read photo.csv as CSV: not a text file",),
    ),
    Case(
        "parquet-numeric-text",
        "Parquet with a number column as `text`",
        "quarantined: column and type",
        "numbers.parquet",
        lambda: parquet_bytes(pd.DataFrame({"text": range(N), "label": labels()})),
        needles=("column 'text' holds int64 values, not strings (row 1: 0)",),
    ),
    Case(
        "jsonl-nested-values",
        "JSON Lines with nested values",
        "quarantined: column and line",
        "nested.jsonl",
        lambda: jsonl_bytes(
            [
                {"text": {"body": t} if i == 2 else t, "label": lab}
                for i, (t, lab) in enumerate(zip(texts("case"), labels(), strict=True))
            ]
        ),
        needles=("column 'text' holds nested values (1 row, first line 3:",),
    ),
    Case(
        "jsonl-broken-line",
        "JSON Lines with a broken line",
        "quarantined: the line",
        "broken.jsonl",
        lambda: (
            jsonl_bytes([{"text": t, "label": "positive"} for t in texts("case")[:3]]) + b'{"text": "oops",\n'
        ),
        needles=("line 4 is not valid JSON",),
    ),
    Case(
        "parquet-missing-columns",
        "Parquet with other column names",
        "quarantined: the missing columns",
        "renamed.parquet",
        lambda: parquet_bytes(pd.DataFrame({"review": texts("case"), "sentiment": labels()})),
        needles=("missing required column 'text'", "missing required column 'label'", "review, sentiment"),
    ),
    Case(
        "unsafe-file-name",
        "a name with `..`, path separators, shell metacharacters, control bytes",
        "quarantined unread; the name is shown made safe, never used for a path or a shell",
        "x\\..\\..\\$(touch pwned);`touch pwned2`|rm -rf ~\n\x1b[31m\udcff.csv",
        good_csv,
        needles=("unsafe file name", "path separators", "a '..' path component", "shell metacharacters"),
    ),
    Case(
        "symlink-outside-inbox",
        "a symbolic link pointing outside the inbox",
        "quarantined: never followed, target not copied; the link is recorded",
        "linked.csv",
        good_csv,
        needles=("is a symbolic link to", "outside the inbox", "never followed"),
    ),
    Case(
        "hard-link-outside-inbox",
        "a hard link to a file outside the inbox",
        "quarantined unread (the file has 2 names); the other name is left alone",
        "linked-hard.csv",
        good_csv,
        needles=("has 2 names (a hard link)", "it was not read", "copy the file into the inbox instead"),
    ),
    Case(
        "unknown-suffix",
        "a file with an unsupported suffix (`.txt`)",
        "quarantined unread, raw copy kept",
        "reviews.txt",
        good_csv,
        needles=("unsupported file type '.txt'", "it was kept but not read"),
    ),
    Case(
        "name-with-trailing-space",
        "a name with a trailing space (`data.csv `)",
        "quarantined unread, raw copy kept",
        "data.csv ",
        good_csv,
        needles=("unsafe file name 'data.csv '", "leading or trailing spaces"),
    ),
    Case(
        "directory-in-inbox",
        "a directory in the inbox",
        "recorded, never opened, moved aside to `store/set-aside/<id>`",
        "folder.csv",
        good_csv,
        needles=("is a directory, not a batch file", "moved aside to store/set-aside/"),
    ),
    Case(
        "fifo-in-inbox",
        "a named pipe (FIFO) in the inbox",
        "recorded, never opened (no blocking), moved aside",
        "pipe.csv",
        good_csv,
        needles=("is a named pipe (FIFO), not a batch file", "never opened"),
    ),
    Case(
        "no-text-column-first",
        "a batch without a `text` column, ahead of a good one",
        "quarantined by validation; the good batch after it is untouched",
        "review.csv",
        lambda: csv_bytes(list(zip(texts("case"), labels(), strict=True)), header="review,label"),
        needles=("missing required column 'text'",),
        before_companion=True,
    ),
    Case(
        "retry-after-quarantine",
        "the same bytes as a quarantined batch, after the limit that refused it was raised",
        "retried: checked again with the current settings, accepted",
        "retried.csv",
        good_csv,
        expect="accepted",
        check=_retried_rows,
    ),
    Case(
        "writer-paused",
        "a writer that pauses longer than `inbox_settle_seconds` with the file open",
        "left in the inbox for the next run (nothing recorded); ingested whole once closed",
        "paused.csv",
        good_csv,
        expect="waiting",
    ),
    Case(
        "file-still-being-written",
        "a file still being written",
        "left in the inbox for the next run (one log line); ingested whole once it stops changing",
        "growing.csv",
        good_csv,
        expect="waiting",
    ),
]
BAD_INPUTS = [case.id for case in CASES]


def _write(path: Path, content: bytes, age: float) -> None:
    path.write_bytes(content)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def _run(settings: Settings) -> list[dict]:
    """The stages a training run starts with: ingest the inbox, validate every pending batch."""
    results = ingest_inbox(settings)
    for batch_id in pending_batches(settings):
        validate_batch(settings, batch_id)
    return results


def _outside_listing(root: Path, workspace: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if workspace not in (p, *p.parents)}


@pytest.mark.parametrize("case", CASES, ids=BAD_INPUTS)
def test_bad_input(case: Case, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings.model_copy(update=case.overrides)
    kinds = ["0", "1"] if settings.labels == ["0", "1"] else LABELS
    companion = good_csv("companion", kinds)
    # The companion arrives first (older), as a good batch sharing the run.
    _write(settings.inbox / COMPANION, companion, age=120)
    content = case.content()
    bad = settings.inbox / case.name
    outside = tmp_path / "outside" / "secret.csv"
    age = 180 if case.before_companion else 60
    if case.id == "symlink-outside-inbox":
        outside.parent.mkdir()
        outside.write_bytes(content)
        bad.symlink_to(outside)
        os.utime(bad, (time.time() - 60,) * 2, follow_symlinks=False)
    elif case.id == "hard-link-outside-inbox":
        outside.parent.mkdir()
        _write(outside, content, age=60)
        os.link(outside, bad)
    elif case.id == "directory-in-inbox":
        bad.mkdir()
        (bad / "inner.csv").write_bytes(content)
        os.utime(bad, (time.time() - 60,) * 2)
    elif case.id == "fifo-in-inbox":
        os.mkfifo(bad)
        os.utime(bad, (time.time() - 60,) * 2)
    elif case.id == "file-still-being-written":
        return _growing_file(settings, bad, content, caplog)
    elif case.id == "writer-paused":
        return _paused_writer(settings, bad, content)
    else:
        _write(bad, content, age=age)
    if case.id == "retry-after-quarantine":  # refused once by a limit since raised
        strict = settings.model_copy(update={"max_file_bytes": 100})
        assert ingest_file(bad, strict, ledger_for(settings)).status == QUARANTINED
        _write(bad, content, age=age)
    before = _outside_listing(tmp_path, settings.root)

    started = time.perf_counter()
    results = _run(settings)
    seconds = time.perf_counter() - started

    ledger = ledger_for(settings)
    good = next(b for b in ledger.batches() if b.source == COMPANION)
    assert good.status == PENDING and good.rows == N, good.reason  # the other batch is untouched
    assert json.loads(validation_path(settings, good.batch_id).read_text())["success"] is True
    assert list(settings.inbox.iterdir()) == []
    assert _outside_listing(tmp_path, settings.root) == before  # nothing written outside the workspace
    others = [b for b in ledger.batches() if b.batch_id != good.batch_id]

    if case.expect == "skipped":
        assert others == []
        assert [r.duplicate for r in results] == [False, True]
        assert "same content as batch" in results[1].message
        return
    assert len(others) == 1, others
    batch: Batch = others[0]
    assert "\n" not in batch.source and "\x1b" not in batch.source  # safe to show
    if case.expect == "accepted":
        assert batch.status == PENDING and batch.reason == "", batch.reason
        assert Path(batch.raw_path).read_bytes() == content
        frame = pd.read_parquet(rows_path(settings, batch.batch_id))
        case.check(frame)
        if case.id == "retry-after-quarantine":
            retried = next(r for r in results if r.source == case.name)
            assert f"retrying batch {batch.batch_id}, quarantined earlier: " in retried.message
        counts = split_batch(settings, batch.batch_id)  # and downstream still works
        assert sum(counts.values()) == N
        assert list(load_split(settings, batch.batch_id, "train").columns) == ["batch_id", "text", "label"]
        return

    assert batch.status == QUARANTINED
    reason = batch.reason
    assert reason and "\n" not in reason and "\r" not in reason and len(reason) < 400, reason
    values = {"companion": good.batch_id, "latin1_offset": content.find(b"\xe9")}
    for needle in case.needles:
        assert needle.format(**values) in reason, f"{needle!r} not in {reason!r}"
    assert not split_path(settings, batch.batch_id, "train").exists()  # never split, never trained
    assert seconds < 30, seconds
    if case.id == "symlink-outside-inbox":
        record = Path(batch.raw_path).read_text()
        assert str(outside) in record and "not read" in record
        assert outside.read_bytes() == content  # the target is left alone...
        assert all(p.read_bytes() != content for p in settings.raw_dir.iterdir())  # ...and not copied
    elif case.id == "hard-link-outside-inbox":
        assert outside.read_bytes() == content  # the other name is left alone...
        assert all(p.read_bytes() != content for p in settings.raw_dir.iterdir())  # ...never read
        assert b"sentence" not in Path(batch.raw_path).read_bytes() and "sentence" not in reason
    elif case.id in ("directory-in-inbox", "fifo-in-inbox"):
        aside = settings.root / "store" / "set-aside" / batch.batch_id
        if case.id == "directory-in-inbox":
            assert (aside / "inner.csv").read_bytes() == content  # moved whole, never opened
        else:
            assert stat.S_ISFIFO(aside.lstat().st_mode)
        assert "never opened" in Path(batch.raw_path).read_text()  # the note kept as its raw file
    else:
        assert Path(batch.raw_path).read_bytes() == content  # kept byte for byte
        assert Path(batch.raw_path).parent == settings.raw_dir
    if case.id == "unsafe-file-name":
        assert batch.source.isprintable() and "pwned" not in os.listdir(tmp_path)
        assert Path(batch.raw_path).name == f"{batch.batch_id}.csv"
    if case.id == "multi-megabyte-text":
        stored = validation_path(settings, batch.batch_id)
        assert stored.stat().st_size < 200_000  # the text of megabytes is not copied into the result


def _paused_writer(settings: Settings, path: Path, content: bytes) -> None:
    """A writer writes half the file and pauses, far past the settle time, with the file still open:
    the run leaves it (the kernel says it is open for writing) and records nothing; once the writer
    finishes and closes it, the next run takes it whole."""
    settings = settings.model_copy(update={"inbox_settle_seconds": 0.2})
    with path.open("wb") as handle:
        handle.write(content[:200])
        handle.flush()
        with path.open("rb") as probe:
            if open_for_writing(probe.fileno()) is None:
                pytest.skip("the kernel cannot tell whether the file is open for writing here")
        os.utime(path, (time.time() - 60,) * 2)  # the pause: unchanged for a minute
        results = _run(settings)
        assert [b.source for b in ledger_for(settings).batches()] == [COMPANION]  # nothing recorded
        [left] = [r for r in results if r.source == path.name]
        assert left.status == "skipped" and "still being written; left for the next run" in left.message
        assert path.read_bytes() == content[:200]
        handle.write(content[200:])
    _run(settings)
    batch = next(b for b in ledger_for(settings).batches() if b.source == path.name)
    assert batch.status == PENDING and batch.rows == N
    assert Path(batch.raw_path).read_bytes() == content
    assert list(settings.inbox.iterdir()) == []


def _growing_file(settings: Settings, path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """A writer appends while a run looks: the run leaves the file alone; the next run takes it whole."""
    settings = settings.model_copy(update={"inbox_settle_seconds": 0.5})
    head, tail = content[:200], content[200:]
    path.write_bytes(head)
    stop = threading.Event()

    def writer() -> None:
        with path.open("ab") as handle:
            for i in range(0, len(tail), 16):
                if stop.is_set():
                    break
                handle.write(tail[i : i + 16])
                handle.flush()
                time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with caplog.at_level("INFO", logger="perennial.data.ingest"):
            _run(settings)
        ledger = ledger_for(settings)
        assert [b.source for b in ledger.batches()] == [COMPANION]  # not ingested, not quarantined
        assert path.exists()
        left = [r.getMessage() for r in caplog.records if "left for the next run" in r.getMessage()]
        assert left == [f"{path.name}: still being written (changed within 0.5 s); left for the next run"]
    finally:
        stop.set()
        thread.join()
    with path.open("ab") as handle:  # the writer finishes
        handle.write(tail[path.stat().st_size - len(head) :])
    assert path.read_bytes() == content
    _run(settings)  # the next run: the file has just changed, so this run waits, then takes it
    batch = next(b for b in ledger_for(settings).batches() if b.source == path.name)
    assert batch.status == PENDING and batch.rows == N
    assert Path(batch.raw_path).read_bytes() == content
    assert list(settings.inbox.iterdir()) == []


# The whole pipeline: one good batch among bad ones.
FLOW_BAD = {
    "empty.csv": b"",
    "photo.csv": bytes((i * 37 + 11) % 256 for i in range(4096)),
    "latin1.csv": latin1_csv(),
    "nested.jsonl": jsonl_bytes(
        [{"text": {"body": t}, "label": lab} for t, lab in zip(texts("case"), labels(), strict=True)]
    ),
    "evil;$(touch pwned).csv": good_csv("evil"),
    "dups.csv": csv_bytes([(texts("case")[i % 5], labels()[i % 5]) for i in range(N)]),
}


@pytest.mark.usefixtures("prefect_harness")
def test_flow_trains_the_good_batch_and_quarantines_every_bad_one(
    settings: Settings, drop, tmp_path: Path
) -> None:
    from perennial.flows.continual_training import continual_training

    good_path = drop(settings, "reviews.csv")
    for name, content in FLOW_BAD.items():
        _write(settings.inbox / name, content, age=30)
    outside = tmp_path / "outside.csv"
    outside.write_bytes(good_csv("outside"))
    (settings.inbox / "link.csv").symlink_to(outside)
    os.utime(good_path, (time.time() - 60, time.time() - 60))

    state = continual_training(settings, return_state=True)

    assert state.is_failed()  # the run says some batches were quarantined...
    assert f"{len(FLOW_BAD) + 1} of {len(FLOW_BAD) + 2} batch(es) failed" in state.message
    batches = {b.source: b for b in ledger_for(settings).batches()}
    good = batches.pop("reviews.csv")
    assert good.status == PROMOTED and good.model_version == "1", good.reason  # ...and the good one went on
    assert registry.champion(settings).version == "1"
    assert len(batches) == len(FLOW_BAD) + 1
    for source, batch in batches.items():
        assert batch.status == QUARANTINED and batch.reason and "\n" not in batch.reason, source
    # One model version, made from the good batch only.
    versions = registry.list_versions(settings)
    assert [v["tags"].get("batch_id") for v in versions] == [good.batch_id]
    assert list(settings.inbox.iterdir()) == []
    assert outside.exists() and "pwned" not in os.listdir(Path.cwd())
