"""trainer: perennial's training step against `transformers.Trainer`, in float32 and in bfloat16.

Arms, all on the same rows (real VADER sentences) with the same epochs, batch size, learning rate,
weight decay, warm-up, clipping, seed and max length; each keeps the epoch with the best validation
accuracy and is scored on the same held-out test rows (in float32):

- perennial float32: `fine_tune` with train_precision="float32".
- perennial auto: train_precision="auto"; the report says what it resolved to. Where it resolves to
  float32 (no native bf16) it is the very same configuration as the float32 arm, so that run is
  reported for both rather than trained twice.
- transformers.Trainer float32, and transformers.Trainer bf16=True (what a user would switch on).
  The Trainer gets what its documentation shows: a tokenised `datasets.Dataset`, dynamic padding by
  DataCollatorWithPadding, evaluation and a checkpoint each epoch, the best model loaded at the end,
  and its default fused AdamW.

A full arm is timed from loading the model to the saved result (tokenising included), once per seed
(`--seeds`); accuracy is reported as mean and standard deviation over the seeds. perennial runs first
within each seed, so any warm-up (caches, allocator) favours the Trainer.

bfloat16 is only trained in full where the device computes it natively (CPU with AVX512-BF16 or AMX,
a bf16 GPU): emulated bf16 is ~20x slower than float32. Elsewhere the bf16 arms are probed instead:
`--probe-steps` optimizer steps of each implementation in float32 and in bf16 on the same rows, timed
per step by a global optimizer-step hook from the end of the first step (one-off kernel set-up) to the
end of the last, so the report can say how much slower emulated bf16 is here (the rows are the same;
perennial's batches are length-grouped, the Trainer's random, as in their full runs). Every run also
records whether its forward pass really ran under bf16 autocast. The Trainer runs on the device
perennial trains on (the `device` setting).

    python bench/trainer.py          # MiniLM, 2,000 rows, 3 epochs (~8 min on 2 cores, + ~5 min of probes)
    python bench/trainer.py --rows 300 --epochs 1 --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from harness import RESULTS, print_table, vader_batches, write_result

from perennial.core.precision import cpu_has_native_bf16, resolve_precision
from perennial.core.settings import Settings
from perennial.core.startup import CYCLE_MODULES, preload
from perennial.evaluation.scoring import predict_slices, score_slices
from perennial.learning.training import fine_tune, load_for_training, set_seed
from perennial.models.inference import load_model_dir, resolve_device

ACCURACY_GOAL = 0.5  # points of test accuracy, either way
PERENNIAL_F32, PERENNIAL_AUTO = "perennial float32", "perennial auto"
TRAINER_F32, TRAINER_BF16 = "transformers.Trainer float32", "transformers.Trainer bf16=True"
# (faster, slower, goal): samples/s of the first over the second
SPEEDUPS = [
    (PERENNIAL_AUTO, PERENNIAL_F32, 2.0),  # only meaningful where bf16 is native
    (PERENNIAL_AUTO, TRAINER_BF16, 1.5),
    (PERENNIAL_F32, TRAINER_F32, 1.3),
]
# The probes (where bf16 is emulated): each implementation in float32 and in bf16.
PROBED_F32 = ("perennial float32", TRAINER_F32)
PROBED_BF16 = ("perennial bfloat16", TRAINER_BF16)
GAPS = [(PERENNIAL_F32, TRAINER_F32), (PERENNIAL_AUTO, TRAINER_BF16), (PERENNIAL_AUTO, PERENNIAL_F32)]


def split_rows(rows: int) -> dict[str, pd.DataFrame]:
    """Train, validation (a tenth of train) and test rows: disjoint, from the VADER tweets."""
    (frame,) = vader_batches(1, rows + rows // 10 + 1000)
    return {
        "train": frame.iloc[:rows],
        "val": frame.iloc[rows : rows + rows // 10],
        "test": frame.iloc[rows + rows // 10 :],
    }


def test_accuracy(folder: Path, test: pd.DataFrame, labels: list[str], settings: Settings) -> float:
    model, tokenizer = load_model_dir(folder, "cpu")
    label2id = {label: i for i, label in enumerate(labels)}
    scores = score_slices(predict_slices(model, tokenizer, {"test": test}, label2id, settings.inference))
    return scores["test"]["accuracy"]


@dataclass
class Clock:
    """End times of every optimizer step, and whether the forward pass ran under bf16 autocast."""

    step_ends: list[float] = field(default_factory=list)
    bf16_autocast: bool | None = None  # None: no forward pass seen


@contextlib.contextmanager
def clocked() -> Iterator[Clock]:
    """Global hooks (no change to either trainer): one after every optimizer step, and one after the
    first module forward, which for both trainers runs inside any autocast they apply."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook

    clock = Clock()

    def on_step(*_: object) -> None:
        clock.step_ends.append(time.perf_counter())

    def on_forward(*_: object) -> None:
        clock.bf16_autocast = any(
            torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
            for kind in ("cpu", "cuda")
        )
        forward.remove()  # once is enough: a global hook on every module call would cost time

    step = register_optimizer_step_post_hook(on_step)
    forward = register_module_forward_hook(on_forward)
    try:
        yield clock
    finally:
        step.remove()
        forward.remove()


