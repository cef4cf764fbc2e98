"""The forgetting benchmark: every strategy on the same ordered stream, against the joint bound.
Over 400 lines: the protocol (cycles, the matrix R, significance of forgetting) and its report.

Runs the library's own training step (strategy, replay memory, regulariser, tuning) cycle by cycle,
without Prefect or MLflow, so the numbers measure the method and not the orchestration. Every
cycle's model warm-starts the next (no promotion gate: the standard continual-learning protocol),
and is scored on every slice's test split, future ones included, to fill the whole matrix R. Every
row's prediction is kept, so forgetting can be tested for significance. Streams: benchmark_streams.
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

import numpy as np
import pandas as pd

from perennial.benchmarks.streams import Slice, Stream, vader_stream
from perennial.core.settings import Settings
from perennial.data.new_labels import labels_in_arrival_order
from perennial.evaluation.continual_metrics import summarize
from perennial.learning.replay import ReplayMemory
from perennial.learning.strategy import Strategy, assemble_training_data

STRATEGIES = ("naive", "replay", "lwf", "replay+lwf", "replay+lora", "joint")
QUICK_ROWS_PER_DOMAIN = 300  # about 8 minutes on 2 cores; checks the code path, rough numbers
METRICS = (
    "avg_acc",
    "bwt",
    "max_forgetting",
    "max_forgetting_any_cycle",
    "avg_forgetting",
    "fwt",
    "train_samples",
    "seconds",
)
PREDICTIONS_FILE = "forgetting-predictions.parquet"
# The issue's goals: the sample budget is judged over a stream of at least this many batches.
MIN_SLICES_FOR_SAMPLE_GOAL = 5

__all__ = ["Slice", "Stream", "StrategyRun", "run_benchmark", "run_strategy"]


@dataclass
class StrategyRun:
    strategy: str
    seed: int
    matrix: pd.DataFrame  # R[i][j], every cycle's model on every slice
    train_samples: list[int] = field(default_factory=list)  # per cycle
    seconds: list[float] = field(default_factory=list)  # per cycle: training and scoring
    baseline: list[float] = field(default_factory=list)  # the untrained starting model per slice
    predictions: list[pd.DataFrame] = field(default_factory=list)  # per cycle, every test row

    def summary(self) -> dict:
        metrics = summarize(self.matrix, self.baseline).to_dict()
        return {
            **metrics,
            "train_samples": sum(self.train_samples),
            "train_samples_per_cycle": self.train_samples,
            "seconds": statistics.fmean(self.seconds),
            "matrix": self.matrix.values.tolist(),
            "forgetting_p": self.forgetting_p_values(),
        }

    def correct(self, cycle: int, name: str) -> np.ndarray:
        """Whether each test row of slice `name` was right after cycle `cycle` (0-based), in row order."""
        rows = self.predictions[cycle]
        on_slice = rows[rows["slice"] == name].sort_values("row")
        return (on_slice["label"] == on_slice["predicted"]).to_numpy()

    def forgetting_p_values(self) -> dict[str, float]:
        """Per old slice: McNemar's one-sided p that the final model is worse on it than the model
        that scored it best before, on the very same rows (small p: the forgetting is real)."""
        from perennial.evaluation.significance import mcnemar

        names = list(self.matrix.columns)
        last = len(self.matrix) - 1
        out: dict[str, float] = {}
        for j, name in enumerate(names[:last]):
            best = j + int(np.argmax(self.matrix.iloc[j:last, j].to_numpy()))
            out[name] = mcnemar(self.correct(last, name), self.correct(best, name)).p_value
        return out


def _slices_and_labels(
    stream: Stream | Sequence[Slice], labels: Sequence[str] | None
) -> tuple[list[Slice], list[str]]:
    if isinstance(stream, Stream):
        return stream.slices, list(labels or stream.labels)
    slices = list(stream)
    return slices, list(labels or sorted({label for s in slices for label in s.train["label"]}))


def _use_threads(settings: Settings) -> None:
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)


def run_strategy(
    strategy: Strategy,
    stream: Stream | Sequence[Slice],
    settings: Settings,
    workdir: Path,
    progress: Callable[[str], None] = print,
    baseline: list[float] | None = None,
    labels: Sequence[str] | None = None,
    growing_labels: bool = False,
) -> StrategyRun:
    """Train through the stream with one strategy; score each cycle's model on every slice.

    The label set is the stream's (declared upfront) unless `labels` is given. `growing_labels`:
    as the pipeline does when no labels are declared, each cycle's model knows only the labels of
    the slices so far (its head grows when a slice brings new ones); a label it does not know yet
    counts as wrong on the slices that have it."""
    from perennial.evaluation.scoring import predict_slices, score_slices
    from perennial.learning.finishing import finish_model
    from perennial.learning.regularizers import build_regularizer
    from perennial.learning.training import fine_tune
    from perennial.models.inference import load_model_dir, resolve_device

    if growing_labels and labels is not None:
        raise ValueError("a declared label set and growing labels exclude each other: give one")
    _use_threads(settings)
    slices, labels = _slices_and_labels(stream, labels)
    if growing_labels:
        labels = labels_in_arrival_order(s.train["label"] for s in slices)
    label2id = {label: i for i, label in enumerate(labels)}
    tests = {s.name: s.test for s in slices}
    device = resolve_device(settings.device)
    run = StrategyRun(strategy.name, settings.seed, pd.DataFrame())
    # The untrained model depends only on the seed and the stream: callers with several strategies
    # measure it once and pass it in.
    run.baseline = baseline if baseline is not None else baseline_accuracy(settings, slices, labels)
    memory = ReplayMemory.empty(settings.replay_memory_size)
    previous: Path | None = None
    rows = []
    for i, current in enumerate(slices):
        started = time.perf_counter()
        known = (
            labels_in_arrival_order(s.train["label"] for s in slices[: i + 1]) if growing_labels else labels
        )
        data = assemble_training_data(
            strategy,
            current.train,
            current.val,
            memory=memory,
            earlier_train=[s.train for s in slices[:i]],
            earlier_val=[s.val for s in slices[:i]],
            replay_ratio=settings.replay_ratio,
            memory_seed=settings.seed,
            cycle_seed=settings.seed + i,
        )
        warm = previous is not None and not strategy.starts_from_base
        out_dir = workdir / f"{strategy.name}-cycle{i + 1}"
        result = fine_tune(
            previous if previous is not None and warm else settings.base_model_path(),
            known,
            data.train,
            data.val,
            settings.training,
            out_dir,
            progress=False,
            tuning=strategy.tuning,
            regularizer=build_regularizer(strategy.regularizer, settings.regularizers) if warm else None,
        )
        finish_model(
            strategy, out_dir, previous if warm else None, data.train["label"], known, settings.finishing
        )
        model, tokenizer = load_model_dir(out_dir, device)
        predicted = predict_slices(model, tokenizer, tests, label2id, settings.inference)
        del model
        scores = score_slices(predicted)
        rows.append([scores[s.name]["accuracy"] for s in slices])
        run.predictions.append(
            _prediction_rows(strategy.name, settings.seed, i, current.name, predicted, labels)
        )
        run.train_samples.append(result.samples_processed)
        run.seconds.append(time.perf_counter() - started)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        previous, memory = out_dir, data.memory_after
        progress(
            f"  {strategy.name:<12} cycle {i + 1}/{len(slices)} ({current.name}): "
            f"{result.samples_processed} samples, {run.seconds[-1]:.0f} s, "
            f"accuracy so far {statistics.fmean(rows[-1][: i + 1]):.3f}"
        )
    names = [s.name for s in slices]
    run.matrix = pd.DataFrame(rows, index=[f"after {n}" for n in names], columns=names)
    return run


def _prediction_rows(
    strategy: str,
    seed: int,
    cycle: int,
    after: str,
    predicted: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: Sequence[str],
) -> pd.DataFrame:
    names = np.asarray(labels, dtype=object)
    frames = [
        pd.DataFrame(
            {
                "strategy": strategy,
                "seed": seed,
                "cycle": cycle + 1,
                "model_after": after,
                "slice": name,
                "row": np.arange(len(references)),
                "label": names[np.asarray(references, dtype=int)],
                "predicted": names[np.asarray(ids, dtype=int)],
            }
        )
        for name, (ids, references) in predicted.items()
    ]
    return pd.concat(frames, ignore_index=True)


def _resolved_train_precision(settings: Settings) -> str:
    from perennial.core.precision import resolve_precision
    from perennial.models.inference import resolve_device

    return resolve_precision(settings.train_precision, resolve_device(settings.device))


def baseline_accuracy(
    settings: Settings, stream: Stream | Sequence[Slice], labels: Sequence[str] | None = None
) -> list[float]:
    """The base model with a fresh (seeded) head on every slice: the reference for forward transfer."""
    from perennial.evaluation.scoring import evaluate_model
    from perennial.learning.training import load_for_training, set_seed
    from perennial.models.inference import resolve_device

    _use_threads(settings)
    slices, labels = _slices_and_labels(stream, labels)
    tests = {s.name: s.test for s in slices}
    set_seed(settings.seed)
    model, tokenizer = load_for_training(settings.base_model_path(), labels)
    model.to(resolve_device(settings.device))  # type: ignore[arg-type]  # transformers types .to() oddly
    scores = evaluate_model(
        model, tokenizer, tests, {label: i for i, label in enumerate(labels)}, settings.inference
    )
    return [scores[name]["accuracy"] for name in tests]


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        # The standard error of the mean: what a difference between strategies must clear.
        "sem": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0,
    }


def aggregate(runs: Sequence[StrategyRun]) -> dict:
    """Per strategy: each metric's mean, std and standard error over seeds, the per-seed values, the
    mean matrix, and per seed the p-value of the forgetting on the worst slice."""
    by_strategy: dict[str, list[dict]] = {}
    matrices: dict[str, list[pd.DataFrame]] = {}
    for run in runs:
        by_strategy.setdefault(run.strategy, []).append(run.summary())
        matrices.setdefault(run.strategy, []).append(run.matrix)
    out = {}
    for name, summaries in by_strategy.items():
        entry: dict = {}
        for metric in METRICS:
            values = [s[metric] for s in summaries if s.get(metric) is not None]
            if values:
                entry[metric] = _mean_std(values)
        per_cycle = [s["train_samples_per_cycle"] for s in summaries]
        entry["train_samples_per_cycle"] = [statistics.fmean(c) for c in zip(*per_cycle, strict=True)]
        mean_matrix = sum(matrices[name]) / len(matrices[name])
        entry["matrix"] = {
            "index": list(mean_matrix.index),
            "columns": list(mean_matrix.columns),
            "values": mean_matrix.values.tolist(),
        }
        entry["per_seed"] = [
            {k: s.get(k) for k in (*METRICS, "forgetting", "forgetting_p")} for s in summaries
        ]
        entry["worst_slice_forgetting_p"] = [_worst_p(s) for s in summaries]
        out[name] = entry
    return out


def _worst_p(summary: dict) -> float | None:
    """The p-value of the forgetting on the slice that forgot most (None before a second cycle)."""
    forgetting = summary.get("forgetting") or {}
    if not forgetting:
        return None
    return summary["forgetting_p"][max(forgetting, key=lambda name: forgetting[name])]


def goal_check(
    results: dict, strategy: str, reference: str = "joint", slices: int | None = None
) -> dict | None:
    """#18's goals for `strategy` against `reference` (joint): >= 99% of its final average accuracy;
    maximum forgetting at most 1.0 point above joint's own (joint's is evaluation noise); and, over a
    stream of 5 or more slices, at most 40% of joint's cumulative training samples."""
    if strategy not in results or reference not in results:
        return None
    ours, joint = results[strategy], results[reference]
    ratio_acc = ours["avg_acc"]["mean"] / joint["avg_acc"]["mean"]
    per_cycle = [
        o / j if j else None
        for o, j in zip(ours["train_samples_per_cycle"], joint["train_samples_per_cycle"], strict=True)
    ]
    total_ratio = ours["train_samples"]["mean"] / joint["train_samples"]["mean"]
    n_slices = slices if slices is not None else len(per_cycle)
    ours_forgetting = ours.get("max_forgetting", {}).get("mean")
    joint_forgetting = joint.get("max_forgetting", {}).get("mean")
    forgetting_met = (
        ours_forgetting is not None
        and joint_forgetting is not None
        and ours_forgetting <= joint_forgetting + 0.01 + 1e-12
    )
    return {
        "strategy": strategy,
        "accuracy_vs_joint": ratio_acc,
        "accuracy_goal_met": ratio_acc >= 0.99,
        "max_forgetting_points": None if ours_forgetting is None else 100 * ours_forgetting,
        "joint_max_forgetting_points": None if joint_forgetting is None else 100 * joint_forgetting,
        "forgetting_goal_met": forgetting_met,
        "samples_vs_joint_per_cycle": per_cycle,
        "samples_vs_joint_total": total_ratio,
        # None: the stream is too short for the budget to apply (cycle 1 is 100% for every strategy).
        "samples_goal_met": total_ratio <= 0.40 if n_slices >= MIN_SLICES_FOR_SAMPLE_GOAL else None,
    }


