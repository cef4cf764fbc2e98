"""The forgetting benchmark: every strategy on the same ordered stream, against the joint bound.

Runs the library's own training step (strategy, replay memory, regulariser, tuning) cycle by cycle,
without Prefect or MLflow, so the numbers measure the method and not the orchestration. Every
cycle's model warm-starts the next (no promotion gate: the standard continual-learning protocol),
and is scored on every slice's test split, future ones included, to fill the whole matrix R.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perennial.config import Settings
from perennial.continual_metrics import summarize
from perennial.replay import ReplayMemory
from perennial.strategy import Strategy, assemble_training_data

STRATEGIES = ("naive", "replay", "lwf", "replay+lwf", "replay+lora", "joint")
QUICK_ROWS_PER_DOMAIN = 300  # about 8 minutes on 2 cores; checks the code path, rough numbers
METRICS = ("avg_acc", "bwt", "max_forgetting", "avg_forgetting", "fwt", "train_samples", "seconds")


@dataclass(frozen=True)
class Slice:
    name: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


@dataclass
class StrategyRun:
    strategy: str
    seed: int
    matrix: pd.DataFrame  # R[i][j], every cycle's model on every slice
    train_samples: list[int] = field(default_factory=list)  # per cycle
    seconds: list[float] = field(default_factory=list)  # per cycle: training and scoring
    baseline: list[float] = field(default_factory=list)  # the untrained starting model per slice

    def summary(self) -> dict:
        metrics = summarize(self.matrix, self.baseline).to_dict()
        return {
            **metrics,
            "train_samples": sum(self.train_samples),
            "train_samples_per_cycle": self.train_samples,
            "seconds": statistics.fmean(self.seconds),
            "matrix": self.matrix.values.tolist(),
        }


def vader_stream(rows_per_domain: int, seed: int, settings: Settings) -> list[Slice]:
    """The demo's stream: one slice per VADER domain, split by the same code as ingestion."""
    from perennial.batch_store import stratified_split
    from perennial.stream import split_by_column
    from perennial.vader import DOMAINS, sample_domain

    frame = pd.concat([sample_domain(d, rows_per_domain, seed=seed) for d in DOMAINS], ignore_index=True)
    slices = []
    for n, (domain, part) in enumerate(split_by_column(frame, "domain")):
        part = part.drop_duplicates(subset="text").assign(batch_id=domain).reset_index(drop=True)
        splits = stratified_split(
            part[["batch_id", "text", "label"]], seed + n, settings.val_fraction, settings.test_fraction
        )
        slices.append(Slice(domain, splits["train"], splits["val"], splits["test"]))
    return slices


def run_strategy(
    strategy: Strategy,
    stream: Sequence[Slice],
    settings: Settings,
    workdir: Path,
    progress: Callable[[str], None] = print,
    baseline: list[float] | None = None,
) -> StrategyRun:
    """Train through the stream with one strategy; score each cycle's model on every slice."""
    from perennial.evaluation import evaluate_model, load_model_dir, resolve_device
    from perennial.regularizers import build_regularizer
    from perennial.training import fine_tune

    labels = sorted({label for s in stream for label in s.train["label"]})
    label2id = {label: i for i, label in enumerate(labels)}
    tests = {s.name: s.test for s in stream}
    device = resolve_device(settings.device)
    run = StrategyRun(strategy.name, settings.seed, pd.DataFrame())
    # The untrained model depends only on the seed and the stream: callers with several strategies
    # measure it once and pass it in.
    run.baseline = baseline if baseline is not None else baseline_accuracy(settings, stream)
    memory = ReplayMemory.empty(settings.replay_memory_size)
    previous: Path | None = None
    rows = []
    for i, current in enumerate(stream):
        started = time.perf_counter()
        data = assemble_training_data(
            strategy,
            current.train,
            current.val,
            memory=memory,
            earlier_train=[s.train for s in stream[:i]],
            earlier_val=[s.val for s in stream[:i]],
            replay_ratio=settings.replay_ratio,
            memory_seed=settings.seed,
            cycle_seed=settings.seed + i,
        )
        warm = previous is not None and not strategy.starts_from_base
        out_dir = workdir / f"{strategy.name}-cycle{i + 1}"
        result = fine_tune(
            previous if warm else settings.base_model_path(),
            labels,
            data.train,
            data.val,
            settings,
            out_dir,
            progress=False,
            tuning=strategy.tuning,
            regularizer=build_regularizer(strategy.regularizer, settings) if warm else None,
        )
        model, tokenizer = load_model_dir(out_dir, device)
        scores = evaluate_model(model, tokenizer, tests, label2id, settings)
        del model
        rows.append([scores[s.name]["accuracy"] for s in stream])
        run.train_samples.append(result.samples_processed)
        run.seconds.append(time.perf_counter() - started)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        previous, memory = out_dir, data.memory_after
        progress(
            f"  {strategy.name:<12} cycle {i + 1}/{len(stream)} ({current.name}): "
            f"{result.samples_processed} samples, {run.seconds[-1]:.0f} s, "
            f"accuracy so far {statistics.fmean(rows[-1][: i + 1]):.3f}"
        )
    names = [s.name for s in stream]
    run.matrix = pd.DataFrame(rows, index=[f"after {n}" for n in names], columns=names)
    return run


