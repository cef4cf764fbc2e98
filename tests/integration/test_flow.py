"""The continual-training flow end to end: real Prefect, MLflow (sqlite), Great Expectations and
evaluate, with a tiny randomly-initialised BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from perennial.core.settings import Settings
from perennial.data.ledger import PROMOTED, QUARANTINED, REJECTED_MODEL
from perennial.flows.continual_training import continual_training
from perennial.learning.strategy import Strategy
from perennial.registry import mlflow_registry as registry
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def _batch(settings: Settings, source: str):
    return next(b for b in ledger_for(settings).batches() if b.source == source)


def _two_batches(settings: Settings, drop, **updates: object) -> Settings:
    """reviews.csv, then films.jsonl, each through a completed run with these settings changed."""
    settings = settings.model_copy(update=updates)
    for fixture in ("reviews.csv", "films.jsonl"):
        drop(settings, fixture)
        state = continual_training(settings, return_state=True)
        assert state.is_completed(), state.message
    return settings


def _runs_of(settings: Settings, batch_id: str) -> list:
    """Every MLflow run of a batch's cycles (attempts included)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(registry.EXPERIMENT_NAME).experiment_id
    return client.search_runs([experiment], filter_string=f"tags.batch_id = '{batch_id}'")


def test_first_batch_becomes_champion_then_second_warm_starts_from_it(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    state = continual_training(settings, return_state=True)
    assert state.is_completed(), state.message
    first = _batch(settings, "reviews.csv")
    assert first.status == PROMOTED and first.model_version == "1"
    champ = registry.champion(settings)
    assert champ is not None and champ.version == "1"
    assert not list(settings.inbox.iterdir())  # the inbox is emptied, the raw file kept
    assert (settings.raw_dir / f"{first.batch_id}.csv").is_file()

    drop(settings, "films.jsonl")
    state = continual_training(settings, return_state=True)
    assert state.is_completed(), state.message
    second = _batch(settings, "films.jsonl")
    assert second.status in (PROMOTED, REJECTED_MODEL)
    # Each cycle leaves its decision and metrics table as Prefect artifacts.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ArtifactFilter(key=ArtifactFilterKey(any_=["cycle-decision", "cycle-metrics"]))
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=keys)
    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["training-progress"]))
        )
    # Training showed its progress in Prefect's UI while it ran, and ended complete.
    assert progress and all(a.type == "progress" and a.data == 100 for a in progress)
    assert any("training the challenger for batch" in (a.description or "") for a in progress)
    decisions = [a.data for a in artifacts if a.key == "cycle-decision"]
    assert any("films.jsonl" in d and "compared with v1" in d for d in decisions)
    tables = [
        json.loads(a.data) if isinstance(a.data, str) else a.data for a in artifacts if a.type == "table"
    ]
    assert any({row["slice"] for row in table} == {"reviews", "films"} for table in tables)
    # Links from the flow run to the cycle's MLflow run and version; the cycle's run carries tags.
    links = ArtifactFilter(key=ArtifactFilterKey(any_=["mlflow-run", "mlflow-version"]))
    with get_client(sync_client=True) as client:
        linked = client.read_artifacts(artifact_filter=links)
        flow_runs = client.read_flow_runs()
    second_run = ledger_for(settings).cycles()[-1].run_id
    assert second_run and any(f"/runs/{second_run})" in str(a.data) for a in linked if a.key == "mlflow-run")
    assert any(f"/#/models/{settings.registered_model_name}/versions/2)" in str(link) for link in
               [a.data for a in linked if a.key == "mlflow-version"])  # fmt: skip
    cycle_tags = [set(run.tags) for run in flow_runs if run.name == f"cycle-{second.batch_id}"]
    assert (
        cycle_tags
        and {"batch:films.jsonl", "strategy:replay+lwf", f"workspace:{settings.root.name}"} <= (cycle_tags[0])
    )

    cycles = ledger_for(settings).cycles()
    assert [c.batch_id for c in cycles] == [first.batch_id, second.batch_id]
    latest = cycles[-1]
    assert latest.champion_version == "1"  # compared against the champion it started from
    # Both models were evaluated on the new slice and the earlier one.
    assert set(latest.metrics["challenger"]) == {first.batch_id, second.batch_id}
    assert set(latest.metrics["champion"]) == {first.batch_id, second.batch_id}

    run = MlflowClient(settings.mlflow_tracking_uri).get_run(latest.run_id)
    assert run.data.params["init_from"] == "champion v1"  # warm start
    assert int(run.data.params["replay_train_rows"]) > 0  # replay from the first batch
    assert run.data.params["replay_batches"] == first.batch_id
    # Slices by name in the metric keys and the run's name, as a reader of MLflow's charts knows them.
    assert "champion.reviews.accuracy" in run.data.metrics
    assert "challenger.films.macro_f1" in run.data.metrics
    assert run.info.run_name == "cycle films" and run.data.tags["batch_id"] == second.batch_id
    # The tables it used, as MLflow's Datasets panel lists them, with where each is kept.
    used = {(d.dataset.name, d.dataset.source, d.tags[0].value) for d in run.inputs.dataset_inputs}
    expected = {
        ("films/train", "training"),
        ("films/val", "validation"),
        ("films/replayed", "training"),
        ("films/test", "evaluation"),
        ("reviews/test", "evaluation"),
    }
    assert {(n, c) for n, _, c in used} == expected
    assert (
        f'"uri": "store/batches/{second.batch_id}/train.parquet"'
        in {s for n, s, _ in used if n == "films/train"}.pop()
    )
    # The first cycle replayed nothing: its other tables are still logged (an empty table failed all).
    first_run = MlflowClient(settings.mlflow_tracking_uri).get_run(cycles[0].run_id)
    assert {d.dataset.name for d in first_run.inputs.dataset_inputs} == {
        "reviews/train",
        "reviews/val",
        "reviews/test",
    }
    tags = registry.version_tags(settings, latest.challenger_version)
    assert tags["decision"] == latest.decision
    # The registered model carries an input example from its batch: texts a served model answers.
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model_name}/1")
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert len(example) == 2 and all(isinstance(text, str) and text for text in example)
    assert json.loads(tags["lineage"])[-1] == second.batch_id
    expected_champion = "2" if latest.decision == "promote" else "1"
    assert registry.champion(settings).version == expected_champion
    # Each registered model records the classes it and its ancestors trained on (for a later merge).
    from perennial.learning.finishing import trained_labels
    from perennial.registry.champion import champion_model_dir
    from perennial.workspace import labels_for

    assert trained_labels(champion_model_dir(settings, "1")) == set(labels_for(settings))


