"""Streams from any data: splitting a labelled file into ordered batch files the inbox replays in order."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.inbox import inbox_files
from perennial.data.ingest import read_batch
from perennial.data.stream import split_by_column, split_by_time, stream_file, write_stream

DATA = Path(__file__).parent.parent / "data"
DATED = DATA / "dated.csv"


def parse_stamp(stamp: str) -> dt.datetime:
    """Independent of pandas: the fixture's two date styles, read with the standard library."""
    if "T" in stamp:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    return dt.datetime.strptime(stamp, "%Y-%m-%d")


@pytest.fixture
def dated() -> pd.DataFrame:
    return read_batch(DATED)


@pytest.fixture
def fixture_stamps() -> list[str]:
    with DATED.open(encoding="utf-8") as handle:
        return [row["created_at"] for row in csv.DictReader(handle)]


# split_by_column


def test_split_by_column_order_of_first_appearance_and_row_order() -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "domain": ["zeta", "alpha", "zeta", "mid", "alpha", "zeta"],
            "text": list("uvwxyz"),
            "label": ["1", "0", "1", "0", "1", "0"],
        }
    )
    parts = split_by_column(frame, "domain")
    assert [label for label, _ in parts] == ["zeta", "alpha", "mid"]  # not alphabetical
    assert [list(part["id"]) for _, part in parts] == [["a", "c", "f"], ["b", "e"], ["d"]]
    assert sorted(i for _, part in parts for i in part["id"]) == list(frame["id"])
    assert all(set(part["domain"]) == {label} for label, part in parts)


def test_split_by_column_on_a_fixture_keeps_every_row() -> None:
    frame = pd.concat([read_batch(DATA / "reviews.csv"), read_batch(DATA / "films.jsonl")], ignore_index=True)
    parts = split_by_column(frame, "domain")
    assert [(label, len(part)) for label, part in parts] == [("reviews", 80), ("films", 80)]
    pd.testing.assert_frame_equal(pd.concat([p for _, p in parts], ignore_index=True), frame)


def test_split_by_unknown_column_lists_the_columns() -> None:
    frame = pd.DataFrame({"text": ["a"], "label": ["x"]})
    with pytest.raises(ValueError, match=r"no column 'topic'; available columns: text, label"):
        split_by_column(frame, "topic")


def test_split_by_column_with_missing_values_says_how_many() -> None:
    frame = pd.DataFrame(
        {"text": list("abcd"), "label": list("xyxy"), "domain": ["a", None, "b", float("nan")]}
    )
    with pytest.raises(ValueError, match=r"column 'domain' has no value in 2 of 4 rows"):
        split_by_column(frame, "domain")


# split_by_time


def test_split_by_month_is_chronological_skips_empty_months(dated: pd.DataFrame) -> None:
    parts = split_by_time(dated, "created_at", "month")
    expected = [f"2024-{m:02d}" for m in range(1, 13) if m not in (4, 8)] + ["2025-01", "2025-02"]
    assert [label for label, _ in parts] == expected
    for label, part in parts:
        assert {parse_stamp(s).strftime("%Y-%m") for s in part["created_at"]} == {label}


def test_split_by_quarter_and_year(dated: pd.DataFrame, fixture_stamps: list[str]) -> None:
    quarters = split_by_time(dated, "created_at", "quarter")
    assert [label for label, _ in quarters] == ["2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4", "2025-Q1"]
    for label, part in quarters:
        got = {f"{d.year}-Q{(d.month - 1) // 3 + 1}" for d in map(parse_stamp, part["created_at"])}
        assert got == {label}
    years = split_by_time(dated, "created_at", "year")
    expected_counts = {y: sum(s.startswith(y) for s in fixture_stamps) for y in ("2024", "2025")}
    assert [(label, len(part)) for label, part in years] == list(expected_counts.items())


def test_split_by_iso_week(dated: pd.DataFrame, fixture_stamps: list[str]) -> None:
    parts = split_by_time(dated, "created_at", "week")
    labels = [label for label, _ in parts]
    assert all(re.fullmatch(r"\d{4}-W\d{2}", label) for label in labels)
    assert labels == sorted(labels)  # zero-padded ISO weeks sort chronologically
    expected = sorted({"{}-W{:02d}".format(*parse_stamp(s).isocalendar()[:2]) for s in fixture_stamps})
    assert labels == expected
    by_text = {text: label for label, part in parts for text in part["text"]}
    assert by_text["the packaging was horrible #39"] == "2025-W01"  # 2024-12-30 is in ISO year 2025
    assert sum(len(part) for _, part in parts) == len(fixture_stamps)


def test_rows_inside_a_part_are_sorted_by_time_stably() -> None:
    frame = pd.DataFrame(
        {
            "text": ["late", "tie-1", "early", "tie-2", "other-month"],
            "label": ["a", "b", "a", "b", "a"],
            "when": ["2024-03-20", "2024-03-10T00:00:00Z", "2024-03-01", "2024-03-10", "2024-01-31"],
        }
    )
    parts = split_by_time(frame, "when", "month")
    assert [label for label, _ in parts] == ["2024-01", "2024-03"]
    assert list(parts[1][1]["text"]) == ["early", "tie-1", "tie-2", "late"]
    assert list(parts[1][1]["when"])[0] == "2024-03-01"  # the user's values are kept as written