def _resolved_train_precision(settings: Settings) -> str:
    from perennial.evaluation import resolve_device
    from perennial.precision import resolve_precision

    return resolve_precision(settings.train_precision, resolve_device(settings.device))


def baseline_accuracy(settings: Settings, stream: Sequence[Slice]) -> list[float]:
    """The base model with a fresh (seeded) head on every slice: the reference for forward transfer."""
    from perennial.evaluation import evaluate_model, resolve_device
    from perennial.training import load_for_training, set_seed

    labels = sorted({label for s in stream for label in s.train["label"]})
    tests = {s.name: s.test for s in stream}
    set_seed(settings.seed)
    model, tokenizer = load_for_training(settings.base_model_path(), labels)
    model.to(resolve_device(settings.device))
    scores = evaluate_model(model, tokenizer, tests, {label: i for i, label in enumerate(labels)}, settings)
    return [scores[name]["accuracy"] for name in tests]


def aggregate(runs: Sequence[StrategyRun]) -> dict:
    """Per strategy: each metric's mean and std over seeds, the per-seed values, the mean matrix."""
    by_strategy: dict[str, list[dict]] = {}
    matrices: dict[str, list[pd.DataFrame]] = {}
    for run in runs:
        by_strategy.setdefault(run.strategy, []).append(run.summary())
        matrices.setdefault(run.strategy, []).append(run.matrix)
    out = {}
    for name, summaries in by_strategy.items():
        entry: dict = {}
        for metric in METRICS:
            values = [s[metric] for s in summaries if s[metric] is not None]
            if values:
                entry[metric] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
        per_cycle = [s["train_samples_per_cycle"] for s in summaries]
        entry["train_samples_per_cycle"] = [statistics.fmean(c) for c in zip(*per_cycle, strict=True)]
        mean_matrix = sum(matrices[name]) / len(matrices[name])
        entry["matrix"] = {
            "index": list(mean_matrix.index),
            "columns": list(mean_matrix.columns),
            "values": mean_matrix.values.tolist(),
        }
        entry["per_seed"] = [{k: s[k] for k in (*METRICS, "forgetting")} for s in summaries]
        out[name] = entry
    return out


def goal_check(results: dict, strategy: str, reference: str = "joint") -> dict | None:
    """The issue's goal: `strategy` reaches >= 99% of `reference`'s final average accuracy, forgets
    at most 1.0 point on any slice, and processes <= 40% of its training samples in each cycle."""
    if strategy not in results or reference not in results:
        return None
    ours, joint = results[strategy], results[reference]
    ratio_acc = ours["avg_acc"]["mean"] / joint["avg_acc"]["mean"]
    per_cycle = [
        o / j if j else None
        for o, j in zip(ours["train_samples_per_cycle"], joint["train_samples_per_cycle"], strict=True)
    ]
    max_forgetting = ours.get("max_forgetting", {}).get("mean")
    return {
        "strategy": strategy,
        "accuracy_vs_joint": ratio_acc,
        "accuracy_goal_met": ratio_acc >= 0.99,
        "max_forgetting_points": None if max_forgetting is None else 100 * max_forgetting,
        "forgetting_goal_met": max_forgetting is not None and max_forgetting <= 0.01,
        "samples_vs_joint_per_cycle": per_cycle,
        "samples_vs_joint_total": ours["train_samples"]["mean"] / joint["train_samples"]["mean"],
        "samples_goal_met_per_cycle": [r is not None and r <= 0.40 for r in per_cycle],
    }


