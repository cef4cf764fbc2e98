"""Read a batch file, and say in one line what is wrong with one that cannot be used.

Only the file's bytes and name are looked at: nothing is written, no shell is ever run, and a path is
never followed through a symbolic link by the callers (see ``ingest``). Each message names the place
(byte offset, line, row, column) and says what to do. Checks that need one pass over a file stream it
in chunks, so a big file costs time in proportion to its size and almost no memory.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from perennial.messages import first_line
from perennial.validation import REQUIRED_COLUMNS

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
_KIND = {".csv": "CSV", ".jsonl": "JSON Lines", ".json": "JSON", ".parquet": "Parquet"}
_HEAD_BYTES = 8192  # looked at to tell text from binary
_CHUNK = 1 << 20
_MAX_SHOWN_NAME = 120


class BadBatch(ValueError):
    """A batch that cannot be used as it is; the message is one line: what, where, what to do."""


class UnreadableBatch(BadBatch):
    """The file cannot be parsed as a table."""


# Names: shown in logs, the ledger, Prefect artifacts and pages; never used to build a path.
_SHELL_CHARS = frozenset("$`;|&<>")
_DOTDOT = re.compile(r"(^|[/\\])\.\.([/\\]|$)")


def _invisible(char: str) -> bool:
    # Cc: control (newline, ESC), Cf: format (right-to-left override), Cs: undecodable bytes kept by
    # Python as lone surrogates, Zl/Zp: line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def safe_name(name: str) -> str:
    """A file name as it may be shown: one line, no control or invisible characters, bounded length."""
    shown = "".join("?" if _invisible(c) else c for c in str(name))
    if len(shown) > _MAX_SHOWN_NAME:
        shown = shown[: _MAX_SHOWN_NAME - 20] + "..." + shown[-17:]
    return shown


def unsafe_name_problem(name: str) -> str | None:
    """Why a batch file's name is refused (control characters, path separators, `..`, shell
    metacharacters), or None. The name is never used for a path or a command; such a name is refused
    because no honest export produces one, and it would be shown in logs and pages."""
    problems = []
    if any(_invisible(c) for c in name):
        problems.append("control or invisible characters")
    if "/" in name or "\\" in name:
        problems.append("path separators")
    if _DOTDOT.search(name):
        problems.append("a '..' path component")
    shell = "".join(sorted(_SHELL_CHARS & set(name)))
    if shell:
        problems.append(f"shell metacharacters {shell!r}")
    if not problems:
        return None
    return (
        f"unsafe file name {safe_name(name)!r}: it contains {', '.join(problems)}; the file was kept but"
        " not read: rename it to letters, digits, spaces, '-', '_' and '.' and drop it again"
    )


def stored_suffix(name: str) -> str:
    """The suffix of the raw copy: a known batch suffix, else `.bin` (never taken from the name as is)."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in SUFFIXES else ".bin"


def human_size(size: int) -> str:
    return f"{size:,} bytes" if size < 1_000_000 else f"{size / 1e6:,.1f} MB"


# Text or not
_MAGIC = (
    (b"PAR1", "a Parquet file: give it the .parquet suffix"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive (an Excel workbook?): export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls?): export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed data: decompress it first"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
)
# Bytes that do not occur in text: controls other than tab, newline, form feed, carriage return.
_CONTROL = bytes([*range(0, 9), 11, *range(14, 32), 127])


def _binary_offset(head: bytes) -> int | None:
    """Where binary data shows in the first bytes: a NUL, or more than 5% control bytes."""
    nul = head.find(b"\x00")
    if nul >= 0:
        return nul
    controls = len(head) - len(head.translate(None, _CONTROL))
    if head and controls / len(head) > 0.05:
        return next(i for i, b in enumerate(head) if b in _CONTROL)
    return None


