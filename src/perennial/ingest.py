"""Ingest: take a batch file from the inbox, hash it, keep the raw copy, record it, split it.

A batch's id is derived from the sha256 of its bytes, so the same content dropped twice is
recognised and skipped. The raw file is kept byte for byte; the parsed rows go to Parquet.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perennial.batch_files import (
    SUFFIXES,
    BadBatch,
    UnreadableBatch,
    human_size,
    read_table,
    safe_name,
    stored_suffix,
    unsafe_name_problem,
)
from perennial.config import Settings
from perennial.faults import fault_point
from perennial.files import write_text_atomic
from perennial.ledger import PENDING, QUARANTINED, STATUSES, Ledger
from perennial.messages import one_line
from perennial.validation import OPTIONAL_COLUMNS

log = logging.getLogger(__name__)

SKIPPED = "skipped"  # an IngestResult status: nothing recorded (the file vanished or cannot be opened)
SPLITS = ("train", "val", "test")
ID_CHARS = 16  # hex characters of the sha256 kept as the batch id


@dataclass(frozen=True)
class IngestResult:
    source: str
    batch_id: str
    duplicate: bool
    status: str
    message: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_batch_name(name: str) -> bool:
    """A batch file's name: a known suffix, not hidden (hidden or other names are uploads in progress)."""
    return not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES


def inbox_entry(path: Path) -> os.stat_result | None:
    """The inbox entry's own status (a link is not followed) when it is a batch file or a symbolic
    link with a batch name (refused and recorded by ingest_file), else None."""
    if not is_batch_name(path.name):
        return None
    try:
        status = path.lstat()
    except OSError:  # removed between listing and looking
        return None
    return status if stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode) else None


def inbox_files(settings: Settings) -> list[Path]:
    """Batch files waiting in the inbox, oldest first (by modification time, then name). Symbolic
    links are listed too (never followed), so that a run refuses and records them."""
    if not settings.inbox.is_dir():
        return []
    found = {p: entry for p in settings.inbox.iterdir() if (entry := inbox_entry(p)) is not None}
    return sorted(found, key=lambda p: (found[p].st_mtime, p.name))


def ready_inbox_files(settings: Settings) -> list[Path]:
    """The inbox files a run may ingest: those that have not changed for `inbox_settle_seconds`.

    When some changed more recently, the run waits once (at most that long) and looks again; a file
    that changed meanwhile is still being written: it is left for the next run, with one log line, so
    a half-written file is never ingested. The inbox watcher applies the same rule between polls.
    """
    files = inbox_files(settings)
    settle = settings.inbox_settle_seconds
    now = time.time()
    young: dict[Path, tuple[int, int]] = {}
    youngest = settle
    for path in files:
        entry = inbox_entry(path)
        if entry is not None and now - entry.st_mtime < settle:
            young[path] = (entry.st_size, entry.st_mtime_ns)
            youngest = min(youngest, now - entry.st_mtime)
    if not young:
        return files
    time.sleep(min(settle, settle - youngest))
    left = set()
    for path, before in young.items():
        entry = inbox_entry(path)
        if entry is None or (entry.st_size, entry.st_mtime_ns) != before:
            left.add(path)
            if entry is not None:
                log.info(
                    "%s: still being written (changed within %.1f s); left for the next run",
                    safe_name(path.name),
                    settle,
                )
    return [p for p in files if p not in left]


def write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return target


def _normalise_labels(labels: pd.Series) -> pd.Series:
    """Labels become strings; integral floats (1.0 from a column with gaps) become '1'."""
    if pd.api.types.is_float_dtype(labels):
        whole = labels.dropna()
        if (whole == whole.round()).all():
            labels = labels.astype("Int64")
    return labels.astype("string").astype(object).where(labels.notna(), None)


def read_batch(path: Path, display_name: str | None = None) -> pd.DataFrame:
    """Parse a CSV, JSONL or Parquet batch into a frame; `label` comes back as strings.
    A file that cannot be used raises BadBatch (UnreadableBatch when it does not parse) with one line
    saying what is wrong, where, and what to do (see batch_files)."""
    frame = read_table(path, display_name or safe_name(path.name))
    if "label" in frame.columns:
        frame["label"] = _normalise_labels(frame["label"])
    for column in frame.columns:
        if column != "label" and not pd.api.types.is_numeric_dtype(frame[column]):
            # Mixed-type columns (numbers among strings in JSONL) would not round-trip through Parquet.
            values = frame[column]
            frame[column] = values.map(lambda v: v if v is None or isinstance(v, str) else str(v)).where(
                values.notna(), None
            )
    return frame


def batch_dir(settings: Settings, batch_id: str) -> Path:
    return settings.batches_dir / batch_id


def rows_path(settings: Settings, batch_id: str) -> Path:
    return batch_dir(settings, batch_id) / "rows.parquet"


def split_path(settings: Settings, batch_id: str, split: str) -> Path:
    return batch_dir(settings, batch_id) / f"{split}.parquet"