StreamFactory = Callable[[int, Settings], Stream]


def run_benchmark(
    settings: Settings,
    out_dir: Path,
    *,
    strategies: Sequence[str] = STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    rows_per_domain: int | None = None,
    make_stream: StreamFactory | None = None,
    progress: Callable[[str], None] = print,
    growing_labels: bool = False,
) -> dict:
    """Run every strategy over every seed; write forgetting.json, forgetting.png and every test row's
    prediction (forgetting-predictions.parquet) to `out_dir`.

    `make_stream(seed, settings)` builds the stream (default: the VADER domains, `rows_per_domain`
    rows each). The files are rewritten after each seed (marked `"complete": false` until the last
    one), so a long run that is stopped part-way still leaves the seeds it finished.
    `growing_labels`: the label set grows slice by slice, as in the pipeline (see run_strategy).
    """
    rows = rows_per_domain or settings.demo_rows_per_domain
    if make_stream is None:

        def make_stream(seed: int, seeded: Settings) -> Stream:
            return vader_stream(seed, seeded, rows=rows)

    parsed = [Strategy.parse(s) for s in strategies]
    started = time.perf_counter()
    runs: list[StrategyRun] = []
    seed_seconds: list[float] = []
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="perennial-bench-") as tmp:
        for n, seed in enumerate(seeds):
            seed_started = time.perf_counter()
            seeded = settings.model_copy(update={"seed": seed})
            stream = make_stream(seed, seeded)
            progress(
                f"seed {seed}: {stream.description}; labels "
                + ("growing slice by slice; " if growing_labels else "declared upfront; ")
                + ", ".join(f"{s.name} {len(s.train)}/{len(s.val)}/{len(s.test)}" for s in stream.slices)
                + " train/val/test rows"
            )
            baseline = baseline_accuracy(seeded, stream)
            for strategy in parsed:
                runs.append(
                    run_strategy(
                        strategy, stream, seeded, Path(tmp), progress, baseline, growing_labels=growing_labels
                    )
                )
            seed_seconds.append(time.perf_counter() - seed_started)
            report = _report(
                settings, stream, runs, rows_per_domain, list(seeds[: n + 1]), started, seed_seconds
            )
            if growing_labels:
                report["labels"] = labels_in_arrival_order(s.train["label"] for s in stream.slices)
                report["label_set"] = "growing slice by slice"
            report["complete"] = n + 1 == len(seeds)
            write_report(report, out_dir, runs)
    return report


