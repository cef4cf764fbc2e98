"""The stages of one continual-training cycle, as plain functions.

Each stage takes the settings and small values (batch ids, run ids, paths, metric dicts) and returns
small values; state lives in the ledger, the data store and MLflow. Prefect tasks wrap these one to
one, and tests call them directly.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from perennial import registry
from perennial.config import Settings
from perennial.gate import Decision, decide
from perennial.ingest import (
    IngestResult,
    inbox_files,
    ingest_file,
    load_split,
    rows_path,
    seed_from_batch,
    split_batch,
)
from perennial.ledger import ACCEPTED, PROMOTED, QUARANTINED, REJECTED_MODEL, TRAINED, Ledger
from perennial.replay import replay_size, sample_replay

log = logging.getLogger(__name__)


def ledger_for(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


# Ingest
def ingest_inbox(settings: Settings) -> list[dict]:
    """Ingest every file in the inbox, oldest first."""
    ledger = ledger_for(settings)
    results: list[IngestResult] = [ingest_file(path, settings, ledger) for path in inbox_files(settings)]
    for result in results:
        log.info(result.message)
    return [asdict(r) for r in results]


def pending_batches(settings: Settings) -> list[str]:
    return [b.batch_id for b in ledger_for(settings).pending()]


def slice_names(settings: Settings) -> dict[str, str]:
    """batch id -> the source file's name without suffix: how people recognise a slice."""
    return {b.batch_id: Path(b.source).stem for b in ledger_for(settings).batches()}


# Validate
def validate_batch(settings: Settings, batch_id: str) -> dict:
    """Run the expectation suite. A failing batch is quarantined with a one-line reason (returned,
    not raised: a bad batch is an expected outcome). The first accepted batch fixes the label set."""
    from perennial.validation import validate

    ledger = ledger_for(settings)
    if ledger.batch(batch_id).status == TRAINED:  # an interrupted cycle: already validated
        return {"batch_id": batch_id, "success": True, "reason": "validated earlier"}
    frame = pd.read_parquet(rows_path(settings, batch_id))
    label_set = settings.labels or ledger.label_set()
    report = validate(frame, settings, label_set)
    report.save(validation_path(settings, batch_id))
    reason = report.reason  # "" when the suite passed
    labels = sorted(frame["label"].astype(str).unique())
    if not reason and label_set is None and len(labels) < 2:
        reason = f"the first batch fixes the label set and needs at least two labels, found {labels}"
    if reason:
        ledger.transition(batch_id, QUARANTINED, reason)
        return {"batch_id": batch_id, "success": False, "reason": reason}
    # Record the label set (configured, or fixed by this first batch) so a later change is visible.
    ledger.fix_label_set(label_set or labels)
    return {"batch_id": batch_id, "success": True, "reason": ""}


def validation_path(settings: Settings, batch_id: str) -> Path:
    return settings.validation_dir / f"{batch_id}.json"


def labels_for(settings: Settings) -> list[str]:
    labels = settings.labels or ledger_for(settings).label_set()
    if not labels:
        raise RuntimeError("no label set yet: validate a batch first")
    return sorted(labels)


# Split
def split(settings: Settings, batch_id: str) -> dict[str, int]:
    return split_batch(settings, batch_id)


# Train
def champion_model_dir(settings: Settings, version: str) -> Path:
    """A local copy of a registered version, downloaded once and reused."""
    local = settings.models_dir / f"v{version}"
    if not (local / "config.json").is_file():
        shutil.rmtree(local, ignore_errors=True)  # a leftover partial copy
        registry.download_model(settings, version, local)  # builds beside `local`, then renames
    return local


def earlier_batches(settings: Settings, batch_id: str) -> list[str]:
    return [b.batch_id for b in ledger_for(settings).batches(ACCEPTED) if b.batch_id != batch_id]


