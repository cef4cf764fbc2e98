"""The drift monitor's work: gather recent inputs and the champion's reference, test, decide, record.

Recent inputs are unlabelled texts in `monitor/`: files a serving system drops there (CSV, JSONL or
Parquet with a `text` column, or plain text, one per line) and the log `perennial predict --log`
appends to. The reference is a held-out sample (validation and test splits) of the batches the
champion was trained on: held out, so the champion's confidence on it is not inflated by fitting.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perennial.core.settings import DriftSettings, InferenceSettings, Settings
from perennial.data.ledger import PROMOTED, DriftCheck, Ledger
from perennial.workspace import ledger_for

if TYPE_CHECKING:
    from perennial.monitoring.drift_tests import DriftReport

MONITOR_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".txt")
PREDICTION_LOG_PREFIX = "predictions-"


# What the monitor does with a check's outcome.
class DriftAction(StrEnum):
    NONE = "none"  # no drift
    RETRAIN = "retrain"  # drift, and labelled batches are waiting: a training run is triggered
    RETRAIN_NEEDED = "retrain-needed"  # the same, but no served deployment to trigger: run it yourself
    COOLDOWN = "cooldown"  # drift and waiting batches, but a drift retrain ran within the cooldown
    LABELS_NEEDED = "labels-needed"  # drift, and nothing labelled to train on
    SKIPPED = "skipped"  # no champion, or too few recent texts to test


NONE, RETRAIN, RETRAIN_NEEDED, COOLDOWN, LABELS_NEEDED, SKIPPED = tuple(DriftAction)


@dataclass(frozen=True)
class MonitoredTexts:
    texts: list[str]
    files: list[str]
    unreadable: list[str]  # one line per file that could not be read, with the reason


@dataclass(frozen=True)
class DriftSummary:
    """One drift check: what was compared, what the tests said, and what to do next.

    `action` is a DriftAction and `message` says why in one line. Saved as JSON beside its plot
    (`to_json`), printed by `perennial drift` and emitted in the drift event's payload."""

    checked_at: str
    champion_version: str | None
    current_rows: int
    reference_rows: int
    monitored_files: list[str]
    unreadable_files: list[str]
    action: DriftAction = SKIPPED
    message: str = ""
    drifted: bool = False
    score: float | None = None
    triggered_by: list[str] = field(default_factory=list)
    pending_batches: int | None = None
    report: DriftReport | None = None
    report_path: str | None = None
    plot_path: str | None = None
    mlflow_run_id: str | None = None

    def to_json(self) -> dict:
        """Every field, the tests' report included, as JSON-safe values."""
        values = asdict(self)
        values["action"] = str(self.action)
        values["report"] = self.report.to_dict() if self.report is not None else None
        return values


def read_monitor_file(path: Path) -> list[str]:
    """The texts in one monitored file, in file order."""
    if path.suffix.lower() == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from perennial.data.ingest import read_batch  # the same readers as labelled batches

    frame = read_batch(path)
    if "text" not in frame.columns:
        raise ValueError(f"no `text` column (columns: {', '.join(map(str, frame.columns))})")
    return [t for t in frame["text"].dropna().astype(str) if t.strip()]


def recent_texts(folder: Path, drift: DriftSettings) -> MonitoredTexts:
    """Up to `drift_window_rows` most recent texts monitored in `folder`: newest files first, a file's
    last lines. Files untouched for `drift_max_age_hours` are left out, so old traffic does not alarm
    forever."""
    oldest = datetime.now(UTC).timestamp() - 3600 * drift.drift_max_age_hours
    candidates = (
        [p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in MONITOR_SUFFIXES]
        if folder.is_dir()
        else []
    )
    files = sorted(
        (p for p in candidates if p.stat().st_mtime >= oldest),
        key=lambda p: (p.stat().st_mtime, p.name),
        reverse=True,
    )
    texts: list[str] = []
    used: list[str] = []
    unreadable: list[str] = []
    for path in files:
        if len(texts) >= drift.drift_window_rows:
            break
        try:
            found = read_monitor_file(path)
        except Exception as error:  # one bad file must not stop monitoring
            unreadable.append(f"{path.name}: {' '.join(str(error).split())}")
            continue
        texts = found[-(drift.drift_window_rows - len(texts)) :] + texts
        used.append(path.name)
    return MonitoredTexts(texts, used, unreadable)


