"""Intake: a batch file from the inbox into the ledger and data store, its validation
(Great Expectations) and its split; and the recovery of a cycle stopped part-way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from perennial.core.faults import fault_point
from perennial.core.messages import first_line
from perennial.core.settings import Settings
from perennial.data.batch_files import safe_name
from perennial.data.batch_store import rows_path, split_batch
from perennial.data.inbox import ready_inbox_files
from perennial.data.ingest import SKIPPED, IngestResult, ingest_file
from perennial.data.ledger import (
    QUARANTINED,
    RESTORE,
    TRAINED,
    Ledger,
)
from perennial.data.new_labels import NewLabels, check_new_labels, label_counts
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import move_champion
from perennial.workspace import (
    ledger_for,
    ordered_labels,
    validation_path,
)

log = logging.getLogger(__name__)


# Ingest
def ingest_inbox(settings: Settings) -> list[IngestResult]:
    """Ingest every file in the inbox that has stopped changing, oldest first. One file that fails
    in a way ingest did not foresee is skipped with a one-line message; the others go on."""
    ledger = ledger_for(settings)
    ready = ready_inbox_files(settings)
    results: list[IngestResult] = [_ingest_one(path, settings, ledger) for path in ready]
    for result in results:
        log.info(result.message)
    return results


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
@dataclass(frozen=True)
class BatchValidation:
    """Whether a batch passed validation; `reason` says why not in one line ("" when it passed).
    `new_labels`: the labels it added to the label set (the next model's head grows by them)."""

    batch_id: str
    success: bool
    reason: str = ""
    new_labels: tuple[str, ...] = ()


def validate_batch(settings: Settings, batch_id: str) -> BatchValidation:
    """Run the expectation suite. A failing batch is quarantined with a one-line reason (returned,
    not raised: a bad batch is an expected outcome). The first accepted batch fixes the label set;
    a later one may grow it (`new_labels`, see perennial.data.new_labels)."""
    ledger = ledger_for(settings)
    if ledger.batch(batch_id).status == TRAINED:  # an interrupted cycle: already validated
        return BatchValidation(batch_id, True, "validated earlier")
    recorded = ledger.label_set()
    known = ordered_labels(recorded, settings.labels)
    try:
        reason, counts, new = _validation_reason(settings, batch_id, known)
    except Exception as error:  # noqa: BLE001 - a batch that breaks validation must not stay pending
        log.debug("validating batch %s failed", batch_id, exc_info=True)
        reason = f"could not validate: {first_line(error)}; drop the file again to retry"
        counts, new = {}, NewLabels()
    if reason:
        ledger.transition(batch_id, QUARANTINED, reason)
        return BatchValidation(batch_id, False, reason)
    # Record the label set (declared, or fixed by this first batch) so a later change is visible,
    # then what this batch adds to it (declared labels it is the first to bring, or new ones).
    ledger.fix_label_set(known or sorted(counts), batch_id, counts)
    added = ledger.add_labels([*known, *new.labels], batch_id, counts)
    if added and recorded:
        log.info("batch %s: %s", batch_id, NewLabels(added, counts).line(len(recorded)))
    fault_point("validated", settings.root)
    return BatchValidation(batch_id, True, new_labels=tuple(added if recorded else ()))


def _validation_reason(
    settings: Settings, batch_id: str, known: list[str]
) -> tuple[str, dict[str, int], NewLabels]:
    """Why the batch fails ("" when it passes), its rows per label and the new labels it may add;
    the suite's report is saved and published."""
    from perennial.data.validation import validate

    frame = pd.read_parquet(rows_path(settings, batch_id))
    counts = label_counts(frame["label"]) if "label" in frame.columns else {}
    data = settings.data
    # Labels the set lacks: checked here when the set may grow (none declared, a set recorded);
    # with `labels` declared the suite refuses them with the declared set named.
    new = NewLabels()
    if known and data.labels is None:
        new = check_new_labels(counts, known, data.new_labels, data.new_label_min_rows)
        if new.reason:  # the suite would only repeat it, as "outside the label set"
            known = [*known, *new.rows]
    report = validate(frame, settings.validation, [*known, *new.labels] or None)
    report.save(validation_path(settings, batch_id))
    _publish_data_docs(settings, batch_id)
    reason = "; ".join(part for part in (report.reason, new.reason) if part)
    if not reason and not known and len(counts) < 2:
        reason = f"the first batch fixes the label set and needs at least two labels, found {sorted(counts)}"
    return reason, counts, new


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
