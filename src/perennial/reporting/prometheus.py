"""The workspace's state as Prometheus metrics: for the monitoring system a team already runs.

Built from `perennial status`'s facts (perennial.reporting.status.gather_status) with
prometheus_client, in its text exposition format: printed by `perennial metrics`, or written
atomically to a file for node_exporter's textfile collector (`--textfile`), so no server of ours has
to stay up. Every series carries the workspace's path as a label, so several workspaces can share
one collector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def metrics_registry(status: Mapping[str, Any]) -> Any:
    """A prometheus_client CollectorRegistry holding the workspace's gauges."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    workspace = str(status["workspace"])

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ("workspace", *labels), registry=registry)

    champion = status.get("champion") or {}
    version = gauge("perennial_champion_version", "The version the champion alias points at (0: none).")
    version.labels(workspace).set(float(champion.get("version") or 0))
    accuracy = gauge("perennial_champion_accuracy", "The champion's accuracy on each test slice.", ("slice",))
    macro_f1 = gauge("perennial_champion_macro_f1", "The champion's macro-F1 on each test slice.", ("slice",))
    for name, scores in (status.get("champion_metrics") or {}).items():
        if scores.get("accuracy") is not None:
            accuracy.labels(workspace, name).set(float(scores["accuracy"]))
        if scores.get("macro_f1") is not None:
            macro_f1.labels(workspace, name).set(float(scores["macro_f1"]))

    batches = gauge(
        "perennial_batches", "Batches in the ledger by status (pending: waiting for a cycle).", ("status",)
    )
    for state, count in Counter(str(b["status"]) for b in status.get("batches", [])).items():
        batches.labels(workspace, state).set(count)

    cycles = status.get("cycles") or []
    if cycles:
        last = cycles[-1]
        finished = _seconds(last.get("finished_at"))
        if finished is not None:
            gauge(
                "perennial_last_cycle_timestamp_seconds", "When the last cycle was decided (Unix time)."
            ).labels(workspace).set(finished)
        gauge(
            "perennial_last_cycle_promoted", "1 when the last cycle promoted its challenger, else 0."
        ).labels(workspace).set(1.0 if last.get("decision") == "promote" else 0.0)

    drift = status.get("drift")
    if drift:
        checked = _seconds(drift.get("checked_at"))
        if checked is not None:
            gauge("perennial_drift_checked_timestamp_seconds", "When drift was last checked.").labels(
                workspace
            ).set(checked)
        gauge("perennial_drift_detected", "1 when the last drift check found drift, else 0.").labels(
            workspace
        ).set(1.0 if drift.get("drifted") else 0.0)
        if drift.get("score") is not None:
            gauge("perennial_drift_score", "The last drift check's statistic.").labels(workspace).set(
                float(drift["score"])
            )
    return registry


def metrics_text(status: Mapping[str, Any]) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics_registry(status)).decode("utf-8")
