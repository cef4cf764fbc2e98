"""Slice names: one per batch, unique even when two files share a name, and stable across calls, so
no table keyed by slice name (accuracy over versions, the champion matrix) loses a slice."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, _validate_metric_name

from perennial.core.settings import Settings
from perennial.data.ledger import PROMOTED, QUARANTINED, TRAINED, Ledger
from perennial.evaluation.champion_history import continual_metrics, metrics_over_versions
from perennial.workspace import slice_names


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    return Settings(workspace=tmp_path / "ws")


def arrive(ledger: Ledger, batch_id: str, source: str, status: str = "pending") -> str:
    ledger.add_batch(batch_id, batch_id * 4, source, Path(f"/raw/{batch_id}"), status=status, rows=40)
    return batch_id


def decide(ledger: Ledger, batch_id: str, version: str, scores: dict[str, float]) -> None:
    """A promoted cycle whose challenger scored `scores` (batch id -> accuracy)."""
    metrics = {b: {"accuracy": a, "macro_f1": a, "n": 10} for b, a in scores.items()}
    ledger.transition(batch_id, TRAINED)
    ledger.record_decision(
        batch_id, PROMOTED, f"run{version}", version, None, "promote", [], "promoted", {"challenger": metrics}
    )


def test_a_later_batch_with_the_same_file_name_gets_its_own_name(settings: Settings) -> None:
    ledger = Ledger(settings.ledger_path)
    first = arrive(ledger, "aaaa111122223333", "reviews.csv")
    other = arrive(ledger, "bbbb111122223333", "films.jsonl")
    second = arrive(ledger, "cccc111122223333", "reviews.csv")
    third = arrive(ledger, "dddd111122223333", "reviews.parquet")  # same stem, other suffix

    names = slice_names(settings)

    assert names == {
        first: "reviews",
        other: "films",
        second: "reviews #cccc11",
        third: "reviews #dddd11",
    }
    assert len(set(names.values())) == len(names)
    assert slice_names(settings) == names  # stable across calls


def test_a_file_named_like_a_suffix_does_not_collide(settings: Settings) -> None:
    ledger = Ledger(settings.ledger_path)
    arrive(ledger, "aaaa111122223333", "reviews.csv")
    arrive(ledger, "eeee999999999999", "reviews #cccc11.csv")
    clash = arrive(ledger, "cccc111122223333", "reviews.csv")
    names = slice_names(settings)
    assert len(set(names.values())) == 3
    assert names[clash] == "reviews #cccc111122223333"


def test_a_quarantined_first_batch_keeps_its_name_so_no_name_ever_moves(settings: Settings) -> None:
    ledger = Ledger(settings.ledger_path)
    bad = arrive(ledger, "aaaa111122223333", "reviews.csv", status=QUARANTINED)
    good = arrive(ledger, "bbbb111122223333", "reviews.csv")
    before = slice_names(settings)
    decide(ledger, good, "1", {good: 0.8})
    assert slice_names(settings) == before == {bad: "reviews", good: "reviews #bbbb11"}


def test_tables_keyed_by_slice_name_keep_both_batches_of_one_file_name(settings: Settings) -> None:
    ledger = Ledger(settings.ledger_path)
    first = arrive(ledger, "aaaa111122223333", "reviews.csv")
    second = arrive(ledger, "cccc111122223333", "reviews.csv")
    decide(ledger, first, "1", {first: 0.9})
    decide(ledger, second, "2", {first: 0.7, second: 0.8})

    versions = metrics_over_versions(ledger.cycles(), slice_names(settings))
    assert list(versions.columns) == ["decision", "reviews", "reviews #cccc11"]
    assert versions.loc["v2", "reviews"] == 0.7  # not overwritten by the second batch's 0.8
    assert versions.loc["v2", "reviews #cccc11"] == 0.8

    matrix, summary = continual_metrics(settings)
    assert list(matrix.columns) == ["reviews", "reviews #cccc11"]
    assert matrix.iloc[1].tolist() == [0.7, 0.8]
    assert summary is not None and summary["avg_acc"] == pytest.approx(0.75)


@given(
    st.dictionaries(
        st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), st.text(min_size=1, max_size=400)
    )
)
def test_metric_keys_are_unique_and_only_use_what_mlflow_allows(names: dict[str, str]) -> None:
    import re

    from perennial.registry.mlflow_registry import metric_slice_keys

    keys = metric_slice_keys(names)
    assert set(keys) == set(names)
    assert len(set(keys.values())) == len(keys)
    for key in keys.values():  # MLflow's own checks, on the longest key perennial logs
        _validate_metric_name(f"challenger.{key}.macro_f1")
        assert len(f"challenger.{key}.macro_f1") <= MAX_ENTITY_KEY_LENGTH
    plain = {batch: name for batch, name in names.items() if re.fullmatch(r"[A-Za-z0-9_-]{1,150}", name)}
    assert all(keys[batch] == name for batch, name in plain.items() if list(names.values()).count(name) == 1)


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300), st.integers(min_value=120, max_value=400)
)
def test_a_description_fits_mlflow_and_says_where_the_rest_is(text: str, limit: int) -> None:
    from perennial.registry.mlflow_registry import fitted_description

    fitted = fitted_description(text, "model_card/v1.md in the run", limit=limit)
    assert len(fitted) <= limit
    if len(text) <= limit:
        assert fitted == text
    else:
        assert fitted.endswith("the whole text is model_card/v1.md in the run)")
        assert text.startswith(fitted[: fitted.index("\n\n(cut to fit")].rstrip()[:50])
