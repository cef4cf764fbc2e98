"""Data-parallel training: each rank's share of a batch, and 2-process DDP runs (gloo on CPU, through
the real launcher) against the 1-process run on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.learning.distributed import DataParallel, local_rows
from perennial.learning.training import length_grouped_batches
from perennial.learning.training_job import TrainingJobFailed, failure_message, processes_for, run_training

LABELS = ["negative", "positive"]
POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "delightful", "brilliant", "fantastic"]
NEGATIVE = ["awful", "terrible", "horrible", "dreadful", "boring", "broken", "useless", "disappointing"]
SUBJECTS = ["the battery", "this blender", "the plot", "the acting", "the screen", "the ending"]
FILLERS = ["really", "quite", "honestly", "at first", "in the end", "for the price", "again"]


def reviews(rows: int, seed: int, noise: float = 0.1) -> pd.DataFrame:
    """Short reviews of varied length; `noise` of the labels flipped, so val accuracy tops out near
    0.9 and is worth comparing (without noise both runs reach 1.0)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(rows):
        positive = bool(rng.integers(2))
        filler = " ".join(rng.choice(FILLERS, size=rng.integers(0, 5)))
        texts.append(f"{rng.choice(SUBJECTS)} was {filler} {rng.choice(POSITIVE if positive else NEGATIVE)}")
        labels.append(LABELS[int(positive != (rng.random() < noise))])
    return pd.DataFrame({"text": texts, "label": labels})


# 321 = 20 x 16 + 1: each epoch ends with a one-row batch, so rank 1's slice is empty once per epoch.
TRAIN, VAL = reviews(321, 1), reviews(101, 2)


def train_both(
    model_dir: Path,
    tmp_path: Path,
    regularizer: str = "none",
    labels: list[str] = LABELS,
    data: tuple[pd.DataFrame, pd.DataFrame] = (TRAIN, VAL),
    **overrides: object,
) -> tuple:
    """The same fine-tune in 1 process and in 2 (through the launcher): both results and weights."""
    from safetensors.torch import load_file

    # float32: the comparison is of the launcher, not of bfloat16's rounding (auto picks bfloat16 on a
    # CPU with native support, where 1 and 2 processes then differ by more than summation order).
    values: dict = (
        dict(max_length=32, batch_size=16, learning_rate=3e-3, torch_threads=1, train_precision="float32")
        | overrides
    )
    results, weights = [], []
    for processes in (1, 2):
        settings = Settings(workspace=tmp_path / "ws", train_processes=processes, **values)
        out = tmp_path / f"out{processes}"
        result = run_training(
            model_dir, labels, *data, settings, out, regularizer=regularizer, progress=False
        )
        assert result.model_dir == str(out.resolve())
        results.append(result)
        weights.append(load_file(out / "model.safetensors"))
    assert not list(tmp_path.glob(".out2-job-*")), "the job folder is removed"
    return results, weights


