"""Ingest: hashing, idempotent recording, raw copies, parsing, quarantine and stratified splits."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.batch_store import load_split, rows_path, split_batch, split_path, stratified_split
from perennial.data.inbox import inbox_files, ready_inbox_files
from perennial.data.ingest import ID_CHARS, ingest_file, read_batch, sha256_of
from perennial.data.ledger import PENDING, QUARANTINED, Ledger

CSV_TEXT = (
    "id,text,label\n"
    "r-0,the screen was wonderful,positive\n"
    "r-1,the delivery was terrible,negative\n"
    "r-2,the packaging was excellent,positive\n"
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # No settings file or PERENNIAL_* variable from the outside may leak in.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    s = Settings(workspace=tmp_path / "ws", val_fraction=0.1, test_fraction=0.1)
    s.inbox.mkdir(parents=True)
    return s


@pytest.fixture
def ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def drop(settings: Settings, name: str, content: str | bytes) -> Path:
    path = settings.inbox / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def labelled_frame(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels})


# Hashing and ids


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    # Bigger than one 1 MiB read chunk, so the chunked loop is exercised.
    data = os.urandom((1 << 20) + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_sha256_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert sha256_of(path) == hashlib.sha256(b"").hexdigest()


def test_batch_id_is_first_16_hex_chars_of_sha(settings: Settings, ledger: Ledger) -> None:
    path = drop(settings, "reviews.csv", CSV_TEXT)
    expected = hashlib.sha256(CSV_TEXT.encode("utf-8")).hexdigest()
    result = ingest_file(path, settings, ledger)
    assert ID_CHARS == 16
    assert result.batch_id == expected[:16]
    assert ledger.batch(result.batch_id).sha256 == expected


# ingest_file


def test_ingest_csv_from_inbox(settings: Settings, ledger: Ledger) -> None:
    path = drop(settings, "reviews.csv", CSV_TEXT)
    original = path.read_bytes()

    result = ingest_file(path, settings, ledger)

    assert result.duplicate is False
    assert result.status == PENDING
    assert result.source == "reviews.csv"
    batch = ledger.batch(result.batch_id)
    assert batch.status == PENDING
    assert batch.source == "reviews.csv"
    assert batch.rows == 3
    raw = Path(batch.raw_path)
    assert raw.parent == settings.raw_dir
    assert raw.name == f"{result.batch_id}.csv"
    assert raw.read_bytes() == original
    assert not path.exists(), "an ingested inbox file is removed"
    rows = pd.read_parquet(rows_path(settings, result.batch_id))
    assert list(rows.columns) == ["batch_id", "id", "text", "label"]
    assert rows["batch_id"].tolist() == [result.batch_id] * 3
    assert rows["label"].tolist() == ["positive", "negative", "positive"]
    assert rows["text"].tolist()[1] == "the delivery was terrible"
    assert "3 rows" in result.message


def test_same_content_again_is_a_noop(settings: Settings, ledger: Ledger) -> None:
    first = ingest_file(drop(settings, "monday.csv", CSV_TEXT), settings, ledger)
    second_path = drop(settings, "tuesday.csv", CSV_TEXT)

    second = ingest_file(second_path, settings, ledger)

    assert second.duplicate is True
    assert second.batch_id == first.batch_id
    assert second.source == "tuesday.csv"
    assert second.status == PENDING
    assert "skipped" in second.message
    assert first.batch_id in second.message
    assert "monday.csv" in second.message
    assert second.message.startswith("tuesday.csv")
    assert len(ledger.batches()) == 1
    assert ledger.batch(first.batch_id).source == "monday.csv"
    assert not second_path.exists(), "a duplicate dropped in the inbox is cleared away too"
    assert sorted(p.name for p in settings.raw_dir.iterdir()) == [f"{first.batch_id}.csv"]


def test_same_name_different_content_is_a_new_batch(settings: Settings, ledger: Ledger) -> None:
    first = ingest_file(drop(settings, "daily.csv", CSV_TEXT), settings, ledger)
    # Other texts: a batch repeating most of an earlier one's texts is quarantined (see overlap tests).
    other = CSV_TEXT.replace("the ", "a ") + "r-3,more text,negative\n"
    second = ingest_file(drop(settings, "daily.csv", other), settings, ledger)
    assert second.duplicate is False
    assert second.batch_id != first.batch_id
    assert [b.rows for b in ledger.batches()] == [3, 4]


def test_file_outside_the_inbox_is_not_deleted(settings: Settings, ledger: Ledger, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "reviews.csv"
    outside.parent.mkdir()
    outside.write_text(CSV_TEXT, encoding="utf-8")

    result = ingest_file(outside, settings, ledger)

    assert result.duplicate is False
    assert outside.read_text(encoding="utf-8") == CSV_TEXT
    assert ledger.batch(result.batch_id).rows == 3
    # ...and a second ingest of it is still a no-op that leaves it alone.
    again = ingest_file(outside, settings, ledger)
    assert again.duplicate is True
    assert outside.exists()


def test_jsonl_batch_with_integer_labels(settings: Settings, ledger: Ledger) -> None:
    content = '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n{"text": "fine", "label": 1}\n'
    result = ingest_file(drop(settings, "films.jsonl", content), settings, ledger)
    assert ledger.batch(result.batch_id).rows == 3
    rows = pd.read_parquet(rows_path(settings, result.batch_id))
    assert rows["label"].tolist() == ["1", "0", "1"]
    assert rows["text"].tolist() == ["good", "bad", "fine"]
    assert Path(ledger.batch(result.batch_id).raw_path).suffix == ".jsonl"


def test_parquet_batch_with_integer_labels(settings: Settings, ledger: Ledger, tmp_path: Path) -> None:
    source = tmp_path / "batch.parquet"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": np.array([0, 1, 1, 0], dtype="int64")}).to_parquet(
        source, index=False
    )
    path = settings.inbox / "batch.parquet"
    path.write_bytes(source.read_bytes())
    result = ingest_file(path, settings, ledger)
    rows = pd.read_parquet(rows_path(settings, result.batch_id))
    assert rows["label"].tolist() == ["0", "1", "1", "0"]
    assert ledger.batch(result.batch_id).rows == 4


def test_float_label_with_gap_becomes_integral_string_and_none(tmp_path: Path) -> None:
    path = tmp_path / "gappy.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, np.nan, 0.0]}).to_parquet(path, index=False)
    frame = read_batch(path)
    assert frame["label"].tolist() == ["1", None, "0"]
    assert frame["label"].iloc[1] is None


def test_jsonl_null_label_becomes_none(tmp_path: Path) -> None:
    path = tmp_path / "gappy.jsonl"
    path.write_text('{"text": "x", "label": 1.0}\n{"text": "y", "label": null}\n', encoding="utf-8")
    assert read_batch(path)["label"].tolist() == ["1", None]


def test_non_integral_float_labels_keep_their_value(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [0.5, 1.0]}).to_parquet(path, index=False)
    assert read_batch(path)["label"].tolist() == ["0.5", "1.0"]


def test_unreadable_file_is_quarantined_with_one_line_reason(settings: Settings, ledger: Ledger) -> None:
    garbage = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01\x80\x81"
    path = drop(settings, "holiday-photo.csv", garbage)

    result = ingest_file(path, settings, ledger)

    assert result.duplicate is False
    assert result.status == QUARANTINED
    batch = ledger.batch(result.batch_id)
    assert batch.status == QUARANTINED
    assert batch.rows is None
    assert "holiday-photo.csv" in batch.reason
    assert "\n" not in batch.reason
    assert batch.reason.startswith("cannot read holiday-photo.csv as CSV")
    assert result.message == batch.reason
    assert Path(batch.raw_path).read_bytes() == garbage
    assert not rows_path(settings, result.batch_id).exists()
    assert not path.exists()


def test_unsupported_suffix_is_unreadable(tmp_path: Path) -> None:
    from perennial.data.ingest import UnreadableBatch

    path = tmp_path / "notes.txt"
    path.write_text("text,label\nx,y\n", encoding="utf-8")
    with pytest.raises(UnreadableBatch, match="unsupported file type '.txt'"):
        read_batch(path)


# inbox_files


def test_inbox_files_oldest_first_ignoring_only_names_in_progress(settings: Settings) -> None:
    names_and_times = {
        "c.csv": 1_000,
        "a.jsonl": 3_000,
        "b.parquet": 2_000,
        "d.JSON": 4_000,
        ".hidden.csv": 500,
        "readme.txt": 100,
        "archive.zip": 200,
        "e.csv.tmp": 300,
    }
    for name, stamp in names_and_times.items():
        path = settings.inbox / name
        path.write_text("x", encoding="utf-8")
        os.utime(path, (stamp, stamp))
    (settings.inbox / "folder.csv").mkdir()
    os.utime(settings.inbox / "folder.csv", (5_000, 5_000))

    # Nothing is left silently: unknown suffixes and folders are listed, for a run to record them.
    assert [p.name for p in inbox_files(settings)] == [
        "readme.txt", "archive.zip", "c.csv", "b.parquet", "a.jsonl", "d.JSON", "folder.csv"
    ]  # fmt: skip


def test_inbox_files_ties_broken_by_name(settings: Settings) -> None:
    for name in ("z.csv", "m.csv", "a.csv"):
        path = settings.inbox / name
        path.write_text("x", encoding="utf-8")
        os.utime(path, (5_000, 5_000))
    assert [p.name for p in inbox_files(settings)] == ["a.csv", "m.csv", "z.csv"]


def test_inbox_files_without_inbox_is_empty(tmp_path: Path) -> None:
    assert inbox_files(Settings(workspace=tmp_path / "nowhere")) == []


# stratified_split

SPLIT_COUNTS = {"positive": 97, "negative": 67, "neutral": 36}


def test_stratified_split_deterministic_for_same_seed() -> None:
    frame = labelled_frame(SPLIT_COUNTS)
    first = stratified_split(frame, 7, 0.1, 0.1)
    second = stratified_split(frame, 7, 0.1, 0.1)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(first[name], second[name])


def test_stratified_split_differs_for_another_seed() -> None:
    frame = labelled_frame(SPLIT_COUNTS)
    first = stratified_split(frame, 7, 0.1, 0.1)
    other = stratified_split(frame, 8, 0.1, 0.1)
    assert set(first["test"]["text"]) != set(other["test"]["text"])
    # Same sizes though: only which rows go where depends on the seed.
    assert {k: len(v) for k, v in first.items()} == {k: len(v) for k, v in other.items()}


@pytest.mark.parametrize("seed", [0, 1, 42, 12345])
def test_stratified_split_disjoint_and_complete(seed: int) -> None:
    frame = labelled_frame(SPLIT_COUNTS)
    splits = stratified_split(frame, seed, 0.1, 0.1)
    texts = {name: list(part["text"]) for name, part in splits.items()}
    everything = texts["train"] + texts["val"] + texts["test"]
    assert len(everything) == len(frame)
    assert sorted(everything) == sorted(frame["text"])
    assert not set(texts["train"]) & set(texts["val"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["val"]) & set(texts["test"])
    # Rows keep their own label.
    truth = dict(zip(frame["text"], frame["label"], strict=True))
    for part in splits.values():
        assert all(truth[t] == label for t, label in zip(part["text"], part["label"], strict=True))


@pytest.mark.parametrize(
    "counts",
    [SPLIT_COUNTS, {"positive": 120, "negative": 80}, {"a": 110, "b": 60, "c": 30}],
)
def test_stratified_split_keeps_class_mix(counts: dict[str, int]) -> None:
    frame = labelled_frame(counts)
    total = len(frame)
    splits = stratified_split(frame, 3, 0.1, 0.1)
    for name, part in splits.items():
        for label, n_label in counts.items():
            got = int((part["label"] == label).sum())
            expected = len(part) * n_label / total
            assert abs(got - expected) <= 1, (name, label, got, expected)
    # Per class, val and test are the class's count times the fraction, rounded.
    for label, n_label in counts.items():
        for name in ("val", "test"):
            got = int((splits[name]["label"] == label).sum())
            assert abs(got - n_label * 0.1) <= 0.5, (name, label, got)


def test_stratified_split_fractions_on_200_rows() -> None:
    frame = labelled_frame({"positive": 120, "negative": 80})
    sizes = {name: len(part) for name, part in stratified_split(frame, 11, 0.1, 0.1).items()}
    assert sizes == {"train": 160, "val": 20, "test": 20}
    sizes = {name: len(part) for name, part in stratified_split(frame, 11, 0.2, 0.25).items()}
    assert sizes == {"train": 110, "val": 40, "test": 50}


def test_stratified_split_ignores_incoming_index() -> None:
    frame = labelled_frame({"positive": 30, "negative": 20})
    frame.index = range(1000, 1050)
    splits = stratified_split(frame, 5, 0.1, 0.1)
    assert sum(len(p) for p in splits.values()) == 50
    for part in splits.values():
        assert list(part.index) == list(range(len(part)))


# split_batch


def test_split_batch_writes_three_parquet_files(settings: Settings, ledger: Ledger) -> None:
    rows = ["id,text,label,extra"]
    rows += [f"r-{i},text number {i},{'positive' if i % 3 else 'negative'},junk{i}" for i in range(90)]
    result = ingest_file(drop(settings, "big.csv", "\n".join(rows) + "\n"), settings, ledger)

    counts = split_batch(settings, result.batch_id)

    assert counts == {"train": 72, "val": 9, "test": 9, "dropped_test_leaks": 0}
    seen: list[str] = []
    for name, n in [(name, counts[name]) for name in ("train", "val", "test")]:
        assert split_path(settings, result.batch_id, name).is_file()
        part = load_split(settings, result.batch_id, name)
        assert len(part) == n
        # Only the known columns are kept; the extra one is dropped.
        assert list(part.columns) == ["batch_id", "text", "label", "id"]
        assert set(part["batch_id"]) == {result.batch_id}
        seen += list(part["id"])
    assert sorted(seen) == sorted(f"r-{i}" for i in range(90))


def test_split_batch_is_reproducible(settings: Settings, ledger: Ledger) -> None:
    rows = ["text,label"] + [f"text {i},{'a' if i % 2 else 'b'}" for i in range(40)]
    result = ingest_file(drop(settings, "again.csv", "\n".join(rows) + "\n"), settings, ledger)
    split_batch(settings, result.batch_id)
    first = load_split(settings, result.batch_id, "test")
    split_batch(settings, result.batch_id)
    pd.testing.assert_frame_equal(first, load_split(settings, result.batch_id, "test"))


def test_users_batch_id_column_is_replaced_not_a_crash(settings: Settings, ledger: Ledger) -> None:
    rows = ["batch_id,text,label"] + [f"theirs,text {i},{'a' if i % 2 else 'b'}" for i in range(30)]
    result = ingest_file(drop(settings, "reexport.csv", "\n".join(rows) + "\n"), settings, ledger)

    assert result.status == "pending"
    stored = pd.read_parquet(settings.batches_dir / result.batch_id / "rows.parquet")
    assert set(stored["batch_id"]) == {result.batch_id}
    assert list(stored.columns).count("batch_id") == 1


def test_split_batch_keeps_one_copy_of_each_text(settings: Settings, ledger: Ledger) -> None:
    rows = ["text,label"] + [f"text {i % 40},{'a' if (i % 40) % 2 else 'b'}" for i in range(44)]
    result = ingest_file(drop(settings, "dups.csv", "\n".join(rows) + "\n"), settings, ledger)

    counts = split_batch(settings, result.batch_id)

    assert counts["train"] + counts["val"] + counts["test"] == 40
    texts = [t for name in ("train", "val", "test") for t in load_split(settings, result.batch_id, name).text]
    assert len(texts) == len(set(texts)) == 40


# Bad files: names, links, encodings, parse errors, limits (the end-to-end cases are in
# tests/reliability/test_bad_inputs.py; these pin the helpers)


def test_safe_name_keeps_ordinary_names_and_masks_invisible_characters() -> None:
    from perennial.data.batch_files import safe_name

    assert safe_name("reviews (1) – copy.csv") == "reviews (1) – copy.csv"
    assert safe_name("a\nb\x1b[2J\u202ec\udcff.csv") == "a?b?[2J?c?.csv"
    long = safe_name("x" * 300 + ".csv")
    assert len(long) == 120 and long.endswith("x.csv") and "..." in long


@pytest.mark.parametrize("name", ["reviews.csv", "reviews (1) – copy.csv", "John's batch_2024-01.02.jsonl"])
def test_ordinary_names_are_safe(name: str) -> None:
    from perennial.data.batch_files import unsafe_name_problem

    assert unsafe_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a\nb.csv", "control or invisible characters"),
        ("evil\u202etxt.csv", "control or invisible characters"),
        ("dir\\file.csv", "path separators"),
        ("a\\..\\b.csv", "a '..' path component"),
        ("$(reboot).csv", "shell metacharacters '$'"),
        ("a;b|c&d.csv", "shell metacharacters '&;|'"),
    ],
)
def test_unsafe_names_say_why(name: str, problem: str) -> None:
    from perennial.data.batch_files import unsafe_name_problem

    reason = unsafe_name_problem(name)
    assert reason is not None and problem in reason and "\n" not in reason


def test_stored_suffix_is_never_taken_from_a_strange_name() -> None:
    from perennial.data.batch_files import stored_suffix

    assert stored_suffix("a.CSV") == ".csv"
    assert stored_suffix("a.parquet") == ".parquet"
    assert stored_suffix("page.html") == ".bin"
    assert stored_suffix("a.c$v") == ".bin"


def test_utf8_check_across_chunk_boundaries(tmp_path: Path) -> None:
    from perennial.data.batch_files import UnreadableBatch, check_text

    path = tmp_path / "a.csv"
    # Small chunks cut the two-byte 'é' in half many times: valid UTF-8 all the same.
    path.write_bytes(("text,label\n" + "café,x\n" * 50).encode("utf-8"))
    for chunk in (1, 2, 3, 7):
        check_text(path, "p", chunk_size=chunk)
    # A Latin-1 byte far past the first chunk: its offset and line are exact.
    data = ("text,label\n" + "café,x\n" * 50).encode("utf-8") + "née,y\n".encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(UnreadableBatch) as raised:
        check_text(path, "p", chunk_size=5)
    message = str(raised.value)
    offset = data.index(b"\xe9")
    assert f"byte offset {offset} (line 52, byte 0xE9)" in message
    assert "mixes encodings" in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("text,label\nx,y\n".encode("utf-16"), "UTF-16"),
        (b"PAR1\x00\x00", "a Parquet file: give it the .parquet suffix"),
        (b"PK\x03\x04rest", "Excel"),
        (b"text,label\n" + b"x,y\n" * 5000 + b"a\x00b,y\n", "NUL byte at byte offset 20012 (line 5002)"),
        (b"text,label\ncaf\xe9,y\n", "not UTF-8 at byte offset 14 (line 2, byte 0xE9); re-save"),
    ],
)
def test_check_text_names_the_problem(tmp_path: Path, content: bytes, needle: str) -> None:
    from perennial.data.batch_files import UnreadableBatch, check_text

    path = tmp_path / "a.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableBatch, match=None) as raised:
        check_text(path, "cannot read a.csv as CSV")
    assert needle in str(raised.value)
    assert "mixes" not in str(raised.value)


def test_csv_errors_name_the_real_line(tmp_path: Path) -> None:
    from perennial.data.batch_csv import csv_record_line
    from perennial.data.batch_files import UnreadableBatch

    path = tmp_path / "a.csv"
    # Record 1 spans lines 2-4; record 3 (line 6) has one field too many.
    path.write_text(
        'text,label\n"one\ntwo\nthree",a\nfine,b\nan, unquoted comma,c\nlast,d\n', encoding="utf-8"
    )
    assert csv_record_line(path, 1) == 2
    assert csv_record_line(path, 3) == 6
    with pytest.raises(UnreadableBatch, match="line 6 has 3 fields but the header has 2: put quotes"):
        read_batch(path)
    path.write_text('text,label\n"one\ntwo",a\n"never closed,b\nx,y\n', encoding="utf-8")
    with pytest.raises(UnreadableBatch, match="unterminated quote: the quoted field starting on line 4"):
        read_batch(path)


def test_duplicate_header_and_blank_file(tmp_path: Path) -> None:
    from perennial.data.batch_files import BadBatch

    path = tmp_path / "a.csv"
    path.write_text("text,label,text\nx,y,z\n", encoding="utf-8")
    with pytest.raises(BadBatch, match="column 'text' appears 2 times in the header"):
        read_batch(path)
    path.write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(BadBatch, match="no header line"):
        read_batch(path)


def test_json_array_file_and_non_object_lines(tmp_path: Path) -> None:
    from perennial.data.batch_files import UnreadableBatch

    path = tmp_path / "a.json"
    path.write_text('[{"text": "x", "label": "a"}, {"text": "y", "label": "b"}]', encoding="utf-8")
    assert read_batch(path)["text"].tolist() == ["x", "y"]
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x", "label": "a"}\n\n["y", "b"]\n', encoding="utf-8")
    with pytest.raises(UnreadableBatch, match="line 3 holds an array, not an object"):
        read_batch(path)


def test_label_types_and_numeric_texts(tmp_path: Path) -> None:
    from perennial.data.batch_files import BadBatch

    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x", "label": ["a"]}\n', encoding="utf-8")
    with pytest.raises(
        BadBatch, match=r"column 'label' holds nested values \(1 row, first line 1: \['a'\]\)"
    ):
        read_batch(path)
    path.write_text('{"text": "x", "label": "a"}\n{"text": 42, "label": "b"}\n', encoding="utf-8")
    with pytest.raises(BadBatch, match="column 'text' holds non-text values .*line 2: a number 42"):
        read_batch(path)


def test_symlink_is_recorded_never_followed(settings: Settings, ledger: Ledger, tmp_path: Path) -> None:
    target = tmp_path / "secret.csv"
    target.write_text(CSV_TEXT, encoding="utf-8")
    link = settings.inbox / "link.csv"
    link.symlink_to(target)
    assert inbox_files(settings) == [link]

    result = ingest_file(link, settings, ledger)

    assert result.status == QUARANTINED and "symbolic link" in result.message
    assert not link.exists() and not link.is_symlink()
    assert target.read_text(encoding="utf-8") == CSV_TEXT  # the target is left alone
    batch = ledger.batch(result.batch_id)
    assert Path(batch.raw_path).name == f"{result.batch_id}.link.txt"
    assert str(target) in Path(batch.raw_path).read_text(encoding="utf-8")
    link.symlink_to(target)
    again = ingest_file(link, settings, ledger)
    assert again.duplicate and again.batch_id == result.batch_id and not link.is_symlink()


def test_dangling_symlink_is_listed_and_refused(settings: Settings, ledger: Ledger) -> None:
    link = settings.inbox / "gone.csv"
    link.symlink_to(settings.root / "nowhere.csv")
    assert inbox_files(settings) == [link]
    assert ingest_file(link, settings, ledger).status == QUARANTINED


def test_refused_name_does_not_block_the_same_bytes_renamed(settings: Settings, ledger: Ledger) -> None:
    bad = ingest_file(drop(settings, "x;rm -rf.csv", CSV_TEXT), settings, ledger)
    assert bad.status == QUARANTINED and "unsafe file name" in bad.message
    same = ingest_file(drop(settings, "x;rm -rf.csv", CSV_TEXT), settings, ledger)
    assert same.batch_id == bad.batch_id and same.status == QUARANTINED  # a retry, refused again
    assert not same.duplicate and f"retrying batch {bad.batch_id}, quarantined earlier" in same.message
    assert len(ledger.batches()) == 1
    renamed = ingest_file(drop(settings, "reviews.csv", CSV_TEXT), settings, ledger)
    assert renamed.status == PENDING and not renamed.duplicate
    assert Path(ledger.batch(bad.batch_id).raw_path).read_text(encoding="utf-8") == CSV_TEXT


def test_a_path_with_dotdot_writes_only_into_the_workspace(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "reviews.csv").write_text(CSV_TEXT, encoding="utf-8")
    result = ingest_file(settings.inbox / ".." / ".." / "elsewhere" / "reviews.csv", settings, ledger)
    assert result.status == PENDING and result.source == "reviews.csv"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reviews.csv"]  # left alone, nothing added


def test_a_vanished_file_is_skipped_not_raised(settings: Settings, ledger: Ledger) -> None:
    result = ingest_file(settings.inbox / "gone.csv", settings, ledger)
    assert result.status == "skipped" and "gone before it could be read" in result.message
    assert ledger.batches() == []
    assert not settings.raw_dir.exists() or not list(settings.raw_dir.iterdir())  # no temporary file


def test_size_limit_is_checked_before_parsing(settings: Settings, ledger: Ledger) -> None:
    small = settings.model_copy(update={"max_file_bytes": 10})
    result = ingest_file(drop(settings, "reviews.csv", CSV_TEXT), small, ledger)
    assert result.status == QUARANTINED and "above the 10 bytes limit (max_file_bytes)" in result.message
    assert not rows_path(settings, result.batch_id).exists()


def test_overlap_counts_earlier_batches_but_not_quarantined_ones(settings: Settings, ledger: Ledger) -> None:
    rows = "text,label\n" + "".join(f"row number {i},{'ab'[i % 2]}\n" for i in range(10))
    first = ingest_file(drop(settings, "first.csv", rows), settings, ledger)
    assert first.status == PENDING
    mostly_old = rows.replace("row number 0,", "new row 0,") + "another,a\n"  # 9 of 11 repeat
    again = ingest_file(drop(settings, "again.csv", mostly_old), settings, ledger)
    assert again.status == QUARANTINED
    assert f"9 of 11 rows (82%) repeat texts of earlier batches, 9 of them from batch {first.batch_id}" in (
        again.message
    )
    # Repeating a quarantined batch is fine: that is how a fixed batch is sent again.
    fixed = mostly_old + "one more,b\n"
    assert ingest_file(drop(settings, "fixed.csv", fixed), settings, ledger).status == QUARANTINED  # first
    ledger.transition(first.batch_id, QUARANTINED, "test")
    assert ingest_file(drop(settings, "fixed2.csv", fixed + "x,a\n"), settings, ledger).status == PENDING
    # Within the allowed share: accepted (11 of 12 rows repeat the pending fixed2.csv).
    lenient = settings.model_copy(update={"max_overlap_fraction": 0.95})
    ok = ingest_file(drop(settings, "ok.csv", mostly_old + "y,b\n"), lenient, ledger)
    assert ok.status == PENDING


def test_header_only_and_empty_files(settings: Settings, ledger: Ledger) -> None:
    header = ingest_file(drop(settings, "header.csv", "text,label\n"), settings, ledger)
    assert header.status == QUARANTINED and "has no rows (only a header: text, label)" in header.message
    empty = ingest_file(drop(settings, "empty.jsonl", b""), settings, ledger)
    assert empty.status == QUARANTINED and "empty (0 bytes)" in empty.message
    blank = ingest_file(drop(settings, "blank.jsonl", "\n\n"), settings, ledger)
    assert blank.status == QUARANTINED and "blank.jsonl has no rows:" in blank.message


# ready_inbox_files: a run never takes a file that is still being written


def test_settled_files_are_ready_without_waiting(settings: Settings) -> None:
    path = drop(settings, "old.csv", CSV_TEXT)
    os.utime(path, (1_000, 1_000))
    slow = settings.model_copy(update={"inbox_settle_seconds": 30})
    started = time.monotonic()
    assert ready_inbox_files(slow) == [path]
    assert time.monotonic() - started < 5


def test_a_fresh_unchanged_file_is_taken_after_a_short_wait(settings: Settings) -> None:
    path = drop(settings, "new.csv", CSV_TEXT)
    quick = settings.model_copy(update={"inbox_settle_seconds": 0.3})
    started = time.monotonic()
    assert ready_inbox_files(quick) == [path]
    assert time.monotonic() - started >= 0.2


def test_a_growing_file_is_left_for_the_next_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path = drop(settings, "growing.csv", CSV_TEXT)
    old = drop(settings, "old.csv", CSV_TEXT.replace("the", "a"))
    os.utime(old, (1_000, 1_000))
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            with path.open("a", encoding="utf-8") as handle:
                handle.write("r-9,more,positive\n")
            time.sleep(0.02)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with caplog.at_level("INFO", logger="perennial.data.ingest"):
            ready = ready_inbox_files(settings.model_copy(update={"inbox_settle_seconds": 0.3}))
    finally:
        stop.set()
        writer.join()
    assert ready == [old]
    assert any("growing.csv: still being written" in r.getMessage() for r in caplog.records)
