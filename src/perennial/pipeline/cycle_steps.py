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
from typing import Any

import numpy as np
import pandas as pd

from perennial.core.faults import fault_point
from perennial.core.messages import first_line
from perennial.core.settings import Settings
from perennial.data.batch_files import safe_name
from perennial.data.batch_store import load_split, rows_path, seed_from_batch, split_batch
from perennial.data.inbox import ready_inbox_files
from perennial.data.ingest import SKIPPED, IngestResult, ingest_file
from perennial.data.ledger import (
    PROMOTED,
    PROMOTION,
    QUARANTINED,
    REJECTED_MODEL,
    RESTORE,
    TRAINED,
    Ledger,
)
from perennial.evaluation.champion_history import continual_metrics
from perennial.evaluation.gate import LABELS, Decision, decide
from perennial.learning.finishing import classes_known_to, finish_model
from perennial.learning.replay import ReplayMemory
from perennial.learning.strategy import STRATEGY_PARAMS, Strategy, assemble_training_data
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import champion_model_dir, move_champion
from perennial.reporting.model_card import publish_model_card
from perennial.workspace import (
    challenger_dir,
    earlier_batches,
    labels_for,
    ledger_for,
    memory_path,
    slice_names,
    validation_path,
)

log = logging.getLogger(__name__)


# Ingest
def ingest_inbox(settings: Settings) -> list[dict]:
    """Ingest every file in the inbox that has stopped changing, oldest first. One file that fails
    in a way ingest did not foresee is skipped with a one-line message; the others go on."""
    ledger = ledger_for(settings)
    ready = ready_inbox_files(settings)
    results: list[IngestResult] = [_ingest_one(path, settings, ledger) for path in ready]
    for result in results:
        log.info(result.message)
    return [asdict(r) for r in results]


def _ingest_one(path: Path, settings: Settings, ledger: Ledger) -> IngestResult:
    try:
        return ingest_file(path, settings, ledger)
    except Exception as error:  # noqa: BLE001 - one file must never stop the others
        name = safe_name(path.name)
        log.debug("ingesting %s failed", name, exc_info=True)
        where = "left in the inbox for the next run" if path.exists() else "nothing recorded"
        message = f"{name}: could not ingest: {first_line(error)}; {where}"
        return IngestResult(name, "", False, SKIPPED, message)


def pending_batches(settings: Settings) -> list[str]:
    return [b.batch_id for b in ledger_for(settings).pending()]


# Recovery: a cycle stopped part-way (killed, out of disk, MLflow gone) is finished by the next run.
def recover_interrupted(settings: Settings, batch_id: str) -> list[str]:
    """Undo what an interrupted cycle of `batch_id` left in the registry before it is retrained.

    The ledger is the record of decisions: a version registered for this batch that the ledger never
    recorded is left over from a cycle that stopped between registering and recording. Each such
    version is tagged `decision=interrupted`; if `champion` already points at one (the stop came
    after the alias moved), the alias goes back to the champion that version was compared with, so
    the retrained challenger meets the same champion and the batch is decided exactly once.
    Returns the versions found."""
    decided = {c.challenger_version for c in ledger_for(settings).cycles() if c.challenger_version}
    leftovers = [
        row
        for row in registry.list_versions(settings)
        if row["tags"].get("batch_id") == batch_id and row["version"] not in decided
    ]
    for row in leftovers:
        version = row["version"]
        if "champion" in row["aliases"]:
            before = row["tags"].get("compared_with", "none")
            restored = None if before == "none" else before.removeprefix("v")
            reason = f"cycle of batch {batch_id} stopped after promoting v{version}; retraining the batch"
            move_champion(settings, restored, RESTORE, reason)
            log.warning("champion moved back from v%s to %s: %s", version, before, reason)
        if "challenger" in row["aliases"]:
            registry.delete_alias(settings, "challenger")
        registry.set_version_tags(
            settings,
            version,
            {"decision": "interrupted", "reasons": "the cycle stopped before its decision was recorded"},
        )
    return [row["version"] for row in leftovers]


