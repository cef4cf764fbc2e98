"""`perennial report`: one static HTML page that shows a newcomer the whole story at a glance.

`gather_report` collects JSON-friendly facts from the registry and the ledger; `render_report` turns
them and a few PNGs into a standalone page (inline CSS, images as data URIs, nothing fetched);
`build_report` does both and writes the page atomically. No Prefect here: it reads, never runs a flow.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings
from perennial.data.ledger import PENDING, PROMOTED, QUARANTINED, REJECTED_MODEL, TRAINED
from perennial.evaluation.champion_history import continual_metrics
from perennial.evaluation.gate import PROMOTE, REJECT
from perennial.reporting.data_docs import data_docs_dir
from perennial.reporting.data_docs import page_path as data_docs_page
from perennial.reporting.safe_html import content_security_policy, csp_meta
from perennial.reporting.templating import render
from perennial.workspace import ledger_for, slice_names, validation_path

REPORT_NAME = "index.html"
# Keys of the `images` mapping that render_report embeds.
MATRIX_IMAGE = "accuracy_matrix"
VERSIONS_IMAGE = "metrics_over_versions"
DRIFT_IMAGE = "drift"
log = logging.getLogger(__name__)
SUMMARY_FIELDS = (
    ("avg_acc", "Average accuracy", "mean accuracy of the current champion over every slice seen"),
    ("bwt", "Backward transfer (BWT)", "how later training changed accuracy on earlier slices; < 0: forgot"),
    ("avg_forgetting", "Average forgetting", "mean drop from each slice's best accuracy to today's"),
    ("max_forgetting", "Maximum forgetting", "the largest such drop on any one slice"),
)


def default_path(settings: Settings) -> Path:
    return settings.reports_dir / REPORT_NAME


# --------------------------------------------------------------------------- gathering


def gather_report(settings: Settings, out: Path | None = None) -> dict:
    """Everything the page shows, as plain values. Links are relative to `out` (default
    reports/index.html), so the page and the files it links to can be copied or served together."""
    from perennial.evaluation.champion_history import metrics_over_versions
    from perennial.learning.strategy import Strategy
    from perennial.registry import mlflow_registry as registry
    from perennial.registry.champion import alias_history

    base = Path(out or default_path(settings)).expanduser().resolve().parent
    ledger = ledger_for(settings)
    names = slice_names(settings)
    batches, cycles = ledger.batches(), ledger.cycles()
    champ = registry.champion(settings)
    matrix, summary = continual_metrics(settings)
    return {
        "workspace": str(settings.root),
        "registered_model": settings.registered_model_name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "strategy": Strategy.from_settings(settings).name,
        "champion": champ.version if champ else None,
        "counts": _counts(batches),
        "last_decision": _last_decision(cycles, names),
        "versions": _versions(settings, registry.list_versions(settings), cycles, batches, names, base),
        # Reconciled with the registry first: a move made without a record shows as "unrecorded".
        "champion_history": [asdict(m) for m in alias_history(settings)],
        "matrix": _with_intervals(_frame_values(matrix), _test_rows(cycles, names)),
        "champion_slices": _champion_slices(cycles, names, champ.version if champ else None),
        "continual": summary,
        "over_versions": _over_versions(metrics_over_versions(cycles, names)),
        "drift_checks": [_drift_check(asdict(c), base) for c in ledger.drift_checks()],
        "quarantined": [_quarantined(settings, b, base) for b in batches if b.status == QUARANTINED],
        "batches": [_batch(settings, b, names, base) for b in batches],
        # The label set in model order: when each label arrived, and which version first knew it.
        "labels": _label_history(ledger, names, batches),
        "confusions": _confusions(cycles),
        "data_docs_href": _href(data_docs_dir(settings) / "index.html", base),
    }


def _href(target: Path | str | None, base: Path) -> str | None:
    """A relative URL from the report's folder to an existing file, else None (no dead links)."""
    if not target or not Path(target).is_file():
        return None
    return quote(Path(os.path.relpath(Path(target).resolve(), base)).as_posix())


