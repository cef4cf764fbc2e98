"""The gate's decision on the scores, the label check on a rejected batch, and promotion:
registering the version, moving the champion alias, recording the decision.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from perennial.core.faults import fault_point
from perennial.core.settings import Settings
from perennial.data.batch_store import split_path
from perennial.data.ledger import (
    PROMOTED,
    PROMOTION,
    REJECTED_MODEL,
    Ledger,
)
from perennial.evaluation.champion_history import continual_metrics
from perennial.evaluation.contracts import Challenger, Outcome, Scores
from perennial.evaluation.gate import LABELS, Decision, decide
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import move_champion
from perennial.reporting.hub_card import hub_model_card
from perennial.reporting.model_card import publish_model_card
from perennial.workspace import (
    labels_for,
    ledger_for,
    slice_names,
)

log = logging.getLogger(__name__)


# Gate
def gate(settings: Settings, scores: Scores, judge_labels: bool = True) -> Decision:
    """The gate's decision and reasons. A rejected batch whose labels contradict the champion far
    beyond its usual error, and which the challenger could not fit beside the old slices, is flagged
    (`label_flag`: the reason and numbers; promote records it). `judge_labels=False` for a retry:
    its labels were judged on the first attempt."""
    from perennial.evaluation.champion_history import best_champion_accuracy
    from perennial.evaluation.label_check import challenger_fit, check_labels

    names = slice_names(settings)
    decision = decide(
        scores.challenger,
        scores.champion,
        scores.new_slice,
        settings.gate,
        names=names,
        paired=scores.paired,
        best_before=best_champion_accuracy(ledger_for(settings).cycles()),
        baseline=scores.baseline,
        new_labels=scores.new_labels,
    )
    check = scores.label_check
    if judge_labels and not decision.promote and scores.champion and check:
        fit = challenger_fit(scores.challenger, scores.champion, scores.new_slice)
        new_name = names.get(scores.new_slice, scores.new_slice)
        verdict = check_labels(check, new_name, settings.gate, fit, names)
        if verdict.flag:
            flag = {"reason": verdict.flag, **check.to_dict(), "p_value": check.p_value}
            decision = Decision(
                False, [*decision.reasons, verdict.flag], (*decision.failed_on, LABELS), label_flag=flag
            )
        elif verdict.note:  # a reason, not a failure: the retry may still rescue the batch
            decision = decision.with_reasons(after=[verdict.note])
    return decision


def _example_texts(settings: Settings, batch_id: str, count: int = 2) -> list[str]:
    """The first texts of the batch's validation rows: the registered model's input example."""
    import pandas as pd

    try:
        texts = pd.read_parquet(split_path(settings, batch_id, "val"), columns=["text"])["text"]
    except (OSError, ValueError, KeyError):  # an example is a courtesy: no example, no failure
        return []
    return [str(text) for text in texts.head(count)]


# Promote
def promote(
    settings: Settings, batch_id: str, challenger: Challenger, scores: Scores, decision: Decision
) -> Outcome:
    """Register the challenger; move `champion` only if the gate said so and the version loads."""
    ledger = ledger_for(settings)
    verdict = Decision(decision.promote, decision.reasons)
    run_id = challenger.run_id
    compared_with = challenger.champion_version
    tags = {
        "batch_id": batch_id,
        "lineage": json.dumps(list(challenger.lineage)),
        "compared_with": f"v{compared_with}" if compared_with else "none",
        "decision": verdict.label,
        "reasons": " | ".join(verdict.reasons)[:4900],
        "new_slice_accuracy": f"{scores.challenger[batch_id]['accuracy']:.4f}",
    }
    try:
        names = slice_names(settings)
        card = hub_model_card(
            settings.registered_model_name,
            settings.base_model,
            scores.labels or labels_for(settings),
            {names.get(slice_id, slice_id): values for slice_id, values in scores.challenger.items()},
        )
        version = registry.register_model(
            settings, run_id, Path(challenger.model_dir), tags, card, _example_texts(settings, batch_id)
        )
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
    _keep_local_copy(settings, Path(challenger.model_dir), version)
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
        compared_with,
        verdict.label,
        verdict.reasons,
        verdict.summary(),
        scores.for_ledger(),
    )
    fault_point("recorded", settings.root)
    log_continual_metrics(settings, run_id)
    registry.end_run(run_id, "FINISHED")
    _apply_retention(settings)
    champ = registry.champion(settings)
    return Outcome(
        batch_id=batch_id,
        version=version,
        decision=verdict.label,
        reasons=tuple(verdict.reasons),
        champion_version=champ.version if champ else None,
        compared_with=compared_with,
    )


def _record_label_flag(ledger: Ledger, batch_id: str, verdict: Decision, decision: Decision) -> None:
    """Flag (or clear) the batch before its decision is recorded: a stop in between leaves it TRAINED,
    out of replay either way, and the retried cycle sets the flag again."""
    flag = decision.label_flag if not verdict.promote else None
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