def run_perennial(data: dict, labels: list[str], settings: Settings, out: Path) -> dict:
    started = time.perf_counter()
    result = fine_tune(
        settings.base_model_path(), labels, data["train"], data["val"], settings.training, out, progress=False
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "samples": result.samples_processed,
        "best_epoch": result.best_epoch,
        # What fine_tune says it trained in (None from a fine_tune that predates train_precision).
        "reported_precision": getattr(result, "precision", None),
    }


def run_trainer(
    data: dict, labels: list[str], settings: Settings, out: Path, *, bf16: bool, probe_steps: int = 0
) -> dict:
    """The Trainer as its documentation shows it; `probe_steps` > 0: only that many steps, no
    evaluation, no checkpoints."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from perennial.evaluation.scoring import load_metrics

    started = time.perf_counter()
    set_seed(settings.seed)
    model, tokenizer = load_for_training(settings.base_model_path(), labels)
    label2id = {label: i for i, label in enumerate(labels)}

    def encode(split: str) -> Dataset:
        frame = pd.DataFrame({"text": data[split]["text"], "label": data[split]["label"].map(label2id)})
        dataset = Dataset.from_pandas(frame, preserve_index=False)
        return dataset.map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=settings.max_length),
            batched=True,
            remove_columns=["text"],
        )

    accuracy = load_metrics()["accuracy"]

    def compute_metrics(prediction) -> dict:
        logits, references = prediction
        return accuracy.compute(predictions=np.argmax(logits, axis=-1), references=references)

    each_epoch = "no" if probe_steps else "epoch"
    arguments = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=settings.epochs,
        max_steps=probe_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=1.0,
        seed=settings.seed,
        eval_strategy=each_epoch,
        save_strategy=each_epoch,
        save_total_limit=1,
        load_best_model_at_end=not probe_steps,
        metric_for_best_model="accuracy",
        logging_strategy=each_epoch,
        report_to="none",
        bf16=bf16,
        # The device perennial trains on (settings.device), so both sides run on the same hardware.
        use_cpu=resolve_device(settings.device).type == "cpu",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=encode("train"),
        eval_dataset=None if probe_steps else encode("val"),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    if not probe_steps:
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "samples": len(data["train"]) * (1 if probe_steps else settings.epochs),
        "optimizer": str(arguments.optim),
    }


def accuracy_summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def probe(run: Callable[[Path], dict], steps: int, batch_size: int, out: Path) -> dict:
    """Per-step rate of `run` (which trains exactly `steps` full batches), first step left out."""
    with clocked() as clock:
        wall = run(out)["seconds"]
    ends = clock.step_ends
    if len(ends) != steps:
        raise RuntimeError(f"probe expected {steps} optimizer steps, saw {len(ends)}")
    measured = (steps - 1) * batch_size
    return {
        "steps": steps,
        "measured_steps": steps - 1,
        "samples": measured,
        "seconds": ends[-1] - ends[0],
        "samples_per_s": measured / (ends[-1] - ends[0]),
        "wall_seconds": wall,  # with loading, tokenising (and for perennial: validation, saving)
        "bf16_autocast": clock.bf16_autocast,
    }


def full_arms(data: dict, labels: list[str], settings_for: Callable, native: bool) -> dict:
    """The arms trained in full: name -> (precision it trains in, a run for a seed into a folder).
    Without native bf16 neither bf16 arm is here (they are probed) and auto is the float32 arm."""
    arms: dict[str, tuple[str, Callable[[int, Path], dict]]] = {
        PERENNIAL_F32: ("float32", lambda s, out: run_perennial(data, labels, settings_for(s), out)),
    }
    if native:
        arms[PERENNIAL_AUTO] = (
            "bfloat16",
            lambda s, out: run_perennial(data, labels, settings_for(s, "auto"), out),
        )
    arms[TRAINER_F32] = (
        "float32",
        lambda s, out: run_trainer(data, labels, settings_for(s), out, bf16=False),
    )
    if native:
        arms[TRAINER_BF16] = (
            "bfloat16",
            lambda s, out: run_trainer(data, labels, settings_for(s), out, bf16=True),
        )
    return arms


def run_probes(data: dict, labels: list[str], settings: Settings, steps: int, root: Path) -> dict:
    """Each implementation for `steps` full batches of the same rows, in float32 and in bf16."""
    rows = steps * settings.batch_size
    few = {"train": data["train"].iloc[:rows], "val": data["val"].iloc[: settings.batch_size]}
    one = settings.model_copy(update={"epochs": 1, "patience": 2, "train_precision": "float32"})
    bf16 = one.model_copy(update={"train_precision": "bfloat16"})
    probing: dict[str, Callable[[Path], dict]] = {
        PROBED_F32[0]: lambda out: run_perennial(few, labels, one, out),
        PROBED_BF16[0]: lambda out: run_perennial(few, labels, bf16, out),
        PROBED_F32[1]: lambda out: run_trainer(few, labels, one, out, bf16=False, probe_steps=steps),
        PROBED_BF16[1]: lambda out: run_trainer(few, labels, one, out, bf16=True, probe_steps=steps),
    }
    probes = {}
    for name, run in probing.items():
        print(f"probing {name}: {steps} steps ...", flush=True)
        out = root / f"probe-{name.replace(' ', '_')}"
        probes[name] = probe(run, steps, settings.batch_size, out)
        shutil.rmtree(out, ignore_errors=True)
    return probes


def summarise(full: dict, runs: dict[str, list[dict]], auto: str, native: bool) -> dict[str, dict]:
    """Per arm: its runs, mean seconds, samples/s over all seeds, test accuracy over the seeds."""
    arms: dict[str, dict] = {}
    for name, (precision, _) in full.items():
        done = runs[name]
        arms[name] = {
            "precision": precision,
            "mode": "full",
            "runs": done,
            "seconds": statistics.fmean(r["seconds"] for r in done),
            # Over all seeds: total samples over total seconds.
            "samples_per_s": sum(r["samples"] for r in done) / sum(r["seconds"] for r in done),
            "test_accuracy": accuracy_summary([r["test_accuracy"] for r in done]),
        }
    if not native:
        # auto is float32 here: the float32 arm's runs are this arm's runs.
        arms[PERENNIAL_AUTO] = {**arms[PERENNIAL_F32], "mode": f"same run as {PERENNIAL_F32}"}
        arms[TRAINER_BF16] = {"precision": "bfloat16 (emulated)", "mode": "probe only", "runs": []}
    arms[PERENNIAL_AUTO]["resolved_to"] = auto
    return {k: arms[k] for k in (PERENNIAL_F32, PERENNIAL_AUTO, TRAINER_F32, TRAINER_BF16)}


def compare(arms: dict[str, dict], probes: dict[str, dict], native: bool) -> tuple[list, list]:
    """The speed-ups against their goals, and the accuracy gaps between arms trained in full."""
    speedups = []
    for fast, slow, goal in SPEEDUPS:
        entry: dict = {"arms": [fast, slow], "goal": goal, "speedup": None}
        if fast == PERENNIAL_AUTO and slow == PERENNIAL_F32 and not native:
            entry["status"] = "n/a: auto resolved to float32 here (no native bf16)"
        elif arms[slow]["mode"] == "probe only":
            # perennial auto is float32 here, so its per-step rate is the float32 probe's.
            ratio = probes[PROBED_F32[0]]["samples_per_s"] / probes[slow]["samples_per_s"]
            entry["probe_speedup"] = ratio
            entry["status"] = (
                f"n/a: bf16 emulated here, only probed; per step, perennial auto (float32) "
                f"runs at {ratio:.2f}x its rate"
            )
        else:
            entry["speedup"] = arms[fast]["samples_per_s"] / arms[slow]["samples_per_s"]
            entry["status"] = "met" if entry["speedup"] >= goal else "not met"
        speedups.append(entry)
    gaps = []
    for a, b in GAPS:
        if arms[a]["mode"] != "full" or arms[b]["mode"] != "full":
            continue  # a probe has no accuracy; auto run as float32 has no gap to float32
        points = 100 * (arms[a]["test_accuracy"]["mean"] - arms[b]["test_accuracy"]["mean"])
        status = "met" if abs(points) <= ACCURACY_GOAL else "not met"
        gaps.append({"arms": [a, b], "points": points, "status": status})
    return speedups, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="training rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="full runs of each arm, seeds 42, 43, ...")
    parser.add_argument(
        "--probe-steps", type=int, default=5, help="steps of each probe (where bf16 is emulated)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.probe_steps < 2:
        parser.error("--probe-steps must be at least 2 (the first step is not timed)")

    # Imports are not training: load what either side needs before any clock starts.
    preload([*CYCLE_MODULES, "transformers.trainer", "datasets", "peft"])
    # Every epoch runs for both: patience above the epoch count, so the work is the same.
    base = Settings(epochs=args.epochs, patience=args.epochs + 1)
    device = resolve_device(base.device)
    auto = resolve_precision("auto", device)
    native = auto == "bfloat16"
    bf16_support = {
        "device": str(device),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "native_on_device": native,
        "auto_resolves_to": auto,
    }
    data = split_rows(args.rows)
    labels = sorted(data["train"]["label"].unique())
    seeds = [base.seed + i for i in range(args.seeds)]

    def settings_for(seed: int, precision: str = "float32") -> Settings:
        return base.model_copy(update={"seed": seed, "train_precision": precision})

    full = full_arms(data, labels, settings_for, native)
    root = Path(tempfile.mkdtemp(prefix="perennial-bench-trainer-"))
    runs: dict[str, list[dict]] = {name: [] for name in full}
    probes: dict[str, dict] = {}
    try:
        for seed in seeds:
            for name, (_, train) in full.items():
                print(f"seed {seed}: training with {name} ...", flush=True)
                out = root / f"{name.replace(' ', '_')}-{seed}"
                with clocked() as clock:
                    run = train(seed, out)
                run["test_accuracy"] = test_accuracy(out, data["test"], labels, base)
                run["samples_per_s"] = run["samples"] / run["seconds"]
                runs[name].append({"seed": seed, **run, "bf16_autocast": clock.bf16_autocast})
                shutil.rmtree(out, ignore_errors=True)
        if not native:
            probes = run_probes(data, labels, base, args.probe_steps, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    arms = summarise(full, runs, auto, native)
    slowdown = {
        who: probes[f32]["samples_per_s"] / probes[bf16]["samples_per_s"]
        for who, f32, bf16 in zip(("perennial", "transformers.Trainer"), PROBED_F32, PROBED_BF16, strict=True)
        if probes
    }
    speedups, gaps = compare(arms, probes, native)
    report(args, base, bf16_support, arms, probes, slowdown, speedups, gaps, len(data["test"]))
    path = write_result(
        "trainer",
        {
            "rows": args.rows,
            "epochs": args.epochs,
            "test_rows": len(data["test"]),
            "model": base.base_model,
            "seeds": seeds,
            "probe_steps": args.probe_steps,
            "bf16": bf16_support,
            "arms": arms,
            "probes": probes,
            "bf16_slowdown": slowdown,
            "speedups": speedups,
            "accuracy_gaps": gaps,
            "accuracy_goal_points": ACCURACY_GOAL,
        },
        args.out,
    )
    print(f"wrote {path}")


def report(
    args: argparse.Namespace,
    base: Settings,
    bf16_support: dict,
    arms: dict[str, dict],
    probes: dict[str, dict],
    slowdown: dict[str, float],
    speedups: list[dict],
    gaps: list[dict],
    test_rows: int,
) -> None:
    """The tables and the verdicts on stdout."""
    seeds = f"{args.seeds} seed{'s' if args.seeds > 1 else ''}"
    rows = []
    for name, arm in arms.items():
        trained = arm["mode"] != "probe only"
        accuracy = arm.get("test_accuracy")
        rows.append(
            {
                "arm": name,
                "precision": arm["precision"],
                "run": arm["mode"],
                "seconds": arm["seconds"] if trained else None,
                "samples/s": arm["samples_per_s"] if trained else None,
                "test accuracy": f"{accuracy['mean']:.3f} ± {accuracy['std']:.3f}" if trained else None,
            }
        )
    title = f"trainer: {args.rows} training rows, {args.epochs} epochs, {test_rows} test rows, {seeds}"
    print_table(f"{title} ({base.base_model}; seconds per run; accuracy mean ± std over seeds)", rows)
    native = bf16_support["native_on_device"]
    print(
        f"\nbf16 on {bf16_support['device']}: {'native' if native else 'emulated (no AVX512-BF16/AMX)'}; "
        f"train_precision=auto resolves to {bf16_support['auto_resolves_to']}"
    )
    if probes:
        print_table(
            f"probes: {args.probe_steps} steps each, samples/s per step after the first",
            [
                {"run": name, "samples/s": p["samples_per_s"], "under bf16 autocast": p["bf16_autocast"]}
                for name, p in probes.items()
            ],
        )
        for (who, factor), bf16 in zip(slowdown.items(), PROBED_BF16, strict=True):
            how = f"{factor:.1f} times slower" if factor >= 1 else f"{1 / factor:.1f} times faster"
            print(
                f"bf16 emulated here: {who} {probes[bf16]['samples_per_s']:.1f} samples/s, "
                f"{how} than its float32, not run in full"
            )
            if not probes[bf16]["bf16_autocast"]:
                print(f"  warning: {bf16} did not run under bf16 autocast: that rate is float32's")
    print("\nspeed-ups (samples/s):")
    for s in speedups:
        value = f"{s['speedup']:.2f}x, " if s["speedup"] is not None else ""
        print(f"  {s['arms'][0]} / {s['arms'][1]} (goal >= {s['goal']}x): {value}{s['status']}")
    print(f"accuracy gaps (test, mean over seeds; goal within {ACCURACY_GOAL} point):")
    for g in gaps:
        print(f"  {g['arms'][0]} - {g['arms'][1]}: {g['points']:+.2f} points: {g['status']}")


if __name__ == "__main__":
    main()