def check_text(path: Path, prefix: str, chunk_size: int = _CHUNK) -> None:
    """Raise UnreadableBatch unless the file is UTF-8 text (a UTF-8 byte-order mark is fine).

    One streaming pass: the first failing byte is reported with its offset and line, and a file that
    is UTF-8 up to there is said to mix encodings."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise UnreadableBatch(
                f"{prefix}: it is UTF-16 text (it starts with a UTF-16 byte-order mark): re-save it as UTF-8"
            )
        what = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
        if what is not None:
            raise UnreadableBatch(f"{prefix}: not a text file, it looks like {what}")
        offset = _binary_offset(head)
        if offset is not None:
            raise UnreadableBatch(
                f"{prefix}: not a text file (binary data at byte offset {offset}): "
                "export the batch as CSV or JSON Lines in UTF-8"
            )
        _scan_utf8(handle, head, prefix, chunk_size)


def _scan_utf8(handle, first: bytes, prefix: str, chunk_size: int) -> None:
    base = 0  # file offset of data[0]
    lines = 0  # newlines before data[0]
    non_ascii = False  # valid multi-byte UTF-8 seen before data[0]
    carry = b""  # a character cut in two by the chunk boundary
    chunk = first
    while True:
        data = carry + chunk
        final = not chunk
        nul = data.find(b"\x00")
        if nul >= 0:
            line = lines + data.count(b"\n", 0, nul) + 1
            raise UnreadableBatch(
                f"{prefix}: NUL byte at byte offset {base + nul} (line {line}): the file is not plain "
                "text; export it again as UTF-8 text"
            )
        try:
            data.decode("utf-8")
            good, carry = len(data), b""
        except UnicodeDecodeError as error:
            if not final and error.end == len(data) and len(data) - error.start < 4:
                good, carry = error.start, data[error.start :]
            else:
                line = lines + data.count(b"\n", 0, error.start) + 1
                mixed = non_ascii or not data[: error.start].isascii()
                raise UnreadableBatch(
                    f"{prefix}: not UTF-8 at byte offset {base + error.start} (line {line}, byte "
                    f"0x{data[error.start]:02X})"
                    + (": earlier lines are UTF-8, so the file mixes encodings" if mixed else "")
                    + "; re-save the whole file as UTF-8"
                ) from None
        lines += data.count(b"\n", 0, good)
        non_ascii = non_ascii or not data[:good].isascii()
        base += good
        if final:
            return
        chunk = handle.read(chunk_size)


# CSV
def _csv_header(path: Path) -> list[str] | None:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), None)
    except (csv.Error, OSError, UnicodeDecodeError):
        return None


def csv_record_line(path: Path, record: int) -> int | None:
    """The line on which CSV record `record` starts (0 is the header; blank lines are skipped as the
    parser skips them), or None when that cannot be worked out (e.g. a field beyond csv's size limit)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            seen = 0
            while seen < record:
                if next(reader):
                    seen += 1
            # The next non-blank line starts the record.
            line = reader.line_num + 1
            for text in handle:
                if text.strip():
                    return line
                line += 1
            return line
    except (csv.Error, StopIteration, OSError, UnicodeDecodeError):
        return None


_EOF_IN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_FIELD_COUNT = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _csv_error(path: Path, prefix: str, error: Exception) -> UnreadableBatch:
    message = str(error)
    if isinstance(error, pd.errors.EmptyDataError):
        return UnreadableBatch(
            f"{prefix}: no header line (the file holds only blank lines): the first line must name the "
            "columns, e.g. text,label"
        )
    found = _EOF_IN_QUOTE.search(message)
    if found:
        line = csv_record_line(path, int(found.group(1)))
        where = f"on line {line}" if line else f"in record {int(found.group(1)) + 1}"
        return UnreadableBatch(
            f"{prefix}: unterminated quote: the quoted field starting {where} never closes; close it, "
            'and write a quote inside a quoted field twice ("")'
        )
    found = _FIELD_COUNT.search(message)
    if found:
        expected, record, saw = (int(g) for g in found.groups())
        line = csv_record_line(path, record - 1)
        where = f"line {line}" if line else f"record {record}"
        return UnreadableBatch(
            f"{prefix}: {where} has {saw} fields but the header has {expected}: put quotes around fields "
            "that contain commas"
        )
    return UnreadableBatch(f"{prefix}: {first_line(error)}")


def read_csv(path: Path, prefix: str) -> pd.DataFrame:
    header = _csv_header(path)
    if header:
        names = [h.strip() for h in header]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UnreadableBatch(
                f"{prefix}: column {repeated[0]!r} appears {names.count(repeated[0])} times in the header:"
                " keep one"
            )
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise _csv_error(path, prefix, error) from error


# JSON Lines (and a JSON array in a .json file)
def _kind_of(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def read_json_records(path: Path, prefix: str) -> tuple[pd.DataFrame, list[str]]:
    """Records of a JSON Lines file (or a JSON array), with where each came from ("line 7")."""
    records: list[dict] = []
    where: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if first == "[" and path.suffix.lower() == ".json":  # a JSON array of objects
            try:
                values = json.load(handle)
            except json.JSONDecodeError as error:
                raise UnreadableBatch(
                    f"{prefix}: not valid JSON at line {error.lineno}, column {error.colno} ({error.msg})"
                ) from None
            numbered = [(f"record {i}", v) for i, v in enumerate(values, 1)]
        else:
            numbered = []
            for number, line in enumerate(handle, 1):
                stripped = line.strip()
                if not stripped:
                    continue
                try:
                    numbered.append((f"line {number}", json.loads(stripped)))
                except json.JSONDecodeError as error:
                    raise UnreadableBatch(
                        f"{prefix}: line {number} is not valid JSON ({error.msg} at column {error.colno}): "
                        "write one JSON object per line"
                    ) from None
    for place, value in numbered:
        if not isinstance(value, dict):
            raise UnreadableBatch(
                f"{prefix}: {place} holds {_kind_of(value)}, not an object: write one object per line, "
                'e.g. {"text": "...", "label": "..."}'
            )
        records.append(value)
        where.append(place)
    return pd.DataFrame.from_records(records), where


# Values
def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _nested(value: object) -> bool:
    return isinstance(value, dict | list | tuple | set | np.ndarray)


def _shown(value: object) -> str:
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def check_value_types(frame: pd.DataFrame, name: str, where: Callable[[int], str]) -> None:
    """Texts must be strings and labels plain values: raise BadBatch naming the first offender.
    (CSV values are always strings; this matters for JSON Lines and Parquet, which have types.)"""
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column]
        if column == "text" and (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            present = np.flatnonzero(values.notna().to_numpy())
            if len(present):
                first = int(present[0])
                raise BadBatch(
                    f"{name}: column 'text' holds {values.dtype} values, not strings ({where(first)}: "
                    f"{_shown(values.iloc[first])}): texts must be strings"
                )
            continue
        if values.dtype != object:
            continue
        kinds = values.map(
            lambda v: (
                "nested"
                if _nested(v)
                else "null"
                if _is_null(v)
                else "str"
                if isinstance(v, str)
                else "scalar"
            )
        )
        bad = kinds == "nested" if column == "label" else kinds.isin(["nested", "scalar"])
        positions = np.flatnonzero(bad.to_numpy())
        if not len(positions):
            continue
        first = int(positions[0])
        value = values.iloc[first]
        count = f"{len(positions)} row{'s' if len(positions) > 1 else ''}"
        if _nested(value):
            what = f"nested values ({count}, first {where(first)}: {_shown(value)})"
            advice = f"each {column} must be one plain value: flatten it"
        else:
            example = f"{_kind_of(value)} {_shown(value)}"
            what = f"non-text values ({count}, first {where(first)}: {example})"
            advice = "texts must be strings"
        raise BadBatch(f"{name}: column {column!r} holds {what}: {advice}")


def read_table(path: Path, name: str, suffix: str | None = None) -> pd.DataFrame:
    """Parse a CSV, JSON Lines / JSON or Parquet file into a frame (columns stripped), or raise
    BadBatch with one line naming `name`, the place and the fix. `suffix` defaults to the path's."""
    suffix = (suffix or path.suffix).lower()
    if suffix not in SUFFIXES:
        raise UnreadableBatch(f"unsupported file type {suffix!r} (use one of {', '.join(SUFFIXES)})")
    prefix = f"cannot read {name} as {_KIND[suffix]}"
    where: Callable[[int], str] = lambda i: f"row {i + 1}"  # noqa: E731
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            check_text(path, prefix)
            if suffix == ".csv":
                frame = read_csv(path, prefix)
            else:
                frame, places = read_json_records(path, prefix)
                where = places.__getitem__
    except BadBatch:
        raise
    except Exception as error:  # every other parser failure becomes one readable line
        raise UnreadableBatch(f"{prefix}: {first_line(error)}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    names = list(frame.columns)
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise BadBatch(f"{name}: column {repeated[0]!r} appears {names.count(repeated[0])} times: keep one")
    check_value_types(frame, name, where)
    return frame