def run_benchmark(
    settings: Settings,
    out_dir: Path,
    *,
    strategies: Sequence[str] = STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    rows_per_domain: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Run every strategy over every seed; write forgetting.json and forgetting.png to `out_dir`.

    The files are rewritten after each seed (marked `"complete": false` until the last one), so a
    long run that is stopped part-way still leaves the seeds it finished.
    """
    rows = rows_per_domain or settings.demo_rows_per_domain
    parsed = [Strategy.parse(s) for s in strategies]
    started = time.perf_counter()
    runs: list[StrategyRun] = []
    seed_seconds: list[float] = []
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="perennial-bench-") as tmp:
        for n, seed in enumerate(seeds):
            seed_started = time.perf_counter()
            seeded = settings.model_copy(update={"seed": seed})
            stream = vader_stream(rows, seed, seeded)
            progress(f"seed {seed}: {', '.join(f'{s.name} {len(s.train)} train rows' for s in stream)}")
            baseline = baseline_accuracy(seeded, stream)
            for strategy in parsed:
                runs.append(run_strategy(strategy, stream, seeded, Path(tmp), progress, baseline))
            seed_seconds.append(time.perf_counter() - seed_started)
            report = _report(settings, runs, rows, list(seeds[: n + 1]), started, seed_seconds)
            report["complete"] = n + 1 == len(seeds)
            write_report(report, out_dir)
    return report


def _report(
    settings: Settings,
    runs: Sequence[StrategyRun],
    rows: int,
    seeds: list[int],
    started: float,
    seed_seconds: list[float],
) -> dict:
    results = aggregate(runs)
    default = Strategy.from_settings(settings).name
    return {
        "benchmark": "forgetting",
        "stream": "VADER 4 domains (tweets, movies, amazon, nyt), Hutto & Gilbert 2014",
        "rows_per_domain": rows,
        "seeds": seeds,
        "base_model": settings.base_model,
        "epochs": settings.epochs,
        "replay_memory_size": settings.replay_memory_size,
        "replay_ratio": settings.replay_ratio,
        "train_precision": _resolved_train_precision(settings),
        "wall_seconds": time.perf_counter() - started,
        "wall_seconds_per_seed": list(seed_seconds),
        "strategies": results,
        "goal": goal_check(results, default if default in results else "replay"),
    }


def write_report(report: dict, out_dir: Path) -> None:
    """forgetting.json and the side-by-side heatmaps in forgetting.png."""
    from perennial.plots import plot_strategy_comparison

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "forgetting.json").write_text(json.dumps(report, indent=2))
    matrices = {
        name: pd.DataFrame(r["matrix"]["values"], index=r["matrix"]["index"], columns=r["matrix"]["columns"])
        for name, r in report["strategies"].items()
    }
    plot_strategy_comparison(
        matrices,
        out_dir / "forgetting.png",
        f"Forgetting benchmark: {report['rows_per_domain']} rows/domain, {len(report['seeds'])} seed(s)",
    )


def format_report(report: dict) -> str:
    """The results table as text: mean ± std over seeds, accuracies and forgetting in points."""

    def cell(entry: dict, metric: str, scale: float, fmt: str) -> str:
        if metric not in entry:
            return "-"
        m = entry[metric]
        return f"{format(m['mean'] * scale, fmt)} ± {format(m['std'] * scale, fmt.lstrip('+'))}"

    header = (
        f"{'strategy':<14}{'avg acc %':>16}{'BWT pts':>16}{'max forget pts':>18}"
        f"{'samples':>20}{'s/cycle':>14}"
    )
    lines = [header, "-" * len(header)]
    for name, entry in report["strategies"].items():
        lines.append(
            f"{name:<14}{cell(entry, 'avg_acc', 100, '.1f'):>16}{cell(entry, 'bwt', 100, '+.1f'):>16}"
            f"{cell(entry, 'max_forgetting', 100, '.1f'):>18}{cell(entry, 'train_samples', 1, '.0f'):>20}"
            f"{cell(entry, 'seconds', 1, '.0f'):>14}"
        )
    goal = report.get("goal")
    if goal:
        ratios = ", ".join(
            "-" if r is None else f"{100 * r:.0f}%" for r in goal["samples_vs_joint_per_cycle"]
        )
        lines += [
            "",
            f"goal for {goal['strategy']}: accuracy {100 * goal['accuracy_vs_joint']:.1f}% of joint "
            f"({'met' if goal['accuracy_goal_met'] else 'not met'}, needs >= 99%); "
            f"max forgetting {_points(goal['max_forgetting_points'])} points "
            f"({'met' if goal['forgetting_goal_met'] else 'not met'}, needs <= 1.0); "
            f"samples per cycle vs joint {ratios} (needs <= 40% each; "
            f"{100 * goal['samples_vs_joint_total']:.0f}% over the whole stream)",
        ]
    return "\n".join(lines)


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
