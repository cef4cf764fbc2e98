"""The forgetting benchmark's code path (as `--quick` runs it) on the tiny model and real VADER data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_cli import perennial  # the CLI runner (tests/integration is on sys.path)

from perennial.benchmark import STRATEGIES, format_report, goal_check, run_benchmark
from perennial.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    settings = Settings(
        workspace=out / "ws",
        base_model=str(tiny_model_dir),
        max_length=32,
        epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        replay_memory_size=40,
        ewc_fisher_rows=16,
    )
    result = run_benchmark(
        settings,
        out / "results",
        strategies=STRATEGIES,
        seeds=(0,),
        rows_per_domain=40,
        progress=lambda _: None,
    )
    return result, out / "results"


def test_every_strategy_reports_every_metric(report: tuple[dict, Path]) -> None:
    result, folder = report
    assert set(result["strategies"]) == {"naive", "replay", "naive+lwf", "replay+lwf", "replay+lora", "joint"}
    for name, entry in result["strategies"].items():
        for metric in ("avg_acc", "bwt", "max_forgetting", "train_samples", "seconds"):
            assert set(entry[metric]) == {"mean", "std"}, (name, metric)
            assert math.isfinite(entry[metric]["mean"])
        assert 0.0 <= entry["avg_acc"]["mean"] <= 1.0
        matrix = entry["matrix"]["values"]
        assert len(matrix) == 4 and all(len(row) == 4 for row in matrix)  # every model on every slice
    on_disk = json.loads((folder / "forgetting.json").read_text())
    assert on_disk["strategies"].keys() == result["strategies"].keys()
    assert on_disk["complete"] is True and on_disk["seeds"] == [0]
    assert (folder / "forgetting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_counts_follow_the_strategies(report: tuple[dict, Path]) -> None:
    strategies = report[0]["strategies"]
    naive = strategies["naive"]["train_samples_per_cycle"]
    replay = strategies["replay"]["train_samples_per_cycle"]
    joint = strategies["joint"]["train_samples_per_cycle"]
    # Cycle 1 has nothing to replay, so replay trains exactly like naive there.
    assert replay[0] == naive[0]
    assert all(r > 0 for r in replay)
    assert sum(joint) > sum(naive)
    # Joint retrains on everything: its last cycle sees each row of the stream, per epoch.
    assert joint[-1] > joint[0]


def test_goal_and_text_report(report: tuple[dict, Path]) -> None:
    result = report[0]
    goal = goal_check(result["strategies"], "replay")
    assert goal is not None and goal["strategy"] == "replay"
    assert len(goal["samples_vs_joint_per_cycle"]) == 4
    assert goal["samples_vs_joint_per_cycle"][0] == pytest.approx(
        result["strategies"]["replay"]["train_samples_per_cycle"][0]
        / result["strategies"]["joint"]["train_samples_per_cycle"][0]
    )
    text = format_report(result)
    assert "joint" in text and "goal for replay" in text
    assert goal_check(result["strategies"], "missing") is None


def test_cli_bench_quick_path(cli_env: dict[str, str], tmp_path: Path) -> None:
    run = perennial(
        "bench", "forgetting", "--quick", "--rows", "40", "--strategies", "naive,joint",
        "--out", str(tmp_path / "results"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "goal for" not in run.stdout  # replay was not run, so there is no goal line
    result = json.loads((tmp_path / "results" / "forgetting.json").read_text())
    assert set(result["strategies"]) == {"naive", "joint"} and result["seeds"] == [0]
    bad = perennial("bench", "forgetting", "--strategies", "naive,bogus", env=cli_env, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown strategy word 'bogus'" in bad.stderr