# Validate
def validate_batch(settings: Settings, batch_id: str) -> dict:
    """Run the expectation suite. A failing batch is quarantined with a one-line reason (returned,
    not raised: a bad batch is an expected outcome). The first accepted batch fixes the label set."""
    ledger = ledger_for(settings)
    if ledger.batch(batch_id).status == TRAINED:  # an interrupted cycle: already validated
        return {"batch_id": batch_id, "success": True, "reason": "validated earlier"}
    label_set = settings.labels or ledger.label_set()
    try:
        reason, labels = _validation_reason(settings, batch_id, label_set)
    except Exception as error:  # noqa: BLE001 - a batch that breaks validation must not stay pending
        log.debug("validating batch %s failed", batch_id, exc_info=True)
        reason, labels = f"could not validate: {first_line(error)}; drop the file again to retry", []
    if reason:
        ledger.transition(batch_id, QUARANTINED, reason)
        return {"batch_id": batch_id, "success": False, "reason": reason}
    # Record the label set (configured, or fixed by this first batch) so a later change is visible.
    ledger.fix_label_set(label_set or labels)
    fault_point("validated", settings.root)
    return {"batch_id": batch_id, "success": True, "reason": ""}


def _validation_reason(
    settings: Settings, batch_id: str, label_set: list[str] | None
) -> tuple[str, list[str]]:
    """Why the batch fails ("" when it passes) and its labels; the report is saved and published."""
    from perennial.data.validation import validate

    frame = pd.read_parquet(rows_path(settings, batch_id))
    report = validate(frame, settings, label_set)
    report.save(validation_path(settings, batch_id))
    _publish_data_docs(settings, batch_id)
    reason = report.reason  # "" when the suite passed
    # Nulls left out (pandas' string dtype keeps them as NaN, which does not sort with strings).
    labels = sorted({str(v) for v in frame["label"].dropna()}) if "label" in frame.columns else []
    if not reason and label_set is None and len(labels) < 2:
        reason = f"the first batch fixes the label set and needs at least two labels, found {labels}"
    return reason, labels


def _publish_data_docs(settings: Settings, batch_id: str) -> None:
    """The batch's Great Expectations page; only a view of the stored result, so never fatal."""
    from perennial.reporting.data_docs import publish_validation_page

    try:
        publish_validation_page(settings, batch_id)
    except Exception as error:  # noqa: BLE001 - the validation outcome is already recorded
        log.warning("Data Docs page for batch %s not written: %s", batch_id, error)


# Split
def split(settings: Settings, batch_id: str) -> dict[str, int]:
    counts = split_batch(settings, batch_id)
    fault_point("split", settings.root)
    return counts


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


