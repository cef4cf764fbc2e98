"""The champion's alias history in the ledger: intents, reconciliation with the registry, and which
version a rollback goes back to. Pure ledger and logic: no MLflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from perennial.data.ledger import (
    MOVE_ABANDONED,
    MOVE_DONE,
    MOVE_PENDING,
    MOVE_RECOVERED,
    PROMOTION,
    ROLLBACK,
    UNRECORDED,
    AliasMove,
    Ledger,
    LedgerError,
)
from perennial.registry.champion import format_history, format_move, previous_champion

ALIAS = "champion"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite")


def move(
    ledger: Ledger, before: str | None, after: str, kind: str = PROMOTION, reason: str = "r"
) -> AliasMove:
    """A complete move, as `perennial.registry.champion.move_champion` writes it."""
    return ledger.finish_alias_move(ledger.begin_alias_move(ALIAS, before, after, kind, reason, "me@here"))


def test_a_move_is_pending_until_finished_and_only_finished_moves_are_history(ledger: Ledger) -> None:
    move_id = ledger.begin_alias_move(ALIAS, None, "1", PROMOTION, "promote:\n  first", "me@here")
    assert ledger.alias_moves(ALIAS) == []
    [pending] = ledger.alias_moves(ALIAS, states=(MOVE_PENDING,))
    assert pending.state == MOVE_PENDING and pending.to_version == "1"
    done = ledger.finish_alias_move(move_id)
    assert ledger.alias_moves(ALIAS) == [done]
    assert (done.from_version, done.to_version, done.kind, done.actor) == (None, "1", PROMOTION, "me@here")
    assert done.reason == "promote: first"  # one line, whatever the caller passed
    assert done.moved_at.endswith("+00:00")
    assert ledger.alias_moves("challenger") == []


def test_abandoned_move_is_not_history(ledger: Ledger) -> None:
    move(ledger, None, "1")
    failed = ledger.begin_alias_move(ALIAS, "1", "2", PROMOTION, "r", "me@here")
    assert ledger.abandon_alias_move(failed).state == MOVE_ABANDONED
    assert [m.to_version for m in ledger.alias_moves(ALIAS)] == ["1"]
    with pytest.raises(LedgerError):
        ledger.finish_alias_move(999)


def test_history_is_ordered_oldest_first(ledger: Ledger) -> None:
    move(ledger, None, "1")
    move(ledger, "1", "2")
    move(ledger, "2", "1", ROLLBACK, "bad on films")
    moves = ledger.alias_moves(ALIAS)
    assert [(m.from_version, m.to_version, m.kind) for m in moves] == [
        (None, "1", PROMOTION),
        ("1", "2", PROMOTION),
        ("2", "1", ROLLBACK),
    ]
    assert [m.move_id for m in moves] == sorted(m.move_id for m in moves)


def test_reconcile_consistent_history_adds_nothing(ledger: Ledger) -> None:
    assert ledger.reconcile_alias(ALIAS, None) is None  # no champion, no history
    move(ledger, None, "1")
    move(ledger, "1", "2")
    assert ledger.reconcile_alias(ALIAS, "2") is None
    assert len(ledger.alias_moves(ALIAS)) == 2


def test_alias_moved_without_record_becomes_an_unrecorded_move(ledger: Ledger) -> None:
    move(ledger, None, "1")
    move(ledger, "1", "2")
    found = ledger.reconcile_alias(ALIAS, "3")  # e.g. someone set the alias in the MLflow UI
    assert found is not None
    assert (found.from_version, found.to_version, found.kind, found.actor) == (
        "2",
        "3",
        UNRECORDED,
        "unknown",
    )
    assert "v3" in found.reason and "v2" in found.reason
    assert ledger.alias_moves(ALIAS)[-1] == found
    # Recorded once: reading again finds the history consistent.
    assert ledger.reconcile_alias(ALIAS, "3") is None
    assert len(ledger.alias_moves(ALIAS)) == 3


def test_champion_from_before_the_history_existed_is_unrecorded(ledger: Ledger) -> None:
    found = ledger.reconcile_alias(ALIAS, "4")
    assert found is not None and (found.from_version, found.to_version, found.kind) == (None, "4", UNRECORDED)


def test_deleted_alias_is_an_unrecorded_move_to_nothing(ledger: Ledger) -> None:
    move(ledger, None, "1")
    found = ledger.reconcile_alias(ALIAS, None)
    assert found is not None and (found.from_version, found.to_version) == ("1", None)
    assert "no version" in found.reason


def test_run_stopped_after_moving_the_alias_is_recovered_with_its_reason(ledger: Ledger) -> None:
    move(ledger, None, "1")
    ledger.begin_alias_move(ALIAS, "1", "2", PROMOTION, "promote: gained", "flow@box")
    # ... the alias moved to 2, then the process died before finish_alias_move.
    found = ledger.reconcile_alias(ALIAS, "2")
    assert found is not None
    assert (found.kind, found.state, found.reason, found.actor) == (
        PROMOTION,
        MOVE_RECOVERED,
        "promote: gained",
        "flow@box",
    )
    assert [m.to_version for m in ledger.alias_moves(ALIAS)] == ["1", "2"]
    assert "(recovered)" in format_move(ledger.alias_moves(ALIAS)[-1])
    assert ledger.reconcile_alias(ALIAS, "2") is None


def test_run_stopped_before_moving_the_alias_leaves_no_move(ledger: Ledger) -> None:
    move(ledger, None, "1")
    stale = ledger.begin_alias_move(ALIAS, "1", "2", PROMOTION, "r", "flow@box")
    assert ledger.reconcile_alias(ALIAS, "1") is None
    assert [m.to_version for m in ledger.alias_moves(ALIAS)] == ["1"]
    assert ledger.alias_moves(ALIAS, states=(MOVE_ABANDONED,))[0].move_id == stale
    # A mover that was only slow (its alias call finished after the reader looked) still completes.
    assert ledger.finish_alias_move(stale).state == MOVE_DONE
    assert [m.to_version for m in ledger.alias_moves(ALIAS)] == ["1", "2"]


def test_pending_move_elsewhere_does_not_explain_the_alias(ledger: Ledger) -> None:
    move(ledger, None, "1")
    ledger.begin_alias_move(ALIAS, "1", "2", PROMOTION, "r", "flow@box")
    found = ledger.reconcile_alias(ALIAS, "5")  # the alias is at neither 1 nor 2
    assert found is not None and found.kind == UNRECORDED and found.from_version == "1"
    assert ledger.alias_moves(ALIAS, states=(MOVE_PENDING,)) == []


def test_two_ledgers_on_one_file_record_an_unrecorded_move_once(tmp_path: Path) -> None:
    first, second = Ledger(tmp_path / "l.sqlite"), Ledger(tmp_path / "l.sqlite")
    move(first, None, "1")
    assert first.reconcile_alias(ALIAS, "2") is not None
    assert second.reconcile_alias(ALIAS, "2") is None
    with sqlite3.connect(tmp_path / "l.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM alias_moves WHERE kind = ?", (UNRECORDED,)).fetchone() == (1,)


def _moves(*steps: tuple[str | None, str, str]) -> list[AliasMove]:
    return [
        AliasMove(i, ALIAS, f"t{i}", before, after, kind, "r", "me@here", MOVE_DONE)
        for i, (before, after, kind) in enumerate(steps, start=1)
    ]


def test_previous_champion_after_promotions() -> None:
    moves = _moves((None, "1", PROMOTION), ("1", "2", PROMOTION), ("2", "3", PROMOTION))
    assert previous_champion(moves, "3") == "2"
    assert previous_champion(moves, None) is None
    assert previous_champion(moves[:1], "1") is None  # the first champion has nothing before it


def test_repeated_rollbacks_walk_back_instead_of_undoing() -> None:
    moves = _moves((None, "1", PROMOTION), ("1", "2", PROMOTION), ("2", "3", PROMOTION), ("3", "2", ROLLBACK))
    assert previous_champion(moves, "2") == "1"  # not 3, the version just rolled away from
    moves += _moves(("2", "1", ROLLBACK))
    assert previous_champion(moves, "1") is None


def test_previous_champion_after_rollback_then_promotion() -> None:
    moves = _moves((None, "1", PROMOTION), ("1", "2", PROMOTION), ("2", "1", ROLLBACK), ("1", "3", PROMOTION))
    assert previous_champion(moves, "3") == "1"


def test_previous_champion_after_an_unrecorded_move() -> None:
    moves = _moves((None, "1", PROMOTION), ("1", "2", PROMOTION), ("2", "4", UNRECORDED))
    assert previous_champion(moves, "4") == "2"  # the last version the history knew
    assert previous_champion(_moves((None, "4", UNRECORDED)), "4") is None
    assert previous_champion(moves, "7") is None  # not in the history at all


def test_format_history_one_line_per_move() -> None:
    moves = _moves((None, "1", PROMOTION), ("1", "2", PROMOTION), ("2", "1", ROLLBACK))
    lines = format_history(moves).splitlines()
    assert len(lines) == 4
    assert " ".join(lines[1].split()).startswith("t1 none -> v1 promotion me@here r")
    assert " ".join(lines[3].split()).startswith("t3 v2 -> v1 rollback me@here r")
    assert format_history([]) == "champion history: no moves yet"
