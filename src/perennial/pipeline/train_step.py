"""Training a challenger with the configured strategy, and the bookkeeping of a second
attempt (the retry on forgetting).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from perennial.core.faults import fault_point
from perennial.core.settings import Settings
from perennial.data.batch_store import load_split, seed_from_batch, split_path
from perennial.data.ledger import TRAINED
from perennial.evaluation.contracts import Challenger
from perennial.evaluation.gate import Decision
from perennial.learning.finishing import classes_known_to, finish_model
from perennial.learning.replay import ReplayMemory
from perennial.learning.strategy import STRATEGY_PARAMS, Strategy, assemble_training_data
from perennial.pipeline.intake import recover_interrupted
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import champion_model_dir
from perennial.workspace import (
    challenger_dir,
    earlier_batches,
    in_workspace,
    labels_for,
    ledger_for,
    memory_path,
    slice_names,
    validation_path,
)

# Train


def replay_memory(settings: Settings, earlier: list[str]) -> ReplayMemory:
    """The memory after the last earlier accepted batch. Rebuilt from the stored splits when its file
    is missing or its capacity setting changed: the memory is a function of the rows and the seed."""
    path = memory_path(settings, earlier[-1]) if earlier else None
    if path is not None and path.is_file():
        memory = ReplayMemory.load(path)
        if memory.capacity == settings.replay_memory_size:
            return memory
    memory = ReplayMemory.empty(settings.replay_memory_size)
    for batch in earlier:
        memory = memory.add(load_split(settings, batch, "train"), settings.seed)
    return memory


def train_challenger(settings: Settings, batch_id: str, attempt: int = 1) -> Challenger:
    """Fine-tune a challenger with the configured strategy (warm-started from the champion unless
    the strategy is joint), log everything needed to re-run it to MLflow."""
    from perennial.learning.training_job import run_training

    ledger = ledger_for(settings)
    if ledger.batch(batch_id).status == TRAINED:  # trained before, then stopped: clean up first
        recover_interrupted(settings, batch_id)
    labels = labels_for(settings)
    strategy = Strategy.from_settings(settings.continual)
    champ = registry.champion(settings)
    warm_from = champ if not strategy.starts_from_base else None  # the champion it starts from
    warm = warm_from is not None
    init_from = (
        str(champion_model_dir(settings, warm_from.version)) if warm_from else settings.base_model_path()
    )
    earlier = earlier_batches(settings, batch_id)
    new_train = load_split(settings, batch_id, "train")
    data = assemble_training_data(
        strategy,
        new_train,
        load_split(settings, batch_id, "val"),
        memory=replay_memory(settings, earlier),
        earlier_train=[load_split(settings, b, "train") for b in earlier] if strategy.data == "joint" else [],
        earlier_val=[load_split(settings, b, "val") for b in earlier] if strategy.data != "naive" else [],
        replay_ratio=settings.replay_ratio,
        memory_seed=settings.seed,
        cycle_seed=settings.seed + seed_from_batch(batch_id),
    )
    data.memory_after.save(memory_path(settings, batch_id))
    lineage = (json.loads(champ.tags.get("lineage", "[]")) if champ else []) + [batch_id]

    name = slice_names(settings).get(batch_id, batch_id[:12])
    run_id = registry.start_cycle_run(
        settings,
        batch_id,
        run_name=f"cycle {name}" + (" (retry)" if attempt > 1 else ""),
        params={
            "batch_id": batch_id,
            "init_from": f"champion v{warm_from.version}" if warm_from else settings.base_model,
            "labels": ",".join(labels),
            "strategy": strategy.name,
            "train_rows": len(data.train),
            "replay_train_rows": len(data.replayed),
            "replay_batches": ",".join(sorted(set(data.replayed["batch_id"]))) or "-",
            "val_rows": len(data.val),
            # Not "batch_size": registering the model logs its serving config's batch_size as a param.
            "train_batch_size": settings.batch_size,
            **{
                key: getattr(settings, key)
                for key in (
                    "epochs",
                    "learning_rate",
                    "weight_decay",
                    "warmup_ratio",
                    "max_length",
                    "patience",
                    "seed",
                    "train_precision",
                    "replay_memory_size",
                    "replay_ratio",
                    *STRATEGY_PARAMS.get(settings.regularizer, ()),
                    *STRATEGY_PARAMS.get(settings.tuning, ()),
                    *STRATEGY_PARAMS.get(settings.merge, ()),
                    *STRATEGY_PARAMS.get(settings.bias_correction, ()),
                )
            },
        },
    )
    try:
        report = validation_path(settings, batch_id)
        if report.is_file():
            registry.log_file_artifact(run_id, report, "validation")
        val = load_split(settings, batch_id, "val")
        replayed = settings.memory_dir / f"{batch_id}.replayed.parquet"
        registry.log_datasets(
            run_id,
            [
                registry.DatasetUse(
                    f"{name}/train",
                    new_train,
                    in_workspace(settings, split_path(settings, batch_id, "train")),
                    "training",
                ),
                registry.DatasetUse(
                    f"{name}/val",
                    val,
                    in_workspace(settings, split_path(settings, batch_id, "val")),
                    "validation",
                ),
                registry.DatasetUse(
                    f"{name}/replayed", data.replayed, in_workspace(settings, replayed), "training"
                ),
            ],
        )
        # Exactly what this version saw: the replayed rows, and the memory it hands on.
        registry.log_file_artifact(run_id, memory_path(settings, batch_id), "replay")
        data.replayed.to_parquet(replayed, index=False)
        registry.log_file_artifact(run_id, replayed, "replay")
        registry.log_dict_artifact(
            run_id,
            {
                "lineage": lineage,
                "strategy": strategy.name,
                "replay_counts": data.replayed.groupby(["batch_id", "label"])
                .size()
                .rename("rows")
                .reset_index()
                .to_dict(orient="records"),
                "memory_counts": data.memory_after.counts().to_dict(orient="records"),
            },
            "lineage.json",
        )
        out_dir = challenger_dir(settings, batch_id, attempt)
        shutil.rmtree(out_dir, ignore_errors=True)
        # In this process, or data-parallel in `train_processes` workers; evaluation stays here.
        result = run_training(
            init_from,
            labels,
            data.train,
            data.val,
            settings,
            out_dir,
            tuning=strategy.tuning,
            # A regulariser anchors to the champion; from the base model there is nothing to keep.
            regularizer=strategy.regularizer if warm else "none",
        )
        started_from = Path(init_from) if warm else None
        # What the champion trained on (for one saved before models recorded it: earlier batches).
        known = classes_known_to(started_from, data.memory_after.labels_except(batch_id) or None)
        finished = finish_model(
            strategy,
            Path(result.model_dir),
            started_from,
            data.train["label"],
            labels,
            settings.finishing,
            champion_labels=known,
        )
        if finished:
            registry.log_metrics(run_id, finished)
        for entry in result.history:
            registry.log_metrics(
                run_id,
                {"train_loss": entry["train_loss"], "val_accuracy": entry["val_accuracy"]},
                step=entry["epoch"],
            )
        registry.log_metrics(
            run_id,
            {
                "train_seconds": result.seconds,
                "best_val_accuracy": result.best_val_accuracy,
                "train_samples": result.samples_processed,
                "trainable_fraction": result.trainable_fraction,
            },
        )
        # What `train_precision` resolved to on the machine that trained (auto differs by CPU/GPU).
        registry.set_run_tags(run_id, {"train_precision": result.precision})
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    ledger.transition(batch_id, TRAINED)
    fault_point("trained", settings.root)
    return Challenger(
        batch_id=batch_id,
        run_id=run_id,
        model_dir=str(result.model_dir),
        champion_version=champ.version if champ else None,
        lineage=tuple(lineage),
        strategy=strategy.name,
        attempt=attempt,
        new_classes=tuple(sorted(set(new_train["label"]) - known)) if warm and known is not None else (),
        train_rows=len(data.train),
        replay_rows=len(data.replayed),
        train_samples=result.samples_processed,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        best_val_accuracy=result.best_val_accuracy,
        seconds=round(result.seconds, 2),
        train_precision=result.precision,
    )


# Retry (see perennial.evaluation.retry): the first attempt's run is closed as retried, the second
# links to it.
def retire_first_attempt(challenger: Challenger, decision: Decision) -> None:
    """End the first attempt's MLflow run, tagged `decision=retried` with its reasons, and delete
    its model folder."""
    run_id = challenger.run_id
    registry.set_run_tags(run_id, {"decision": "retried", "reasons": " | ".join(decision.reasons)[:4900]})
    registry.end_run(run_id, "FINISHED")
    shutil.rmtree(challenger.model_dir, ignore_errors=True)


def discard_failed_retry(settings: Settings, batch_id: str) -> None:
    """What a retry that crashed left on disk (its run was already ended FAILED)."""
    shutil.rmtree(challenger_dir(settings, batch_id, attempt=2), ignore_errors=True)


def link_second_attempt(challenger: Challenger, first: Challenger) -> Challenger:
    registry.set_run_tags(challenger.run_id, {"attempt": str(challenger.attempt), "retry_of": first.run_id})
    return challenger.retrying(first)