def test_unparseable_dates_name_count_and_first_bad_value() -> None:
    frame = pd.DataFrame(
        {
            "text": list("abcd"),
            "label": list("xyxy"),
            "when": ["2024-01-01", "soon", "2024-02-30", "2024-03-01"],
        }
    )
    with pytest.raises(ValueError, match=r"column 'when': 2 of 4 values are not dates \(first: 'soon'\)"):
        split_by_time(frame, "when", "month")


def test_split_by_time_rejects_unknown_period(dated: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="every must be one of week, month, quarter, year"):
        split_by_time(dated, "created_at", "day")


# write_stream


def test_write_stream_names_and_safe_labels(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a"], "label": ["x"]})
    paths = write_stream([("2024-Q1", frame), ("news/world é", frame), ("a.b_c-d", frame)], tmp_path, "csv")
    assert [p.name for p in paths] == ["001-2024-Q1.csv", "002-news_world__.csv", "003-a.b_c-d.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temporary files left
    later = write_stream([("next", frame)], tmp_path, "csv", start=4)
    assert [p.name for p in later] == ["004-next.csv"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_write_stream_formats_read_back_equal(tmp_path: Path, fmt: str) -> None:
    frame = read_batch(DATA / "reviews.csv")
    parts = [
        ("first", frame.iloc[:30].reset_index(drop=True)),
        ("second", frame.iloc[30:].reset_index(drop=True)),
    ]
    paths = write_stream(parts, tmp_path, fmt)
    assert [p.suffix for p in paths] == [f".{fmt}"] * 2
    for (_, part), path in zip(parts, paths, strict=True):
        pd.testing.assert_frame_equal(read_batch(path), part)


def test_write_stream_mtimes_strictly_increase_after_existing_files(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a"], "label": ["x"]})
    earlier = tmp_path / "earlier.csv"  # e.g. a stream written moments ago, stamped ahead of the clock
    earlier.write_text("text,label\na,x\n", encoding="utf-8")
    ahead = time.time() + 100
    os.utime(earlier, (ahead, ahead))
    first = write_stream([(str(i), frame) for i in range(5)], tmp_path, "jsonl")
    second = write_stream([("later", frame)], tmp_path, "jsonl", start=6)
    mtimes = [p.stat().st_mtime for p in [earlier, *first, *second]]
    assert all(a < b for a, b in zip(mtimes, mtimes[1:], strict=False))


def test_write_stream_refuses_to_overwrite(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a"], "label": ["x"]})
    (tmp_path / "002-b.csv").write_text("mine\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="002-b.csv"):
        write_stream([("a", frame), ("b", frame)], tmp_path, "csv")
    assert (tmp_path / "002-b.csv").read_text(encoding="utf-8") == "mine\n"
    assert not (tmp_path / "001-a.csv").exists()  # refused up front: no half-written stream


def test_write_stream_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be one of csv, jsonl, parquet"):
        write_stream([("a", pd.DataFrame({"text": ["a"], "label": ["x"]}))], tmp_path, "xlsx")


# stream_file


def test_stream_file_into_the_inbox_replays_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    settings = Settings(workspace=tmp_path / "ws")
    paths = stream_file(DATED, settings.inbox, by_time="created_at", every="quarter")
    assert [p.name for p in paths] == [
        "001-2024-Q1.csv",
        "002-2024-Q2.csv",
        "003-2024-Q3.csv",
        "004-2024-Q4.csv",
        "005-2025-Q1.csv",
    ]
    # Reverse-alphabetical names: only the mtimes can give the inbox the stream's order.
    renamed = [p.rename(p.with_name(f"{chr(ord('z') - i)}.csv")) for i, p in enumerate(paths)]
    assert inbox_files(settings) == renamed
    total = pd.concat([read_batch(p) for p in renamed], ignore_index=True)
    assert sorted(total["text"]) == sorted(read_batch(DATED)["text"])


def test_stream_file_defaults_to_the_input_format_json_as_jsonl(tmp_path: Path) -> None:
    source = tmp_path / "films.json"
    source.write_bytes((DATA / "films.jsonl").read_bytes())
    paths = stream_file(source, tmp_path / "out", by="label")
    assert [p.name for p in paths] == ["001-positive.jsonl", "002-negative.jsonl"]
    assert [len(read_batch(p)) for p in paths] == [40, 40]
    parquet = stream_file(source, tmp_path / "pq", by="label", fmt="parquet")
    assert [p.suffix for p in parquet] == [".parquet", ".parquet"]


def test_stream_file_needs_text_and_label_and_one_way_to_split(tmp_path: Path) -> None:
    source = tmp_path / "no-label.csv"
    source.write_text("text,domain\nhello,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no-label.csv has no label column"):
        stream_file(source, tmp_path / "out", by="domain")
    with pytest.raises(ValueError, match="exactly one of by"):
        stream_file(DATED, tmp_path / "out", by="label", by_time="created_at")
    with pytest.raises(ValueError, match="exactly one of by"):
        stream_file(DATED, tmp_path / "out")
    assert not (tmp_path / "out").exists()
