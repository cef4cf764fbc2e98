"""Ingest: hashing, idempotent recording, raw copies, parsing, quarantine and stratified splits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perennial.config import Settings
from perennial.ingest import (
    ID_CHARS,
    inbox_files,
    ingest_file,
    load_split,
    read_batch,
    rows_path,
    sha256_of,
    split_batch,
    split_path,
    stratified_split,
)
from perennial.ledger import PENDING, QUARANTINED, Ledger

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
    second = ingest_file(drop(settings, "daily.csv", CSV_TEXT + "r-3,more text,negative\n"), settings, ledger)
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
    from perennial.ingest import UnreadableBatch

    path = tmp_path / "notes.txt"
    path.write_text("text,label\nx,y\n", encoding="utf-8")
    with pytest.raises(UnreadableBatch, match="unsupported file type '.txt'"):
        read_batch(path)


# inbox_files


def test_inbox_files_oldest_first_ignoring_hidden_and_unknown(settings: Settings) -> None:
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

    assert [p.name for p in inbox_files(settings)] == ["c.csv", "b.parquet", "a.jsonl", "d.JSON"]


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

    assert set(counts) == {"train", "val", "test"}
    assert sum(counts.values()) == 90
    assert counts == {"train": 72, "val": 9, "test": 9}
    seen: list[str] = []
    for name, n in counts.items():
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

    assert sum(counts.values()) == 40
    texts = [t for name in counts for t in load_split(settings, result.batch_id, name)["text"]]
    assert len(texts) == len(set(texts)) == 40
