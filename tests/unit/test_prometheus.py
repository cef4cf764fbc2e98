"""The workspace's state as Prometheus metrics, read back with Prometheus' own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from perennial.reporting.prometheus import metrics_text

STATUS = {
    "workspace": '/srv/ws "a"',  # quotes and spaces in a label value are escaped by the library
    "champion": {"version": "3", "run_id": "r"},
    "champion_metrics": {
        "tweets": {"accuracy": 0.9, "macro_f1": 0.85, "n": 150},
        "movies": {"accuracy": 0.8},
    },
    "batches": [
        {"status": "promoted"},
        {"status": "promoted"},
        {"status": "pending"},
        {"status": "quarantined"},
    ],
    "cycles": [{"decision": "promote", "finished_at": "2026-12-07T10:00:00+00:00"}],
    "drift": {"checked_at": "2026-12-07T11:00:00+00:00", "drifted": True, "score": 0.12},
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_fact_is_a_gauge_labelled_by_workspace() -> None:
    samples = _samples(metrics_text(STATUS))
    ws = ("workspace", '/srv/ws "a"')
    assert samples[("perennial_champion_version", (ws,))] == 3
    assert samples[("perennial_champion_accuracy", (("slice", "tweets"), ws))] == 0.9
    assert samples[("perennial_champion_accuracy", (("slice", "movies"), ws))] == 0.8
    assert ("perennial_champion_macro_f1", (("slice", "movies"), ws)) not in samples  # not known
    assert samples[("perennial_batches", (("status", "promoted"), ws))] == 2
    assert samples[("perennial_batches", (("status", "pending"), ws))] == 1
    assert samples[("perennial_last_cycle_promoted", (ws,))] == 1
    assert samples[("perennial_last_cycle_timestamp_seconds", (ws,))] == 1796637600
    assert samples[("perennial_drift_detected", (ws,))] == 1
    assert samples[("perennial_drift_score", (ws,))] == 0.12


def test_a_fresh_workspace_says_it_has_no_champion() -> None:
    samples = _samples(
        metrics_text({"workspace": "/w", "champion": None, "batches": [], "cycles": [], "drift": None})
    )
    assert samples == {("perennial_champion_version", (("workspace", "/w"),)): 0}
