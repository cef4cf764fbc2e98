"""Experience replay: a class- and batch-balanced sample of earlier training rows.

A pure function of its inputs and seed, so a cycle's replay set can be rebuilt exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def replay_size(new_rows: int, ratio: float, max_rows: int) -> int:
    """How many earlier rows to mix in for a new batch of `new_rows` training rows."""
    return max(0, min(int(round(new_rows * ratio)), max_rows))


def sample_replay(pool: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Draw up to `n` rows from `pool` (columns include batch_id and label), balanced over
    (batch, label) cells: cells are filled round-robin, so no cell gets two rows more than
    another unless it runs out of rows."""
    if n <= 0 or pool.empty:
        return pool.iloc[0:0].copy()
    pool = pool.reset_index(drop=True)  # positions, so a concatenated pool's repeated labels are safe
    rng = np.random.default_rng(seed)
    cells = [
        rng.permutation(group.index.to_numpy())
        for _, group in sorted(pool.groupby(["batch_id", "label"], sort=True), key=lambda kv: str(kv[0]))
    ]
    taken: list[int] = []
    depth = 0
    while len(taken) < n and any(depth < len(cell) for cell in cells):
        # One row from each cell per round; the cell order is shuffled each round so ties
        # at the cut-off do not always favour the same batch or class.
        for i in rng.permutation(len(cells)):
            if depth < len(cells[i]):
                taken.append(int(cells[i][depth]))
                if len(taken) == n:
                    break
        depth += 1
    return pool.loc[sorted(taken)].reset_index(drop=True)