def ingest_file(path: Path, settings: Settings, ledger: Ledger) -> IngestResult:
    """Record one inbox file. Idempotent: the same content twice is a no-op that says so.

    Whatever is wrong with the file, it is recorded, its bytes kept in the store, and quarantined with
    a one-line reason; nothing is raised for a bad file, so one cannot stop the others. The file's
    name is only shown (made safe first), never used to build a path; a symbolic link is never followed.
    """
    path = Path(path)
    name = safe_name(path.name)
    if path.is_symlink():
        return _record_symlink(path, name, settings, ledger)
    try:
        tmp, sha, size = _copy_into_store(path, settings)
    except OSError as error:
        if error.errno == errno.ELOOP:  # became a link after the check above
            return _record_symlink(path, name, settings, ledger)
        why = "gone before it could be read" if error.errno == errno.ENOENT else error.strerror
        return IngestResult(name, "", False, SKIPPED, f"{name}: {why}; nothing recorded")
    name_problem = unsafe_name_problem(path.name)
    known = ledger.find_by_hash(sha)
    # A refused name must not block the same bytes under a good name: such a record is keyed by both.
    record_sha = sha if name_problem is None else _digest(b"name", os.fsencode(path.name), sha.encode())
    if known is None and name_problem is not None:
        known = ledger.find_by_hash(record_sha)
    if known is not None:
        tmp.unlink(missing_ok=True)
        _remove_from_inbox(path, settings)
        return IngestResult(
            name,
            known.batch_id,
            True,
            known.status,
            f"{name}: same content as batch {known.batch_id} ({known.source}, {known.status}); skipped",
        )
    batch_id = record_sha[:ID_CHARS]
    raw = settings.raw_dir / f"{batch_id}{stored_suffix(path.name)}"
    os.replace(tmp, raw)
    fault_point("ingest-copied", settings.root)
    try:
        if name_problem is not None:
            raise BadBatch(name_problem)
        frame = _checked_rows(raw, name, Path(path.name).suffix.lower(), size, batch_id, settings, ledger)
        write_parquet(frame, rows_path(settings, batch_id))
    except Exception as error:  # anything unusable is quarantined; the raw copy stays
        reason = str(error) if isinstance(error, BadBatch) else f"cannot store {name}: {error}"
        reason = one_line(reason)
        _commit(path, settings, ledger, batch_id, record_sha, name, raw, QUARANTINED, reason)
        return IngestResult(name, batch_id, False, QUARANTINED, reason)
    _commit(path, settings, ledger, batch_id, record_sha, name, raw, PENDING, "", len(frame))
    return IngestResult(name, batch_id, False, PENDING, f"{name}: batch {batch_id}, {len(frame)} rows")


def _commit(
    path: Path,
    settings: Settings,
    ledger: Ledger,
    batch_id: str,
    sha: str,
    name: str,
    raw: Path,
    status: str,
    reason: str,
    rows: int | None = None,
) -> None:
    """The ledger row is ingest's commit point: before it, a crash leaves the file in the inbox for the
    next run (raw copy and rows are simply written again); after it, the same file is a known duplicate."""
    ledger.add_batch(batch_id, sha, name, raw, status=status, reason=reason, rows=rows)
    fault_point("ingest-recorded", settings.root)
    _remove_from_inbox(path, settings)


def _checked_rows(
    raw: Path, name: str, suffix: str, size: int, batch_id: str, settings: Settings, ledger: Ledger
) -> pd.DataFrame:
    """The batch's rows, or BadBatch saying why not: size limits first (before parsing), then the
    parse, then rows that only repeat earlier batches."""
    if suffix not in SUFFIXES:
        raise UnreadableBatch(f"{name}: unsupported file type {suffix!r} (use one of {', '.join(SUFFIXES)})")
    if size > settings.max_file_bytes:
        raise BadBatch(
            f"{name} is {human_size(size)}, above the {human_size(settings.max_file_bytes)} limit "
            "(max_file_bytes); it was not read: split it into smaller batches"
        )
    if size == 0:
        raise BadBatch(f"{name} is empty (0 bytes): export the batch again, a header line then the rows")
    frame = read_batch(raw, display_name=name)
    if frame.empty:
        columns = ", ".join(map(str, frame.columns))
        raise BadBatch(
            f"{name} has no rows"
            + (f" (only a header: {columns})" if columns else "")
            + f": add the rows, at least {settings.min_rows}"
        )
    overlap = overlap_with_earlier(frame, batch_id, settings, ledger)
    if overlap is not None:
        raise BadBatch(f"{name}: {overlap}")
    # Our own column wins: a user's `batch_id` column (e.g. a re-exported split) is replaced.
    frame = frame.drop(columns=["batch_id"], errors="ignore")
    frame.insert(0, "batch_id", batch_id)
    return frame


