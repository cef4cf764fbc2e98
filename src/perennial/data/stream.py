"""Streams from any data: split one labelled file into ordered batch files for the inbox.

The inbox is ingested oldest modification time first, so replaying a history means writing its parts
in order with strictly increasing mtimes. Pure pandas, so it is cheap to import and to test.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from perennial.data.ingest import read_batch

EVERY = ("week", "month", "quarter", "year")
FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
FORMAT_OF_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
REQUIRED_COLUMNS = ("text", "label")
MAX_LABEL_CHARS = 80  # keeps file names well under common 255-byte limits
MTIME_STEP_S = 1.0  # whole seconds, so the order survives filesystems with coarse timestamps

Part = tuple[str, pd.DataFrame]


def _check_column(frame: pd.DataFrame, column: str) -> None:
    if column not in frame.columns:
        available = ", ".join(map(str, frame.columns)) or "none"
        raise ValueError(f"no column {column!r}; available columns: {available}")


def _check_no_missing(frame: pd.DataFrame, column: str) -> None:
    missing = int(frame[column].isna().sum())
    if missing:
        raise ValueError(f"column {column!r} has no value in {missing} of {len(frame)} rows")


def split_by_column(frame: pd.DataFrame, column: str) -> list[Part]:
    """One part per distinct value, in order of first appearance: the file's own order is the user's."""
    _check_column(frame, column)
    _check_no_missing(frame, column)
    return [
        (str(value), part.reset_index(drop=True))
        for value, part in frame.groupby(column, sort=False, dropna=False)
    ]


def _period_labels(times: pd.Series, every: str) -> pd.Series:
    if every == "week":  # ISO weeks belong to their ISO year: 2024-12-30 is 2025-W01
        iso = times.dt.isocalendar()
        return iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
    if every == "month":
        return times.dt.strftime("%Y-%m")
    if every == "quarter":
        return times.dt.year.astype(str) + "-Q" + times.dt.quarter.astype(str)
    return times.dt.year.astype(str)


def split_by_time(frame: pd.DataFrame, column: str, every: str = "month") -> list[Part]:
    """Chronological parts, one per week/month/quarter/year that has rows; rows sorted by time.

    Times are compared in UTC, so offsets in the data cannot reorder the stream."""
    if every not in EVERY:
        raise ValueError(f"every must be one of {', '.join(EVERY)}, not {every!r}")
    _check_column(frame, column)
    _check_no_missing(frame, column)
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # Parsed as numbers, 2024 would be nanoseconds after 1970; as text it is the year 2024.
        values = values.astype(str)
    times = pd.to_datetime(values, utc=True, format="mixed", errors="coerce")
    bad = times.isna()
    if bad.any():
        first = values[bad].iloc[0]
        raise ValueError(
            f"column {column!r}: {int(bad.sum())} of {len(frame)} values are not dates (first: {first!r})"
        )
    order = times.sort_values(kind="stable").index
    ordered = frame.loc[order].reset_index(drop=True)
    labels = _period_labels(times.loc[order].reset_index(drop=True), every)
    # Sorted by time, so first appearance is chronological; groupby keeps row order within a part.
    return [(str(label), part.reset_index(drop=True)) for label, part in ordered.groupby(labels, sort=False)]


def safe_label(label: str) -> str:
    """A label as part of a file name: no separators, spaces or shell-special characters."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)[:MAX_LABEL_CHARS] or "_"


def _write(frame: pd.DataFrame, target: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(target, index=False)
    elif fmt == "jsonl":
        frame.to_json(target, orient="records", lines=True, force_ascii=False, date_format="iso")
    else:
        frame.to_parquet(target, index=False)


def write_stream(parts: Sequence[Part], out_dir: Path, fmt: str, *, start: int = 1) -> list[Path]:
    """Write parts as `001-<label>.<ext>`, ... with strictly increasing mtimes, so that the inbox's
    oldest-first order is the stream's order. Nothing is overwritten: a name clash fails up front,
    before any file is written. `start` numbers the first part (the demo writes one part per cycle)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out_dir = Path(out_dir)
    width = max(3, len(str(start + len(parts) - 1)))
    targets = [
        out_dir / f"{n:0{width}d}-{safe_label(label)}{FORMATS[fmt]}"
        for n, (label, _) in enumerate(parts, start=start)
    ]
    existing = [t.name for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{out_dir} already has {', '.join(existing)}; not overwriting")
    out_dir.mkdir(parents=True, exist_ok=True)
    # The last part gets "now", earlier ones are stepped back, but never before a file already there:
    # a stream written after another must still be ingested after it.
    newest = max((p.stat().st_mtime for p in out_dir.iterdir() if p.is_file()), default=float("-inf"))
    first_mtime = max(time.time() - MTIME_STEP_S * (len(parts) - 1), newest + MTIME_STEP_S)
    for i, ((_, frame), target) in enumerate(zip(parts, targets, strict=True)):
        # A dot-name without a batch suffix: the inbox never picks up a half-written file.
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            _write(frame, tmp, fmt)
            mtime = first_mtime + i * MTIME_STEP_S
            os.utime(tmp, (mtime, mtime))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return targets


def default_format(path: Path) -> str:
    """The input's own format (JSON Lines for `.json`), so a stream looks like its source."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_OF_SUFFIX:
        raise ValueError(f"unsupported file type {suffix!r} (use one of {', '.join(FORMAT_OF_SUFFIX)})")
    return FORMAT_OF_SUFFIX[suffix]


def split_file(
    path: Path, *, by: str | None = None, by_time: str | None = None, every: str = "month"
) -> list[Part]:
    """Read a labelled file and split it by a column or by time; checks what the pipeline needs."""
    if (by is None) == (by_time is None):
        raise ValueError("give exactly one of by (a column) or by_time (a date column)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    frame = read_batch(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path.name} has no {' or '.join(missing)} column (the pipeline needs text and label); "
            f"columns: {', '.join(map(str, frame.columns)) or 'none'}"
        )
    if frame.empty:
        raise ValueError(f"{path.name} has no rows")
    if by is not None:
        return split_by_column(frame, by)
    assert by_time is not None  # exactly one of the two, checked above
    return split_by_time(frame, by_time, every)


def stream_file(
    path: Path,
    out_dir: Path,
    *,
    by: str | None = None,
    by_time: str | None = None,
    every: str = "month",
    fmt: str | None = None,
) -> list[Path]:
    """Split a labelled CSV/JSONL/Parquet file into ordered batch files in `out_dir` (e.g. the inbox)."""
    fmt = fmt or default_format(path)
    return write_stream(split_file(path, by=by, by_time=by_time, every=every), out_dir, fmt)
