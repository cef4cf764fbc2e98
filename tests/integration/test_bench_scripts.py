"""The performance benchmarks' code paths, run on the tiny model with small data.

These check that every benchmark runs end to end and writes a coherent report; the numbers
themselves are measured on MiniLM by `bench/*.py` and quoted in the README, never asserted here."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from processes import tiny_cli_env  # tests/ is on sys.path

BENCH = Path(__file__).parents[2] / "bench"

pytestmark = [pytest.mark.integration, pytest.mark.bench]


def run_bench(script: str, tmp_path: Path, model: Path, *args: str) -> dict:
    # The gate lets every model through: these tests check the benchmarks' code paths, not the gate
    # (one epoch of the tiny model on VADER rows learns little).
    env = tiny_cli_env(
        tmp_path / "unused",
        model,
        epochs="1",
        min_delta="-1",
        require_significant_gain="false",
        min_macro_f1_gain="-1",
    )
    del env["PERENNIAL_WORKSPACE"]  # each benchmark makes its own workspaces
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *args, "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((out / f"{script}.json").read_text())


def test_overhead_times_both_sides_alternately(tmp_path: Path, pretrained_tiny_model_dir: Path) -> None:
    result = run_bench("overhead", tmp_path, pretrained_tiny_model_dir, "--rows", "120", "--repeats", "2")
    assert set(result["seconds"]) == {"perennial run", "plain script"}
    assert all(len(runs) == 2 and min(runs) > 0 for runs in result["seconds"].values())
    seconds = result["seconds"]
    expected = statistics.median(seconds["perennial run"]) / statistics.median(seconds["plain script"])
    assert result["ratio"] == pytest.approx(expected)
    assert result["machine"]["cores"] >= 1


def test_trainer_compares_samples_per_second_and_accuracy(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    result = run_bench("trainer", tmp_path, pretrained_tiny_model_dir, "--rows", "160", "--epochs", "2")
    ours, theirs = result["results"]["perennial"], result["results"]["transformers.Trainer"]
    # Both saw every training row in every epoch.
    assert ours["samples"] == theirs["samples"] == 160 * 2
    for side in (ours, theirs):
        assert side["samples_per_s"] == pytest.approx(side["samples"] / side["seconds"])
        assert 0.0 <= side["test_accuracy"] <= 1.0
    assert result["speedup"] == pytest.approx(ours["samples_per_s"] / theirs["samples_per_s"])
    gap = 100 * (ours["test_accuracy"] - theirs["test_accuracy"])
    assert result["accuracy_gap_points"] == pytest.approx(gap)


def test_history_series_reports_time_memory_and_storage(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    result = run_bench("history", tmp_path, pretrained_tiny_model_dir, "--rows", "80", "--batches", "3")
    cycles = result["cycles"]
    assert [c["earlier_batches"] for c in cycles] == [0, 1, 2]
    assert cycles[0]["status"] == "promoted"
    assert all(c["seconds"] > 0 and c["peak_tree_rss_mib"] >= c["peak_rss_mib"] > 50 for c in cycles)
    assert result["ratio_last_to_one"] == pytest.approx(cycles[2]["seconds"] / cycles[1]["seconds"])
    memory = json.loads((tmp_path / "results" / "memory.json").read_text())
    assert memory["peak_gib"] == pytest.approx(max(c["peak_tree_rss_mib"] for c in cycles) / 1024)
    storage = json.loads((tmp_path / "results" / "storage.json").read_text())
    # Every cycle registers a version: the artifact store grows by one model at least once.
    assert storage["cycles"][0]["added_registry_mib"] > 0.5
    assert storage["registry_mib_per_cycle"] == pytest.approx(cycles[-1]["registry_total_mib"] / 3)


def test_predict_counts_every_text_and_times_help(tmp_path: Path, pretrained_tiny_model_dir: Path) -> None:
    result = run_bench("predict", tmp_path, pretrained_tiny_model_dir, "--texts", "250")
    assert result["texts"] == 250
    assert result["texts_per_s"] == pytest.approx(250 / result["seconds"])
    assert len(result["help_seconds"]) == 5 and all(s > 0 for s in result["help_seconds"])
