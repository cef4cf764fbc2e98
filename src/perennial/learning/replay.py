"""Experience replay: a capped memory of earlier training rows, balanced over batches and classes.

The memory is a pure value: `add` returns a new memory, and which rows it keeps depends only on the
rows and the seed (each row gets a stable pseudo-random priority), so the memory behind any model
version can be rebuilt exactly. Each (batch, label) cell keeps its highest-priority rows and cells
are filled round-robin, so no cell holds two rows more than another unless it ran out of rows. A row
dropped to make room never comes back: like a reservoir, the memory only forgets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["batch_id", "text", "label"]
_CAPACITY_KEY = b"perennial.replay_capacity"


def replay_size(new_rows: int, ratio: float, available: int) -> int:
    """How many memory rows to mix in for a new batch of `new_rows` training rows."""
    return max(0, min(int(round(new_rows * ratio)), available))


def _hash64(keys: list[str], seed: int) -> np.ndarray:
    salt = str(seed).encode()[:16]
    return np.array(
        [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, salt=salt).digest(), "big") for k in keys],
        dtype=np.uint64,
    )


def _priorities(frame: pd.DataFrame, seed: int) -> np.ndarray:
    # A hash, not an RNG stream: a row's priority does not depend on which other rows are present.
    keys = frame["batch_id"].astype(str) + "\x1f" + frame["label"].astype(str) + "\x1f" + frame["text"]
    return _hash64(keys.tolist(), seed)


def balanced_selection(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to `n` rows of `frame`, filled round-robin over (batch_id, label) cells, each cell in order
    of the rows' priorities. Returned in a canonical order (by cell, then priority)."""
    if n <= 0 or frame.empty:
        return frame.iloc[0:0][COLUMNS].reset_index(drop=True)
    frame = frame[COLUMNS].reset_index(drop=True).assign(_priority=_priorities(frame, seed))
    frame = frame.sort_values(["batch_id", "label", "_priority"], kind="stable").reset_index(drop=True)
    frame["_depth"] = frame.groupby(["batch_id", "label"], sort=False).cumcount()
    # Round r takes the r-th row of every cell; within a round, cells go in an order hashed from
    # their keys, so adding a batch never reshuffles the older cells (the memory stays path-independent).
    cell_keys = frame["batch_id"].astype(str) + "\x1f" + frame["label"].astype(str)
    frame["_round_rank"] = _hash64(cell_keys.tolist(), seed + 1)
    chosen = frame.sort_values(["_depth", "_round_rank"], kind="stable").head(n)
    chosen = chosen.sort_values(["batch_id", "label", "_priority"], kind="stable")
    return chosen[COLUMNS].reset_index(drop=True)


def sample_replay(pool: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A balanced draw of up to `n` rows from `pool` (for one cycle's replay set)."""
    return balanced_selection(pool, n, seed)


@dataclass(frozen=True)
class ReplayMemory:
    capacity: int
    rows: pd.DataFrame  # columns batch_id, text, label

    @classmethod
    def empty(cls, capacity: int) -> ReplayMemory:
        return cls(capacity, pd.DataFrame({c: pd.Series(dtype=str) for c in COLUMNS}))

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, batch: pd.DataFrame, seed: int) -> ReplayMemory:
        """The memory after seeing `batch` (rows with batch_id, text, label): old and new rows
        compete for the capacity, balanced over every (batch, label) cell."""
        missing = set(COLUMNS) - set(batch.columns)
        if missing:
            raise ValueError(f"rows for the replay memory lack column(s) {sorted(missing)}")
        pool = pd.concat([self.rows, batch[COLUMNS]], ignore_index=True)
        return ReplayMemory(self.capacity, balanced_selection(pool, self.capacity, seed))

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """Rows to replay in one cycle: all of memory when `n` covers it, else a balanced draw."""
        if n >= len(self.rows):
            return self.rows.copy()
        return sample_replay(self.rows, n, seed)

    def labels_except(self, batch_id: str) -> set[str]:
        """The classes held for batches other than `batch_id`: what earlier cycles trained on."""
        return set(self.rows.loc[self.rows["batch_id"] != batch_id, "label"])

    def counts(self) -> pd.DataFrame:
        """Rows held per (batch_id, label)."""
        return self.rows.groupby(["batch_id", "label"]).size().rename("rows").reset_index()

    def save(self, path: Path) -> Path:
        """Write the memory as Parquet (its capacity in the file's metadata), atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(self.rows[COLUMNS].astype(str), preserve_index=False)
        metadata = {**(table.schema.metadata or {}), _CAPACITY_KEY: str(self.capacity).encode()}
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ReplayMemory:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        capacity = int((table.schema.metadata or {}).get(_CAPACITY_KEY, b"-1"))
        if capacity < 0:
            raise ValueError(f"{path} is not a replay memory file (no capacity recorded)")
        return cls(capacity, table.to_pandas()[COLUMNS].astype(str).reset_index(drop=True))
