"""Model cards: facts gathered from a hand-built workspace, rendered as markdown and standalone HTML."""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.batch_store import split_path, write_parquet
from perennial.data.ledger import Ledger
from perennial.evaluation.contracts import Challenger, Scores
from perennial.evaluation.significance import PairedTest
from perennial.reporting.model_card import (
    gather_card_facts,
    publish_model_card,
    render_html,
    render_markdown,
    write_model_card,
)

REASONS = [
    "new slice films: 0.812 vs champion 0.700 (+0.112 >= min_delta +0.000)",
    "paired test: +11.2 points, McNemar exact p=0.0100 (challenger-only right 14, champion-only right 3, "
    "n=100), p < 0.05",
    "no earlier slice (1) lost more than 0.030",
]


def slice_row(name: str, acc: float, champ: float | None, new: bool = False, n: int = 150) -> dict:
    return {
        "slice_id": f"id-{name}",
        "name": name,
        "new": new,
        "challenger": {"accuracy": acc, "macro_f1": acc - 0.01, "n": n},
        "champion": {"accuracy": champ, "macro_f1": champ - 0.02, "n": n} if champ is not None else None,
        "delta": acc - champ if champ is not None else None,
    }


def lineage_row(name: str, source: str, new: bool) -> dict:
    return {
        "batch_id": f"id-{name}",
        "slice": name,
        "source": source,
        "arrived_at": "2025-03-01T10:00:00.000+00:00",
        "new": new,
        "rows": {"train": 120, "val": 15, "test": 15},
        "domains": [name],
        "date_range": {"from": "2024-01-02", "to": "2024-12-30"},
    }


@pytest.fixture
def facts() -> dict:
    """Version 2, trained on films after reviews, compared with and promoted over champion v1."""
    slices = [slice_row("reviews", 0.874, 0.881), slice_row("films", 0.812, 0.700, new=True)]
    return {
        "model": "perennial-classifier",
        "version": "2",
        "created_at": "2025-03-02T09:00:00+00:00",
        "batch_id": "id-films",
        "new_slice": "films",
        "compared_with": "1",
        "decision": {"label": "promote", "reasons": list(REASONS)},
        "champion_after": "2",
        "lineage": {
            "batches": [
                lineage_row("reviews", "reviews.csv", False),
                lineage_row("films", "films.jsonl", True),
            ],
            "replay": {"rows": 96, "by_slice": {"reviews": 96}},
        },
        "training": {
            "base_model": "all-MiniLM-L6-v2",
            "warm_started_from": "v1",
            "strategy": "replay+lwf",
            "data": "replay",
            "tuning": "full",
            "regularizer": "lwf",
            "regularizer_applied": True,
            "hyperparameters": {"epochs": 3, "learning_rate": 5e-05, "batch_size": 32, "max_length": 128},
            "replay": {"used": True, "memory_size": 2000, "ratio": 1.0},
            "result": {"best_epoch": 2, "stopped_early": True, "train_samples": 432, "seconds": 12.5},
        },
        "evaluation": {
            "slices": slices,
            "paired": {"p_value": 0.01, "description": "+11.2 points, McNemar exact p=0.0100"},
        },
        "labels": [],
        "confusion": None,
        "drift": {
            "checked": True,
            "checked_at": "2025-03-01T12:00:00+00:00",
            "champion_version": "1",
            "drifted": True,
            "action": "retrain",
            "message": "drift detected, 1 labelled batch(es) waiting: a training run is triggered",
            "score": 0.42,
        },
        "intended_use": "Classifies short texts into negative, positive.",
        "limitations": {
            "labels": ["negative", "positive"],
            "weakest_slices": [
                {"name": "films", "accuracy": 0.812, "macro_f1": 0.802, "n": 150},
                {"name": "reviews", "accuracy": 0.874, "macro_f1": 0.864, "n": 150},
            ],
            "smallest_test_slice": 150,
        },
    }


@pytest.fixture
def first_facts(facts: dict) -> dict:
    """Version 1: no champion to compare with."""
    first = copy.deepcopy(facts)
    first.update(
        version="1", batch_id="id-reviews", new_slice="reviews", compared_with=None, champion_after="1"
    )
    first["decision"]["reasons"] = ["no champion yet: accuracy 0.874 on reviews >= floor 0.600"]
    first["lineage"]["batches"] = [lineage_row("reviews", "reviews.csv", True)]
    first["lineage"]["replay"] = {"rows": 0, "by_slice": {}}
    first["training"].update(warm_started_from=None, regularizer_applied=False)
    first["evaluation"] = {"slices": [slice_row("reviews", 0.874, None, new=True)], "paired": None}
    first["drift"] = {"checked": False}
    return first


