"""`perennial report`: one static HTML page that shows a newcomer the whole story at a glance.

`gather_report` collects JSON-friendly facts from the registry and the ledger; `render_report` turns
them and a few PNGs into a standalone page (inline CSS, images as data URIs, nothing fetched);
`build_report` does both and writes the page atomically. No Prefect here: it reads, never runs a flow.
"""

from __future__ import annotations

import base64
import html
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

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings
from perennial.data.ledger import PENDING, PROMOTED, QUARANTINED, REJECTED_MODEL, TRAINED
from perennial.evaluation.champion_history import continual_metrics
from perennial.evaluation.gate import PROMOTE, REJECT
from perennial.reporting.data_docs import data_docs_dir
from perennial.reporting.data_docs import page_path as data_docs_page
from perennial.reporting.safe_html import content_security_policy, csp_meta, is_relative_url
from perennial.workspace import ledger_for, slice_names, validation_path

REPORT_NAME = "index.html"
# Keys of the `images` mapping that render_report embeds.
MATRIX_IMAGE = "accuracy_matrix"
VERSIONS_IMAGE = "metrics_over_versions"
DRIFT_IMAGE = "drift"
MISSING = "—"
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
        "matrix": _frame_values(matrix),
        "continual": summary,
        "over_versions": _over_versions(metrics_over_versions(cycles, names)),
        "drift_checks": [_drift_check(asdict(c), base) for c in ledger.drift_checks()],
        "quarantined": [_quarantined(settings, b, base) for b in batches if b.status == QUARANTINED],
        "batches": [_batch(settings, b, names, base) for b in batches],
        "data_docs_href": _href(data_docs_dir(settings) / "index.html", base),
    }


def _href(target: Path | str | None, base: Path) -> str | None:
    """A relative URL from the report's folder to an existing file, else None (no dead links)."""
    if not target or not Path(target).is_file():
        return None
    return quote(Path(os.path.relpath(Path(target).resolve(), base)).as_posix())


