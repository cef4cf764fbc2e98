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
    ours, theirs = result["seconds"]["perennial run"], result["seconds"]["plain script"]
    expected = statistics.median(ours) / statistics.median(theirs)
    assert result["ratio"] == pytest.approx(expected)
    paired = [a / b for a, b in zip(ours, theirs, strict=True)]
    assert result["paired_ratios"] == pytest.approx(paired)
    assert result["paired_ratio_range"] == pytest.approx([min(paired), max(paired)])
    # With two pairs every bootstrap resample's ratio is one pair's ratio or both together's (the
    # ratio of medians, which lies between them), so the interval spans exactly the two pairs' ratios.
    interval = result["ratio_interval"]
    assert "bootstrap" in interval["method"]
    assert interval["low"] == pytest.approx(min(paired))
    assert interval["high"] == pytest.approx(max(paired))
    assert interval["low"] <= result["ratio"] <= interval["high"]
    assert result["machine"]["cores"] >= 1


def test_trainer_compares_precisions_over_seeds(tmp_path: Path, pretrained_tiny_model_dir: Path) -> None:
    from perennial.core.precision import cpu_has_native_bf16

    result = run_bench(
        "trainer", tmp_path, pretrained_tiny_model_dir,
        "--rows", "160", "--epochs", "2", "--seeds", "2", "--probe-steps", "3",
    )  # fmt: skip
    arms = result["arms"]
    names = ["perennial float32", "perennial auto", "transformers.Trainer float32"]
    bf16_arm = "transformers.Trainer bf16=True"
    assert list(arms) == [*names, bf16_arm]
    native = result["bf16"]["native_on_device"]
    assert result["bf16"]["cpu_native_bf16"] == cpu_has_native_bf16()
    assert result["bf16"]["auto_resolves_to"] == arms["perennial auto"]["resolved_to"]
    assert result["seeds"] == [42, 43]
    trained = [*names, bf16_arm] if native else names
    for name in trained:
        arm = arms[name]
        runs = arm["runs"]
        assert [r["seed"] for r in runs] == [42, 43]
        # Every run saw every training row in every epoch.
        assert all(r["samples"] == 160 * 2 for r in runs)
        for r in runs:
            assert r["samples_per_s"] == pytest.approx(r["samples"] / r["seconds"])
            assert 0.0 <= r["test_accuracy"] <= 1.0
            assert r["bf16_autocast"] == (arm["precision"] == "bfloat16")
        accuracies = [r["test_accuracy"] for r in runs]
        assert arm["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
        assert arm["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
        total = sum(r["samples"] for r in runs) / sum(r["seconds"] for r in runs)
        assert arm["samples_per_s"] == pytest.approx(total)
    for name in ("perennial float32", "perennial auto"):
        for r in arms[name]["runs"]:
            assert r["reported_precision"] == arms[name]["precision"]
    speedups = {tuple(s["arms"]): s for s in result["speedups"]}
    f32 = speedups[("perennial float32", "transformers.Trainer float32")]
    ratio = arms["perennial float32"]["samples_per_s"] / arms["transformers.Trainer float32"]["samples_per_s"]
    assert f32["speedup"] == pytest.approx(ratio)
    assert f32["status"] == ("met" if ratio >= 1.3 else "not met")
    gaps = {tuple(g["arms"]): g["points"] for g in result["accuracy_gaps"]}
    mean = {name: arms[name]["test_accuracy"]["mean"] for name in trained}
    gap = 100 * (mean["perennial float32"] - mean["transformers.Trainer float32"])
    assert gaps[("perennial float32", "transformers.Trainer float32")] == pytest.approx(gap)
    if native:
        assert arms["perennial auto"]["precision"] == "bfloat16" and not result["probes"]
        return
    # No native bf16: auto is the float32 run, and the bf16 arms are probed for a few steps only.
    assert arms["perennial auto"]["runs"] == arms["perennial float32"]["runs"]
    assert arms["perennial auto"]["resolved_to"] == "float32"
    assert arms[bf16_arm]["mode"] == "probe only" and not arms[bf16_arm]["runs"]
    assert speedups[("perennial auto", "perennial float32")]["speedup"] is None
    assert speedups[("perennial auto", bf16_arm)]["speedup"] is None
    assert set(gaps) == {("perennial float32", "transformers.Trainer float32")}
    probes = result["probes"]
    assert set(probes) == {
        "perennial float32",
        "perennial bfloat16",
        "transformers.Trainer float32",
        bf16_arm,
    }
    for name, p in probes.items():
        assert p["steps"] == 3 and p["measured_steps"] == 2
        assert p["samples"] == 2 * 16  # the tiny settings' batch size
        assert p["samples_per_s"] == pytest.approx(p["samples"] / p["seconds"])
        assert p["wall_seconds"] > p["seconds"] > 0
        assert p["bf16_autocast"] == (name in ("perennial bfloat16", bf16_arm))
    slowdown = result["bf16_slowdown"]
    assert slowdown["perennial"] == pytest.approx(
        probes["perennial float32"]["samples_per_s"] / probes["perennial bfloat16"]["samples_per_s"]
    )
    assert slowdown["transformers.Trainer"] == pytest.approx(
        probes["transformers.Trainer float32"]["samples_per_s"] / probes[bf16_arm]["samples_per_s"]
    )


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


def test_serve_sends_every_text_to_the_served_champion(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    result = run_bench("serve", tmp_path, pretrained_tiny_model_dir, "--texts", "250", "--request-size", "40")
    assert (result["texts"], result["request_size"]) == (250, 40)
    # 6 full requests and one of 10; the bench itself checks every text came back with a label.
    assert result["requests"] == len(result["request_seconds"]) == 7
    assert result["texts_per_s"] == pytest.approx(250 / result["seconds"])
    assert result["seconds"] >= sum(result["request_seconds"]) > 0
    assert result["start_seconds"] > 0 and result["server_rss_mib"] > 50
    assert (tmp_path / "results" / "logs" / "serve" / "server.log").stat().st_size > 0


def test_pipeline_runs_a_dev_stream_through_the_gate_against_joint(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    result = run_bench(
        "pipeline", tmp_path, pretrained_tiny_model_dir, "--dataset", "trec-classes", "--rows", "80"
    )
    champion = result["champion"]
    assert len(champion["decisions"]) == 3  # one cycle per slice, in order
    assert champion["promoted"] >= 1  # this test's gate lets any model through
    final = champion["matrix"]["data"][-1]
    assert champion["avg_acc"] == pytest.approx(sum(final) / len(final))
    assert 0 < result["joint_avg_acc"] <= 1
    assert result["champion_vs_joint"] == pytest.approx(champion["avg_acc"] / result["joint_avg_acc"])
    assert result["goal_met"] == (result["champion_vs_joint"] >= 0.97)
