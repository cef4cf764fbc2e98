"""Ingest: take a batch file from the inbox, hash it, keep the raw copy, record it, split it.

A batch's id is derived from the sha256 of its bytes, so the same content dropped twice is
recognised and skipped. The raw file is kept byte for byte; the parsed rows go to Parquet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perennial.config import Settings
from perennial.ledger import QUARANTINED, Ledger

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
OPTIONAL_COLUMNS = ("id", "domain", "timestamp")
SPLITS = ("train", "val", "test")
ID_CHARS = 16  # hex characters of the sha256 kept as the batch id


@dataclass(frozen=True)
class IngestResult:
    source: str
    batch_id: str
    duplicate: bool
    status: str
    message: str


class UnreadableBatch(ValueError):
    """The file cannot be parsed as a table."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_batch_name(name: str) -> bool:
    """A batch file's name: a known suffix, not hidden (hidden or other names are uploads in progress)."""
    return not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES


def inbox_files(settings: Settings) -> list[Path]:
    """Batch files waiting in the inbox, oldest first (by modification time, then name)."""
    if not settings.inbox.is_dir():
        return []
    files = [p for p in settings.inbox.iterdir() if p.is_file() and is_batch_name(p.name)]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def atomic_copy(source: Path, target: Path) -> None:
    """Copy then rename, so a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Parse a CSV, JSONL or Parquet batch into a frame; `label` comes back as strings."""
    suffix = path.suffix.lower()
    name = display_name or path.name
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        elif suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise UnreadableBatch(f"unsupported file type {suffix!r} (use one of {', '.join(SUFFIXES)})")
    except UnreadableBatch:
        raise
    except Exception as error:  # every parser failure becomes one readable line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableBatch(f"cannot read {name} as {suffix[1:].upper()}: {first_line}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
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
    """Record one inbox file. Idempotent: the same content twice is a no-op that says so."""
    path = Path(path)
    sha = sha256_of(path)
    known = ledger.find_by_hash(sha)
    if known is not None:
        _remove_from_inbox(path, settings)
        return IngestResult(
            path.name,
            known.batch_id,
            True,
            known.status,
            f"{path.name}: same content as batch {known.batch_id} ({known.source}, {known.status}); skipped",
        )
    batch_id = sha[:ID_CHARS]
    raw = settings.raw_dir / f"{batch_id}{path.suffix.lower()}"
    atomic_copy(path, raw)
    ledger.add_batch(batch_id, sha, path.name, raw)
    _remove_from_inbox(path, settings)
    try:
        frame = read_batch(raw, display_name=path.name)
        # Our own column wins: a user's `batch_id` column (e.g. a re-exported split) is replaced.
        frame = frame.drop(columns=["batch_id"], errors="ignore")
        frame.insert(0, "batch_id", batch_id)
        write_parquet(frame, rows_path(settings, batch_id))
    except Exception as error:  # anything unreadable is quarantined; the raw copy stays
        reason = str(error) if isinstance(error, UnreadableBatch) else f"cannot store {path.name}: {error}"
        reason = " ".join(reason.split())  # one line
        ledger.transition(batch_id, QUARANTINED, reason)
        return IngestResult(path.name, batch_id, False, QUARANTINED, reason)
    ledger.set_rows(batch_id, len(frame))
    return IngestResult(
        path.name, batch_id, False, "pending", f"{path.name}: batch {batch_id}, {len(frame)} rows"
    )


def _remove_from_inbox(path: Path, settings: Settings) -> None:
    # Only files inside the inbox are ours to remove; a file ingested from elsewhere is left alone.
    if path.resolve().parent == settings.inbox.resolve():
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