def _report(
    settings: Settings,
    stream: Stream,
    runs: Sequence[StrategyRun],
    rows: int | None,
    seeds: list[int],
    started: float,
    seed_seconds: list[float],
) -> dict:
    results = aggregate(runs)
    default = Strategy.from_settings(settings).name
    tests = stream.test_rows
    return {
        "benchmark": "forgetting",
        "stream": stream.description,
        "stream_name": stream.name,
        "source": stream.source,
        "slices": [s.name for s in stream.slices],
        "labels": stream.labels,
        "label_set": "declared upfront",
        "rows_per_slice": {
            split: [len(getattr(s, split)) for s in stream.slices] for split in ("train", "val", "test")
        },
        "rows_option": rows,
        # The noise floor: one test row on the smallest slice, in accuracy points.
        "one_test_row_points": 100 / min(tests) if tests else None,
        "seeds": seeds,
        "base_model": settings.base_model,
        "epochs": settings.epochs,
        "replay_memory_size": settings.replay_memory_size,
        "replay_ratio": settings.replay_ratio,
        "train_precision": _resolved_train_precision(settings),
        "torch_threads": settings.torch_threads,
        "wall_seconds": time.perf_counter() - started,
        "wall_seconds_per_seed": list(seed_seconds),
        "strategies": results,
        "goal": goal_check(results, default if default in results else "replay", slices=len(stream.slices)),
    }