def replay_rows(settings: Settings, batch_id: str, split_name: str, new_rows: int) -> pd.DataFrame:
    earlier = earlier_batches(settings, batch_id)
    if not earlier:
        return pd.DataFrame(columns=["batch_id", "text", "label"])
    pool = pd.concat([load_split(settings, b, split_name) for b in earlier], ignore_index=True)
    n = replay_size(new_rows, settings.replay_ratio, settings.replay_max_rows)
    return sample_replay(pool, n, settings.seed + seed_from_batch(batch_id))


def train_challenger(settings: Settings, batch_id: str) -> dict:
    """Warm-start from the champion (or the base model), mix in replay, fine-tune, log to MLflow."""
    from perennial.training import fine_tune

    ledger = ledger_for(settings)
    labels = labels_for(settings)
    champ = registry.champion(settings)
    init_from = str(champion_model_dir(settings, champ.version)) if champ else settings.base_model_path()
    new_train, new_val = load_split(settings, batch_id, "train"), load_split(settings, batch_id, "val")
    replay_train = replay_rows(settings, batch_id, "train", len(new_train))
    replay_val = replay_rows(settings, batch_id, "val", len(new_val))
    train = pd.concat([new_train, replay_train], ignore_index=True)
    val = pd.concat([new_val, replay_val], ignore_index=True)
    lineage = (json.loads(champ.tags.get("lineage", "[]")) if champ else []) + [batch_id]

    run_id = registry.start_cycle_run(
        settings,
        batch_id,
        {
            "batch_id": batch_id,
            "init_from": f"champion v{champ.version}" if champ else settings.base_model,
            "labels": ",".join(labels),
            "new_train_rows": len(new_train),
            "replay_train_rows": len(replay_train),
            "replay_batches": ",".join(sorted(set(replay_train["batch_id"]))) or "-",
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "weight_decay": settings.weight_decay,
            "warmup_ratio": settings.warmup_ratio,
            "max_length": settings.max_length,
            "patience": settings.patience,
            "replay_ratio": settings.replay_ratio,
            "seed": settings.seed,
        },
    )
    try:
        report = validation_path(settings, batch_id)
        if report.is_file():
            registry.log_file_artifact(run_id, report, "validation")
        registry.log_dict_artifact(
            run_id,
            {
                "lineage": lineage,
                "replay_counts": replay_train.groupby(["batch_id", "label"])
                .size()
                .rename("rows")
                .reset_index()
                .to_dict(orient="records"),
            },
            "lineage.json",
        )
        out_dir = settings.models_dir / f"challenger-{batch_id}"
        shutil.rmtree(out_dir, ignore_errors=True)
        result = fine_tune(init_from, labels, train, val, settings, out_dir)
        for entry in result.history:
            registry.log_metrics(
                run_id,
                {"train_loss": entry["train_loss"], "val_accuracy": entry["val_accuracy"]},
                step=entry["epoch"],
            )
        registry.log_metrics(
            run_id, {"train_seconds": result.seconds, "best_val_accuracy": result.best_val_accuracy}
        )
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    ledger.transition(batch_id, TRAINED)
    return {
        "batch_id": batch_id,
        "run_id": run_id,
        "model_dir": result.model_dir,
        "champion_version": champ.version if champ else None,
        "lineage": lineage,
        "train_rows": len(train),
        "replay_rows": len(replay_train),
        "best_val_accuracy": result.best_val_accuracy,
        "epochs_run": result.epochs_run,
        "seconds": round(result.seconds, 2),
    }


# Evaluate
def evaluation_slices(settings: Settings, batch_id: str) -> dict[str, pd.DataFrame]:
    """The new batch's test split plus every earlier accepted batch's test split."""
    ids = [*earlier_batches(settings, batch_id), batch_id]
    return {b: load_split(settings, b, "test") for b in ids}


