"""Batch-file readers: other encodings, other CSV separators, pandas' `to_json` layouts, row limits
and decompression bombs. Each input a user may send is generated (Hypothesis) where the reader looks
at user data; the bomb is built for real and read in a subprocess whose peak memory is measured."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.data.batch_csv import other_separator
from perennial.data.batch_files import BadBatch, UnreadableBatch, check_text, read_table
from perennial.data.ingest import ingest_file, read_batch
from perennial.data.ledger import QUARANTINED, Ledger

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Texts a user may write: any character but control characters and lone surrogates (not text).
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
LABEL = st.sampled_from(["positive", "negative", "neutral"])


@st.composite
def frames(draw: st.DrawFn, min_rows: int = 1, max_rows: int = 12) -> pd.DataFrame:
    n = draw(st.integers(min_rows, max_rows))
    texts = draw(st.lists(TEXT, min_size=n, max_size=n))
    labels = draw(st.lists(LABEL, min_size=n, max_size=n))
    return pd.DataFrame({"text": texts, "label": labels})


# Encodings

WIDE = {
    "utf-16-le": ("UTF-16 (little-endian)", codecs.BOM_UTF16_LE),
    "utf-16-be": ("UTF-16 (big-endian)", codecs.BOM_UTF16_BE),
    "utf-32-le": ("UTF-32 (little-endian)", codecs.BOM_UTF32_LE),
    "utf-32-be": ("UTF-32 (big-endian)", codecs.BOM_UTF32_BE),
}


def _refusal(path: Path) -> str:
    with pytest.raises(UnreadableBatch) as raised:
        check_text(path, "cannot read a.csv as CSV")
    return str(raised.value)


@pytest.mark.parametrize("codec", sorted(WIDE))
def test_byte_order_mark_names_the_encoding(tmp_path: Path, codec: str) -> None:
    label, bom = WIDE[codec]
    path = tmp_path / "a.csv"
    path.write_bytes(bom + "text,label\nx,y\n".encode(codec))
    family = label.split()[0]
    assert _refusal(path) == (
        f"cannot read a.csv as CSV: it is {label} text (it starts with a {family} byte-order mark): "
        "re-save it as UTF-8"
    )


@FAST
@given(frame=frames(), codec=st.sampled_from(sorted(WIDE)), bom=st.booleans(), lines=st.booleans())
def test_any_frame_in_utf16_or_utf32_is_named_with_its_encoding(
    tmp_path: Path, frame: pd.DataFrame, codec: str, bom: bool, lines: bool
) -> None:
    label, mark = WIDE[codec]
    text = frame.to_json(orient="records", lines=True) if lines else frame.to_csv(index=False)
    path = tmp_path / "a.csv"
    path.write_bytes((mark if bom else b"") + text.encode(codec))
    message = _refusal(path)
    if bom:
        assert f"it is {label} text (it starts with a" in message
    else:
        assert message == (
            f"cannot read a.csv as CSV: it is {label} text without a byte-order mark: re-save it as UTF-8"
        )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        # UTF-8 with a stray NUL is still told as binary data, not as UTF-16.
        (b"text,label\na\x00b,y\n", "binary data at byte offset 12"),
        (b"text,label\n" + b"\x00" * 64, "binary data at byte offset 11"),
        (bytes((i * 37 + 11) % 256 for i in range(4096)), "binary data"),
    ],
)
def test_nul_bytes_that_are_not_utf16(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(content)
    message = _refusal(path)
    assert needle in message and "UTF-16" not in message and "UTF-32" not in message


# CSV separators

SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}


@FAST
@given(frame=frames(), separator=st.sampled_from(sorted(SEPARATORS)))
def test_any_frame_with_another_separator_is_told_so(
    tmp_path: Path, frame: pd.DataFrame, separator: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_text(frame.to_csv(index=False, sep=separator), encoding="utf-8")
    with pytest.raises(UnreadableBatch) as raised:
        read_table(path, "a.csv")
    assert str(raised.value) == (
        f"cannot read a.csv as CSV: it seems to use {SEPARATORS[separator]} as separator: "
        "export with ',' as separator"
    )


def test_semicolon_csv_with_commas_in_its_texts(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id;text;label\n1;fine, really, fine;positive\n2;bad;negative\n", encoding="utf-8")
    assert other_separator(path) == ";"
    with pytest.raises(UnreadableBatch, match="it seems to use ';' as separator"):
        read_batch(path)


@FAST
@given(frame=frames())
def test_any_comma_csv_reads_back_whatever_its_texts_hold(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "a.csv"
    path.write_text(frame.to_csv(index=False), encoding="utf-8")
    assert other_separator(path) is None
    back = read_batch(path)
    assert back["text"].tolist() == frame["text"].tolist()
    assert back["label"].tolist() == frame["label"].tolist()


def test_comma_csv_with_unquoted_commas_keeps_the_quoting_advice(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\nfine; really,a\nan, unquoted; comma,b\n", encoding="utf-8")
    assert other_separator(path) is None
    with pytest.raises(UnreadableBatch, match="line 3 has 3 fields but the header has 2: put quotes"):
        read_batch(path)


# pandas' to_json layouts

ORIENTS = ("columns", "index", "split", "table", "records")


@FAST
@given(
    frame=frames(),
    orient=st.sampled_from(ORIENTS),
    shuffle=st.randoms(use_true_random=False),
    numeric=st.booleans(),
)
def test_any_frame_pandas_writes_as_json_reads_back_in_index_order(
    tmp_path: Path, frame: pd.DataFrame, orient: str, shuffle, numeric: bool
) -> None:
    if numeric:
        frame["label"] = np.arange(len(frame)) % 3
    order = list(range(len(frame)))
    shuffle.shuffle(order)
    written = frame.iloc[order]  # rows written out of order, each keeping its index label
    path = tmp_path / "a.json"
    written.to_json(path, orient=orient)
    back = read_batch(path)
    expected = frame if orient != "records" else written
    assert back["text"].tolist() == expected["text"].tolist()
    assert back["label"].tolist() == [str(v) for v in expected["label"]]
    assert list(back.columns) == ["text", "label"]


@pytest.mark.parametrize("orient", ["columns", "index", "split", "table"])
def test_jsonl_file_holding_one_pandas_object(tmp_path: Path, orient: str) -> None:
    frame = pd.DataFrame({"text": ["b, with a comma", "a"], "label": [1, 0]})
    path = tmp_path / "a.jsonl"
    frame.to_json(path, orient=orient)
    assert read_batch(path)["text"].tolist() == ["b, with a comma", "a"]
    assert read_batch(path)["label"].tolist() == ["1", "0"]


def test_pandas_default_json_with_a_bad_value_names_its_index(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    pd.DataFrame({"text": ["x", 7], "label": ["a", "b"]}).to_json(path)
    with pytest.raises(BadBatch, match="column 'text' holds non-text values .*index 1: a number 7"):
        read_batch(path)


@pytest.mark.parametrize(
    "value",
    [
        {"a": {"b": 1}, "c": {"d": 2}},  # neither keys are the columns
        {"text": {"text": "x"}, "label": {"text": "y"}},  # text on both sides
        [["x", "positive"], ["y", "negative"]],  # orient="values": no column names
        {"columns": ["text", "label"], "data": [["x"]]},  # a split layout with a short row
        {"text": "x", "label": {"nested": 1}},  # one object with a nested value
    ],
)
def test_ambiguous_json_names_the_fix(tmp_path: Path, value: object) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    with pytest.raises(UnreadableBatch) as raised:
        read_batch(path)
    message = str(raised.value)
    assert message.startswith("cannot read a.json as JSON: ")
    assert 'df.to_json(path, orient="records", lines=True)' in message and "\n" not in message


def test_one_record_and_json_lines_in_a_json_file_still_read(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"text": "x", "label": "a"}', encoding="utf-8")
    assert read_batch(path)["text"].tolist() == ["x"]
    path.write_text('{"text": "x", "label": "a"}\n{"text": "y", "label": "b"}\n', encoding="utf-8")
    assert read_batch(path)["text"].tolist() == ["x", "y"]


# Row limits

WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
    ".json": lambda frame, path: frame.to_json(path),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


@FAST
@given(
    frame=frames(min_rows=0, max_rows=30), limit=st.integers(1, 30), suffix=st.sampled_from(sorted(WRITERS))
)
def test_more_rows_than_the_limit_are_refused_in_every_format(
    tmp_path: Path, frame: pd.DataFrame, limit: int, suffix: str
) -> None:
    path = tmp_path / f"a{suffix}"
    WRITERS[suffix](frame, path)
    if len(frame) <= limit:
        assert len(read_table(path, "a", max_rows=limit)) == len(frame)
        return
    with pytest.raises(BadBatch) as raised:
        read_table(path, "a", max_rows=limit)
    message = str(raised.value)
    if suffix == ".parquet":  # counted from the metadata
        assert (
            message
            == f"a holds {len(frame)} rows, above the {limit} limit (max_rows): split it into smaller batches"
        )
    else:
        assert message == (
            f"a holds more than {limit} rows, the limit (max_rows); reading stopped there: "
            "split it into smaller batches"
        )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_reading_stops_at_the_row_limit(tmp_path: Path, suffix: str) -> None:
    # What follows the limit is broken: a reader that read everything would say so instead.
    path = tmp_path / f"a{suffix}"
    if suffix == ".csv":
        path.write_text("text,label\n" + "x,y\n" * 20 + '"never closed,y\n', encoding="utf-8")
    else:
        path.write_text('{"text": "x", "label": "y"}\n' * 20 + "{broken\n", encoding="utf-8")
    with pytest.raises(BadBatch, match="holds more than 10 rows, the limit"):
        read_table(path, "a", max_rows=10)
    with pytest.raises(UnreadableBatch):
        read_table(path, "a")


def test_ingest_quarantines_a_batch_over_max_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    config = Settings(workspace=tmp_path / "ws", max_rows=5)
    config.inbox.mkdir(parents=True)
    path = config.inbox / "big.csv"
    path.write_text("text,label\n" + "".join(f"row {i},a\n" for i in range(6)), encoding="utf-8")
    result = ingest_file(path, config, Ledger(config.ledger_path))
    assert result.status == QUARANTINED
    assert result.message == (
        "big.csv holds more than 5 rows, the limit (max_rows); reading stopped there: "
        "split it into smaller batches"
    )


# Decompression bombs

ONE_TEXT = "a long review that says the same thing again and again " * 18  # ~1 KB


def _plain_bomb(path: Path, rows: int) -> None:
    """Honest metadata: every row's text stored in full, zstd shrinks it ~1000 times."""
    table = pa.table({"text": pa.array([ONE_TEXT] * rows), "label": pa.array(["a"] * rows)})
    pq.write_table(table, path, compression="zstd", use_dictionary=False)


