"""Read a CSV batch: its rows as strings.

A file with another separator (';', tab, '|'), a repeated column, an unterminated quote or a record
with the wrong number of fields is refused with one line naming the line to fix.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from perennial.core.messages import first_line
from perennial.data.batch_errors import UnreadableBatch


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


_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}
_SNIFF_CHARS = 1 << 16


def _records(text: str, separator: str) -> list[list[str]]:
    try:
        return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=separator) if r]
    except csv.Error:
        return []


def other_separator(path: Path) -> str | None:
    """The separator (';', tab or '|') a CSV file really uses when it is not ',', or None.

    Looked at: the first 64 K characters. It is another separator when the header read with ',' is
    one field that splits on it, or when records read with ',' have different field counts while
    read with it they all have the header's (more than one)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        head = handle.read(_SNIFF_CHARS)
        cut = bool(handle.read(1))
    if cut:  # the last record may be cut short
        head = head[: head.rfind("\n") + 1]
    comma = _records(head, ",")
    if not comma:
        return None
    width = len(comma[0])
    even = all(len(r) == width for r in comma)
    if even and width > 1:
        return None
    found, most = None, width
    for separator in _SEPARATORS:
        records = _records(head, separator)
        header = len(records[0]) if records else 0
        if header > most and (width == 1 or all(len(r) == header for r in records)):
            found, most = separator, header
    return found


def read_csv(path: Path, prefix: str, max_rows: int | None = None) -> pd.DataFrame:
    """A CSV file's rows as strings; at most `max_rows` + 1 rows are parsed (a longer file is refused)."""
    separator = other_separator(path)
    if separator is not None:
        raise UnreadableBatch(
            f"{prefix}: it seems to use {_SEPARATORS[separator]} as separator: export with ',' as separator"
        )
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
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            nrows=None if max_rows is None else max_rows + 1,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise _csv_error(path, prefix, error) from error
