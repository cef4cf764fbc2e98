"""The replay memory: capped, balanced over (batch, label) cells, seeded, and only ever forgetting.

Synthetic batches with uneven cells (some run out of rows before others); every text is unique, so
rows are identified by their text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perennial.learning.replay import COLUMNS, ReplayMemory, balanced_selection, replay_size, sample_replay

# Three batches x 2-3 labels, cells of very different sizes (b1/negative holds a single row).
SIZES: dict[str, dict[str, int]] = {
    "b0": {"negative": 7, "positive": 2, "neutral": 4},
    "b1": {"negative": 1, "positive": 9},
    "b2": {"negative": 5, "positive": 6, "neutral": 3},
}
CAPACITIES = [0, 1, 3, 5, 8, 13, 20, 37, 100]


def make_batch(batch_id: str, sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(batch_id, f"{batch_id} {label} text {i}", label) for label, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=COLUMNS)


def batches() -> list[pd.DataFrame]:
    return [make_batch(batch_id, sizes) for batch_id, sizes in SIZES.items()]


def all_rows() -> pd.DataFrame:
    return pd.concat(batches(), ignore_index=True)


def cell_counts(frame: pd.DataFrame) -> Counter[tuple[str, str]]:
    return Counter(zip(frame["batch_id"], frame["label"], strict=True))


def fill(capacity: int, seed: int, frames: list[pd.DataFrame] | None = None) -> list[ReplayMemory]:
    """The memory after each batch, added one at a time."""
    memory = ReplayMemory.empty(capacity)
    states = []
    for batch in batches() if frames is None else frames:
        memory = memory.add(batch, seed)
        states.append(memory)
    return states


def assert_balanced(held: pd.DataFrame, seen: pd.DataFrame) -> None:
    """Cells differ by at most one row, except cells that ran out, which hold every row they had."""
    counts, sizes = cell_counts(held), cell_counts(seen)
    assert set(counts) <= set(sizes)
    if not counts:
        return
    top = max(counts.values())
    for cell, size in sizes.items():
        got = counts.get(cell, 0)
        assert got <= size
        if got < top - 1:
            assert got == size, (cell, got, size, counts)


# Capacity, balance, provenance


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("seed", [0, 1, 2024])
def test_never_above_capacity_and_as_full_as_possible(capacity: int, seed: int) -> None:
    seen = 0
    for batch, memory in zip(batches(), fill(capacity, seed), strict=True):
        seen += len(batch)
        assert len(memory) <= capacity
        assert len(memory) == min(capacity, seen)
        assert memory.capacity == capacity
        assert list(memory.rows.columns) == COLUMNS
        assert list(memory.rows.index) == list(range(len(memory)))


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("seed", [0, 3])
def test_rows_are_unique_and_come_from_the_batches_seen(capacity: int, seed: int) -> None:
    seen = pd.DataFrame(columns=COLUMNS)
    for batch, memory in zip(batches(), fill(capacity, seed), strict=True):
        seen = pd.concat([seen, batch], ignore_index=True)
        assert memory.rows["text"].is_unique
        known = set(seen.itertuples(index=False, name=None))
        assert set(memory.rows.itertuples(index=False, name=None)) <= known


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("seed", [0, 1, 7, 99])
def test_balanced_after_every_add(capacity: int, seed: int) -> None:
    seen = pd.DataFrame(columns=COLUMNS)
    for batch, memory in zip(batches(), fill(capacity, seed), strict=True):
        seen = pd.concat([seen, batch], ignore_index=True)
        assert_balanced(memory.rows, seen)


def test_balanced_example_with_cells_that_run_out() -> None:
    b0 = make_batch("b0", SIZES["b0"])  # negative 7, positive 2, neutral 4
    # 6 rows: two from each cell, however big the cell.
    assert cell_counts(ReplayMemory.empty(6).add(b0, seed=0).rows) == {
        ("b0", "negative"): 2,
        ("b0", "positive"): 2,
        ("b0", "neutral"): 2,
    }
    # 12 rows: positive runs out at 2 and neutral at 4; negative takes the rest.
    assert cell_counts(ReplayMemory.empty(12).add(b0, seed=0).rows) == {
        ("b0", "negative"): 6,
        ("b0", "positive"): 2,
        ("b0", "neutral"): 4,
    }


def test_new_batch_takes_its_share_of_a_full_memory() -> None:
    first = make_batch("b0", {"negative": 20, "positive": 20})
    second = make_batch("b1", {"negative": 20, "positive": 20})
    memory = ReplayMemory.empty(8).add(first, seed=0)
    assert cell_counts(memory.rows) == {("b0", "negative"): 4, ("b0", "positive"): 4}
    memory = memory.add(second, seed=0)
    assert set(cell_counts(memory.rows).values()) == {2}
    assert len(cell_counts(memory.rows)) == 4


def test_capacity_zero_keeps_nothing() -> None:
    for memory in fill(0, seed=0):
        assert len(memory) == 0
        assert memory.rows.empty
        assert list(memory.rows.columns) == COLUMNS
        assert memory.counts().empty


def test_counts_per_cell() -> None:
    memory = ReplayMemory.empty(100).add(make_batch("b0", SIZES["b0"]), seed=0)
    counts = memory.counts()
    assert list(counts.columns) == ["batch_id", "label", "rows"]
    assert dict(zip(counts["label"], counts["rows"], strict=True)) == SIZES["b0"]


def test_labels_except_a_batch_are_what_the_other_batches_brought() -> None:
    memory = ReplayMemory.empty(100).add(make_batch("b0", {"x": 3, "y": 2}), seed=0)
    memory = memory.add(make_batch("b1", {"y": 2, "z": 4}), seed=0)
    assert memory.labels_except("b1") == {"x", "y"}
    assert memory.labels_except("b0") == {"y", "z"}
    assert memory.labels_except("other") == {"x", "y", "z"}
    assert ReplayMemory.empty(10).labels_except("b0") == set()


# Determinism


@pytest.mark.parametrize("capacity", [5, 13])
def test_deterministic_for_the_same_seed(capacity: int) -> None:
    for a, b in zip(fill(capacity, seed=11), fill(capacity, seed=11), strict=True):
        pd.testing.assert_frame_equal(a.rows, b.rows)


def test_another_seed_keeps_other_rows() -> None:
    reference = set(fill(10, seed=0)[-1].rows["text"])
    others = [set(fill(10, seed=s)[-1].rows["text"]) for s in range(1, 6)]
    assert any(texts != reference for texts in others)


def test_selection_does_not_depend_on_input_row_order() -> None:
    rows = all_rows()
    shuffled = rows.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        balanced_selection(rows, 11, seed=4), balanced_selection(shuffled, 11, seed=4)
    )


def test_balanced_selection_leaves_its_input_alone_and_drops_extra_columns() -> None:
    rows = all_rows().assign(extra=1)
    before = rows.copy()
    chosen = balanced_selection(rows, 9, seed=0)
    pd.testing.assert_frame_equal(rows, before)
    assert list(chosen.columns) == COLUMNS
    assert len(chosen) == 9


@pytest.mark.parametrize("n", [0, -3])
def test_balanced_selection_of_nothing(n: int) -> None:
    chosen = balanced_selection(all_rows(), n, seed=0)
    assert chosen.empty
    assert list(chosen.columns) == COLUMNS


# Path independence and the reservoir property


def deep_batches() -> list[pd.DataFrame]:
    """Every cell holds at least 6 rows, so a capacity of k rows per cell (k <= 6) never needs a
    tie-break between cells at the final round."""
    return [
        make_batch("b0", {"negative": 9, "positive": 6, "neutral": 7}),
        make_batch("b1", {"negative": 6, "positive": 11}),
        make_batch("b2", {"negative": 8, "positive": 6, "neutral": 10}),
    ]


@pytest.mark.parametrize("per_cell", [1, 2, 3, 6])
@pytest.mark.parametrize("seed", [0, 5, 8])
def test_path_independent_when_capacity_splits_evenly(per_cell: int, seed: int) -> None:
    frames = deep_batches()
    pool = pd.concat(frames, ignore_index=True)
    capacity = per_cell * len(cell_counts(pool))
    one_at_a_time = fill(capacity, seed, frames)[-1]
    pd.testing.assert_frame_equal(one_at_a_time.rows, balanced_selection(pool, capacity, seed))
    assert set(cell_counts(one_at_a_time.rows).values()) == {per_cell}


@pytest.mark.parametrize("seed", [0, 5])
def test_path_independent_when_everything_fits(seed: int) -> None:
    pool = all_rows()
    memory = fill(len(pool), seed)[-1]
    pd.testing.assert_frame_equal(memory.rows, balanced_selection(pool, len(pool), seed))
    assert sorted(memory.rows["text"]) == sorted(pool["text"])


def test_path_independent_with_a_partial_round() -> None:
    # Capacity 5: after b0 (3 cells x 2 rows) one of b0's cells is cut to 1 row; after b1 adds a
    # fourth cell, the cell that selection over all rows lets keep 2 rows is a different one.
    frames = [make_batch("b0", {"a": 2, "b": 2, "c": 2}), make_batch("b1", {"a": 1})]
    pool = pd.concat(frames, ignore_index=True)
    one_at_a_time = fill(5, seed=5, frames=frames)[-1]
    pd.testing.assert_frame_equal(one_at_a_time.rows, balanced_selection(pool, 5, seed=5))


@pytest.mark.parametrize("capacity", [1, 4, 7, 12, 25])
@pytest.mark.parametrize("seed", [0, 2, 13])
def test_a_dropped_row_never_comes_back(capacity: int, seed: int) -> None:
    frames = [*batches(), make_batch("b3", {"negative": 4, "positive": 3}), make_batch("b4", {"positive": 5})]
    dropped: set[str] = set()
    previous: set[str] = set()
    for batch, memory in zip(frames, fill(capacity, seed, frames), strict=True):
        held = set(memory.rows["text"])
        assert not held & dropped
        assert held <= previous | set(batch["text"])  # only old rows and the new batch's
        dropped |= previous - held
        previous = held
    if capacity > 1:  # one row may be the first cell's best row for good; more must rotate
        assert dropped  # the sequence does force the memory to forget


# Persistence and validation


def test_save_load_round_trip(tmp_path: Path) -> None:
    memory = fill(9, seed=4)[-1]
    path = memory.save(tmp_path / "nested" / "memory.parquet")
    assert path == tmp_path / "nested" / "memory.parquet"
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp"))
    loaded = ReplayMemory.load(path)
    assert loaded.capacity == 9
    pd.testing.assert_frame_equal(loaded.rows, memory.rows)
    # The loaded memory carries on exactly like the original.
    later = make_batch("b3", {"negative": 3, "positive": 3})
    pd.testing.assert_frame_equal(loaded.add(later, seed=4).rows, memory.add(later, seed=4).rows)


def test_save_load_round_trip_of_an_empty_memory(tmp_path: Path) -> None:
    memory = ReplayMemory.empty(50)
    loaded = ReplayMemory.load(memory.save(tmp_path / "memory.parquet"))
    assert loaded.capacity == 50
    assert len(loaded) == 0
    pd.testing.assert_frame_equal(loaded.rows, memory.rows)


def test_save_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "memory.parquet"
    fill(20, seed=0)[-1].save(path)
    smaller = fill(3, seed=1)[-1]
    smaller.save(path)
    loaded = ReplayMemory.load(path)
    assert loaded.capacity == 3
    pd.testing.assert_frame_equal(loaded.rows, smaller.rows)


def test_loading_a_parquet_that_is_not_a_memory_raises(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    all_rows().to_parquet(path, index=False)
    with pytest.raises(ValueError, match="not a replay memory"):
        ReplayMemory.load(path)


@pytest.mark.parametrize("column", COLUMNS)
def test_add_without_a_column_raises(column: str) -> None:
    batch = make_batch("b0", SIZES["b0"]).drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        ReplayMemory.empty(10).add(batch, seed=0)


def test_add_returns_a_new_memory_and_ignores_extra_columns() -> None:
    empty = ReplayMemory.empty(10)
    batch = make_batch("b0", SIZES["b0"]).assign(split="train")
    memory = empty.add(batch, seed=0)
    assert len(empty) == 0
    assert len(memory) == 10
    assert list(memory.rows.columns) == COLUMNS


# Sampling one cycle's replay set


@pytest.mark.parametrize("extra", [0, 1, 50])
def test_sample_everything_when_n_covers_the_memory(extra: int) -> None:
    memory = fill(12, seed=0)[-1]
    sample = memory.sample(len(memory) + extra, seed=3)
    pd.testing.assert_frame_equal(sample, memory.rows)
    assert sample is not memory.rows


@pytest.mark.parametrize("n", [1, 4, 7, 11])
def test_sample_a_balanced_subset(n: int) -> None:
    memory = fill(12, seed=0)[-1]
    sample = memory.sample(n, seed=3)
    assert len(sample) == n
    assert sample["text"].is_unique
    assert set(sample["text"]) <= set(memory.rows["text"])
    assert_balanced(sample, memory.rows)
    pd.testing.assert_frame_equal(sample, memory.sample(n, seed=3))


def test_sample_replay_is_a_balanced_draw() -> None:
    pool = all_rows()
    sample = sample_replay(pool, 8, seed=1)
    assert len(sample) == 8
    assert set(cell_counts(sample).values()) == {1}  # 8 cells, one row each
    pd.testing.assert_frame_equal(sample, balanced_selection(pool, 8, seed=1))


def test_sample_draws_differ_across_seeds() -> None:
    memory = ReplayMemory.empty(60).add(make_batch("b0", {"negative": 30, "positive": 30}), seed=0)
    draws = {tuple(memory.sample(6, seed=s)["text"]) for s in range(6)}
    assert len(draws) > 1


# replay_size


@pytest.mark.parametrize(
    ("new_rows", "ratio", "available", "expected"),
    [
        (100, 0.5, 2000, 50),
        (100, 1.0, 2000, 100),
        (100, 2.0, 2000, 200),
        (100, 2.0, 150, 150),  # capped by the memory
        (10_000, 0.5, 2000, 2000),
        (100, 0.0, 2000, 0),
        (100, 0.5, 0, 0),
        (0, 0.5, 2000, 0),
        (7, 0.5, 2000, 4),  # 3.5 rounds to the even 4
        (5, 0.5, 2000, 2),  # 2.5 rounds to the even 2
        (3, 0.4, 2000, 1),
        (-10, 0.5, 100, 0),
        (10, -1.0, 100, 0),
        (10, 0.5, -5, 0),
    ],
)
def test_replay_size(new_rows: int, ratio: float, available: int, expected: int) -> None:
    assert replay_size(new_rows, ratio, available) == expected


def test_replay_size_is_monotone_and_capped() -> None:
    sizes = [replay_size(rows, 0.75, 300) for rows in range(0, 1000, 7)]
    assert sizes == sorted(sizes)
    assert max(sizes) == 300
    assert all(isinstance(s, int) for s in sizes)
    assert np.all(np.diff(sizes) >= 0)
