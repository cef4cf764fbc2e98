"""The overhead benchmark's baseline: one cycle's work as a plain script, with no orchestration.

It does what `perennial run` computes for a new batch and nothing else: read and split the batch,
sample the replay rows from the earlier memory, fine-tune warm from the champion with the same
training loop and settings, score the challenger and the champion on every test slice with
`evaluate`, and save the model. No Prefect, MLflow, Great Expectations, ledger, registry, reports.
Settings come from PERENNIAL_* variables, as for `perennial run`.

    python bench/plain_cycle.py --batch new.csv --champion DIR --earlier DIR --memory FILE --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from perennial.core.settings import Settings
from perennial.data.batch_store import stratified_split
from perennial.evaluation.scoring import predict_slices, score_slices
from perennial.learning.replay import ReplayMemory
from perennial.learning.strategy import Strategy, assemble_training_data
from perennial.learning.training import fine_tune
from perennial.models.inference import load_model_dir, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=Path, required=True, help="the new batch (CSV: text, label)")
    parser.add_argument("--champion", type=Path, required=True, help="the champion's model folder")
    parser.add_argument("--earlier", type=Path, required=True, help="the earlier batch's split folder")
    parser.add_argument("--memory", type=Path, required=True, help="the replay memory (Parquet)")
    parser.add_argument("--out", type=Path, required=True, help="where the new model is saved")
    args = parser.parse_args()

    settings = Settings()
    frame = pd.read_csv(args.batch).drop_duplicates(subset="text").reset_index(drop=True)
    new = stratified_split(
        frame.assign(batch_id="new"), settings.seed, settings.val_fraction, settings.test_fraction
    )
    earlier = {split: pd.read_parquet(args.earlier / f"{split}.parquet") for split in ("val", "test")}
    data = assemble_training_data(
        Strategy.from_settings(settings),
        new["train"],
        new["val"],
        memory=ReplayMemory.load(args.memory),
        earlier_train=[],
        earlier_val=[earlier["val"]],
        replay_ratio=settings.replay_ratio,
        memory_seed=settings.seed,
        cycle_seed=settings.seed,
    )
    labels = sorted(frame["label"].astype(str).unique())
    result = fine_tune(args.champion, labels, data.train, data.val, settings.training, args.out)

    label2id = {label: i for i, label in enumerate(labels)}
    slices = {"earlier": earlier["test"], "new": new["test"]}
    device = resolve_device(settings.device)
    for role, folder in (("challenger", args.out), ("champion", args.champion)):
        model, tokenizer = load_model_dir(folder, device)
        scores = score_slices(predict_slices(model, tokenizer, slices, label2id, settings.inference))
        print(role, {name: round(s["accuracy"], 4) for name, s in scores.items()})
    print(f"trained {result.train_rows} rows for {result.epochs_run} epochs in {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