def reference_texts(settings: Settings, ledger: Ledger, champion_version: str) -> list[str]:
    """A seeded sample of held-out rows from every batch promoted up to the champion, balanced by batch."""
    from perennial.data.batch_store import split_path

    batches = [
        b.batch_id
        for b in ledger.batches((PROMOTED,))
        if b.model_version is not None and int(b.model_version) <= int(champion_version)
    ]
    if not batches:
        return []
    per_batch = -(-settings.drift_reference_rows // len(batches))  # ceiling division
    rng = np.random.default_rng(settings.seed)
    texts: list[str] = []
    for batch_id in batches:
        parts = [split_path(settings, batch_id, s) for s in ("val", "test")]
        held_out = pd.concat([pd.read_parquet(p) for p in parts if p.is_file()], ignore_index=True)
        chosen = rng.permutation(len(held_out))[:per_batch]
        texts += held_out["text"].iloc[np.sort(chosen)].astype(str).tolist()
    return texts[: settings.drift_reference_rows]


def pending_labelled_batches(settings: Settings, ledger: Ledger) -> int:
    """Labelled data waiting to train: batches in the ledger and files still in the inbox."""
    from perennial.data.inbox import inbox_files

    return len(ledger.pending()) + len(inbox_files(settings))


def last_retrain(checks: list[DriftCheck]) -> datetime | None:
    times = [datetime.fromisoformat(c.checked_at) for c in checks if c.action == RETRAIN]
    return max(times) if times else None


def decide_action(
    drifted: bool,
    pending: int,
    last_retrain_at: datetime | None,
    now: datetime,
    cooldown: timedelta,
    can_trigger: bool = True,
) -> tuple[str, str]:
    """What to do about a check, and the one-line message saying so.

    `can_trigger`: a served training deployment will receive the event. Without one, nothing would
    start, so the check says to run training by hand and does not start the cooldown."""
    if not drifted:
        return NONE, "no drift detected"
    if pending == 0:
        return LABELS_NEEDED, "drift detected, no labelled batch is waiting: labels are needed to retrain"
    if not can_trigger:
        return (
            RETRAIN_NEEDED,
            f"drift detected, {pending} labelled batch(es) waiting: run `perennial run` "
            "(no served training deployment to start one)",
        )
    if last_retrain_at is not None and now - last_retrain_at < cooldown:
        until = (last_retrain_at + cooldown).isoformat(timespec="minutes")
        return COOLDOWN, f"drift detected, {pending} batch(es) waiting; retrain cooldown until {until}"
    return RETRAIN, f"drift detected, {pending} labelled batch(es) waiting: a training run is triggered"


def log_predictions(settings: Settings, rows: list[dict], version: str) -> Path:
    """Append scored texts to today's prediction log in `monitor/` (one JSON line each)."""
    stamp = datetime.now(UTC)
    path = settings.monitor_dir / f"{PREDICTION_LOG_PREFIX}{stamp:%Y-%m-%d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({**row, "model_version": version, "logged_at": stamp.isoformat(timespec="seconds")}) + "\n"
        for row in rows
    )
    # One write on an O_APPEND descriptor: concurrent loggers never interleave within a line.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, lines.encode("utf-8"))
    finally:
        os.close(fd)
    return path


def check_drift(settings: Settings, now: datetime | None = None, can_trigger: bool = False) -> DriftSummary:
    """Run one drift check against the champion; save, log and record it; say what to do next.

    `can_trigger`: see decide_action."""
    from perennial.registry import mlflow_registry as registry
    from perennial.registry.champion import champion_model_dir

    now = now or datetime.now(UTC)
    drift = settings.drift
    ledger = ledger_for(settings)
    champ = registry.champion(settings)
    recent = recent_texts(settings.monitor_dir, drift)
    reference = reference_texts(settings, ledger, champ.version) if champ else []
    summary = DriftSummary(
        checked_at=now.isoformat(timespec="milliseconds"),
        champion_version=champ.version if champ else None,
        current_rows=len(recent.texts),
        reference_rows=len(reference),
        monitored_files=recent.files,
        unreadable_files=recent.unreadable,
    )
    skip = _skip_reason(drift, settings.monitor_dir, champ is not None, len(recent.texts), len(reference))
    if skip:
        ledger.record_drift_check(
            summary.champion_version, False, SKIPPED, skip, None, None, checked_at=summary.checked_at
        )
        return replace(summary, action=SKIPPED, message=skip)
    assert champ is not None  # _skip_reason skips a check with no champion

    model_dir = champion_model_dir(settings, champ.version)
    report, ref_samples, cur_samples = _run_tests(
        model_dir, drift, settings.inference, reference, recent.texts
    )
    pending = pending_labelled_batches(settings, ledger)
    action, message = decide_action(
        report.drifted,
        pending,
        last_retrain(ledger.drift_checks()),
        now,
        timedelta(hours=drift.drift_cooldown_hours),
        can_trigger,
    )
    summary = replace(
        summary,
        drifted=report.drifted,
        score=report.score,
        triggered_by=report.triggered_by(),
        pending_batches=pending,
        action=DriftAction(action),
        message=message,
        report=report,
    )
    summary = _save_report(settings.drift_dir, summary, report, ref_samples, cur_samples, now)
    summary = replace(
        summary,
        mlflow_run_id=registry.log_drift_check(
            settings,
            champ.version,
            _drift_metrics(report),
            [Path(p) for p in (summary.report_path, summary.plot_path) if p],
            {"checked_at": summary.checked_at, "drifted": str(report.drifted).lower(), "action": action},
        ),
    )
    ledger.record_drift_check(
        champ.version,
        report.drifted,
        action,
        message,
        report.score,
        summary.report_path,
        checked_at=summary.checked_at,
    )
    return summary