def train_challenger(settings: Settings, batch_id: str, attempt: int = 1) -> dict:
    """Fine-tune a challenger with the configured strategy (warm-started from the champion unless
    the strategy is joint), log everything needed to re-run it to MLflow."""
    from perennial.learning.training_job import run_training

    ledger = ledger_for(settings)
    if ledger.batch(batch_id).status == TRAINED:  # trained before, then stopped: clean up first
        recover_interrupted(settings, batch_id)
    labels = labels_for(settings)
    strategy = Strategy.from_settings(settings)
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

    run_id = registry.start_cycle_run(
        settings,
        batch_id,
        {
            "batch_id": batch_id,
            "init_from": f"champion v{warm_from.version}" if warm_from else settings.base_model,
            "labels": ",".join(labels),
            "strategy": strategy.name,
            "train_rows": len(data.train),
            "replay_train_rows": len(data.replayed),
            "replay_batches": ",".join(sorted(set(data.replayed["batch_id"]))) or "-",
            "val_rows": len(data.val),
            **{
                key: getattr(settings, key)
                for key in (
                    "epochs",
                    "batch_size",
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
        # Exactly what this version saw: the replayed rows, and the memory it hands on.
        registry.log_file_artifact(run_id, memory_path(settings, batch_id), "replay")
        replayed = settings.memory_dir / f"{batch_id}.replayed.parquet"
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
            settings,
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
    return {
        "batch_id": batch_id,
        "run_id": run_id,
        "model_dir": result.model_dir,
        "champion_version": champ.version if champ else None,
        "lineage": lineage,
        "strategy": strategy.name,
        "train_rows": len(data.train),
        "replay_rows": len(data.replayed),
        "train_samples": result.samples_processed,
        "best_val_accuracy": result.best_val_accuracy,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 2),
        "train_precision": result.precision,
        "attempt": attempt,
        # Classes of this batch the champion never trained on (a retry does not average them away).
        "new_classes": sorted(set(new_train["label"]) - known) if warm and known is not None else [],
    }


# Retry (see perennial.evaluation.retry): the first attempt's run is closed as retried, the second
# links to it.
def retire_first_attempt(settings: Settings, challenger: dict, decision: dict) -> dict:
    """End the first attempt's MLflow run, tagged `decision=retried` with its reasons; return what
    the second attempt's record needs of it."""
    run_id = challenger["run_id"]
    registry.set_run_tags(run_id, {"decision": "retried", "reasons": " | ".join(decision["reasons"])[:4900]})
    registry.end_run(run_id, "FINISHED")
    shutil.rmtree(challenger["model_dir"], ignore_errors=True)
    return {
        "run_id": run_id,
        "strategy": challenger["strategy"],
        "new_classes": challenger.get("new_classes", []),
    }


def discard_failed_retry(settings: Settings, batch_id: str) -> None:
    """What a retry that crashed left on disk (its run was already ended FAILED)."""
    shutil.rmtree(challenger_dir(settings, batch_id, attempt=2), ignore_errors=True)


def link_second_attempt(challenger: dict, first: dict) -> dict:
    registry.set_run_tags(
        challenger["run_id"], {"attempt": str(challenger["attempt"]), "retry_of": first["run_id"]}
    )
    return {**challenger, "retry_of": first["run_id"]}


# Evaluate
def evaluation_slices(settings: Settings, batch_id: str) -> dict[str, pd.DataFrame]:
    """The new batch's test split plus every earlier accepted (and unflagged) batch's test split."""
    ids = [*earlier_batches(settings, batch_id), batch_id]
    return {b: load_split(settings, b, "test") for b in ids}


def _label_check(predicted: dict[str, tuple], new_slice: str, champion_version: str | None) -> dict:
    """The champion's confident rows and its confident errors on the new slice vs the earlier ones."""
    from perennial.evaluation.label_check import CONFIDENT, LabelCheck, confident_errors

    new = confident_errors(predicted[new_slice][2], predicted[new_slice][1], CONFIDENT)
    earlier = [confident_errors(p, r, CONFIDENT) for k, (_, r, p) in predicted.items() if k != new_slice]
    return LabelCheck(
        champion_version=champion_version,
        threshold=CONFIDENT,
        new_confident=new[0],
        new_wrong=new[1],
        earlier_confident=sum(c for c, _ in earlier),
        earlier_wrong=sum(w for _, w in earlier),
        new_rows=len(predicted[new_slice][1]),
    ).to_dict()


def evaluate_challenger(settings: Settings, batch_id: str, challenger: dict) -> dict:
    """Score the challenger and the current champion on every slice; log the table to MLflow. Also
    the trivial baselines on the new slice (what a first champion must beat) and the champion's
    confident errors (whether a rejected batch's labels contradict it): see
    perennial.evaluation.label_check."""
    from perennial.evaluation.baselines import trivial_baseline
    from perennial.evaluation.scoring import metrics_table, predict_slices_with_probabilities, score_slices
    from perennial.evaluation.significance import paired_test
    from perennial.models.inference import load_model_dir, resolve_device

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
        correct_on_new: dict[str, np.ndarray] = {}
        label_check = None
        for role, folder in models.items():
            model, tokenizer = load_model_dir(folder, device)
            with_probabilities = predict_slices_with_probabilities(
                model, tokenizer, slices, label2id, settings
            )
            if role == "champion":  # its confidence too, for the label check
                label_check = _label_check(with_probabilities, batch_id, challenger["champion_version"])
            predicted = {k: (p, r) for k, (p, r, _) in with_probabilities.items()}
            scores[role] = score_slices(predicted)
            predictions, references = predicted[batch_id]
            correct_on_new[role] = predictions == references
            del model
        # Both paired tests (against the majority class, against the champion) run alike.
        test_options: dict[str, Any] = {
            "resamples": settings.bootstrap_resamples,
            "confidence": 1 - settings.significance_level,
            "seed": settings.seed,
        }
        # The trivial predictors a first champion must beat; logged for every cycle, for comparison.
        baseline = trivial_baseline(
            load_split(settings, batch_id, "train")["label"].to_numpy(),
            slices[batch_id]["label"].to_numpy(),
            correct_on_new["challenger"],
            **test_options,
        )
        registry.log_metrics(
            run_id,
            {
                "baseline.majority_accuracy": baseline.majority_accuracy,
                "baseline.majority_macro_f1": baseline.majority_macro_f1,
                "baseline.chance_macro_f1": baseline.chance_macro_f1,
                "baseline.paired.p_value": baseline.paired.p_value,
            },
        )
        paired = None
        if "champion" in correct_on_new:
            # Same rows, both models: a paired test says whether the gain is more than noise.
            paired = paired_test(correct_on_new["champion"], correct_on_new["challenger"], **test_options)
            registry.log_metrics(
                run_id,
                {
                    "paired.p_value": paired.p_value,
                    "paired.ci_low": paired.ci_low,
                    "paired.ci_high": paired.ci_high,
                }
                if paired.ci_low is not None and paired.ci_high is not None
                else {"paired.p_value": paired.p_value},
            )
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
    fault_point("evaluated", settings.root)
    return {
        "batch_id": batch_id,
        "new_slice": batch_id,
        "challenger": scores["challenger"],
        "champion": scores.get("champion"),
        "paired": asdict(paired) if paired else None,
        "baseline": baseline.to_dict(),
        "label_check": label_check,
    }


# Gate
def gate(settings: Settings, scores: dict, judge_labels: bool = True) -> dict:
    """The gate's decision and reasons. A rejected batch whose labels contradict the champion far
    beyond its usual error, and which the challenger could not fit beside the old slices, is flagged
    (`label_flag`: the reason and numbers; promote records it). `judge_labels=False` for a retry:
    its labels were judged on the first attempt."""
    from perennial.evaluation.baselines import Baseline
    from perennial.evaluation.champion_history import best_champion_accuracy
    from perennial.evaluation.label_check import LabelCheck, challenger_fit, check_labels
    from perennial.evaluation.significance import PairedTest

    names = slice_names(settings)
    decision = decide(
        scores["challenger"],
        scores["champion"],
        scores["new_slice"],
        settings,
        names=names,
        paired=PairedTest(**scores["paired"]) if scores.get("paired") else None,
        best_before=best_champion_accuracy(ledger_for(settings).cycles()),
        baseline=Baseline.from_dict(scores["baseline"]) if scores.get("baseline") else None,
    )
    flag = None
    if judge_labels and not decision.promote and scores.get("champion") and scores.get("label_check"):
        check = LabelCheck(**scores["label_check"])
        fit = challenger_fit(scores["challenger"], scores["champion"], scores["new_slice"])
        new_name = names.get(scores["new_slice"], scores["new_slice"])
        verdict = check_labels(check, new_name, settings, fit, names)
        if verdict.flag:
            flag = {"reason": verdict.flag, **check.to_dict(), "p_value": check.p_value}
            decision = Decision(False, [*decision.reasons, verdict.flag], (*decision.failed_on, LABELS))
        elif verdict.note:  # a reason, not a failure: the retry may still rescue the batch
            decision = Decision(False, [*decision.reasons, verdict.note], decision.failed_on)
    return {
        "promote": decision.promote,
        "reasons": decision.reasons,
        "label_flag": flag,
        "failed_on": list(decision.failed_on),
    }


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
        fault_point("registered", settings.root)
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
            move_champion(settings, version, PROMOTION, verdict.summary())
            fault_point("champion-moved", settings.root)
            registry.delete_alias(settings, "challenger")
        registry.set_run_tags(run_id, {"decision": verdict.label, "model_version": version})
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    _keep_local_copy(settings, Path(challenger["model_dir"]), version)
    _record_label_flag(ledger, batch_id, verdict, decision)
    # The decision is final: describe this version. Never raises; a missing card is only a warning.
    publish_model_card(
        settings, run_id, batch_id, version, challenger, scores, verdict.label, verdict.reasons
    )
    ledger.record_decision(
        batch_id,
        PROMOTED if verdict.promote else REJECTED_MODEL,
        run_id,
        version,
        challenger["champion_version"],
        verdict.label,
        verdict.reasons,
        verdict.summary(),
        {
            "challenger": scores["challenger"],
            "champion": scores["champion"],
            "paired": scores.get("paired"),
            "baseline": scores.get("baseline"),
        },
    )
    fault_point("recorded", settings.root)
    log_continual_metrics(settings, run_id)
    registry.end_run(run_id, "FINISHED")
    _apply_retention(settings)
    champ = registry.champion(settings)
    return {
        "batch_id": batch_id,
        "version": version,
        "decision": verdict.label,
        "reasons": verdict.reasons,
        "champion_version": champ.version if champ else None,
    }


def _record_label_flag(ledger: Ledger, batch_id: str, verdict: Decision, decision: dict) -> None:
    """Flag (or clear) the batch before its decision is recorded: a stop in between leaves it TRAINED,
    out of replay either way, and the retried cycle sets the flag again."""
    flag = decision.get("label_flag") if not verdict.promote else None
    if flag:
        details = {k: v for k, v in flag.items() if k != "reason"}
        ledger.set_label_flag(batch_id, flag["reason"], details)
    else:
        ledger.set_label_flag(batch_id, None)


def _apply_retention(settings: Settings) -> None:
    """Delete older rejected challengers' model files. Housekeeping after the decision is recorded:
    a failure is a warning, and the next cycle tries again."""
    from perennial.registry.retention import apply_retention

    try:
        apply_retention(settings)
    except Exception as error:  # noqa: BLE001 - never fails a decided cycle
        log.warning("retention skipped this cycle: %s", error)


def _keep_local_copy(settings: Settings, model_dir: Path, version: str) -> None:
    # The trained folder is exactly what was registered: keep it as the local cache of that version.
    local = settings.models_dir / f"v{version}"
    shutil.rmtree(local, ignore_errors=True)
    model_dir.rename(local)


def log_continual_metrics(settings: Settings, run_id: str) -> None:
    """Log the matrix (JSON and heatmap), accuracy over versions (line plot) and the
    continual-learning summary to the cycle's run."""
    from perennial.evaluation.champion_history import metrics_over_versions
    from perennial.reporting.plots import plot_accuracy_matrix, plot_metrics_over_versions

    matrix, summary = continual_metrics(settings)
    if matrix.empty:
        return
    registry.log_dict_artifact(
        run_id,
        {"index": list(matrix.index), "columns": list(matrix.columns), "values": matrix.values.tolist()},
        "accuracy_matrix.json",
    )
    png = plot_accuracy_matrix(
        matrix, settings.reports_dir / "accuracy_matrix.png", "Champion accuracy per slice"
    )
    registry.log_file_artifact(run_id, png)
    versions = metrics_over_versions(ledger_for(settings).cycles(), slice_names(settings))
    if not versions.empty:
        line = plot_metrics_over_versions(
            versions,
            settings.reports_dir / "metrics_over_versions.png",
            "Accuracy of every version per slice",
        )
        registry.log_file_artifact(run_id, line)
    if summary:
        values = {
            k: summary[k]
            for k in ("avg_acc", "bwt", "avg_forgetting", "max_forgetting", "max_forgetting_any_cycle")
            if summary[k] is not None
        }
        registry.log_metrics(run_id, {f"cl.{k}": v for k, v in values.items()})