def section(text: str, title: str) -> str:
    """The body of one `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"no section {title!r} in:\n{text}"
    return match.group(1)


# --------------------------------------------------------------------------- markdown


def test_markdown_names_version_champion_decision_and_every_reason(facts: dict) -> None:
    text = render_markdown(facts)
    assert text.startswith("# perennial-classifier v2\n")
    decision = section(text, "Decision")
    assert "**promote**" in decision
    assert "compared with champion v1" in decision
    for reason in REASONS:
        assert f"- {reason}" in decision
    for title in (
        "Data lineage",
        "Training",
        "Evaluation",
        "Drift at training time",
        "Intended use",
        "Known limitations",
    ):
        section(text, title)


def test_markdown_tables_list_every_slice_with_scores(facts: dict) -> None:
    text = render_markdown(facts)
    evaluation = section(text, "Evaluation")
    assert "| slice | challenger acc | champion acc | delta | macro-F1 | n |" in evaluation
    assert "| reviews | 0.874 | 0.881 | -0.007 | 0.864 | 150 |" in evaluation
    assert "| films (new) | 0.812 | 0.700 | +0.112 | 0.802 | 150 |" in evaluation
    assert "McNemar exact p=0.0100" in evaluation
    lineage = section(text, "Data lineage")
    assert "reviews.csv" in lineage and "films.jsonl" in lineage
    assert "2024-01-02 to 2024-12-30" in lineage
    assert "Replayed rows mixed into training: 96 (reviews: 96)" in lineage
    training = section(text, "Training")
    assert "warm-started from: champion v1" in training
    assert "best epoch 2" in training and "stopped early yes" in training


def test_markdown_limitations_name_the_weakest_slices_and_labels(facts: dict) -> None:
    limits = section(render_markdown(facts), "Known limitations")
    weakest = limits.split("Weakest test slices")[1]
    assert weakest.index("films: accuracy 0.812") < weakest.index("reviews: accuracy 0.874")
    assert "negative, positive" in limits
    assert "Rejected" not in limits  # promoted: no rejection note


def test_markdown_drift_says_what_the_last_check_found(facts: dict) -> None:
    drift = section(render_markdown(facts), "Drift at training time")
    assert "2025-03-01T12:00:00+00:00 against champion v1" in drift
    assert "drift detected, 1 labelled batch(es) waiting" in drift


def test_first_version_says_no_champion_and_never_checked(first_facts: dict) -> None:
    text = render_markdown(first_facts)
    assert text.startswith("# perennial-classifier v1\n")
    assert "compared with no champion" in section(text, "Decision")
    evaluation = section(text, "Evaluation")
    assert "| reviews (new) | 0.874 | - | - | 0.864 | 150 |" in evaluation
    assert "against no champion" in evaluation
    assert "Paired test: none" in evaluation
    assert "warm-started from: base model all-MiniLM-L6-v2" in section(text, "Training")
    assert "Never checked" in section(text, "Drift at training time")


def test_rejected_version_says_it_is_not_the_champion(facts: dict) -> None:
    facts["decision"]["label"] = "reject"
    facts["champion_after"] = "1"
    text = render_markdown(facts)
    assert "**reject**" in section(text, "Decision") and "Champion after this decision: v1" in text
    assert "Rejected by the promotion gate" in section(text, "Known limitations")


def test_markdown_cannot_inject_html_or_break_tables(facts: dict) -> None:
    facts["lineage"]["batches"][0]["source"] = "<script>alert(1)</script>|x.csv"
    text = render_markdown(facts)
    assert "<script>" not in text
    page = render_html(text, "t")
    assert "<script" not in page
    assert "p &lt; 0.05" in page  # a plain comparison survives as text


# --------------------------------------------------------------------------- html and files


def test_render_html_is_a_standalone_page_with_tables(facts: dict) -> None:
    page = render_html(render_markdown(facts), "perennial-classifier v2 <card>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<html" in page and page.rstrip().endswith("</html>")
    assert "<title>perennial-classifier v2 &lt;card&gt;</title>" in page
    assert "<style>" in page
    assert page.count("<table>") == 2  # lineage and evaluation
    assert "<td>films (new)</td>" in page
    assert "<h2>Known limitations</h2>" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page


def test_write_model_card_writes_both_files_whole(tmp_path: Path, facts: dict, no_outside_settings) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    md_path, html_path = write_model_card(settings, "2", facts)
    folder = settings.reports_dir / "model_cards"
    assert (md_path, html_path) == (folder / "v2.md", folder / "v2.html")
    assert md_path.read_text(encoding="utf-8") == render_markdown(facts)
    assert "<td>films (new)</td>" in html_path.read_text(encoding="utf-8")
    assert sorted(p.name for p in folder.iterdir()) == ["v2.html", "v2.md"]  # no temp files left


# --------------------------------------------------------------------------- facts from a workspace


def stored_batch(
    settings: Settings, ledger: Ledger, batch_id: str, source: str, domain: str, year: int
) -> None:
    ledger.add_batch(batch_id, f"sha-{batch_id}", source, settings.raw_dir / source)
    for split, n in (("train", 8), ("val", 2), ("test", 2)):
        frame = pd.DataFrame(
            {
                "batch_id": batch_id,
                "text": [f"{source} {split} {i}" for i in range(n)],
                "label": ["positive", "negative"] * (n // 2),
                "domain": domain,
                "timestamp": [f"{year}-0{1 + i % 9}-15" for i in range(n - 1)] + [f"{year}-12-31T23:00:00Z"],
            }
        )
        write_parquet(frame, split_path(settings, batch_id, split))


SCORES = Scores(
    new_slice="b2",
    challenger={
        "b1": {"accuracy": 0.9, "macro_f1": 0.89, "n": 40},
        "b2": {"accuracy": 0.6, "macro_f1": 0.55, "n": 40},
    },
    champion={
        "b1": {"accuracy": 0.95, "macro_f1": 0.94, "n": 40},
        "b2": {"accuracy": 0.5, "macro_f1": 0.45, "n": 40},
    },
    paired=PairedTest(n=40, b=1, c=5, delta=0.1, p_value=0.1, ci_low=0.0, ci_high=0.2, confidence=0.95),
)
CHALLENGER = Challenger(
    batch_id="b2",
    run_id="run",
    model_dir="unused",
    champion_version="1",
    lineage=("b1", "b2"),
    replay_rows=6,
    best_epoch=1,
    stopped_early=False,
    seconds=1.5,
)


@pytest.fixture
def workspace(tmp_path: Path, no_outside_settings) -> Settings:
    settings = Settings(workspace=tmp_path / "ws", regularizer="lwf")
    ledger = Ledger(settings.ledger_path)
    stored_batch(settings, ledger, "b1", "reviews.csv", "shop", 2023)
    stored_batch(settings, ledger, "b2", "films.jsonl", "cinema", 2024)
    ledger.fix_label_set(["positive", "negative"])
    settings.memory_dir.mkdir(parents=True)
    pd.DataFrame({"batch_id": ["b1"] * 6, "text": list("abcdef"), "label": ["positive"] * 6}).to_parquet(
        settings.memory_dir / "b2.replayed.parquet"
    )
    return settings


def test_gather_card_facts_reads_lineage_drift_and_scores(workspace: Settings) -> None:
    Ledger(workspace.ledger_path).record_drift_check("1", True, "retrain", "drift detected", 0.3, None)
    facts = gather_card_facts(workspace, "b2", "2", CHALLENGER, SCORES, "reject", ["gain within noise"])

    assert facts["version"] == "2" and facts["compared_with"] == "1" and facts["champion_after"] == "1"
    first, second = facts["lineage"]["batches"]
    assert (first["slice"], first["source"], first["new"]) == ("reviews", "reviews.csv", False)
    assert second["new"] and second["rows"] == {"train": 8, "val": 2, "test": 2}
    assert second["domains"] == ["cinema"]
    assert second["date_range"] == {"from": "2024-01-15", "to": "2024-12-31"}
    assert facts["lineage"]["replay"] == {"rows": 6, "by_slice": {"reviews": 6}}

    training = facts["training"]
    assert training["warm_started_from"] == "v1" and training["strategy"] == "replay+lwf"
    assert training["regularizer_applied"] and training["hyperparameters"]["lwf_weight"] == 1.0
    assert training["result"] == {"replay_rows": 6, "best_epoch": 1, "stopped_early": False, "seconds": 1.5}

    rows = {s["name"]: s for s in facts["evaluation"]["slices"]}
    assert rows["films"]["new"] and rows["films"]["delta"] == pytest.approx(0.1)
    assert rows["reviews"]["champion"]["accuracy"] == 0.95
    assert "McNemar exact p=0.1000" in facts["evaluation"]["paired"]["description"]
    assert [s["name"] for s in facts["limitations"]["weakest_slices"]] == ["films", "reviews"]
    assert facts["limitations"]["labels"] == ["negative", "positive"]
    assert facts["drift"]["checked"] and facts["drift"]["message"] == "drift detected"
    assert facts["decision"] == {"label": "reject", "reasons": ["gain within noise"]}
    render_markdown(facts)  # every gathered fact renders


def test_the_card_tells_each_labels_arrival_accuracy_and_the_confusion_matrix(workspace: Settings) -> None:
    Ledger(workspace.ledger_path).add_labels(["mixed"], "b2", {"mixed": 12})
    per_class = {
        "b1": {"negative": {"accuracy": 1.0, "n": 20}, "positive": {"accuracy": 0.8, "n": 20}},
        "b2": {"positive": {"accuracy": 0.6, "n": 20}, "mixed": {"accuracy": 0.5, "n": 4}},
    }
    scores = replace(
        SCORES,
        per_class={"challenger": per_class},
        labels=("negative", "positive", "mixed"),
        confusion=((20, 0, 0), (4, 30, 6), (1, 1, 2)),
    )
    facts = gather_card_facts(workspace, "b2", "2", CHALLENGER, scores, "promote", ["ok"])
    assert facts["labels"] == [
        {"label": "negative", "since": None, "accuracy": 1.0, "n": 20},
        {"label": "positive", "since": None, "accuracy": pytest.approx(0.7), "n": 40},
        {"label": "mixed", "since": "films", "accuracy": 0.5, "n": 4},
    ]
    text = render_markdown(facts)
    assert "| mixed | films | 0.500 | 4 |" in text
    assert "| true \\ predicted | negative | positive | mixed |" in text
    assert "| positive | 4 | 30 | 6 |" in text


def test_gather_card_facts_first_version_from_the_base_model(workspace: Settings) -> None:
    challenger = replace(CHALLENGER, champion_version=None, lineage=("b1",), replay_rows=None)
    scores = Scores("b1", {"b1": SCORES.challenger["b1"]})
    (workspace.memory_dir / "b2.replayed.parquet").unlink()
    facts = gather_card_facts(workspace, "b1", "1", challenger, scores, "promote", [])
    assert facts["compared_with"] is None and facts["champion_after"] == "1"
    assert facts["training"]["warm_started_from"] is None
    assert not facts["training"]["regularizer_applied"]  # nothing to anchor to
    assert facts["lineage"]["replay"] == {"rows": None, "by_slice": None}
    assert facts["evaluation"]["paired"] is None
    assert facts["drift"] == {"checked": False}
    assert "Replayed rows: not recorded" in render_markdown(facts)


def test_publish_model_card_logs_a_warning_instead_of_failing(
    workspace: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perennial.registry import mlflow_registry as registry

    def unreachable(*args, **kwargs) -> None:
        raise RuntimeError("tracking store unreachable")

    monkeypatch.setattr(registry, "log_file_artifact", unreachable)
    with caplog.at_level(logging.WARNING, logger="perennial"):
        result = publish_model_card(workspace, "run", "b2", "2", CHALLENGER, SCORES, "reject", ["x"])
    assert result is None
    assert any(
        "model card for v2 not published" in r.getMessage() and "tracking store unreachable" in r.getMessage()
        for r in caplog.records
    )
    assert (workspace.reports_dir / "model_cards" / "v2.md").is_file()  # written before logging failed


def test_publish_model_card_survives_facts_that_cannot_be_gathered(
    workspace: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Scores("b2", {"b2": {"accuracy": 0.5}})  # no macro_f1, no n
    with caplog.at_level(logging.WARNING, logger="perennial"):
        assert publish_model_card(workspace, "run", "b2", "2", CHALLENGER, broken, "reject", []) is None
    assert any("KeyError" in r.getMessage() for r in caplog.records)
    assert not (workspace.reports_dir / "model_cards" / "v2.md").exists()