def _finite(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


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
            }
        )
    return result


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

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 1.5rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { margin: 0 0 .4rem; font-size: 1.6rem; }
h2 { margin-top: 2.2rem; border-bottom: 2px solid #1f2328; padding-bottom: .2rem; }
.card { border: 2px solid #1f2328; border-radius: 8px; padding: 1rem 1.2rem; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: .6rem 0 0; }
.card dt { font-weight: 600; }
.card dd { margin: 0; }
.hint { color: #57606a; font-size: 90%; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 92%; }
th, td { border: 1px solid #8c959f; padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: #eaeef2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; border: 1px solid #1f2328; border-radius: 999px; padding: 0 .5rem;
         margin: 0 .15rem .1rem 0; font-size: 85%; white-space: nowrap; }
.badge.champion { background: #1f2328; color: #fff; font-weight: 700; }
.badge.promote { font-weight: 700; }
.badge.reject, .badge.rejected-model, .badge.quarantined, .badge.unrecorded { border-style: dashed; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; margin: .5rem 0; }
ul.reasons { margin: 0; padding-left: 1.1rem; }
footer { margin-top: 3rem; border-top: 1px solid #8c959f; padding-top: .6rem; font-size: 85%;
         color: #57606a; }
"""
# Nothing may be fetched: images are data URIs and the only style is inline.
_CSP = content_security_policy("img-src data:", "style-src 'unsafe-inline'")
_DECISION_TEXT: dict[str, str] = {PROMOTE: "✓ promote", REJECT: "✗ reject"}


def render_report(data: Mapping, images: Mapping[str, bytes]) -> str:
    """A standalone HTML page from `gather_report`'s dict and PNG bytes keyed by MATRIX_IMAGE,
    VERSIONS_IMAGE and DRIFT_IMAGE (each optional). Every value from the data is escaped."""
    title = f"{data['registered_model']}: perennial report"
    sections = [
        _header(data),
        _versions_section(data),
        _history_section(data),
        _matrix_section(data, images.get(MATRIX_IMAGE)),
        _over_versions_section(data, images.get(VERSIONS_IMAGE)),
        _drift_section(data, images.get(DRIFT_IMAGE)),
        _quarantine_section(data),
        _batches_section(data),
        _footer(data),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"{csp_meta(_CSP)}\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute; None shows as a dash."""
    return MISSING if value is None else html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _when(stamp: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC' (escaped); unparsable text is shown as is."""
    if not stamp:
        return MISSING
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return _e(stamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return _e(f"{moment:%Y-%m-%d %H:%M:%S} UTC")


def _version(version: str | None, none: str = "none yet") -> str:
    return _e(f"v{version}") if version else _e(none)


def _badge(text: str, kind: str = "") -> str:
    css = f"badge {kind}" if kind else "badge"
    return f'<span class="{_e(css)}">{_e(text)}</span>'


def _decision(decision: str | None) -> str:
    if not decision:
        return MISSING
    return _badge(_DECISION_TEXT.get(decision, decision), decision)


def _link(href: str | None, text: str, missing: str = MISSING) -> str:
    """A link to a file beside the report; an href that names a scheme or a host (`javascript:`,
    `//host`) is not one of ours, so only the text is shown."""
    if not href or not is_relative_url(str(href)):
        return _e(missing)
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _image(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{_e(alt)}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; headers are escaped here, cells must be HTML already (built with _e)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _section(title: str, anchor: str, *parts: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _p(text: str, css: str = "") -> str:
    return f'<p class="{css}">{text}</p>' if css else f"<p>{text}</p>"


def _header(data: Mapping) -> str:
    counts, last = data["counts"], data["last_decision"]
    if last:
        against = f"v{last['compared_with']}" if last["compared_with"] else "no champion"
        decided = (
            f"{_version(last['version'])} {_decision(last['decision'])} on slice {_e(last['slice'])}"
            f" (compared with {_e(against)}), {_when(last['finished_at'])}"
        )
    else:
        decided = "no cycle has run yet"
    champion = _version(data["champion"])
    if data["champion"]:
        champion += " " + _badge("champion", "champion")
    batches = (
        f"{counts['promoted']} promoted · {counts['rejected']} rejected · "
        f"{counts['quarantined']} quarantined · {counts['pending']} pending ({counts['total']} in all)"
    )
    facts = [
        ("Registered model", _e(data["registered_model"])),
        ("Champion", champion),
        ("Last decision", decided),
        ("Strategy", _e(data["strategy"])),
        ("Batches", _e(batches)),
    ]
    items = "\n".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<header class="card">\n<h1>{_e(data["registered_model"])}</h1>\n'
        '<p class="hint">Continual-training report: which model serves, how each version was decided, '
        "what it forgot, and whether the incoming data has drifted.</p>\n"
        f"<dl>\n{items}\n</dl>\n</header>"
    )


def _versions_section(data: Mapping) -> str:
    versions = data["versions"]
    if not versions:
        return _section(
            "Versions",
            "versions",
            _p("No versions yet: drop a labelled batch in the inbox and run <code>perennial run</code>."),
        )
    rows = [_version_row(v) for v in versions]
    headers = [
        "Version",
        "Aliases",
        "Trained on",
        "Compared with",
        "Decision",
        "Reasons",
        "New-slice accuracy",
        "Registered",
        "Model card",
    ]
    hint = _p(
        "Every registered version, oldest first. The <b>champion</b> alias marks the version that serves; "
        "a rejected version stays registered for the record.",
        "hint",
    )
    return _section("Versions", "versions", hint, _table(headers, rows, numeric=(6,)))


def _history_section(data: Mapping) -> str:
    moves = data.get("champion_history") or []
    if not moves:
        return _section("Alias history", "alias-history", _p("The champion alias has not moved yet."))
    rows = [
        [
            _when(m["moved_at"]),
            _version(m["from_version"], "none"),
            _version(m["to_version"], "none"),
            _badge(m["kind"] + (" (recovered)" if m["state"] == "recovered" else ""), m["kind"]),
            _e(m["reason"]),
            _e(m["actor"]),
        ]
        for m in moves
    ]
    hint = _p(
        "Every move of the <b>champion</b> alias, oldest first: promotions by the gate, rollbacks with "
        "<code>perennial rollback</code>. <i>unrecorded</i>: the alias was found somewhere no recorded "
        "move put it (moved outside perennial, or a run stopped before recording the move).",
        "hint",
    )
    headers = ["When", "From", "To", "Kind", "Reason", "Who"]
    return _section("Alias history", "alias-history", hint, _table(headers, rows))


def _version_row(v: Mapping) -> list[str]:
    aliases = " ".join(_badge(a, "champion" if a == "champion" else "") for a in v["aliases"]) or MISSING
    trained_on = _e(v["slice"]) + (f' <span class="hint">({_e(v["source"])})</span>' if v["source"] else "")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in v["reasons"])
    return [
        f"<b>{_version(v['version'])}</b>",
        aliases,
        trained_on,
        _version(v["compared_with"], "no champion"),
        _decision(v["decision"]),
        f'<ul class="reasons">{reasons}</ul>' if reasons else MISSING,
        _num(v["new_slice_accuracy"]),
        _when(v["created"]),
        _link(v["model_card"], f"v{v['version']} card", "no card"),
    ]


def _matrix_section(data: Mapping, png: bytes | None) -> str:
    matrix = data["matrix"]
    if not matrix["values"]:
        return _section("Accuracy matrix", "matrix", _p("No cycles yet: nothing to show."))
    hint = _p(
        "Row <i>i</i>: the champion after cycle <i>i</i>; column: a test slice. Reading down a column shows "
        "whether later training kept or forgot that slice. Above the diagonal: the champion of the day on "
        "the next slice before training on it; a dash means not measured.",
        "hint",
    )
    parts = [hint]
    if png:
        parts.append(_image(png, "Heatmap of the champion's accuracy on every test slice after each cycle"))
    rows = [
        [f"<b>{_e(label)}</b>", *(_num(v) for v in values)]
        for label, values in zip(matrix["index"], matrix["values"], strict=True)
    ]
    numeric = range(1, len(matrix["columns"]) + 1)
    parts.append(_table(["champion \\ test slice", *matrix["columns"]], rows, numeric=numeric))
    parts.append(_summary(data.get("continual")))
    return _section("Accuracy matrix", "matrix", *parts)


def _summary(summary: Mapping | None) -> str:
    if not summary:
        return _p("Continual-learning summary: not defined yet (a cycle ended with no champion).", "hint")
    rows = [[_e(label), _num(summary.get(key)), _e(meaning)] for key, label, meaning in SUMMARY_FIELDS]
    return _table(["Continual-learning summary", "value", "meaning"], rows, numeric=(1,))


def _over_versions_section(data: Mapping, png: bytes | None) -> str:
    over = data["over_versions"]
    if not over["index"]:
        return _section("Accuracy over versions", "over-versions", _p("No versions yet."))
    parts = [
        _p(
            "Accuracy of every registered version on each test slice it was scored on, promoted or not.",
            "hint",
        )
    ]
    if png:
        parts.append(
            _image(png, "Line plot of every version's accuracy per test slice, promoted and rejected")
        )
    rows = [
        [f"<b>{_e(label)}</b>", _decision(decision), *(_num(v) for v in values)]
        for label, decision, values in zip(over["index"], over["decision"], over["values"], strict=True)
    ]
    numeric = range(2, len(over["columns"]) + 2)
    parts.append(_table(["Version", "Decision", *over["columns"]], rows, numeric=numeric))
    return _section("Accuracy over versions", "over-versions", *parts)


def _drift_section(data: Mapping, png: bytes | None) -> str:
    checks = data["drift_checks"]
    if not checks:
        return _section(
            "Drift",
            "drift",
            _p("Never checked: run <code>perennial drift</code>, or serve the drift-monitor deployment."),
        )
    latest = checks[-1]
    state = "drift" if latest["drifted"] else "no drift"
    against = _version(latest["champion_version"], "no champion")
    parts = [
        _p(
            f"Latest check ({_when(latest['checked_at'])}, against {against}): <b>{_e(state)}</b>,"
            f" action <b>{_e(latest['action'])}</b>. {_e(latest['message'])}"
        )
    ]
    plotted = next((c for c in reversed(checks) if c.get("plot_path")), None)
    if png and plotted:
        parts.append(_p(f"Plot of the check at {_when(plotted['checked_at'])}:", "hint"))
        parts.append(
            _image(png, "Drift tests and reference-versus-current histograms of the latest plotted check")
        )
    rows = [
        [
            _when(c["checked_at"]),
            _version(c["champion_version"], "no champion"),
            _e("yes" if c["drifted"] else "no"),
            _e(c["action"]),
            _num(c["score"], 4),
            _e(c["message"]),
            " ".join(
                filter(None, [_link(c.get("report_href"), "JSON", ""), _link(c.get("plot_href"), "plot", "")])
            )
            or MISSING,
        ]
        for c in reversed(checks)
    ]
    headers = ["Checked", "Champion", "Drifted", "Action", "Score (MMD²)", "Message", "Report"]
    parts.append(_table(headers, rows, numeric=(4,)))
    return _section("Drift", "drift", *parts)


def _quarantine_section(data: Mapping) -> str:
    quarantined = data["quarantined"]
    if not quarantined:
        return _section("Quarantined batches", "quarantined", _p("None: every batch passed validation."))
    rows = [
        [
            _e(q["source"]),
            f"<code>{_e(q['batch_id'])}</code>",
            _when(q["arrived_at"]),
            _e(q["reason"]),
            _link(q["raw_href"], "raw file", "raw file missing"),
            _link(q["data_docs_href"], "Data Docs", "not validated (rejected at ingest)"),
        ]
        for q in quarantined
    ]
    hint = _p(
        "Batches that failed validation: never trained on. The raw file is kept for inspection.", "hint"
    )
    headers = ["Source", "Batch", "Arrived", "Reason", "Kept file", "Validation"]
    return _section("Quarantined batches", "quarantined", hint, _table(headers, rows))


def _batches_section(data: Mapping) -> str:
    batches = data["batches"]
    if not batches:
        return _section("Batches", "batches", _p("No batches yet."))
    rows = [
        [
            _e(b["source"]),
            f"<code>{_e(b['batch_id'])}</code>",
            _when(b["arrived_at"]),
            _e(b["rows"]),
            _badge(b["status"], b["status"]),
            _version(b["model_version"], MISSING),
            _link(b["data_docs_href"], "Data Docs", "not validated")
            + (f" · {_link(b['validation_href'], 'JSON')}" if b["validation_href"] else ""),
        ]
        for b in batches
    ]
    headers = ["Source", "Batch", "Arrived", "Rows", "Status", "Version", "Validation"]
    docs = data["data_docs_href"]
    hint = _p(
        f"Great Expectations' page for each batch: {_link(docs, 'all Data Docs')}."
        if docs
        else "Data Docs: none built yet.",
        "hint",
    )
    return _section("Batches", "batches", hint, _table(headers, rows, numeric=(3,)))


def _footer(data: Mapping) -> str:
    return (
        f"<footer>Generated {_when(data['generated_at'])} by <code>perennial report</code>"
        f" from the workspace <code>{_e(data['workspace'])}</code>.</footer>"
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
