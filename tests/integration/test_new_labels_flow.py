"""A growing label set through the real flow: the second batch brings a label, the third another.

Real Prefect, MLflow, Great Expectations and evaluate; the tiny pretrained encoder."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.ledger import PROMOTED, QUARANTINED
from perennial.flows.continual_training import continual_training
from perennial.models.inference import load_model_dir, model_labels
from perennial.monitoring.drift_check import check_drift
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import champion_model_dir
from perennial.reporting.status import format_status, gather_status
from perennial.serving.predict import predict_texts
from perennial.workspace import labels_for, ledger_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb"]
NEGATIVE = ["awful", "terrible", "horrible", "dreadful", "useless"]
# Each new label has words of its own, as a new intent or category does.
NEW_LABEL_TEXTS = {
    "question": lambda rng: f"how do i {rng.choice(['reset', 'return', 'open', 'clean'])} it ? #",
    "shipping": lambda rng: (
        f"tracking number {rng.randint(100, 999)} parcel {rng.choice(['late', 'lost'])} #"
    ),
}


def _batch(name: str, seed: int, new_label: str | None = None, new_rows: int = 40) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(80):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append((f"the {name} was {word} #{i}", label))
    if new_label is not None:
        rows += [(NEW_LABEL_TEXTS[new_label](rng) + str(i), new_label) for i in range(new_rows)]
    return pd.DataFrame(rows, columns=["text", "label"])


def _run(settings: Settings, frame: pd.DataFrame, name: str) -> None:
    frame.to_csv(settings.inbox / name, index=False)
    state = continual_training(settings, return_state=True)
    assert state.is_completed(), state.message


def _batch_named(settings: Settings, source: str):
    return next(b for b in ledger_for(settings).batches() if b.source == source)


def test_new_labels_grow_the_champion_batch_by_batch(
    settings: Settings, general_tiny_model_dir: Path
) -> None:
    # Forgetting and significance limits sized for 20-row slices of a tiny model: this test is about
    # the label set growing through the pipeline, not about the gate's noise. The encoder knows
    # questions and shipping notices as kinds of text (as MiniLM knows far more), not as labels.
    settings = settings.model_copy(
        update={
            "base_model": str(general_tiny_model_dir),
            # A grown head starts its new row from nothing while the old rows are trained: on a
            # 2-layer encoder it needs more steps than the fixture's 3 epochs to catch up.
            "epochs": 8,
            "max_forgetting": 0.3,
            "require_significant_gain": False,
        }
    )
    _run(settings, _batch("battery", 1), "first.csv")
    assert _batch_named(settings, "first.csv").status == PROMOTED, ledger_for(settings).cycles()[-1].reasons
    assert labels_for(settings) == ["negative", "positive"]

    _run(settings, _batch("screen", 2, "question"), "second.csv")
    second = _batch_named(settings, "second.csv")
    assert second.status == PROMOTED, ledger_for(settings).cycles()[-1].reasons
    assert labels_for(settings) == ["negative", "positive", "question"]
    reasons = " ".join(ledger_for(settings).cycles()[-1].reasons)
    assert "'question': the champion cannot predict them" in reasons

    _run(settings, _batch("charger", 3, "shipping"), "third.csv")
    third = _batch_named(settings, "third.csv")
    assert third.status == PROMOTED, ledger_for(settings).cycles()[-1].reasons
    champion = registry.champion(settings)
    assert champion is not None and champion.version == third.model_version
    model, _ = load_model_dir(champion_model_dir(settings, champion.version), "cpu")
    assert model_labels(model) == ["negative", "positive", "question", "shipping"]

    history = ledger_for(settings).label_history()
    first = _batch_named(settings, "first.csv")
    assert [(a.label, a.batch_id) for a in history] == [
        ("negative", first.batch_id),
        ("positive", first.batch_id),
        ("question", second.batch_id),
        ("shipping", third.batch_id),
    ]
    # The served champion answers with the newest labels; status tells the label history.
    _, rows = predict_texts(settings, ["tracking number 512 parcel lost #1", "how do i reset it ? #1"])
    assert {row["label"] for row in rows} <= set(model_labels(model))
    assert [row["label"] for row in rows] == ["shipping", "question"]
    status = format_status(gather_status(settings))
    assert "shipping" in status and f"since {third.batch_id[:8]}" in status

    # Per-class accuracy is kept with every cycle's scores.
    per_class = ledger_for(settings).cycles()[-1].metrics["per_class"]
    assert set(per_class["challenger"][third.batch_id]) == {"negative", "positive", "shipping"}

    # The drift monitor keeps working on the grown champion: its predicted-label test counts four labels.
    settings.monitor_dir.mkdir(parents=True, exist_ok=True)
    recent = _batch("kettle", 4, "shipping")["text"]
    pd.DataFrame({"text": recent}).to_csv(settings.monitor_dir / "inputs.csv", index=False)
    drift = check_drift(settings)
    assert drift.report is not None and drift.champion_version == third.model_version
    assert "predicted_label" in {test.name for test in drift.report.tests}


def test_a_new_label_with_too_few_rows_is_quarantined_and_the_set_stays(settings: Settings) -> None:
    _run(settings, _batch("battery", 1), "first.csv")
    (settings.inbox / "few.csv").write_text(_batch("screen", 2, "question", new_rows=4).to_csv(index=False))
    state = continual_training(settings, return_state=True)
    assert state.is_failed()
    few = _batch_named(settings, "few.csv")
    assert few.status == QUARANTINED
    assert "new label(s) 'question' (4 rows) below new_label_min_rows = 10" in few.reason
    assert labels_for(settings) == ["negative", "positive"]