def overlap_with_earlier(
    frame: pd.DataFrame, batch_id: str, settings: Settings, ledger: Ledger
) -> str | None:
    """Why the batch repeats too much of earlier batches (more than `max_overlap_fraction` of its rows
    have a text already sent in a batch that was not quarantined), naming the batch it repeats most;
    None when it does not."""
    if "text" not in frame.columns or settings.max_overlap_fraction >= 1:
        return None
    texts = frame["text"].dropna()
    if texts.empty:
        return None
    seen = pd.Series(False, index=texts.index)
    per_batch = []
    for batch in ledger.batches(tuple(s for s in STATUSES if s != QUARANTINED)):
        path = rows_path(settings, batch.batch_id)
        if batch.batch_id == batch_id or not path.is_file():
            continue
        earlier = pd.read_parquet(path, columns=["text"])["text"].dropna()
        repeated = texts.isin(set(earlier))
        if repeated.any():
            seen |= repeated
            per_batch.append((int(repeated.sum()), batch))
    count = int(seen.sum())
    if not count or count / len(texts) <= settings.max_overlap_fraction:
        return None
    most, batch = max(per_batch, key=lambda pair: pair[0])
    return (
        f"{count} of {len(texts)} rows ({count / len(texts):.0%}) repeat texts of earlier batches, {most} of"
        f" them from batch {batch.batch_id} ({batch.source}, {batch.status}); at most"
        f" {settings.max_overlap_fraction:.0%} may (max_overlap_fraction): send only the new rows"
    )


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _copy_into_store(path: Path, settings: Settings) -> tuple[Path, str, int]:
    """Copy a regular file into a temporary file in the raw store, hashing it on the way: one read, so
    the hash is of exactly the bytes kept. Never follows a symbolic link (ELOOP)."""
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        settings.raw_dir.mkdir(parents=True, exist_ok=True)
        out, tmp = tempfile.mkstemp(dir=settings.raw_dir, prefix=".incoming.")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(out, "wb") as target:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Path(tmp), digest.hexdigest(), size


def _record_symlink(path: Path, name: str, settings: Settings, ledger: Ledger) -> IngestResult:
    """A symbolic link is refused and recorded (where it pointed), never followed: its target is not
    read or copied. The link is removed from the inbox; its target is left alone."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    sha = _digest(b"symlink", os.fsencode(path.name), os.fsencode(target))
    known = ledger.find_by_hash(sha)
    if known is not None:
        _remove_from_inbox(path, settings)
        return IngestResult(name, known.batch_id, True, known.status, f"{name}: the same link again; skipped")
    batch_id = sha[:ID_CHARS]
    shown = safe_name(target)
    inside = Path(os.path.normpath(path.parent / target)).is_relative_to(settings.inbox)
    where = "inside" if inside else "outside"
    raw = write_text_atomic(
        settings.raw_dir / f"{batch_id}.link.txt",
        f"symbolic link {name!r} -> {shown!r} ({where} the inbox); the target was not read\n",
    )
    reason = (
        f"{name} is a symbolic link to {shown!r} ({where} the inbox); links are never followed and the"
        " target was not read: put the file itself in the inbox"
    )
    _commit(path, settings, ledger, batch_id, sha, name, raw, QUARANTINED, reason)
    return IngestResult(name, batch_id, False, QUARANTINED, reason)


def _remove_from_inbox(path: Path, settings: Settings) -> None:
    # Only files inside the inbox are ours to remove; a file ingested from elsewhere is left alone.
    # The folder is resolved, not the entry: a link is removed itself, never what it points to.
    if Path(os.path.abspath(path)).parent.resolve() == settings.inbox.resolve():
        path.unlink(missing_ok=True)


def seed_from_batch(batch_id: str) -> int:
    return int(batch_id[:8], 16)


def stratified_split(
    frame: pd.DataFrame, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, pd.DataFrame]:
    """Split each label's rows by the same fractions, so every split keeps the class mix."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for _, group in sorted(frame.groupby("label", sort=True), key=lambda item: str(item[0])):
        order = rng.permutation(group.index.to_numpy())
        n_test = int(round(len(order) * test_fraction))
        n_val = int(round(len(order) * val_fraction))
        parts["test"].append(order[:n_test])
        parts["val"].append(order[n_test : n_test + n_val])
        parts["train"].append(order[n_test + n_val :])
    return {
        name: frame.loc[np.sort(np.concatenate(idx))].reset_index(drop=True) if idx else frame.iloc[0:0]
        for name, idx in parts.items()
    }


def split_batch(settings: Settings, batch_id: str) -> dict[str, int]:
    """Write train/val/test Parquet for a validated batch; returns the row count of each split."""
    frame = pd.read_parquet(rows_path(settings, batch_id))
    # One copy of each text, so no text sits in both train and test (validation allows a few repeats).
    frame = frame.drop_duplicates(subset="text").reset_index(drop=True)
    keep = ["batch_id", "text", "label", *[c for c in OPTIONAL_COLUMNS if c in frame.columns]]
    splits = stratified_split(
        frame[keep], seed_from_batch(batch_id), settings.val_fraction, settings.test_fraction
    )
    for name, part in splits.items():
        write_parquet(part, split_path(settings, batch_id, name))
    return {name: len(part) for name, part in splits.items()}


def load_split(settings: Settings, batch_id: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(split_path(settings, batch_id, split))
