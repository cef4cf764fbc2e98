"""Strategy specs, and the rows each data strategy trains and early-stops on."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.learning.replay import COLUMNS, ReplayMemory, replay_size
from perennial.learning.strategy import (
    BIASES,
    DATA,
    MERGES,
    REGULARIZERS,
    Strategy,
    TrainingData,
    assemble_training_data,
)
from perennial.learning.tuning import TUNINGS

pytestmark = pytest.mark.usefixtures("no_outside_settings")

ALL_STRATEGIES = [
    Strategy(*parts) for parts in itertools.product(DATA, REGULARIZERS, TUNINGS, MERGES, BIASES)
]


# Parsing and naming


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("replay+lwf", Strategy("replay", "lwf", "full")),
        ("lora", Strategy("naive", "none", "lora")),
        ("joint", Strategy("joint", "none", "full")),
        ("replay+ewc+head", Strategy("replay", "ewc", "head")),
        ("naive", Strategy("naive", "none", "full")),
        ("naive+lwf+lora", Strategy("naive", "lwf", "lora")),
        (" Replay + LwF ", Strategy("replay", "lwf", "full")),
        ("JOINT+HEAD", Strategy("joint", "none", "head")),
        ("ewc", Strategy("naive", "ewc", "full")),
        ("replay+none+full", Strategy("replay", "none", "full")),
        ("", Strategy("naive", "none", "full")),
        ("replay+lwf+", Strategy("replay", "lwf", "full")),  # empty words are skipped
        ("replay+wise", Strategy("replay", merge="wise")),
        ("naive+logit-adjust+wise", Strategy("naive", merge="wise", bias="logit-adjust")),
    ],
)
def test_parse(spec: str, expected: Strategy) -> None:
    assert Strategy.parse(spec) == expected


@pytest.mark.parametrize("spec", ["rehearsal", "replay+l2", "lwf+adapters", "replay lwf", "replay,lwf"])
def test_parse_rejects_unknown_words_and_lists_the_known_ones(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown strategy word") as info:
        Strategy.parse(spec)
    message = str(info.value)
    for word in (*DATA, *REGULARIZERS, *TUNINGS, *MERGES, *BIASES):
        assert word in message


@pytest.mark.parametrize(
    ("data", "regularizer", "tuning"),
    [
        ("rehearse", "none", "full"),
        ("replay", "l2", "full"),
        ("replay", "none", "adapters"),
        ("Replay", "none", "full"),
    ],
)
def test_constructor_rejects_unknown_values(data: str, regularizer: str, tuning: str) -> None:
    with pytest.raises(ValueError, match="unknown strategy part"):
        Strategy(data, regularizer, tuning)


def test_constructor_defaults() -> None:
    assert Strategy() == Strategy("replay", "none", "full")


@pytest.mark.parametrize(
    "strategy", ALL_STRATEGIES, ids=lambda s: f"{s.data}-{s.regularizer}-{s.tuning}-{s.merge}-{s.bias}"
)
def test_name_round_trips_through_parse(strategy: Strategy) -> None:
    assert Strategy.parse(strategy.name) == strategy
    assert "none" not in strategy.name.split("+")
    assert "full" not in strategy.name.split("+")
    assert strategy.name.split("+")[0] == strategy.data


@pytest.mark.parametrize(
    ("strategy", "name"),
    [
        (Strategy("replay", "none", "full"), "replay"),
        (Strategy("naive", "none", "lora"), "naive+lora"),
        (Strategy("replay", "ewc", "head"), "replay+ewc+head"),
        (Strategy("joint", "lwf", "full"), "joint+lwf"),
        (Strategy("replay", "lwf", "full", "wise", "logit-adjust"), "replay+lwf+wise+logit-adjust"),
    ],
)
def test_name(strategy: Strategy, name: str) -> None:
    assert strategy.name == name


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, strategy="joint", regularizer="ewc", tuning="head")
    # Joint starts from the base model: there is no champion for a regulariser to anchor to.
    assert Strategy.from_settings(settings) == Strategy("joint", "none", "head")
    anchored = Settings(workspace=tmp_path, strategy="naive", regularizer="ewc", tuning="head")
    assert Strategy.from_settings(anchored) == Strategy("naive", "ewc", "head")
    merged = Settings(workspace=tmp_path, merge="wise", bias_correction="logit-adjust")
    assert Strategy.from_settings(merged) == Strategy("replay", "lwf", merge="wise", bias="logit-adjust")
    defaults = Settings(workspace=tmp_path)
    assert Strategy.from_settings(defaults) == Strategy(
        defaults.strategy, defaults.regularizer, defaults.tuning
    )


@pytest.mark.parametrize(
    "strategy", ALL_STRATEGIES, ids=lambda s: f"{s.data}-{s.regularizer}-{s.tuning}-{s.merge}-{s.bias}"
)
def test_only_joint_starts_from_the_base_model(strategy: Strategy) -> None:
    assert strategy.starts_from_base == (strategy.data == "joint")


def test_strategy_is_hashable_and_frozen() -> None:
    strategy = Strategy.parse("replay+lwf")
    assert len({strategy, Strategy("replay", "lwf", "full")}) == 1
    with pytest.raises(AttributeError):
        strategy.data = "joint"  # type: ignore[misc]


# Assembling one cycle's rows


def make_split(batch_id: str, split: str, sizes: dict[str, int]) -> pd.DataFrame:
    rows = [
        (batch_id, f"{batch_id} {split} {label} {i}", label) for label, n in sizes.items() for i in range(n)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


EARLIER_TRAIN = [
    make_split("b0", "train", {"negative": 12, "positive": 5}),
    make_split("b1", "train", {"negative": 4, "positive": 15}),
]
EARLIER_VAL = [
    make_split("b0", "val", {"negative": 6, "positive": 2}),
    make_split("b1", "val", {"negative": 3, "positive": 5}),
]
NEW_TRAIN = make_split("b2", "train", {"negative": 9, "positive": 11})
NEW_VAL = make_split("b2", "val", {"negative": 4, "positive": 5})
MEMORY_SEED = 7


def memory_of(capacity: int) -> ReplayMemory:
    memory = ReplayMemory.empty(capacity)
    for train in EARLIER_TRAIN:
        memory = memory.add(train, MEMORY_SEED)
    return memory


def assemble(
    spec: str, capacity: int = 16, ratio: float = 0.5, cycle_seed: int = 3, memory_seed: int = MEMORY_SEED
) -> tuple[TrainingData, ReplayMemory]:
    memory = memory_of(capacity)
    data = assemble_training_data(
        Strategy.parse(spec),
        NEW_TRAIN,
        NEW_VAL,
        memory=memory,
        earlier_train=EARLIER_TRAIN,
        earlier_val=EARLIER_VAL,
        replay_ratio=ratio,
        memory_seed=memory_seed,
        cycle_seed=cycle_seed,
    )
    return data, memory


def texts(frame: pd.DataFrame) -> set[str]:
    return set(frame["text"])


@pytest.mark.parametrize("spec", ["naive", "naive+lwf", "naive+ewc+lora"])
def test_naive_trains_on_the_new_batch_only(spec: str) -> None:
    data, _ = assemble(spec)
    pd.testing.assert_frame_equal(data.train, NEW_TRAIN)
    pd.testing.assert_frame_equal(data.val, NEW_VAL)
    assert data.replayed.empty
    assert list(data.replayed.columns) == COLUMNS


@pytest.mark.parametrize(("ratio", "capacity"), [(0.5, 16), (1.0, 16), (0.25, 30), (10.0, 16), (1.0, 100)])
def test_replay_mixes_in_memory_rows(ratio: float, capacity: int) -> None:
    data, memory = assemble("replay", capacity=capacity, ratio=ratio)
    expected = replay_size(len(NEW_TRAIN), ratio, len(memory))
    assert expected > 0
    assert len(data.replayed) == expected
    assert len(data.train) == len(NEW_TRAIN) + expected
    # The new batch first, then the replayed rows, all drawn from the memory (earlier batches only).
    pd.testing.assert_frame_equal(data.train.iloc[: len(NEW_TRAIN)], NEW_TRAIN)
    pd.testing.assert_frame_equal(data.train.iloc[len(NEW_TRAIN) :].reset_index(drop=True), data.replayed)
    assert data.replayed["text"].is_unique
    assert texts(data.replayed) <= texts(memory.rows)
    assert set(data.replayed["batch_id"]) <= {"b0", "b1"}
    pd.testing.assert_frame_equal(data.replayed, memory.sample(expected, seed=3))


def test_replay_size_is_capped_by_the_memory() -> None:
    data, memory = assemble("replay", capacity=6, ratio=10.0)
    assert len(memory) == 6
    pd.testing.assert_frame_equal(data.replayed.reset_index(drop=True), memory.rows)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 3.0])
def test_replay_val_adds_a_balanced_sample_of_earlier_val(ratio: float) -> None:
    data, _ = assemble("replay+lwf", ratio=ratio)
    pool = pd.concat(EARLIER_VAL, ignore_index=True)
    extra = replay_size(len(NEW_VAL), ratio, len(pool))
    assert len(data.val) == len(NEW_VAL) + extra
    pd.testing.assert_frame_equal(data.val.iloc[: len(NEW_VAL)], NEW_VAL)
    old = data.val.iloc[len(NEW_VAL) :]
    assert old["text"].is_unique
    assert texts(old) <= texts(pool)
    # Balanced over the earlier (batch, label) cells, except cells that ran out.
    counts = Counter(zip(old["batch_id"], old["label"], strict=True))
    sizes = Counter(zip(pool["batch_id"], pool["label"], strict=True))
    top = max(counts.values())
    for cell, size in sizes.items():
        assert counts.get(cell, 0) >= min(size, top - 1), (cell, counts)
    # Nothing of the earlier training rows leaks into val, nor the other way round.
    assert not texts(data.val) & texts(data.train)


def test_replay_with_no_history_is_naive() -> None:
    data = assemble_training_data(
        Strategy.parse("replay"),
        NEW_TRAIN,
        NEW_VAL,
        memory=ReplayMemory.empty(50),
        earlier_train=[],
        earlier_val=[],
        replay_ratio=1.0,
        memory_seed=MEMORY_SEED,
        cycle_seed=0,
    )
    pd.testing.assert_frame_equal(data.train, NEW_TRAIN)
    pd.testing.assert_frame_equal(data.val, NEW_VAL)
    assert data.replayed.empty
    assert texts(data.memory_after.rows) <= texts(NEW_TRAIN)
    assert len(data.memory_after) == len(NEW_TRAIN)


@pytest.mark.parametrize("spec", ["joint", "joint+ewc+head"])
def test_joint_trains_on_everything_so_far(spec: str) -> None:
    data, _ = assemble(spec)
    pd.testing.assert_frame_equal(data.train, pd.concat([*EARLIER_TRAIN, NEW_TRAIN], ignore_index=True))
    pd.testing.assert_frame_equal(data.val, pd.concat([*EARLIER_VAL, NEW_VAL], ignore_index=True))
    assert data.replayed.empty


@pytest.mark.parametrize("spec", ["naive", "replay", "joint", "replay+lwf+lora"])
@pytest.mark.parametrize("capacity", [0, 1, 5, 6, 16, 200])
def test_memory_after_takes_in_the_new_batch_whatever_the_strategy(spec: str, capacity: int) -> None:
    data, memory = assemble(spec, capacity=capacity)
    after = data.memory_after
    assert after.capacity == capacity
    assert len(after) <= capacity
    assert len(after) == min(capacity, len(memory) + len(NEW_TRAIN))
    cells = {
        (b, lab)
        for frame in (*EARLIER_TRAIN, NEW_TRAIN)
        for b, lab in zip(frame["batch_id"], frame["label"], strict=True)
    }
    if capacity >= len(cells):  # room for a row of every cell: each label of the new batch is kept
        held = set(zip(after.rows["batch_id"], after.rows["label"], strict=True))
        assert {("b2", "negative"), ("b2", "positive")} <= held
    assert texts(after.rows) <= texts(memory.rows) | texts(NEW_TRAIN)
    pd.testing.assert_frame_equal(after.rows, memory.add(NEW_TRAIN, MEMORY_SEED).rows)
    assert len(memory) == len(memory_of(capacity))  # the old memory is not changed


def test_memory_after_does_not_depend_on_the_strategy() -> None:
    reference = assemble("naive")[0].memory_after.rows
    for spec in ("replay", "joint", "replay+ewc+head"):
        pd.testing.assert_frame_equal(assemble(spec)[0].memory_after.rows, reference)


@pytest.mark.parametrize("spec", ["naive", "replay+lwf", "joint"])
def test_deterministic_for_the_same_seeds(spec: str) -> None:
    a, _ = assemble(spec, cycle_seed=5, memory_seed=MEMORY_SEED)
    b, _ = assemble(spec, cycle_seed=5, memory_seed=MEMORY_SEED)
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.val, b.val)
    pd.testing.assert_frame_equal(a.replayed, b.replayed)
    pd.testing.assert_frame_equal(a.memory_after.rows, b.memory_after.rows)


def test_cycle_seed_changes_the_replayed_rows() -> None:
    draws = {
        tuple(assemble("replay", capacity=30, ratio=0.25, cycle_seed=s)[0].replayed["text"]) for s in range(6)
    }
    assert len(draws) > 1


def test_inputs_are_not_modified() -> None:
    before = [f.copy() for f in (*EARLIER_TRAIN, *EARLIER_VAL, NEW_TRAIN, NEW_VAL)]
    for spec in ("naive", "replay", "joint"):
        assemble(spec)
    for frame, copy in zip((*EARLIER_TRAIN, *EARLIER_VAL, NEW_TRAIN, NEW_VAL), before, strict=True):
        pd.testing.assert_frame_equal(frame, copy)