def test_rejected_challenger_keeps_challenger_alias_and_champion_stays(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    strict = settings.model_copy(update={"min_delta": 1.0})  # no challenger can gain a full point
    drop(strict, "films.jsonl")
    assert continual_training(strict, return_state=True).is_completed()

    second = _batch(settings, "films.jsonl")
    assert second.status == REJECTED_MODEL
    assert "min_delta" in second.reason
    versions = {v["version"]: v for v in registry.list_versions(settings)}
    assert versions["1"]["aliases"] == ["champion"]
    assert versions["2"]["aliases"] == ["challenger"]
    assert versions["2"]["tags"]["decision"] == "reject"


def test_bad_batch_is_quarantined_and_good_batch_still_runs(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    drop(settings, "bad_labels.csv")
    drop(settings, "films.jsonl")
    state = continual_training(settings, return_state=True)

    assert state.is_failed()
    # No label set declared: a new label may grow the head, but 'neutral' has too few rows to learn.
    assert "quarantined" in state.message and "below new_label_min_rows" in state.message
    bad = _batch(settings, "bad_labels.csv")
    assert bad.status == QUARANTINED
    assert "neutral" in bad.reason and "\n" not in bad.reason
    assert (settings.raw_dir / f"{bad.batch_id}.csv").is_file()  # the raw file is kept
    assert (settings.validation_dir / f"{bad.batch_id}.json").is_file()
    # Nothing was registered for the bad batch; the good one went through.
    assert all(v["tags"].get("batch_id") != bad.batch_id for v in registry.list_versions(settings))
    assert _batch(settings, "films.jsonl").status in (PROMOTED, REJECTED_MODEL)
    assert len(registry.list_versions(settings)) == 2


def test_same_file_twice_runs_one_cycle(settings: Settings, drop) -> None:
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    drop(settings, "reviews.csv", name="reviews-again.csv")
    state = continual_training(settings, return_state=True)

    assert state.is_completed()
    assert state.result() == []  # nothing new to train on
    assert len(ledger_for(settings).batches()) == 1
    assert len(ledger_for(settings).cycles()) == 1
    assert len(registry.list_versions(settings)) == 1
    assert not (settings.inbox / "reviews-again.csv").exists()


def test_lora_with_lwf_serves_a_merged_model_and_logs_memory_and_metrics(settings: Settings, drop) -> None:
    from perennial.learning.replay import ReplayMemory
    from perennial.models.inference import load_model_dir
    from perennial.reporting.status import format_status, gather_status

    settings = _two_batches(
        settings, drop, regularizer="lwf", tuning="lora", require_significant_gain=False, max_forgetting=1.0
    )
    second = _batch(settings, "films.jsonl")
    assert second.status == PROMOTED, second.reason  # the gate was opened wide: any challenger passes

    cycle = ledger_for(settings).cycles()[-1]
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(cycle.run_id)
    assert run.data.params["strategy"] == "replay+lwf+lora"
    assert run.data.params["lora_rank"] == str(settings.lora_rank)
    assert 0 < run.data.metrics["trainable_fraction"] < 0.1  # adapters and head only
    for key in ("cl.avg_acc", "cl.bwt", "cl.max_forgetting", "paired.p_value"):
        assert key in run.data.metrics, key
    # The pictures people look at: the accuracy matrix and accuracy over versions.
    top = {a.path for a in client.list_artifacts(cycle.run_id)}
    assert {"accuracy_matrix.png", "metrics_over_versions.png", "accuracy_matrix.json"} <= top

    # The memory this version hands on is logged and equals the stored copy, row for row.
    logged = {a.path for a in client.list_artifacts(cycle.run_id, "replay")}
    assert f"replay/{second.batch_id}.parquet" in logged
    assert f"replay/{second.batch_id}.replayed.parquet" in logged
    local = client.download_artifacts(cycle.run_id, f"replay/{second.batch_id}.parquet", str(settings.root))
    memory = ReplayMemory.load(Path(local))
    assert memory.capacity == settings.replay_memory_size
    assert set(memory.rows["batch_id"]) == {_batch(settings, "reviews.csv").batch_id, second.batch_id}

    # The registry serves a plain, merged classifier (no adapters left).
    folder = settings.root / "check"
    registry.download_model(settings, "2", folder)
    model, _ = load_model_dir(folder, "cpu")
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not any("lora" in name for name, _ in model.named_parameters())

    text = format_status(gather_status(settings))
    assert "strategy:  replay+lwf+lora" in text
    assert "accuracy matrix" in text and "average accuracy" in text


def test_wise_and_logit_adjust_finish_the_challenger_and_are_recorded(settings: Settings, drop) -> None:
    from perennial.reporting.model_card import card_paths

    settings = _two_batches(
        settings,
        drop,
        merge="wise",
        bias_correction="logit-adjust",
        wise_alpha=0.6,
        require_significant_gain=False,
        max_forgetting=1.0,
    )
    client = MlflowClient(settings.mlflow_tracking_uri)
    first, second = (client.get_run(c.run_id) for c in ledger_for(settings).cycles())
    for run in (first, second):
        # The name carries the default regulariser too.
        assert run.data.params["strategy"] == Strategy.from_settings(settings).name
        assert run.data.params["wise_alpha"] == "0.6"
        assert run.data.metrics["logit_adjust_tau"] == settings.logit_adjust_tau
    # The first challenger starts from the base model: there is no champion to average with.
    assert "wise_alpha" not in first.data.metrics
    assert second.data.metrics["wise_alpha"] == 0.6
    assert _batch(settings, "films.jsonl").status == PROMOTED
    card = card_paths(settings, "2")[0].read_text()
    assert Strategy.from_settings(settings).name in card and "wise_alpha" in card
    first_card = card_paths(settings, "1")[0].read_text()
    assert "merge wise (configured, not applied: no champion to average with)" in first_card


def _second_decision_forgets(monkeypatch: pytest.MonkeyPatch) -> list:
    """The real gate decides every time; its second decision (the second batch's first attempt) is
    then made to have forgotten, as on a drifting stream, so the retry path runs deterministically.
    Returns the list of the real decisions, in order."""
    from perennial.evaluation.gate import FORGETTING, Decision
    from perennial.pipeline import decide_step

    real_decide = decide_step.decide
    calls: list[Decision] = []

    def second_forgets(*args, **kwargs) -> Decision:
        decision = real_decide(*args, **kwargs)
        calls.append(decision)
        if len(calls) != 2:
            return decision
        forgot = [*decision.reasons, "forgets slice reviews.csv: 0.500 vs champion 0.900"]
        return Decision(False, forgot, (FORGETTING,))

    monkeypatch.setattr(decide_step, "decide", second_forgets)
    return calls


def test_a_challenger_rejected_for_forgetting_alone_is_retried_and_both_attempts_recorded(
    settings: Settings, drop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perennial.reporting.model_card import card_paths

    calls = _second_decision_forgets(monkeypatch)
    settings = _two_batches(
        settings, drop, require_significant_gain=False, max_forgetting=1.0, min_delta=-1.0
    )
    assert len(calls) == 3  # batch 1; batch 2's first attempt; batch 2's retry
    second = _batch(settings, "films.jsonl")
    assert second.status == PROMOTED, second.reason  # the protective retry passed the real gate

    runs = _runs_of(settings, second.batch_id)
    by_decision = {run.data.tags.get("decision"): run for run in runs}
    assert set(by_decision) == {"retried", "promote"}
    first, retry = by_decision["retried"], by_decision["promote"]
    assert first.info.status == "FINISHED" and "forgets slice reviews.csv" in first.data.tags["reasons"]
    assert first.data.params["strategy"] == "replay+lwf"  # the default
    assert retry.data.tags["retry_of"] == first.info.run_id and retry.data.tags["attempt"] == "2"
    assert retry.data.params["strategy"] == "replay+lwf+wise"
    assert retry.data.params["replay_ratio"] == str(settings.retry_replay_ratio)
    assert retry.data.metrics["wise_alpha"] == settings.wise_alpha

    cycle_record = ledger_for(settings).cycles()[-1]
    assert cycle_record.run_id == retry.info.run_id
    assert cycle_record.reasons[0].startswith(
        f"attempt 1 (replay+lwf, run {first.info.run_id}) rejected for forgetting"
    )
    card = card_paths(settings, "2")[0].read_text()
    assert "attempt 1 (replay+lwf" in card and "replay+lwf+wise" in card


def test_a_batch_bringing_a_class_new_to_the_champion_is_retried_without_averaging(
    settings: Settings, drop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from perennial.reporting.model_card import card_paths

    _second_decision_forgets(monkeypatch)
    settings = settings.model_copy(
        update={
            "labels": ["negative", "positive", "mixed"],
            "require_significant_gain": False,
            "max_forgetting": 1.0,
            "min_delta": -1.0,
        }
    )
    drop(settings, "reviews.csv")
    assert continual_training(settings, return_state=True).is_completed()
    films = pd.read_json(Path(__file__).parents[1] / "data" / "films.jsonl", lines=True)
    mixed = films.index % 3 == 0
    films.loc[mixed, "label"] = "mixed"
    films.loc[mixed, "text"] = [f"the film was so-so in parts #{i}" for i in films.index[mixed]]
    films.to_json(settings.inbox / "films.jsonl", orient="records", lines=True)
    assert continual_training(settings, return_state=True).is_completed()

    second = _batch(settings, "films.jsonl")
    retry = next(r for r in _runs_of(settings, second.batch_id) if r.data.tags.get("attempt") == "2")
    # More replay, but no averaging with a champion that never trained on "mixed".
    assert retry.data.params["strategy"] == "replay+lwf"
    assert retry.data.params["replay_ratio"] == str(settings.retry_replay_ratio)
    assert "wise_alpha" not in retry.data.metrics
    reason = ledger_for(settings).cycles()[-1].reasons[0]
    assert reason.endswith("not averaged (the champion never trained on mixed)")
    assert "never trained on mixed" in card_paths(settings, second.model_version or "2")[0].read_text()


def test_a_retry_that_crashes_leaves_the_first_attempt_decided(
    settings: Settings, drop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perennial.pipeline import train_step

    _second_decision_forgets(monkeypatch)
    real_finish = train_step.finish_model

    def averaging_crashes(strategy, *args, **kwargs):
        if strategy.merge == "wise":
            raise MemoryError("out of memory while averaging")
        return real_finish(strategy, *args, **kwargs)

    monkeypatch.setattr(train_step, "finish_model", averaging_crashes)
    settings = _two_batches(settings, drop, require_significant_gain=False, min_delta=-1.0)
    second = _batch(settings, "films.jsonl")
    assert second.status == REJECTED_MODEL  # the first attempt's decision, recorded once
    record = ledger_for(settings).cycles()[-1]
    assert record.reasons[-1] == "retry failed, first attempt kept: out of memory while averaging"
    runs = _runs_of(settings, second.batch_id)
    by_status = {run.info.status: run for run in runs}
    assert set(by_status) == {"FINISHED", "FAILED"}
    assert by_status["FINISHED"].info.run_id == record.run_id
    assert by_status["FINISHED"].data.tags["decision"] == "reject"
    assert not list(settings.models_dir.glob("challenger-*"))  # no half-trained retry left behind
    assert registry.champion(settings).version == "1"


def test_joint_retrains_from_the_base_model_on_every_batch(settings: Settings, drop) -> None:
    from perennial.data.batch_store import load_split

    settings = _two_batches(settings, drop, strategy="joint")
    first, second = _batch(settings, "reviews.csv"), _batch(settings, "films.jsonl")
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(ledger_for(settings).cycles()[-1].run_id)
    assert run.data.params["strategy"] == "joint"
    assert run.data.params["init_from"] == settings.base_model  # not the champion
    expected = len(load_split(settings, first.batch_id, "train")) + len(
        load_split(settings, second.batch_id, "train")
    )
    assert int(run.data.params["train_rows"]) == expected
