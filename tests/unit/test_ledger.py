"""The ledger: batches, status transitions, cycles and the write-once label set."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from perennial.data.ledger import (
    PENDING,
    PROMOTED,
    QUARANTINED,
    REJECTED_MODEL,
    STATUSES,
    TRAINED,
    Ledger,
    LedgerError,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "nested" / "ledger.sqlite")


def add(ledger: Ledger, n: int, source: str | None = None) -> str:
    batch_id = f"{n:016x}"
    ledger.add_batch(batch_id, f"sha-{n:064d}", source or f"file-{n}.csv", Path(f"/raw/{batch_id}.csv"))
    return batch_id


def walk(ledger: Ledger, batch_id: str, *statuses: str) -> None:
    for status in statuses:
        ledger.transition(batch_id, status)


def test_creates_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    Ledger(path)
    assert path.is_file()


def test_add_batch_returns_pending_batch(ledger: Ledger) -> None:
    batch = ledger.add_batch("abcdef0123456789", "f" * 64, "reviews.csv", Path("/raw/abcdef0123456789.csv"))
    assert batch.batch_id == "abcdef0123456789"
    assert batch.sha256 == "f" * 64
    assert batch.source == "reviews.csv"
    assert batch.status == PENDING
    assert batch.rows is None
    assert batch.reason == ""
    assert batch.raw_path == "/raw/abcdef0123456789.csv"
    assert batch.model_version is None
    assert batch.arrived_at == batch.updated_at
    assert batch.arrived_at.endswith("+00:00")


def test_find_by_hash(ledger: Ledger) -> None:
    first = add(ledger, 1)
    add(ledger, 2)
    found = ledger.find_by_hash(f"sha-{1:064d}")
    assert found is not None
    assert found.batch_id == first
    assert ledger.find_by_hash("no-such-hash") is None


def test_batch_lookup_and_unknown_batch(ledger: Ledger) -> None:
    batch_id = add(ledger, 5, source="five.jsonl")
    assert ledger.batch(batch_id).source == "five.jsonl"
    with pytest.raises(LedgerError, match="unknown batch nope"):
        ledger.batch("nope")


def test_batches_oldest_first_and_filtered(ledger: Ledger) -> None:
    # Added in a non-sorted id order, so ordering by id would fail this test.
    ids = [add(ledger, n) for n in (9, 3, 7, 1)]
    assert [b.batch_id for b in ledger.batches()] == ids
    ledger.transition(ids[1], QUARANTINED, "bad")
    assert [b.batch_id for b in ledger.batches((QUARANTINED,))] == [ids[1]]
    assert [b.batch_id for b in ledger.batches((PENDING,))] == [ids[0], ids[2], ids[3]]


def test_a_batch_arrives_pending_with_rows_or_quarantined_in_one_step(ledger: Ledger, tmp_path: Path) -> None:
    good = ledger.add_batch("a" * 16, "a" * 64, "good.csv", tmp_path / "a.csv", rows=321)
    bad = ledger.add_batch("b" * 16, "b" * 64, "bad.csv", tmp_path / "b.csv", QUARANTINED, "is empty")
    assert (good.status, good.rows, good.reason) == (PENDING, 321, "")
    assert (bad.status, bad.rows, bad.reason) == (QUARANTINED, None, "is empty")
    with pytest.raises(LedgerError, match="arrives pending or quarantined"):
        ledger.add_batch("c" * 16, "c" * 64, "c.csv", tmp_path / "c.csv", PROMOTED)


@pytest.mark.parametrize(
    "path",
    [
        (TRAINED, PROMOTED),
        (QUARANTINED,),
        (TRAINED, REJECTED_MODEL),
        (TRAINED, TRAINED),
        (TRAINED, TRAINED, PROMOTED),
    ],
)
def test_allowed_transitions(ledger: Ledger, path: tuple[str, ...]) -> None:
    batch_id = add(ledger, 1)
    walk(ledger, batch_id, *path)
    assert ledger.batch(batch_id).status == path[-1]


@pytest.mark.parametrize(
    ("before", "target"),
    [
        ((QUARANTINED,), TRAINED),
        ((QUARANTINED,), PENDING),
        ((TRAINED, PROMOTED), PENDING),
        ((TRAINED, PROMOTED), TRAINED),
        ((), PROMOTED),
        ((), REJECTED_MODEL),
        ((), PENDING),
        ((TRAINED,), PENDING),
        ((TRAINED,), QUARANTINED),
        ((TRAINED, REJECTED_MODEL), PROMOTED),
        ((), "no-such-status"),
    ],
)
def test_forbidden_transitions_raise(ledger: Ledger, before: tuple[str, ...], target: str) -> None:
    batch_id = add(ledger, 1)
    walk(ledger, batch_id, *before)
    status_before = ledger.batch(batch_id).status
    with pytest.raises(LedgerError, match="cannot go from"):
        ledger.transition(batch_id, target)
    assert ledger.batch(batch_id).status == status_before


def test_transition_unknown_batch_raises(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="unknown batch"):
        ledger.transition("ghost", TRAINED)


def test_transition_records_reason_and_keeps_model_version(ledger: Ledger) -> None:
    batch_id = add(ledger, 1)
    ledger.transition(batch_id, TRAINED, "trained ok", model_version="3")
    batch = ledger.transition(batch_id, PROMOTED, "better")
    assert batch.status == PROMOTED
    assert batch.reason == "better"
    assert batch.model_version == "3", "a transition without a version keeps the previous one"


def test_pending_returns_pending_and_trained_only(ledger: Ledger) -> None:
    ids = {status: add(ledger, n) for n, status in enumerate(STATUSES)}
    walk(ledger, ids[QUARANTINED], QUARANTINED)
    walk(ledger, ids[TRAINED], TRAINED)
    walk(ledger, ids[REJECTED_MODEL], TRAINED, REJECTED_MODEL)
    walk(ledger, ids[PROMOTED], TRAINED, PROMOTED)
    pending = ledger.pending()
    assert [b.batch_id for b in pending] == [ids[PENDING], ids[TRAINED]]
    assert [b.status for b in pending] == [PENDING, TRAINED]


def test_record_cycle_round_trip(ledger: Ledger) -> None:
    first, second = add(ledger, 1), add(ledger, 2)
    metrics = {"challenger": {"b1": {"accuracy": 0.75, "n": 40}}, "champion": None}
    ledger.record_cycle(first, "run-1", "2", "1", "promote", ["better", "no forgetting"], metrics)
    ledger.record_cycle(second, None, None, None, "reject", ["worse"], {})
    cycles = ledger.cycles()
    assert [c.cycle for c in cycles] == [1, 2]
    one, two = cycles
    assert one.batch_id == first
    assert one.run_id == "run-1"
    assert one.challenger_version == "2"
    assert one.champion_version == "1"
    assert one.decision == "promote"
    assert one.reasons == ["better", "no forgetting"]
    assert one.metrics == metrics
    assert one.finished_at
    assert two.batch_id == second
    assert (two.run_id, two.challenger_version, two.champion_version) == (None, None, None)
    assert two.reasons == ["worse"]
    assert two.metrics == {}


def test_cycles_empty(ledger: Ledger) -> None:
    assert ledger.cycles() == []


def test_label_set_is_write_once(ledger: Ledger) -> None:
    assert ledger.label_set() is None
    assert ledger.fix_label_set(["positive", "negative"]) == ["negative", "positive"]
    assert ledger.fix_label_set(["a", "b", "c"]) == ["negative", "positive"]
    assert ledger.label_set() == ["negative", "positive"]


def test_database_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path)
    batch_id = add(first, 1)
    first.transition(batch_id, TRAINED)
    first.record_cycle(batch_id, "r", "1", None, "promote", ["ok"], {"a": 1})
    first.fix_label_set(["y", "x"])

    reopened = Ledger(path)
    assert [b.batch_id for b in reopened.batches()] == [batch_id]
    assert reopened.batch(batch_id).status == TRAINED
    assert [c.reasons for c in reopened.cycles()] == [["ok"]]
    assert reopened.label_set() == ["x", "y"]


def test_duplicate_sha256_raises_integrity_error(ledger: Ledger) -> None:
    ledger.add_batch("aaaa", "same-sha", "one.csv", Path("/raw/aaaa.csv"))
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_batch("bbbb", "same-sha", "two.csv", Path("/raw/bbbb.csv"))
    assert [b.batch_id for b in ledger.batches()] == ["aaaa"]


def test_duplicate_batch_id_raises_integrity_error(ledger: Ledger) -> None:
    ledger.add_batch("aaaa", "sha-1", "one.csv", Path("/raw/aaaa.csv"))
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_batch("aaaa", "sha-2", "two.csv", Path("/raw/aaaa2.csv"))
    assert ledger.batch("aaaa").sha256 == "sha-1"


def test_labels_are_appended_in_arrival_order_with_their_batch(ledger: Ledger) -> None:
    assert ledger.fix_label_set(["refund", "billing"], "b1", {"billing": 30, "refund": 12}) == [
        "billing",
        "refund",
    ]
    assert ledger.add_labels(["billing", "outage"], "b2", {"outage": 15}) == ["outage"]
    assert ledger.add_labels(["login"], "b3", {"login": 11}) == ["login"]
    assert ledger.add_labels(["outage", "login"], "b4") == []  # already there: nothing moves
    assert ledger.label_set() == ["billing", "refund", "outage", "login"]
    history = ledger.label_history()
    assert [(a.label, a.position, a.batch_id, a.rows) for a in history] == [
        ("billing", 0, "b1", 30),
        ("refund", 1, "b1", 12),
        ("outage", 2, "b2", 15),
        ("login", 3, "b3", 11),
    ]


def test_a_ledger_from_before_arrivals_still_tells_its_labels(ledger: Ledger) -> None:
    import sqlite3

    with sqlite3.connect(ledger.path) as db:  # as an older version recorded the set
        db.execute("INSERT INTO meta (key, value) VALUES ('label_set', '[\"a\", \"b\"]')")
    ledger.add_labels(["c"], "b9", {"c": 20})
    assert [(a.label, a.batch_id) for a in ledger.label_history()] == [("a", None), ("b", None), ("c", "b9")]