def _dictionary_bomb(path: Path, rows: int, store_schema: bool) -> None:
    """The text stored once: the metadata says a few KB, the rows are ~1 KB each. Without the
    stored Arrow schema pyarrow decodes every row's text."""
    text = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([ONE_TEXT]))
    table = pa.table({"text": text, "label": pa.array(np.zeros(rows, dtype=np.int64))})
    pq.write_table(table, path, compression="zstd", store_schema=store_schema)


def test_parquet_over_the_size_limit_is_refused_from_its_metadata(tmp_path: Path) -> None:
    path = tmp_path / "bomb.parquet"
    _plain_bomb(path, 20_000)  # ~20 MB of rows in ~100 KB
    assert path.stat().st_size < 1_000_000
    with pytest.raises(BadBatch) as raised:
        read_table(path, "bomb.parquet", max_bytes=5_000_000)
    message = str(raised.value)
    assert message.startswith("bomb.parquet expands to 20.")
    assert message.endswith(
        "MB, above the 5.0 MB limit (max_decompressed_bytes); it was not read: split it into smaller batches"
    )
    assert len(read_table(path, "bomb.parquet", max_bytes=50_000_000)) == 20_000


@pytest.mark.parametrize("store_schema", [True, False])
def test_dictionary_bomb_is_stopped_while_reading(tmp_path: Path, store_schema: bool) -> None:
    path = tmp_path / "bomb.parquet"
    _dictionary_bomb(path, 20_000, store_schema)
    meta = pq.ParquetFile(path).metadata
    declared = sum(meta.row_group(0).column(c).total_uncompressed_size for c in range(meta.num_columns))
    assert declared < 1_000_000  # the metadata alone would let it through
    with pytest.raises(
        BadBatch, match=r"expands to over 5\.\d MB after \d,\d{3} of its 20,000 rows, above the 5\.0 MB"
    ):
        read_table(path, "bomb.parquet", max_bytes=5_000_000)
    frame = read_table(path, "bomb.parquet", max_bytes=50_000_000)
    assert len(frame) == 20_000 and frame["text"].iloc[-1] == ONE_TEXT