def write_report(report: dict, out_dir: Path, runs: Sequence[StrategyRun] = ()) -> None:
    """forgetting.json, the side-by-side heatmaps in forgetting.png and, given the runs, every test
    row's prediction in forgetting-predictions.parquet."""
    from perennial.reporting.plots import plot_strategy_comparison

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "forgetting.json").write_text(json.dumps(report, indent=2))
    if runs:
        frames = [frame for run in runs for frame in run.predictions]
        pd.concat(frames, ignore_index=True).to_parquet(out_dir / PREDICTIONS_FILE, index=False)
    matrices = {
        name: pd.DataFrame(r["matrix"]["values"], index=r["matrix"]["index"], columns=r["matrix"]["columns"])
        for name, r in report["strategies"].items()
    }
    plot_strategy_comparison(
        matrices,
        out_dir / "forgetting.png",
        f"Forgetting benchmark: {report['stream']}; {len(report['seeds'])} seed(s)",
    )


def format_report(report: dict) -> str:
    """The results table as text: mean ± std over seeds, accuracies and forgetting in points."""

    def cell(entry: dict, metric: str, scale: float, fmt: str) -> str:
        if metric not in entry:
            return "-"
        m = entry[metric]
        return f"{format(m['mean'] * scale, fmt)} ± {format(m['std'] * scale, fmt.lstrip('+'))}"

    width = max([14, *(len(name) + 2 for name in report["strategies"])])
    header = (
        f"{'strategy':<{width}}{'avg acc %':>16}{'BWT pts':>16}{'max forget pts':>18}{'worst any cycle':>18}"
        f"{'samples':>20}{'s/cycle':>10}"
    )
    stream = f"stream: {report.get('stream', '?')}; labels {report.get('label_set', 'declared upfront')}"
    lines = [stream, header, "-" * len(header)]
    for name, entry in report["strategies"].items():
        lines.append(
            f"{name:<{width}}{cell(entry, 'avg_acc', 100, '.1f'):>16}{cell(entry, 'bwt', 100, '+.1f'):>16}"
            f"{cell(entry, 'max_forgetting', 100, '.1f'):>18}"
            f"{cell(entry, 'max_forgetting_any_cycle', 100, '.1f'):>18}"
            f"{cell(entry, 'train_samples', 1, '.0f'):>20}{cell(entry, 'seconds', 1, '.0f'):>10}"
        )
    if report.get("one_test_row_points") is not None:
        lines.append(
            f"\nnoise: ± is the std over {len(report['seeds'])} seed(s); one test row is "
            f"{report['one_test_row_points']:.2f} points on the smallest slice"
        )
    goal = report.get("goal")
    if goal:
        ratios = ", ".join(
            "-" if r is None else f"{100 * r:.0f}%" for r in goal["samples_vs_joint_per_cycle"]
        )
        samples_met = goal.get("samples_goal_met")
        samples_verdict = (
            f"needs a stream of {MIN_SLICES_FOR_SAMPLE_GOAL}+ slices"
            if samples_met is None
            else ("met" if samples_met else "not met")
        )
        lines += [
            "",
            f"goal for {goal['strategy']}: accuracy {100 * goal['accuracy_vs_joint']:.1f}% of joint "
            f"({'met' if goal['accuracy_goal_met'] else 'not met'}, needs >= 99%); "
            f"max forgetting {_points(goal['max_forgetting_points'])} points against joint's "
            f"{_points(goal.get('joint_max_forgetting_points'))} "
            f"({'met' if goal['forgetting_goal_met'] else 'not met'}, needs <= joint's + 1.0); "
            f"samples {100 * goal['samples_vs_joint_total']:.0f}% of joint's over the stream "
            f"({samples_verdict}, needs <= 40%; per cycle {ratios})",
        ]
    return "\n".join(lines)


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