@pytest.fixture
def no_dropout_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.processes
@pytest.mark.usefixtures("no_outside_settings", "one_torch_thread")
def test_two_processes_without_dropout_reproduce_one_process(no_dropout_model: Path, tmp_path: Path) -> None:
    """Without dropout the 2-process run is the 1-process run up to float rounding (the summation
    order of the all-reduce, each rank padding its own slice): per-epoch train loss within 1e-5
    relative (measured ~2e-8), equal val accuracy, weights within 1e-3 (measured 2.1e-5), and the
    weights' distance relative to how far training moved them within 1e-3 (measured 2.3e-5; with
    dropout it is ~1.3). LwF checks that the teacher rows follow each rank's slice."""
    (one, two), (w1, w2) = train_both(no_dropout_model, tmp_path, "lwf", epochs=2, patience=2)
    from safetensors.torch import load_file

    start = load_file(no_dropout_model / "model.safetensors")

    assert two.train_rows == one.train_rows and two.samples_processed == one.samples_processed
    assert two.regularizer == "lwf" and two.epochs_run == one.epochs_run == 2
    for a, b in zip(one.history, two.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_accuracy"] == a["val_accuracy"]
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-3
    gap = sum(((w1[k] - w2[k]) ** 2).sum().item() for k in w1) ** 0.5
    moved = sum(((w1[k] - start[k]) ** 2).sum().item() for k in w1) ** 0.5
    assert gap / moved < 1e-3


@pytest.mark.processes
@pytest.mark.usefixtures("no_outside_settings", "one_torch_thread")
def test_a_grown_head_trains_in_two_processes_as_in_one(no_dropout_model: Path, tmp_path: Path) -> None:
    """A champion whose head grows by a label (LwF over its two old labels, the new row unanchored)
    trains under DDP as in one process: every rank grows the same head from the same seed."""
    from safetensors.torch import load_file

    champion = tmp_path / "champion"
    settings = Settings(
        workspace=tmp_path / "ws", max_length=32, batch_size=16, learning_rate=3e-3, torch_threads=1,
        train_precision="float32", epochs=1, patience=1,
    )  # fmt: skip
    run_training(no_dropout_model, LABELS, TRAIN, VAL, settings, champion, progress=False)
    questions = pd.DataFrame(
        {
            "text": [f"how do i {verb} it ? {i}" for i in range(12) for verb in ("fix", "open")],
            "label": "question",
        }
    )
    grown = [*LABELS, "question"]
    data = (pd.concat([TRAIN, questions[:16]]), pd.concat([VAL, questions[16:]]))
    (one, two), (w1, w2) = train_both(
        champion, tmp_path / "grown", "lwf", labels=grown, data=data, epochs=2, patience=2
    )

    assert w1["classifier.weight"].shape[0] == w2["classifier.weight"].shape[0] == 3
    for a, b in zip(one.history, two.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-3
    old_rows = load_file(champion / "model.safetensors")["classifier.weight"]
    assert not w1["classifier.weight"][:2].equal(old_rows)  # the old rows trained on, not frozen


@pytest.mark.processes
@pytest.mark.usefixtures("no_outside_settings", "one_torch_thread")
def test_two_processes_match_one_process_within_tolerance(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With dropout the ranks draw other masks than one process does, so the runs agree as two seeds
    do. Tolerances (measured differences in brackets): best and final val accuracy within 0.03, i.e.
    3 of 101 rows [0 and 0]; train loss within 0.03 in epoch 1 and epochs 4-6 [0.0011, <= 0.0036].
    Epochs 2-3, where the model leaves its starting plateau at a point that varies from draw to draw
    (epoch-2 loss 0.39-0.65 over five seeds of the 1-process run), within 0.3 [0.013, 0.0016]."""
    (one, two), _ = train_both(tiny_model_dir, tmp_path, epochs=6, patience=6)

    assert two.epochs_run == one.epochs_run == 6
    assert abs(two.best_val_accuracy - one.best_val_accuracy) <= 0.03
    assert abs(two.history[-1]["val_accuracy"] - one.history[-1]["val_accuracy"]) <= 0.03
    for a, b in zip(one.history, two.history, strict=True):
        tolerance = 0.3 if a["epoch"] in (2, 3) else 0.03
        assert abs(b["train_loss"] - a["train_loss"]) <= tolerance, (a, b)
    assert one.history[-1]["train_loss"] < 0.3  # both learned (chance is 0.69)


@pytest.mark.processes
@pytest.mark.usefixtures("no_outside_settings")
def test_a_failing_worker_raises_and_leaves_no_model(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fills while rank 0 writes the model: its folder exists, half-written.
    monkeypatch.setenv("PERENNIAL_FAULT_AT", "model-saving:enospc")
    settings = Settings(
        workspace=tmp_path / "ws", train_processes=2, epochs=1, max_length=32, torch_threads=1
    )
    out = tmp_path / "models" / "challenger"

    with pytest.raises(TrainingJobFailed, match=r"rank 0: OSError: .*No space left on device"):
        run_training(tiny_model_dir, LABELS, TRAIN[:64], VAL[:16], settings, out, progress=False)
    assert not out.exists()
    assert not list(out.parent.iterdir()), "no job folder left behind"


# Each rank's share of a global batch
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 3, 33, 321])
def test_ranks_together_visit_every_example_once_per_epoch(world: int, n: int) -> None:
    lengths = list(np.random.default_rng(n).integers(1, 40, size=n))
    batches = length_grouped_batches(lengths, batch_size=16, rng=np.random.default_rng(7))
    seen: list[int] = []
    for batch in batches:
        shares = [DataParallel(rank=r, world=world).share(batch) for r in range(world)]
        # The weights of the ranks' mean losses sum to world: DDP's average is the batch mean.
        assert sum(weight for _, weight in shares) == pytest.approx(world)
        for rows, weight in shares:
            if weight:
                seen.extend(rows)
            else:  # an empty slice runs one row of the batch, weighted 0
                assert len(rows) == 1 and rows[0] in batch
    assert sorted(seen) == list(range(n))


def test_a_rank_takes_every_world_th_row() -> None:
    batch = [10, 11, 12, 13, 14]
    assert local_rows(batch, 0, 2) == [10, 12, 14]
    assert local_rows(batch, 1, 2) == [11, 13]
    assert DataParallel(rank=1, world=2).share(batch) == ([11, 13], 2 * 2 / 5)
    assert DataParallel().share(batch) == (batch, 1.0)
    assert DataParallel(rank=3, world=4).share([7, 8]) == ([7], 0.0)


@pytest.mark.usefixtures("no_outside_settings")
def test_processes_setting(tmp_path: Path) -> None:
    assert processes_for(Settings(workspace=tmp_path, train_processes=3)) == 3
    # 0: one per visible GPU; on CPU that is one process.
    assert processes_for(Settings(workspace=tmp_path, train_processes=0, device="cpu")) == 1
    with pytest.raises(ValueError):
        Settings(workspace=tmp_path, train_processes=-1)


def test_failure_message_names_each_failed_rank(tmp_path: Path) -> None:
    assert "exit code -9" in failure_message(tmp_path, -9, 2)
    assert "no worker reported an error" in failure_message(tmp_path, -9, 2)
    (tmp_path / "error-rank1.txt").write_text("RuntimeError: boom\nTraceback ...")
    assert failure_message(tmp_path, 1, 2).endswith("exit code 1; rank 1: RuntimeError: boom")