def _skip_reason(
    drift: DriftSettings, folder: Path, has_champion: bool, current: int, reference: int
) -> str | None:
    if not has_champion:
        return "no champion yet: nothing to compare with"
    if current < drift.drift_min_rows:
        return (
            f"only {current} monitored text(s) in {folder} "
            f"(need drift_min_rows={drift.drift_min_rows}): drop inputs there or use `predict --log`"
        )
    if reference < 2:
        return "the champion's batches have no held-out rows to compare with"
    return None


def _run_tests(
    model_dir: Path,
    drift: DriftSettings,
    inference: InferenceSettings,
    reference: list[str],
    current: list[str],
) -> tuple:
    from perennial.models.inference import load_model_dir, resolve_device
    from perennial.monitoring.drift_tests import detect_drift_with_samples

    model, tokenizer = load_model_dir(model_dir, resolve_device(inference.device))
    return detect_drift_with_samples(
        model,
        tokenizer,
        reference,
        current,
        alpha=drift.drift_alpha,
        permutations=drift.drift_permutations,
        seed=drift.seed,
        batch_size=inference.eval_batch_size,
        max_length=inference.max_length,
    )


def _drift_metrics(report) -> dict[str, float]:
    metrics = {"drift.score": report.score, "drift.drifted": float(report.drifted)}
    for test in report.tests:
        metrics[f"drift.{test.name}.statistic"] = test.statistic
        metrics[f"drift.{test.name}.p_value"] = test.p_value
    return metrics


def _save_report(
    folder: Path, summary: DriftSummary, report, ref_samples, cur_samples, now: datetime
) -> DriftSummary:
    """Write the check's JSON and plot into `folder`; the summary, now knowing their paths."""
    from perennial.monitoring.drift_plot import plot_drift_report

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"drift-{now:%Y%m%dT%H%M%SZ}-v{summary.champion_version}"
    json_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".png")
    summary = replace(summary, report_path=str(json_path), plot_path=str(png_path))
    json_path.write_text(json.dumps(summary.to_json(), indent=2))
    title = f"Drift check against champion v{summary.champion_version}"
    plot_drift_report(report, ref_samples, cur_samples, png_path, title)
    return summary


def drift_markdown(summary: DriftSummary) -> str:
    """The check as markdown, for the Prefect UI."""
    lines = [
        f"# Drift check: {summary.action}",
        "",
        summary.message,
        "",
        f"- champion: v{summary.champion_version}",
        f"- monitored texts: {summary.current_rows}; reference rows: {summary.reference_rows}",
    ]
    if summary.report_path:
        lines.append(f"- report: `{summary.report_path}`, plot: `{summary.plot_path}`")
    report = summary.report
    if report is not None:
        lines += [
            "",
            f"Alarm when a p-value is below {report.threshold:.4g} "
            f"(family-wise level {report.alpha} over {len(report.tests)} tests).",
            "",
            "| test | statistic | p-value | alarm |",
            "|---|---:|---:|:---:|",
        ]
        for test in report.tests:
            alarm = "yes" if test.p_value < report.threshold else ""
            lines.append(f"| {test.name} | {test.statistic:.4g} | {test.p_value:.3g} | {alarm} |")
    for line in summary.unreadable_files:
        lines.append(f"- unreadable: {line}")
    return "\n".join(lines)


def format_drift_summary(summary: DriftSummary) -> str:
    """The check as a few lines of text, for the CLI and the demo."""
    lines = [f"{summary.action}: {summary.message}"]
    for test in summary.report.tests if summary.report is not None else []:
        lines.append(f"  {test.name:<16} statistic {test.statistic:8.4f}  p-value {test.p_value:.3g}")
    if summary.plot_path:
        lines.append(f"report: {summary.report_path}\nplot:   {summary.plot_path}")
    return "\n".join(lines)
