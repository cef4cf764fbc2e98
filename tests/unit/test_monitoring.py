"""The drift monitor's inputs and decisions, without a model."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import Ledger
from perennial.monitoring.drift_check import (
    COOLDOWN,
    LABELS_NEEDED,
    NONE,
    RETRAIN,
    RETRAIN_NEEDED,
    DriftSummary,
    decide_action,
    drift_markdown,
    last_retrain,
    log_predictions,
    read_monitor_file,
    recent_texts,
)
from perennial.monitoring.drift_tests import DriftReport, DriftTest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("drifted", "pending", "last", "action"),
    [
        (False, 3, None, NONE),
        (True, 0, None, LABELS_NEEDED),
        (True, 2, None, RETRAIN),
        (True, 2, NOW - timedelta(hours=23), COOLDOWN),
        (True, 2, NOW - timedelta(hours=25), RETRAIN),
        (True, 0, NOW - timedelta(hours=1), LABELS_NEEDED),
    ],
)
def test_decide_action(drifted: bool, pending: int, last: datetime | None, action: str) -> None:
    got, message = decide_action(drifted, pending, last, NOW, DAY)
    assert got == action
    assert "\n" not in message and message


def test_without_a_served_deployment_drift_asks_for_a_manual_run_and_spends_no_cooldown() -> None:
    action, message = decide_action(True, 2, None, NOW, DAY, can_trigger=False)
    assert action == RETRAIN_NEEDED and "perennial run" in message
    assert decide_action(True, 0, None, NOW, DAY, can_trigger=False)[0] == LABELS_NEEDED
    assert decide_action(False, 2, None, NOW, DAY, can_trigger=False)[0] == NONE


def test_cooldown_counts_from_the_last_retrain_only(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert last_retrain(ledger.drift_checks()) is None
    ledger.record_drift_check(
        "1", True, RETRAIN, "drift, retrain", 0.2, "r1.json", checked_at=NOW.isoformat()
    )
    first = last_retrain(ledger.drift_checks())
    assert first == NOW  # the time the decision used, not the time it was written
    ledger.record_drift_check("1", True, LABELS_NEEDED, "drift, labels needed", 0.3, "r2.json")
    ledger.record_drift_check("1", False, NONE, "no drift", 0.01, "r3.json")
    checks = ledger.drift_checks()
    assert [c.action for c in checks] == [RETRAIN, LABELS_NEEDED, NONE]
    assert checks[0].drifted is True and checks[2].drifted is False
    assert last_retrain(checks) == first


def _settings(tmp_path: Path, **overrides) -> Settings:
    return Settings(workspace=tmp_path / "ws", **overrides)


def _write(path: Path, content: str, age_hours: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    _age(path, age_hours)
    return path


def _age(path: Path, hours: float) -> None:
    stamp = time.time() - 3600 * hours
    os.utime(path, (stamp, stamp))


def test_recent_texts_takes_the_newest_files_and_their_last_lines(
    tmp_path: Path, no_outside_settings: None
) -> None:
    settings = _settings(tmp_path, drift_window_rows=10)
    monitor = settings.monitor_dir
    _write(monitor / "stale.txt", "stale text\n", 200)  # older than drift_max_age_hours (168)
    _write(monitor / "old.txt", "".join(f"old {i}\n" for i in range(20)), 3)
    pd.DataFrame({"text": [f"mid {i}" for i in range(6)], "other": 1}).to_csv(
        monitor / "mid.csv", index=False
    )
    _age(monitor / "mid.csv", 2)
    _write(monitor / "new.jsonl", "".join(json.dumps({"text": f"new {i}"}) + "\n" for i in range(3)), 1)
    _write(monitor / "ignored.md", "not a monitored file", 0)
    recent = recent_texts(settings.monitor_dir, settings.drift)
    assert recent.texts == ["old 19"] + [f"mid {i}" for i in range(6)] + [f"new {i}" for i in range(3)]
    assert recent.files == ["new.jsonl", "mid.csv", "old.txt"]
    assert recent.unreadable == []


def test_an_unreadable_monitor_file_is_reported_and_skipped(
    tmp_path: Path, no_outside_settings: None
) -> None:
    settings = _settings(tmp_path)
    _write(settings.monitor_dir / "good.txt", "fine text\n\n  \nanother\n", 2)
    _write(settings.monitor_dir / "bad.csv", "id,body\n1,hello\n", 1)
    recent = recent_texts(settings.monitor_dir, settings.drift)
    assert recent.texts == ["fine text", "another"]
    assert len(recent.unreadable) == 1 and recent.unreadable[0].startswith("bad.csv: no `text` column")


def test_predictions_are_appended_to_todays_log(tmp_path: Path, no_outside_settings: None) -> None:
    settings = _settings(tmp_path)
    first = log_predictions(settings, [{"text": "a", "label": "positive", "score": 0.9}], "3")
    second = log_predictions(settings, [{"text": "b", "label": "negative", "score": 0.6}], "4")
    assert first == second and first.parent == settings.monitor_dir
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert [(r["text"], r["model_version"]) for r in rows] == [("a", "3"), ("b", "4")]
    assert read_monitor_file(first) == ["a", "b"]  # the monitor reads its own log


def test_drift_markdown_names_every_test_and_the_alarm() -> None:
    report = DriftReport(
        reference_rows=400,
        current_rows=300,
        alpha=0.004,  # two tests: an alarm below 0.002
        tests=[DriftTest("embedding_mmd", 0.31, 0.001), DriftTest("text_length", 0.08, 0.4)],
    )
    summary = DriftSummary(
        checked_at="2026-12-03T10:00:00.000+00:00",
        champion_version="2",
        current_rows=300,
        reference_rows=400,
        monitored_files=["inputs.csv"],
        unreadable_files=["bad.csv: no `text` column"],
        action=LABELS_NEEDED,
        message="drift detected, no labelled batch is waiting: labels are needed to retrain",
        drifted=True,
        report=report,
        report_path="/ws/reports/drift/d.json",
        plot_path="/ws/reports/drift/d.png",
    )
    text = drift_markdown(summary)
    assert "labels are needed" in text and "v2" in text
    assert "| embedding_mmd | 0.31 | 0.001 | yes |" in text
    assert "| text_length | 0.08 | 0.4 |  |" in text
    assert "bad.csv" in text


def test_a_drift_summary_saves_as_json_with_its_report() -> None:
    report = DriftReport(100, 80, 0.01, [DriftTest("text_length", 0.5, 0.001, {"mean_shift": 3.0})])
    summary = DriftSummary("2026-12-03T10:00:00.000+00:00", "4", 80, 100, ["a.csv"], [], report=report)
    saved = json.loads(json.dumps(summary.to_json()))
    assert saved["action"] == "skipped" and saved["champion_version"] == "4"
    assert saved["report"]["threshold"] == 0.01 and saved["report"]["triggered_by"] == ["text_length"]
    assert saved["report"]["tests"][0]["detail"] == {"mean_shift": 3.0}