# Peak memory of the reading alone. getrusage's ru_maxrss is kept across fork and exec on Linux, so a
# child of a big pytest process starts with the parent's peak: the kernel's own high-water mark of
# this process (VmHWM) is read instead, where there is one.
_MEASURE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from perennial.data.batch_files import BadBatch, read_table

    def peak():
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    before = peak()
    try:
        read_table(Path(sys.argv[1]), "bomb.parquet", max_bytes=int(sys.argv[2]), max_rows=1_000_000)
        print("read")
    except BadBatch as error:
        print(error)
    print((peak() - before) * 1024)
    """
)


def _peak_growth(path: Path, max_bytes: int) -> tuple[str, int]:
    """What reading `path` in a fresh process says, and how much its peak memory grew meanwhile."""
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(max_bytes)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    message, grown = run.stdout.strip().splitlines()
    return message, int(grown)


@pytest.mark.parametrize("kind", ["plain", "dictionary", "dictionary-without-schema"])
def test_bomb_is_refused_with_little_memory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.parquet"
    if kind == "plain":
        _plain_bomb(path, 200_000)  # ~200 MB of rows in ~250 KB
    else:
        _dictionary_bomb(path, 400_000, store_schema=kind == "dictionary")  # ~400 MB in ~50 KB
    assert path.stat().st_size < 5_000_000
    message, grown = _peak_growth(path, 50_000_000)
    expected = "expands to 2" if kind == "plain" else "expands to over 5"
    assert message.startswith(f"bomb.parquet {expected}") and "above the 50.0 MB limit" in message, message
    assert grown < 120_000_000, f"peak memory grew by {grown:,} bytes"


def test_the_memory_measure_sees_a_bomb_read_whole(tmp_path: Path) -> None:
    # Without the limit the same file costs its expanded size: the measure above can fail.
    path = tmp_path / "bomb.parquet"
    _dictionary_bomb(path, 200_000, store_schema=False)
    message, grown = _peak_growth(path, 10**12)
    assert message == "read" and grown > 150_000_000


def test_utf8_text_with_many_control_characters_is_text(tmp_path: Path) -> None:
    """Found by the generated streams: a domain value with control bytes on every row made 6% of the
    head control bytes, and the good batch was refused as binary. Valid UTF-8 is text."""
    rows = [f"row {i} of the batch,positive,d\x19\x15\x0b" for i in range(30)]
    path = tmp_path / "controls.csv"
    path.write_bytes(("text,label,domain\n" + "\n".join(rows) + "\n").encode())
    frame = read_table(path, "controls.csv")
    assert len(frame) == 30 and frame["domain"].iloc[0] == "d\x19\x15\x0b"
    # The same share of control bytes in data that is not UTF-8 is still called binary.
    path.write_bytes(b"".join(b"\x01\x02\x03\xff\xfe" * 40 for _ in range(5)))
    with pytest.raises(UnreadableBatch, match="not a text file"):
        check_text(path, "cannot read x.csv as CSV")
