"""Read a batch file, and say in one line what is wrong with one that cannot be used.

Only the file's bytes and name are looked at: nothing is written, no shell is ever run, and a path is
never followed through a symbolic link by the callers (see ``ingest``). Each message names the place
(byte offset, line, row, column) and says what to do. Checks that need one pass over a file stream it
in chunks, so a big file costs time in proportion to its size and almost no memory.

This module is the front: `read_table` checks that a text file is UTF-8 text (`check_text`), hands
the file to the reader for its suffix (batch_csv, batch_json, batch_parquet), then checks the values'
types (batch_values). It also says what is wrong with a file's name (`safe_name`,
`unsafe_name_problem`, `stored_suffix`). `BadBatch` and `UnreadableBatch` are defined in
batch_errors, which every reader imports; they can be imported from here too.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from perennial.core.messages import first_line
from perennial.data.batch_csv import read_csv
from perennial.data.batch_errors import BadBatch, UnreadableBatch, too_many_rows
from perennial.data.batch_json import read_json_records
from perennial.data.batch_parquet import read_parquet
from perennial.data.batch_values import check_value_types

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
_KIND = {".csv": "CSV", ".jsonl": "JSON Lines", ".json": "JSON", ".parquet": "Parquet"}
_HEAD_BYTES = 8192  # looked at to tell text from binary
_CHUNK = 1 << 20
_MAX_SHOWN_NAME = 120


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
    """Why a batch file's name is refused (leading or trailing spaces, control characters, path
    separators, `..`, shell metacharacters), or None. The name is never used for a path or a
    command; such a name is refused because no honest export produces one, and it would be shown in
    logs and pages."""
    problems = []
    if name != name.strip():  # "data.csv " looks like "data.csv" in every listing and message
        problems.append("leading or trailing spaces")
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
    """Where binary data shows in the first bytes: a NUL, or more than 5% control bytes in bytes that
    are not UTF-8 (valid UTF-8 with control characters is text: Excel writes vertical tabs, logs keep
    escape codes, and such a value in an optional column must not lose the batch)."""
    nul = head.find(b"\x00")
    if nul >= 0:
        return nul
    if _is_utf8_head(head):
        return None
    controls = len(head) - len(head.translate(None, _CONTROL))
    if head and controls / len(head) > 0.05:
        return next(i for i, b in enumerate(head) if b in _CONTROL)
    return None


def _is_utf8_head(head: bytes) -> bool:
    """UTF-8, allowing a character cut in two at the end of the head."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.end == len(head) and len(head) - error.start < 4
    return True


# UTF-32's marks first: FF FE 00 00 also starts with UTF-16's FF FE.
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
)
_WIDE = (
    ("utf-32-le", "UTF-32 (little-endian)"),
    ("utf-32-be", "UTF-32 (big-endian)"),
    ("utf-16-le", "UTF-16 (little-endian)"),
    ("utf-16-be", "UTF-16 (big-endian)"),
)
_TEXT_CONTROLS = frozenset("\t\n\r\f")


def _bomless_unicode(head: bytes) -> str | None:
    """Which UTF-16/UTF-32 the first bytes are when they hold NUL bytes (no byte-order mark), or None.

    ASCII characters in UTF-16 have a NUL every 2nd byte (three in four bytes in UTF-32). A candidate must
    decode strictly (random binary data soon breaks surrogate or range rules) to text with no NUL and
    few control characters. Reading UTF-16 in the wrong byte order also decodes, mostly to CJK
    characters: the candidate that starts with an ASCII character (a header, `{` or `[`) and has the
    most ASCII characters wins. UTF-8 text with a few stray NULs is not taken for UTF-16."""
    nuls = head.count(b"\x00")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head.replace(b"\x00", b""))
        if nuls <= len(head) // 4:
            return None
    except UnicodeDecodeError:
        pass
    best, best_rank = None, (False, 0)
    for codec, label in _WIDE:
        try:
            text = codecs.getincrementaldecoder(codec)().decode(head)
        except UnicodeDecodeError:
            continue
        if not text or "\x00" in text:
            continue
        controls = sum(unicodedata.category(c) == "Cc" and c not in _TEXT_CONTROLS for c in text)
        rank = (text.lstrip()[:1] < "\x80", sum(c < "\x80" for c in text))
        if controls <= len(text) * 0.05 and rank[1] and rank > best_rank:
            best, best_rank = label, rank
    return best


def check_text(path: Path, prefix: str, chunk_size: int = _CHUNK) -> None:
    """Raise UnreadableBatch unless the file is UTF-8 text (a UTF-8 byte-order mark is fine).

    One streaming pass: the first failing byte is reported with its offset and line, and a file that
    is UTF-8 up to there is said to mix encodings."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
        bom = next((label for mark, label in _BOMS if head.startswith(mark)), None)
        if bom is not None:
            family = bom.split()[0]
            raise UnreadableBatch(
                f"{prefix}: it is {bom} text (it starts with a {family} byte-order mark): re-save it as UTF-8"
            )
        what = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
        if what is not None:
            raise UnreadableBatch(f"{prefix}: not a text file, it looks like {what}")
        offset = _binary_offset(head)
        wide = _bomless_unicode(head) if offset is not None else None
        if wide is not None:
            raise UnreadableBatch(
                f"{prefix}: it is {wide} text without a byte-order mark: re-save it as UTF-8"
            )
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


def read_table(
    path: Path,
    name: str,
    suffix: str | None = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Parse a CSV, JSON Lines / JSON or Parquet file into a frame (columns stripped), or raise
    BadBatch with one line naming `name`, the place and the fix. `suffix` defaults to the path's.

    A file with more than `max_rows` rows is refused, reading at most one row more; a Parquet file
    that expands to more than `max_bytes` is refused, from its metadata or while it is read (a text
    file is its own size, bounded before reading by ingest's `max_file_bytes`). None: no limit."""
    suffix = (suffix or path.suffix).lower()
    if suffix not in SUFFIXES:
        raise UnreadableBatch(f"unsupported file type {suffix!r} (use one of {', '.join(SUFFIXES)})")
    prefix = f"cannot read {name} as {_KIND[suffix]}"
    where: Callable[[int], str] = lambda i: f"row {i + 1}"  # noqa: E731
    try:
        if suffix == ".parquet":
            frame = read_parquet(path, name, max_rows, max_bytes)
        else:
            check_text(path, prefix)
            if suffix == ".csv":
                frame = read_csv(path, prefix, max_rows)
            else:
                frame, places = read_json_records(path, prefix, max_rows)
                where = places.__getitem__
    except BadBatch:
        raise
    except Exception as error:  # every other parser failure becomes one readable line
        raise UnreadableBatch(f"{prefix}: {first_line(error)}") from error
    if max_rows is not None and len(frame) > max_rows:
        raise too_many_rows(name, max_rows)
    frame.columns = [str(c).strip() for c in frame.columns]
    names = list(frame.columns)
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise BadBatch(f"{name}: column {repeated[0]!r} appears {names.count(repeated[0])} times: keep one")
    check_value_types(frame, name, where)
    return frame
