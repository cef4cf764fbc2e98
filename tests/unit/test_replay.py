"""Experience replay: invariants of sample_replay over many synthetic pools, and replay_size.

hypothesis is not installed in the project's environment, so the pools come from a seeded
generator and the invariants are checked over a parametrised set of them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from perennial.replay import replay_size, sample_replay

POOL_SEEDS = list(range(40))


def make_pool(
    rng: np.random.Generator, min_cell: int = 0, max_cell: int = 25, shuffle: bool = True
) -> pd.DataFrame:
    """A pool of 1-4 batches x 1-3 labels, each (batch, label) cell holding min_cell..max_cell rows."""
    batches = [f"b{i}" for i in range(int(rng.integers(1, 5)))]
    labels = ["negative", "neutral", "positive"][: int(rng.integers(1, 4))]
    rows = []
    for batch in batches:
        for label in labels:
            rows += [(batch, label)] * int(rng.integers(min_cell, max_cell + 1))
    frame = pd.DataFrame(rows, columns=["batch_id", "label"])
    frame["text"] = [f"text {i}" for i in range(len(frame))]
    frame["row_id"] = np.arange(len(frame))
    frame = frame[["batch_id", "text", "label", "row_id"]]
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    return frame


def pool_and_n(seed: int) -> tuple[pd.DataFrame, int]:
    rng = np.random.default_rng(seed)
    pool = make_pool(rng)
    n = int(rng.integers(0, len(pool) + 15))  # sometimes more than the pool holds
    return pool, n


def cell_counts(frame: pd.DataFrame) -> Counter[tuple[str, str]]:
    return Counter(zip(frame["batch_id"], frame["label"], strict=True))


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_size_is_min_of_n_and_pool(seed: int) -> None:
    pool, n = pool_and_n(seed)
    sample = sample_replay(pool, n, seed=seed)
    assert len(sample) <= n
    assert len(sample) == min(n, len(pool))


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_rows_unique_and_from_the_pool(seed: int) -> None:
    pool, n = pool_and_n(seed)
    sample = sample_replay(pool, n, seed=seed + 1000)
    assert sample["row_id"].is_unique
    assert list(sample.columns) == list(pool.columns)
    by_id = pool.set_index("row_id")
    for row in sample.itertuples(index=False):
        original = by_id.loc[row.row_id]
        assert (row.batch_id, row.text, row.label) == (
            original["batch_id"],
            original["text"],
            original["label"],
        )
    assert list(sample.index) == list(range(len(sample)))


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_balanced_when_every_cell_is_deep_enough(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    pool = make_pool(rng, min_cell=k, max_cell=k + 20)
    cells = pool.groupby(["batch_id", "label"]).ngroups
    n = int(rng.integers(1, k * cells + 1))
    counts = cell_counts(sample_replay(pool, n, seed=seed))
    per_cell = [counts.get(cell, 0) for cell in cell_counts(pool)]
    assert sum(per_cell) == n
    assert max(per_cell) - min(per_cell) <= 1, per_cell


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_round_robin_with_cells_that_run_out(seed: int) -> None:
    # General form: a cell below the top count by two or more must have been used up.
    pool, n = pool_and_n(seed)
    counts = cell_counts(sample_replay(pool, n, seed=seed))
    sizes = cell_counts(pool)
    if not counts:
        return
    top = max(counts.values())
    for cell, size in sizes.items():
        assert counts.get(cell, 0) >= min(size, top - 1), (cell, size, counts.get(cell, 0), top)


def test_balanced_example_exact() -> None:
    # Two batches x two labels with very unequal sizes: 8 rows means 2 from each cell.
    pool = pd.DataFrame(
        {
            "batch_id": ["a"] * 50 + ["a"] * 3 + ["b"] * 10 + ["b"] * 2,
            "label": ["x"] * 50 + ["y"] * 3 + ["x"] * 10 + ["y"] * 2,
            "text": [f"t{i}" for i in range(65)],
        }
    )
    counts = cell_counts(sample_replay(pool, 8, seed=0))
    assert counts == {("a", "x"): 2, ("a", "y"): 2, ("b", "x"): 2, ("b", "y"): 2}
    # 12 rows: the cell ('b', 'y') runs out after 2, the other cells share the rest.
    counts = cell_counts(sample_replay(pool, 12, seed=0))
    assert counts[("b", "y")] == 2
    assert sorted(counts[c] for c in [("a", "x"), ("a", "y"), ("b", "x")]) == [3, 3, 4]


@pytest.mark.parametrize("seed", POOL_SEEDS[:10])
def test_deterministic_for_same_seed(seed: int) -> None:
    pool, n = pool_and_n(seed)
    pd.testing.assert_frame_equal(sample_replay(pool, n, seed=99), sample_replay(pool, n, seed=99))


def test_different_seeds_draw_different_rows() -> None:
    pool = make_pool(np.random.default_rng(0), min_cell=30, max_cell=40)
    draws = {tuple(sample_replay(pool, 10, seed=s)["row_id"]) for s in range(5)}
    assert len(draws) > 1


def test_does_not_modify_the_pool() -> None:
    pool, n = pool_and_n(3)
    before = pool.copy()
    sample_replay(pool, n, seed=1)
    pd.testing.assert_frame_equal(pool, before)


def test_non_default_unique_index() -> None:
    pool, _ = pool_and_n(5)
    pool.index = pool.index * 7 + 1000
    sample = sample_replay(pool, len(pool) // 2, seed=2)
    assert len(sample) == len(pool) // 2
    assert sample["row_id"].is_unique
    assert set(sample["row_id"]) <= set(pool["row_id"])


@pytest.mark.parametrize("n", [0, -1, -50])
def test_non_positive_n_gives_empty_frame_with_columns(n: int) -> None:
    pool, _ = pool_and_n(1)
    sample = sample_replay(pool, n, seed=0)
    assert sample.empty
    assert list(sample.columns) == ["batch_id", "text", "label", "row_id"]


def test_empty_pool_gives_empty_frame_with_columns() -> None:
    pool = pd.DataFrame(columns=["batch_id", "text", "label"])
    sample = sample_replay(pool, 10, seed=0)
    assert sample.empty
    assert list(sample.columns) == ["batch_id", "text", "label"]


def test_whole_pool_when_n_exceeds_it() -> None:
    pool, _ = pool_and_n(2)
    sample = sample_replay(pool, len(pool) + 100, seed=0)
    assert sorted(sample["row_id"]) == sorted(pool["row_id"])


# replay_size


@pytest.mark.parametrize(
    ("new_rows", "ratio", "max_rows", "expected"),
    [
        (100, 0.5, 2000, 50),
        (100, 0.25, 2000, 25),
        (100, 2.0, 2000, 200),
        (100, 2.0, 150, 150),  # capped
        (10_000, 0.5, 2000, 2000),  # capped
        (100, 0.0, 2000, 0),
        (100, 0.5, 0, 0),
        (0, 0.5, 2000, 0),
        (3, 0.5, 2000, 2),  # 1.5 rounds to the even 2
        (5, 0.5, 2000, 2),  # 2.5 rounds to the even 2
        (7, 0.125, 2000, 1),
    ],
)
def test_replay_size(new_rows: int, ratio: float, max_rows: int, expected: int) -> None:
    assert replay_size(new_rows, ratio, max_rows) == expected


@pytest.mark.parametrize(("new_rows", "ratio", "max_rows"), [(-10, 0.5, 100), (10, -1.0, 100), (10, 0.5, -5)])
def test_replay_size_never_negative(new_rows: int, ratio: float, max_rows: int) -> None:
    assert replay_size(new_rows, ratio, max_rows) == 0


def test_replay_size_monotone_and_capped() -> None:
    sizes = [replay_size(rows, 0.5, 300) for rows in range(0, 1000, 7)]
    assert sizes == sorted(sizes)
    assert max(sizes) == 300
    assert min(sizes) == 0
