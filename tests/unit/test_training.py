"""The training loop on the tiny model: batching, the decay groups, and overfitting one small batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perennial.core.progress import listening, report
from perennial.core.settings import Settings
from perennial.learning.training import _no_decay, fine_tune, length_grouped_batches, linear_warmup_schedule


@pytest.mark.parametrize("n", [1, 31, 32, 33, 500])
def test_length_grouped_batches_visit_every_example_once(n: int) -> None:
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1, 60, size=n))
    batches = length_grouped_batches(lengths, batch_size=8, rng=rng)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(n))
    assert all(1 <= len(b) <= 8 for b in batches)


def test_length_grouped_batches_hold_similar_lengths() -> None:
    rng = np.random.default_rng(1)
    lengths = list(rng.integers(1, 200, size=400))
    batches = length_grouped_batches(lengths, batch_size=16, rng=rng)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 20  # random batches of 16 would spread over ~180


@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (3, 30), (10, 10), (1, 1)])
def test_linear_warmup_schedule_matches_transformers(warmup: int, total: int) -> None:
    import torch
    from transformers import get_linear_schedule_with_warmup

    def rates(make) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        scheduler = make(optimizer)
        seen = []
        for _ in range(total + 2):  # past the end: the rate stays at 0
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    ours = rates(lambda o: linear_warmup_schedule(o, warmup, total))
    theirs = rates(lambda o: get_linear_schedule_with_warmup(o, warmup, total))
    assert ours == pytest.approx(theirs)
    assert ours[-1] == 0.0
    if warmup < total:  # the full rate is reached at the end of the warm-up
        assert max(ours) == pytest.approx(0.5)


def test_bias_and_layernorm_are_not_decayed() -> None:
    assert _no_decay("bert.encoder.layer.0.attention.self.query.bias")
    assert _no_decay("bert.embeddings.LayerNorm.weight")
    assert not _no_decay("bert.encoder.layer.0.attention.self.query.weight")


def test_overfits_one_small_batch_and_saves_safetensors(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = [f"{word} item {i}" for i, word in enumerate(["good", "bad"] * 8)]
    frame = pd.DataFrame({"text": texts, "label": ["positive", "negative"] * 8})
    settings = Settings(
        workspace=tmp_path,
        epochs=25,
        patience=25,
        learning_rate=3e-3,
        batch_size=16,
        max_length=16,
        warmup_ratio=0.0,
    )
    result = fine_tune(
        tiny_model_dir,
        ["negative", "positive"],
        frame,
        frame,
        settings.training,
        tmp_path / "out",
        progress=False,
    )

    assert result.best_val_accuracy == 1.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not list((tmp_path / "out").glob("*.bin"))


def test_early_stopping_stops_when_val_does_not_improve(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Val labels are the opposite of train labels: val accuracy cannot keep improving for long.
    train = pd.DataFrame({"text": [f"word{i}" for i in range(16)], "label": ["positive", "negative"] * 8})
    val = train.assign(label=["negative", "positive"] * 8)
    settings = Settings(
        workspace=tmp_path, epochs=30, patience=2, learning_rate=3e-3, batch_size=16, max_length=8
    )
    result = fine_tune(
        tiny_model_dir,
        ["negative", "positive"],
        train,
        val,
        settings.training,
        tmp_path / "out",
        progress=False,
    )

    assert result.stopped_early
    assert result.epochs_run < 30
    assert result.epochs_run - result.best_epoch == 2  # patience epochs after the best one
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)


def test_the_progress_bar_stays_off_when_output_is_not_a_terminal(
    tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A log file gets the epoch lines, not hundreds of bar redraws (captured output is not a tty)."""
    frame = pd.DataFrame({"text": [f"word {i}" for i in range(8)], "label": ["a", "b"] * 4})
    settings = Settings(workspace=tmp_path, epochs=2, batch_size=2, max_length=8)
    reports: list[tuple[float, str]] = []
    with listening(lambda percent, text: reports.append((percent, text))):
        fine_tune(
            tiny_model_dir, ["a", "b"], frame, frame, settings.training, tmp_path / "out", progress=True
        )
    captured = capfd.readouterr()
    assert "epoch 1/2" not in captured.err + captured.out
    # A listener (Prefect's progress artifact in a run) hears it instead: rising to 100 at the end.
    percents = [percent for percent, _ in reports]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(percents) >= 4
    assert reports[-2][1].startswith("epoch 2/2 done: train loss ")
    assert reports[-1][1].startswith("done: best epoch ")


def test_a_failing_progress_listener_never_stops_training() -> None:
    def broken(percent: float, text: str) -> None:
        raise ConnectionError("the API is gone")

    with listening(broken):
        report(50.0, "half way")  # logged at debug level, not raised
    heard: list[float] = []
    with listening(lambda percent, text: heard.append(percent)):
        report(140.0, "over")
        report(-3.0, "under")
    report(10.0, "nobody listens")  # outside the block: ignored
    assert heard == [100.0, 0.0]