def evaluate_challenger(settings: Settings, batch_id: str, challenger: dict) -> dict:
    """Score the challenger and the current champion on every slice; log the table to MLflow."""
    from perennial.evaluation import evaluate_model, load_model_dir, metrics_table, resolve_device

    device = resolve_device(settings.device)
    slices = evaluation_slices(settings, batch_id)
    labels = labels_for(settings)
    label2id = {label: i for i, label in enumerate(labels)}
    models = {"challenger": Path(challenger["model_dir"])}
    if challenger["champion_version"]:
        models["champion"] = champion_model_dir(settings, challenger["champion_version"])
    run_id = challenger["run_id"]
    try:
        scores: dict[str, dict] = {}
        for role, folder in models.items():
            model, tokenizer = load_model_dir(folder, device)
            scores[role] = evaluate_model(model, tokenizer, slices, label2id, settings)
            del model
        for role, per_slice in scores.items():
            for name, metrics in per_slice.items():
                registry.log_metrics(
                    run_id, {f"{role}.{name}.{k}": v for k, v in metrics.items() if k != "n"}
                )
        table = metrics_table(scores)
        table.insert(2, "source", table["slice"].map(slice_names(settings)))
        registry.log_dict_artifact(run_id, {"rows": table.to_dict(orient="records")}, "evaluation.json")
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    return {
        "batch_id": batch_id,
        "new_slice": batch_id,
        "challenger": scores["challenger"],
        "champion": scores.get("champion"),
    }


# Gate
def gate(settings: Settings, scores: dict) -> dict:
    decision = decide(
        scores["challenger"], scores["champion"], scores["new_slice"], settings, names=slice_names(settings)
    )
    return {"promote": decision.promote, "reasons": decision.reasons}


# Promote
def promote(settings: Settings, batch_id: str, challenger: dict, scores: dict, decision: dict) -> dict:
    """Register the challenger; move `champion` only if the gate said so and the version loads."""
    ledger = ledger_for(settings)
    verdict = Decision(decision["promote"], decision["reasons"])
    run_id = challenger["run_id"]
    tags = {
        "batch_id": batch_id,
        "lineage": json.dumps(challenger["lineage"]),
        "compared_with": f"v{challenger['champion_version']}" if challenger["champion_version"] else "none",
        "decision": verdict.label,
        "reasons": " | ".join(verdict.reasons)[:4900],
        "new_slice_accuracy": f"{scores['challenger'][batch_id]['accuracy']:.4f}",
    }
    try:
        version = registry.register_model(settings, run_id, Path(challenger["model_dir"]), tags)
        registry.set_alias(settings, "challenger", version)
        if verdict.promote:
            try:
                registry.verify_loadable(settings, version)  # never point champion at a broken model
            except registry.RegistryError as error:
                verdict = Decision(False, [*verdict.reasons, f"failed the load check: {error}"])
                registry.set_version_tags(
                    settings, version, {"decision": verdict.label, "reasons": str(error)[:4900]}
                )
        if verdict.promote:
            registry.set_alias(settings, "champion", version)
            registry.delete_alias(settings, "challenger")
        registry.set_run_tags(run_id, {"decision": verdict.label, "model_version": version})
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    _keep_local_copy(settings, Path(challenger["model_dir"]), version)
    status = PROMOTED if verdict.promote else REJECTED_MODEL
    ledger.transition(batch_id, status, verdict.summary(), model_version=version)
    ledger.record_cycle(
        batch_id,
        run_id,
        version,
        challenger["champion_version"],
        verdict.label,
        verdict.reasons,
        {"challenger": scores["challenger"], "champion": scores["champion"]},
    )
    registry.end_run(run_id, "FINISHED")
    champ = registry.champion(settings)
    return {
        "batch_id": batch_id,
        "version": version,
        "decision": verdict.label,
        "reasons": verdict.reasons,
        "champion_version": champ.version if champ else None,
    }


def _keep_local_copy(settings: Settings, model_dir: Path, version: str) -> None:
    # The trained folder is exactly what was registered: keep it as the local cache of that version.
    local = settings.models_dir / f"v{version}"
    shutil.rmtree(local, ignore_errors=True)
    model_dir.rename(local)
