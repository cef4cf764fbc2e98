"""What `perennial status` shows: the champion, its metrics, every batch and every decision."""

from __future__ import annotations

import math

from perennial.core.settings import Settings
from perennial.evaluation.champion_history import continual_metrics
from perennial.learning.strategy import Strategy
from perennial.workspace import ledger_for, ordered_labels, slice_names


def gather_status(settings: Settings) -> dict:
    from dataclasses import asdict

    from perennial.registry import mlflow_registry as registry
    from perennial.registry.champion import alias_history

    ledger = ledger_for(settings)
    names = slice_names(settings)
    moves = alias_history(settings)  # reconciled with the registry first, so it cannot disagree
    champ = registry.champion(settings)
    cycles = ledger.cycles()
    champion_metrics = {}
    if champ is not None:
        for c in reversed(cycles):
            if c.challenger_version == champ.version:
                champion_metrics = {names.get(k, k): v for k, v in c.metrics["challenger"].items()}
                break
    matrix, summary = continual_metrics(settings)
    checks = ledger.drift_checks()
    flags = ledger.label_flags()
    return {
        "workspace": str(settings.root),
        "strategy": Strategy.from_settings(settings).name,
        "registered_model": settings.registered_model_name,
        "champion": {"version": champ.version, "run_id": champ.run_id} if champ else None,
        "champion_metrics": champion_metrics,
        "champion_history": [asdict(m) for m in moves],
        "label_set": ordered_labels(ledger.label_set(), settings.labels),
        # when each label joined the set (the first batch's labels included), in model order
        "label_history": [asdict(arrival) for arrival in ledger.label_history()],
        "batches": [asdict(b) for b in ledger.batches()],
        # batch id -> why its labels were left out of replay and evaluation
        "label_flags": {batch_id: flag.reason for batch_id, flag in flags.items()},
        "cycles": [
            {
                "batch": names.get(c.batch_id, c.batch_id),
                "version": c.challenger_version,
                "compared_with": c.champion_version,
                "decision": c.decision,
                "reasons": c.reasons,
                "finished_at": c.finished_at,
            }
            for c in cycles
        ],
        "continual": {
            "matrix": {
                "index": list(matrix.index),
                "columns": list(matrix.columns),
                "values": [[None if math.isnan(v) else v for v in row] for row in matrix.values.tolist()],
            },
            "summary": summary,
        },
        "drift": asdict(checks[-1]) if checks else None,
    }


def _labels_line(status: dict) -> str:
    """The label set in model order; a label that arrived after the first batch says since when."""
    history = status.get("label_history") or []
    first = history[0]["batch_id"] if history else None
    since = {
        a["label"]: f" (since {a['batch_id'][:8]}, {a['rows'] or 0} rows)"
        for a in history
        if a["batch_id"] is not None and a["batch_id"] != first
    }
    return ", ".join(f"{label}{since.get(label, '')}" for label in status["label_set"])


def format_status(status: dict) -> str:
    lines = [
        f"workspace: {status['workspace']}",
        f"model:     {status['registered_model']}",
        f"strategy:  {status['strategy']}",
    ]
    champ = status["champion"]
    lines.append(
        f"champion:  v{champ['version']} (run {champ['run_id']})" if champ else "champion:  none yet"
    )
    if status.get("champion_history"):
        from perennial.data.ledger import UNRECORDED, AliasMove
        from perennial.registry.champion import format_move

        last = AliasMove(**status["champion_history"][-1])
        lines.append(f"last move: {format_move(last)}")
        if last.kind == UNRECORDED:
            lines.append("           (the champion moved with no record: see `perennial status --history`)")
    if status["label_set"]:
        lines.append(f"labels:    {_labels_line(status)}")
    if status["champion_metrics"]:
        lines.append("\nchampion metrics per test slice:")
        for name, m in status["champion_metrics"].items():
            lines.append(
                f"  {name:<24} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  n={m['n']}"
            )
    lines.append(f"\nbatches ({len(status['batches'])}):")
    for b in status["batches"]:
        version = f"v{b['model_version']}" if b["model_version"] else "-"
        lines.append(
            f"  {b['batch_id']}  {b['source']:<24} {b['rows'] or 0:>6} rows  {b['status']:<14} {version:<5}"
        )
        if b["reason"]:
            lines.append(f"      {b['reason']}")
        flag = status.get("label_flags", {}).get(b["batch_id"])
        if flag:
            lines.append(f"      FLAGGED: {flag}")
    lines.extend(_format_continual(status["continual"]))
    lines.extend(_format_drift(status.get("drift")))
    if status["cycles"]:
        lines.append("\ndecisions:")
        for c in status["cycles"]:
            against = f"v{c['compared_with']}" if c["compared_with"] else "no champion"
            lines.append(f"  v{c['version']} on {c['batch']} vs {against}: {c['decision']}")
    return "\n".join(lines)


def _format_continual(continual: dict) -> list[str]:
    import pandas as pd

    from perennial.evaluation.continual_metrics import ContinualMetrics, format_summary
    from perennial.evaluation.scoring import format_matrix

    data = continual["matrix"]
    if not data["values"]:
        return []
    matrix = pd.DataFrame(data["values"], index=data["index"], columns=data["columns"], dtype=float)
    lines = [
        "\naccuracy matrix (rows: champion after each cycle; columns: test slices):",
        format_matrix(matrix),
    ]
    if continual["summary"]:
        lines.append(format_summary(ContinualMetrics(**continual["summary"])))
    return lines


def _format_drift(check: dict | None) -> list[str]:
    if check is None:
        return ["\ndrift:     never checked (`perennial drift`, or the drift-monitor deployment)"]
    line = f"\ndrift:     {check['message']} (checked {check['checked_at']}"
    line += f" against v{check['champion_version']})" if check["champion_version"] else ")"
    lines = [line]
    if check["action"] == "labels-needed":
        lines.append("           LABELS NEEDED: label recent inputs and drop them in the inbox to retrain")
    if check["report_path"]:
        lines.append(f"           report: {check['report_path']}")
    return lines
