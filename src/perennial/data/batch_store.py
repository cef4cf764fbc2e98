"""The batch store: where a batch's rows and splits are kept, and the split.

Each batch has a folder `<batches_dir>/<batch id>/`: `rows.parquet` holds the rows ingest parsed;
`train.parquet`, `val.parquet` and `test.parquet` its splits, written once the batch is validated.
The split keeps each label's share in every split and is seeded from the batch id, so splitting
again gives the same splits; the leak guard (`perennial.data.leakage`) runs first.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from perennial.core.settings import Settings
from perennial.data.leakage import guard, record_guard
from perennial.data.ledger import Ledger
from perennial.data.validation import OPTIONAL_COLUMNS

# Split out of ingest: its log lines keep ingest's logger name, as log filters and tests expect.
log = logging.getLogger("perennial.data.ingest")

SPLITS = ("train", "val", "test")


def batch_dir(settings: Settings, batch_id: str) -> Path:
    return settings.batches_dir / batch_id


def rows_path(settings: Settings, batch_id: str) -> Path:
    return batch_dir(settings, batch_id) / "rows.parquet"


def split_path(settings: Settings, batch_id: str, split: str) -> Path:
    return batch_dir(settings, batch_id) / f"{split}.parquet"


def write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own: two processes writing one target never replace each other's.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


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
    """Write train/val/test Parquet for a validated batch; returns the row count of each split, and
    under `dropped_test_leaks` the rows left out because their text is in another slice's test split.

    The leak guard (see `perennial.data.leakage`) runs first: one copy of each normalised text (so no text
    sits in two splits), other slices' test texts dropped, texts other slices trained on kept in train
    only. Splitting again gives the same splits."""
    frame = pd.read_parquet(rows_path(settings, batch_id))
    keep = ["batch_id", "text", "label", *[c for c in OPTIONAL_COLUMNS if c in frame.columns]]
    guarded = guard(frame[keep], settings.batches_dir, Ledger(settings.ledger_path), batch_id)
    splits = stratified_split(
        guarded.rows.reset_index(drop=True),
        seed_from_batch(batch_id),
        settings.val_fraction,
        settings.test_fraction,
    )
    if len(guarded.forced):
        splits["train"] = pd.concat([splits["train"], guarded.forced], ignore_index=True)
    if guarded.dropped_test_leaks or len(guarded.forced) or guarded.dropped_repeats:
        log.log(
            logging.WARNING if guarded.dropped_test_leaks else logging.INFO,
            "batch %s: %d rows dropped (their text is in another slice's test split), %d kept in train"
            " only (text already trained or tuned on), %d repeats of its own texts dropped",
            batch_id,
            guarded.dropped_test_leaks,
            len(guarded.forced),
            guarded.dropped_repeats,
        )
    for name, part in splits.items():
        write_parquet(part, split_path(settings, batch_id, name))
    record_guard(settings.batches_dir, batch_id, guarded)
    counts = {name: len(part) for name, part in splits.items()}
    return {**counts, "dropped_test_leaks": guarded.dropped_test_leaks}


def load_split(settings: Settings, batch_id: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(split_path(settings, batch_id, split))
