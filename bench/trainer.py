"""trainer: perennial's training step against `transformers.Trainer` in a typical configuration.

Both fine-tune the same base model on the same rows (real VADER sentences) with the same epochs,
batch size, learning rate, weight decay, warm-up, clipping, seed and max length, and both keep the
epoch with the best validation accuracy. The Trainer gets what its documentation shows: a tokenised
`datasets.Dataset`, dynamic padding by DataCollatorWithPadding, evaluation and a checkpoint each
epoch, the best model loaded at the end, and its default fused AdamW. Each is timed from loading
the model to the saved result (tokenising included), and scored on the same held-out test rows.
perennial runs first, so any warm-up (caches, allocator) favours the Trainer.

    python bench/trainer.py                  # MiniLM, 2,000 training rows, 3 epochs (~8 min on 2 cores)
    python bench/trainer.py --rows 300 --epochs 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from harness import RESULTS, print_table, vader_batches, write_result

from perennial.config import Settings
from perennial.evaluation import load_model_dir, predict_slices, score_slices
from perennial.startup import CYCLE_MODULES, preload
from perennial.training import fine_tune, load_for_training, set_seed

GOAL = 1.3


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
    scores = score_slices(predict_slices(model, tokenizer, {"test": test}, label2id, settings))
    return scores["test"]["accuracy"]


def run_perennial(data: dict, labels: list[str], settings: Settings, out: Path) -> dict:
    started = time.perf_counter()
    result = fine_tune(settings.base_model_path(), labels, data["train"], data["val"], settings, out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "samples": result.samples_processed, "best_epoch": result.best_epoch}


def run_trainer(data: dict, labels: list[str], settings: Settings, out: Path) -> dict:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from perennial.evaluation import load_metrics

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

    arguments = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=1.0,
        seed=settings.seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        logging_strategy="epoch",
        report_to="none",
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=encode("train"),
        eval_dataset=encode("val"),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "samples": len(data["train"]) * settings.epochs,
        "optimizer": str(arguments.optim),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="training rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    # Imports are not training: load what either side needs before any clock starts.
    preload([*CYCLE_MODULES, "transformers.trainer", "datasets", "peft"])
    # Every epoch runs for both: patience above the epoch count, so the work is the same.
    settings = Settings(epochs=args.epochs, patience=args.epochs + 1)
    data = split_rows(args.rows)
    labels = sorted(data["train"]["label"].unique())
    root = Path(tempfile.mkdtemp(prefix="perennial-bench-trainer-"))
    results: dict[str, dict] = {}
    try:
        for name, run in (("perennial", run_perennial), ("transformers.Trainer", run_trainer)):
            print(f"training with {name} ...", flush=True)
            results[name] = run(data, labels, settings, root / name)
            results[name]["test_accuracy"] = test_accuracy(root / name, data["test"], labels, settings)
            results[name]["samples_per_s"] = results[name]["samples"] / results[name]["seconds"]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ours, theirs = results["perennial"], results["transformers.Trainer"]
    speedup = ours["samples_per_s"] / theirs["samples_per_s"]
    gap = 100 * (ours["test_accuracy"] - theirs["test_accuracy"])
    rows = [
        {
            "trainer": k,
            "seconds": v["seconds"],
            "samples/s": v["samples_per_s"],
            "test accuracy": v["test_accuracy"],
        }
        for k, v in results.items()
    ]
    title = f"trainer: {args.rows} training rows, {args.epochs} epochs, {len(data['test'])} test rows"
    print_table(f"{title} ({settings.base_model})", rows)
    met = speedup >= GOAL and abs(gap) <= 0.5
    print(
        f"\nspeed-up {speedup:.2f}x, accuracy gap {gap:+.2f} points (goal >= {GOAL}x within 0.5 point: ",
        end="",
    )
    print("met)" if met else "not met)")
    path = write_result(
        "trainer",
        {
            "rows": args.rows,
            "epochs": args.epochs,
            "test_rows": len(data["test"]),
            "model": settings.base_model,
            "results": results,
            "speedup": speedup,
            "accuracy_gap_points": gap,
            "goal": GOAL,
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