def _finite(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def _label_history(ledger, names: dict[str, str], batches: Sequence) -> list[dict]:
    versions = {b.batch_id: b.model_version for b in batches if b.status == PROMOTED}
    return [
        {
            "label": a.label,
            "batch": names.get(a.batch_id, a.batch_id) if a.batch_id else None,
            "rows": a.rows,
            "arrived_at": a.arrived_at,
            # The first promoted version trained on its batch (a rejected one taught the champion nothing).
            "version": versions.get(a.batch_id) if a.batch_id else None,
        }
        for a in ledger.label_history()
    ]


def _confusions(cycles: Sequence) -> list[dict]:
    """Each version's confusion matrix over every test slice, newest first (a wider label set than
    a table can show stays in the version's confusion.json artifact)."""
    from perennial.evaluation.scoring import per_class_from_confusion
    from perennial.reporting.model_card import MAX_CONFUSION_LABELS

    result = []
    for cycle in reversed(cycles):
        confusion = (cycle.metrics or {}).get("confusion") or {}
        labels, counts = confusion.get("labels") or [], confusion.get("counts") or []
        if cycle.challenger_version and counts and len(labels) <= MAX_CONFUSION_LABELS:
            result.append(
                {
                    "version": cycle.challenger_version,
                    "labels": labels,
                    "counts": counts,
                    "per_class": per_class_from_confusion(labels, counts),
                }
            )
    return result


def _counts(batches: Sequence) -> dict[str, int]:
    statuses = [b.status for b in batches]
    return {
        "total": len(statuses),
        "promoted": statuses.count(PROMOTED),
        "rejected": statuses.count(REJECTED_MODEL),
        "quarantined": statuses.count(QUARANTINED),
        "pending": statuses.count(PENDING) + statuses.count(TRAINED),  # trained: interrupted cycle
    }


def _last_decision(cycles: Sequence, names: Mapping[str, str]) -> dict | None:
    if not cycles:
        return None
    c = cycles[-1]
    return {
        "version": c.challenger_version,
        "decision": c.decision,
        "slice": names.get(c.batch_id, c.batch_id),
        "compared_with": c.champion_version,
        "finished_at": c.finished_at,
    }


def _versions(
    settings: Settings,
    rows: Sequence[Mapping],
    cycles: Sequence,
    batches: Sequence,
    names: Mapping[str, str],
    base: Path,
) -> list[dict]:
    """One row per registered version, the ledger's cycle first (the decision of record), else the
    version's own tags (a version registered but interrupted before the ledger heard of it)."""
    from perennial.registry import mlflow_registry as registry
    from perennial.reporting.model_card import card_paths

    by_version = {c.challenger_version: c for c in cycles if c.challenger_version}
    by_batch = {b.batch_id: b for b in batches}
    result = []
    for row in rows:
        version, tags = row["version"], row["tags"]
        cycle = by_version.get(version)
        batch_id = cycle.batch_id if cycle else tags.get("batch_id")
        batch = by_batch.get(batch_id)
        result.append(
            {
                "version": version,
                "aliases": list(row["aliases"]),
                "created": row["created"],
                "decision": cycle.decision if cycle else tags.get("decision"),
                "reasons": cycle.reasons if cycle else _tag_reasons(tags),
                "batch_id": batch_id,
                "source": batch.source if batch else None,
                "slice": names.get(batch_id, batch_id) if batch_id else None,
                "new_slice_accuracy": _new_slice_accuracy(cycle, tags),
                "compared_with": cycle.champion_version if cycle else _tag_compared_with(tags),
                "model_card": _href(card_paths(settings, version)[1], base),
                # Pages of MLflow's UI (`perennial ui`, or the tracking server's own).
                "mlflow_version": registry.version_url(settings, version),
                "mlflow_run": _run_url(settings, row.get("run_id")),
            }
        )
    return result


def _run_url(settings: Settings, run_id: str | None) -> str | None:
    """The run's page in MLflow's UI; None for a run MLflow no longer has (`mlflow gc`)."""
    from perennial.registry import mlflow_registry as registry

    if not run_id:
        return None
    try:
        return registry.run_url(settings, run_id)
    except Exception:  # noqa: BLE001 - a missing link is no reason to fail the whole report
        return None


def _tag_reasons(tags: Mapping[str, str]) -> list[str]:
    return [r for r in tags.get("reasons", "").split(" | ") if r]


def _tag_compared_with(tags: Mapping[str, str]) -> str | None:
    value = tags.get("compared_with", "none")
    return None if value == "none" else value.removeprefix("v")


def _new_slice_accuracy(cycle: Any, tags: Mapping[str, str]) -> float | None:
    if cycle is not None:
        scores = (cycle.metrics.get("challenger") or {}).get(cycle.batch_id)
        if scores:
            return float(scores["accuracy"])
    try:
        return float(tags["new_slice_accuracy"])
    except (KeyError, ValueError):
        return None


def _frame_values(frame: Any) -> dict:
    return {
        "index": [str(i) for i in frame.index],
        "columns": [str(c) for c in frame.columns],
        "values": [[_finite(v) for v in row] for row in frame.to_numpy(dtype=float).tolist()],
    }


def _champion_slices(cycles: Sequence, names: Mapping[str, str], champion: str | None) -> list[dict]:
    """The serving champion's scores per test slice as the last cycle that scored it measured them
    (after a rollback, an older one): accuracy with its interval, macro-F1 and the test rows."""
    from perennial.evaluation.intervals import accuracy_interval

    scores = _latest_scores_of(cycles, champion)
    rows = []
    for batch_id, metrics in scores.items():
        accuracy, n = metrics.get("accuracy"), int(metrics.get("n") or 0)
        rows.append(
            {
                "slice": names.get(batch_id, batch_id),
                "accuracy": accuracy,
                "interval": accuracy_interval(accuracy, n) if accuracy is not None and n else None,
                "macro_f1": metrics.get("macro_f1"),
                "n": n or None,
            }
        )
    return rows


def _latest_scores_of(cycles: Sequence, version: str | None) -> Mapping[str, Mapping]:
    """A version's scores per slice from the newest cycle that scored it: as the champion it was
    compared against, or as the challenger that became it."""
    for cycle in reversed(cycles):
        if version is None:
            break
        if cycle.champion_version == version and cycle.metrics.get("champion"):
            return cycle.metrics["champion"]
        if cycle.challenger_version == version and cycle.metrics.get("challenger"):
            return cycle.metrics["challenger"]
    return {}


def _test_rows(cycles: Sequence, names: Mapping[str, str]) -> dict[str, int]:
    """Slice name -> the number of test rows its scores were measured on."""
    rows: dict[str, int] = {}
    for cycle in cycles:
        for scores in cycle.metrics.values():
            for batch_id, metrics in (scores or {}).items():
                if isinstance(metrics, Mapping) and metrics.get("n"):
                    rows[names.get(batch_id, batch_id)] = int(metrics["n"])
    return rows


def _with_intervals(matrix: dict, test_rows: Mapping[str, int]) -> dict:
    """The matrix with each cell's 95% Wilson interval (None where the cell or its row count is
    unknown): a 150-row slice measures accuracy to about ±6 points."""
    from perennial.evaluation.intervals import accuracy_interval

    matrix["test_rows"] = [test_rows.get(column) for column in matrix["columns"]]
    matrix["intervals"] = [
        [
            accuracy_interval(value, n) if value is not None and n else None
            for value, n in zip(row, matrix["test_rows"], strict=True)
        ]
        for row in matrix["values"]
    ]
    return matrix


def _over_versions(frame: Any) -> dict:
    """Accuracy of every version per slice, with its decision (the line plot's data)."""
    if frame.empty:
        return {"index": [], "columns": [], "values": [], "decision": []}
    return {**_frame_values(frame.drop(columns="decision")), "decision": list(frame["decision"])}


def _drift_check(check: dict, base: Path) -> dict:
    # The monitor writes the plot beside the JSON report, with the same name.
    report = check.get("report_path")
    plot = Path(report).with_suffix(".png") if report else None
    return {
        **check,
        "plot_path": str(plot) if plot and plot.is_file() else None,
        "report_href": _href(report, base),
        "plot_href": _href(plot, base),
    }


def _quarantined(settings: Settings, batch: Any, base: Path) -> dict:
    return {
        "data_docs_href": _href(data_docs_page(settings, batch.batch_id), base),
        "batch_id": batch.batch_id,
        "source": batch.source,
        "reason": batch.reason,
        "arrived_at": batch.arrived_at,
        "raw_path": batch.raw_path,
        "raw_href": _href(batch.raw_path, base),
    }


def _batch(settings: Settings, batch: Any, names: Mapping[str, str], base: Path) -> dict:

    return {
        "batch_id": batch.batch_id,
        "source": batch.source,
        "slice": names.get(batch.batch_id, batch.batch_id),
        "status": batch.status,
        "rows": batch.rows,
        "reason": batch.reason,
        "arrived_at": batch.arrived_at,
        "model_version": batch.model_version,
        "validation_href": _href(validation_path(settings, batch.batch_id), base),
        "data_docs_href": _href(data_docs_page(settings, batch.batch_id), base),
    }


# --------------------------------------------------------------------------- rendering

# Nothing may be fetched: images are data URIs and the only style is inline.
_CSP = content_security_policy("img-src data:", "style-src 'unsafe-inline'")
_DECISION_TEXT: dict[str, str] = {PROMOTE: "✓ promote", REJECT: "✗ reject"}


def render_report(data: Mapping, images: Mapping[str, bytes]) -> str:
    """A standalone HTML page from `gather_report`'s dict and PNG bytes keyed by MATRIX_IMAGE,
    VERSIONS_IMAGE and DRIFT_IMAGE (each optional), through templates/report.html.j2. Every value
    from the data is escaped (the template environment autoescapes)."""
    plotted = next((c for c in reversed(data["drift_checks"]) if c.get("plot_path")), None)
    facts = {
        **data,
        "champion_history": data.get("champion_history") or [],
        "continual": data.get("continual"),
    }
    return render(
        "report.html.j2",
        **facts,
        csp_meta=Markup(csp_meta(_CSP)),  # built from our own constants, already escaped
        decision_text=_DECISION_TEXT,
        summary_fields=SUMMARY_FIELDS,
        matrix_png=images.get(MATRIX_IMAGE),
        versions_png=images.get(VERSIONS_IMAGE),
        drift_png=images.get(DRIFT_IMAGE),
        drift_plotted=plotted,
    )


# --------------------------------------------------------------------------- building


def build_report(settings: Settings, out: Path | None = None) -> Path:
    """Gather, plot and write the page (default reports/index.html); returns its absolute path."""
    target = Path(out) if out is not None else default_path(settings)
    target = target.expanduser().resolve()
    if target.is_dir():
        target = target / REPORT_NAME
    _refresh_data_docs(settings)
    data = gather_report(settings, target)
    write_text_atomic(target, render_report(data, _images(data)))
    return target


def _refresh_data_docs(settings: Settings) -> None:
    """Build the Data Docs pages the report links to; a rendering failure must not lose the report."""
    from perennial.reporting.data_docs import build_data_docs

    try:
        build_data_docs(settings)
    except Exception as error:  # noqa: BLE001 - the page is still useful without Data Docs
        log.warning("Data Docs not built: %s", error)


def _images(data: Mapping) -> dict[str, bytes]:
    """The plots as PNG bytes, drawn from the gathered values so the pictures match the tables."""
    import pandas as pd

    from perennial.reporting.plots import plot_accuracy_matrix, plot_metrics_over_versions

    images: dict[str, bytes] = {}
    matrix, over = data["matrix"], data["over_versions"]
    with tempfile.TemporaryDirectory(prefix="perennial-report-") as tmp:
        if matrix["values"]:
            frame = _frame(matrix)
            path = plot_accuracy_matrix(frame, Path(tmp) / "matrix.png", "Champion accuracy per slice")
            images[MATRIX_IMAGE] = path.read_bytes()
        if over["index"]:
            frame = _frame(over)
            frame.insert(0, "decision", pd.Series(over["decision"], index=frame.index))
            path = plot_metrics_over_versions(
                frame, Path(tmp) / "versions.png", "Accuracy of every version per slice"
            )
            images[VERSIONS_IMAGE] = path.read_bytes()
    plotted = next((c for c in reversed(data["drift_checks"]) if c.get("plot_path")), None)
    if plotted:
        images[DRIFT_IMAGE] = Path(plotted["plot_path"]).read_bytes()
    return images


def _frame(values: Mapping) -> Any:
    import pandas as pd

    rows = [[math.nan if v is None else v for v in row] for row in values["values"]]
    return pd.DataFrame(rows, index=values["index"], columns=values["columns"], dtype=float)
