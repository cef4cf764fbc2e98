"""The ledger: one SQLite file recording every batch, every cycle, and the label set.
Over 400 lines because the schema, its migrations and every query live together: a column
changes in one file. (Splitting the alias history and drift checks out is a known next step.)

Every write is a single transaction, so a crash leaves either the old or the new row, never half.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from perennial.core.messages import one_line


class BatchStatus(StrEnum):
    """Where a batch stands. The ledger stores the value; it compares equal to its string."""

    PENDING = "pending"  # ingested and valid, waiting for a cycle
    QUARANTINED = "quarantined"  # refused by validation (or unreadable); the raw file is kept
    TRAINED = "trained"  # a challenger exists, the decision is not recorded yet
    REJECTED_MODEL = "rejected-model"  # the gate kept the champion
    PROMOTED = "promoted"  # the batch's challenger is (or was) the champion


PENDING, QUARANTINED, TRAINED = BatchStatus.PENDING, BatchStatus.QUARANTINED, BatchStatus.TRAINED
REJECTED_MODEL, PROMOTED = BatchStatus.REJECTED_MODEL, BatchStatus.PROMOTED
STATUSES = tuple(BatchStatus)

# Which status may follow which. TRAINED -> TRAINED lets an interrupted cycle be retried.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({QUARANTINED, TRAINED}),
    TRAINED: frozenset({TRAINED, PROMOTED, REJECTED_MODEL}),
    QUARANTINED: frozenset(),
    REJECTED_MODEL: frozenset(),
    PROMOTED: frozenset(),
}
# Batches that completed a cycle: their splits feed replay and the evaluation suite. A TRAINED batch
# (interrupted before a decision) is left out, so a batch that keeps failing cannot break later ones.
ACCEPTED = (REJECTED_MODEL, PROMOTED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    rows INTEGER,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    raw_path TEXT NOT NULL,
    model_version TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cycles (
    cycle INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    run_id TEXT,
    challenger_version TEXT,
    champion_version TEXT,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    metrics TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS drift_checks (
    check_id INTEGER PRIMARY KEY AUTOINCREMENT,
    checked_at TEXT NOT NULL,
    champion_version TEXT,
    drifted INTEGER NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    score REAL,
    report_path TEXT
);
CREATE TABLE IF NOT EXISTS alias_moves (
    move_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alias TEXT NOT NULL,
    moved_at TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    state TEXT NOT NULL
);
"""

# Ingest's own tables, apart from `batches`: how often a quarantined batch was checked again, and
# reads of a file's content that started and never finished (a file that kills the process).
_INGEST_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batch_attempts (batch_id TEXT PRIMARY KEY REFERENCES batches(batch_id),"
    " attempts INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS read_attempts (sha256 TEXT PRIMARY KEY, unfinished INTEGER NOT NULL,"
    " started_at TEXT NOT NULL)",
)


# Alias history: every move of a registry alias (MLflow keeps none). A move is written as `pending`
# before the alias moves and marked `done` after, so a run that stops in between leaves a trace that
# a reader can check against the registry (see Ledger.reconcile_alias).
class MoveKind(StrEnum):
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    RESTORE = "restore"  # an interrupted cycle's promotion undone before the batch is retrained
    UNRECORDED = "unrecorded"  # found in the registry with no matching record


class MoveState(StrEnum):
    PENDING = "pending"  # written, alias not (yet) known to have moved
    DONE = "done"
    RECOVERED = "recovered"  # was pending; the registry shows it happened
    ABANDONED = "abandoned"  # was pending; the alias never got there


PROMOTION, ROLLBACK, RESTORE, UNRECORDED = tuple(MoveKind)
MOVE_PENDING, MOVE_DONE, MOVE_RECOVERED, MOVE_ABANDONED = tuple(MoveState)
RECORDED_STATES = (MOVE_DONE, MOVE_RECOVERED)


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The row id of the row an INSERT just wrote (sqlite3 types it optional: None before any insert)."""
    if cursor.lastrowid is None:
        raise RuntimeError("the ledger's INSERT wrote no row")
    return cursor.lastrowid


class LedgerError(RuntimeError):
    """An impossible transition or an unknown batch."""


@dataclass(frozen=True)
class Batch:
    batch_id: str
    sha256: str
    source: str
    arrived_at: str
    rows: int | None
    status: str
    reason: str
    raw_path: str
    model_version: str | None
    updated_at: str


@dataclass(frozen=True)
class Cycle:
    cycle: int
    batch_id: str
    run_id: str | None
    challenger_version: str | None
    champion_version: str | None
    decision: str
    reasons: list[str]
    metrics: dict
    finished_at: str


@dataclass(frozen=True)
class DriftCheck:
    check_id: int
    checked_at: str
    champion_version: str | None
    drifted: bool
    action: str  # none | retrain | cooldown | labels-needed | skipped
    message: str
    score: float | None
    report_path: str | None


@dataclass(frozen=True)
class AliasMove:
    move_id: int
    alias: str
    moved_at: str
    from_version: str | None
    to_version: str | None
    kind: str  # promotion | rollback | unrecorded
    reason: str
    actor: str
    state: str  # done | recovered (shown); pending | abandoned (not a move, or not yet)


# Batches whose labels the gate found contradicting the champion (see
# perennial.evaluation.label_check.LabelCheck): left out of replay, joint training and later
# evaluation slices. Created on first use.
_FLAGS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batch_flags (batch_id TEXT PRIMARY KEY REFERENCES batches(batch_id),"
    " reason TEXT NOT NULL, details TEXT NOT NULL, flagged_at TEXT NOT NULL)"
)


# When each label joined the label set: the batch that brought it and its rows there. Created on
# first use; a ledger from before it knows its first labels without their batch.
_LABELS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS label_arrivals (label TEXT PRIMARY KEY, position INTEGER NOT NULL,"
    " batch_id TEXT, rows INTEGER, arrived_at TEXT)"
)


@dataclass(frozen=True)
class LabelArrival:
    label: str
    position: int  # its output row in every model's head from then on
    batch_id: str | None  # the batch that brought it (None: recorded before arrivals were)
    rows: int | None  # its rows in that batch
    arrived_at: str | None


@dataclass(frozen=True)
class BatchFlag:
    batch_id: str
    reason: str  # one line, for the decision and `perennial status`
    details: dict  # the numbers behind it
    flagged_at: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: commit on success, roll back on error
                yield db
        finally:
            db.close()

    # Batches
    def add_batch(
        self,
        batch_id: str,
        sha256: str,
        source: str,
        raw_path: Path,
        status: str = PENDING,
        reason: str = "",
        rows: int | None = None,
    ) -> Batch:
        """Record an arrived batch, already quarantined or pending with its row count: one row, one
        transaction, so ingest has a single commit point."""
        if status not in (PENDING, QUARANTINED):
            raise LedgerError(f"a batch arrives pending or quarantined, not {status}")
        stamp = now()
        with self._connect() as db:
            db.execute(
                "INSERT INTO batches (batch_id, sha256, source, arrived_at, rows, status, reason, raw_path,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (batch_id, sha256, source, stamp, rows, status, reason, str(raw_path), stamp),
            )
        return self.batch(batch_id)

    def find_by_hash(self, sha256: str) -> Batch | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE sha256 = ?", (sha256,)).fetchone()
        return Batch(**row) if row else None

    def batch(self, batch_id: str) -> Batch:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown batch {batch_id}")
        return Batch(**row)

    def batches(self, statuses: tuple[str, ...] = STATUSES) -> list[Batch]:
        marks = ",".join("?" * len(statuses))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY arrived_at, rowid", statuses
            ).fetchall()
        return [Batch(**row) for row in rows]

    def pending(self) -> list[Batch]:
        """Batches still to run, oldest first (TRAINED ones were interrupted before a decision)."""
        return self.batches((PENDING, TRAINED))

    def transition(
        self, batch_id: str, status: str, reason: str = "", model_version: str | None = None
    ) -> Batch:
        with self._connect() as db:
            _transition(db, batch_id, status, reason, model_version)
        return self.batch(batch_id)

    # Ingest bookkeeping: retries of quarantined batches, reads that never finished.
    @contextmanager
    def _ingest_db(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            for statement in _INGEST_SCHEMA:  # created on first use: older ledgers lack them
                db.execute(statement)
            yield db

    def retry_batch(
        self,
        batch_id: str,
        source: str,
        raw_path: Path,
        status: str,
        reason: str = "",
        rows: int | None = None,
    ) -> Batch:
        """A quarantined batch dropped again was checked again: its row takes the new outcome
        (pending or quarantined), reason, row count, name and arrival time, and counts one more
        attempt. One transaction: ingest's commit point for a retry. Only a quarantined batch is
        retried (the same content as any other batch is a duplicate)."""
        if status not in (PENDING, QUARANTINED):
            raise LedgerError(f"a retried batch becomes pending or quarantined, not {status}")
        stamp = now()
        with self._ingest_db() as db:
            row = db.execute("SELECT status FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                raise LedgerError(f"unknown batch {batch_id}")
            if row["status"] != QUARANTINED:
                raise LedgerError(f"batch {batch_id} is {row['status']}: only a quarantined batch is retried")
            db.execute(
                "UPDATE batches SET status = ?, reason = ?, rows = ?, source = ?, raw_path = ?,"
                " arrived_at = ?, model_version = NULL, updated_at = ? WHERE batch_id = ?",
                (status, reason, rows, source, str(raw_path), stamp, stamp, batch_id),
            )
            db.execute(
                "INSERT INTO batch_attempts (batch_id, attempts) VALUES (?, 2)"
                " ON CONFLICT(batch_id) DO UPDATE SET attempts = attempts + 1",
                (batch_id,),
            )
        return self.batch(batch_id)

    def attempts(self, batch_id: str) -> int:
        """How many times ingest checked the batch: 1, plus one per retry."""
        with self._ingest_db() as db:
            row = db.execute("SELECT attempts FROM batch_attempts WHERE batch_id = ?", (batch_id,)).fetchone()
        return int(row["attempts"]) if row else 1

    def start_read(self, sha256: str) -> int:
        """Note that reading this content starts; returns how many earlier reads of it never finished
        (the process was killed while reading: out of memory, or stopped)."""
        with self._ingest_db() as db:
            db.execute(
                "INSERT INTO read_attempts (sha256, unfinished, started_at) VALUES (?, 1, ?)"
                " ON CONFLICT(sha256) DO UPDATE SET unfinished = unfinished + 1,"
                " started_at = excluded.started_at",
                (sha256, now()),
            )
            row = db.execute("SELECT unfinished FROM read_attempts WHERE sha256 = ?", (sha256,)).fetchone()
        return int(row["unfinished"]) - 1

    def unfinished_reads(self, sha256: str) -> int:
        with self._ingest_db() as db:
            row = db.execute("SELECT unfinished FROM read_attempts WHERE sha256 = ?", (sha256,)).fetchone()
        return int(row["unfinished"]) if row else 0

    def finish_read(self, sha256: str) -> None:
        """The read's outcome is recorded: no attempt of this content is left unfinished."""
        with self._ingest_db() as db:
            db.execute("DELETE FROM read_attempts WHERE sha256 = ?", (sha256,))

    # Cycles
    def record_cycle(
        self,
        batch_id: str,
        run_id: str | None,
        challenger_version: str | None,
        champion_version: str | None,
        decision: str,
        reasons: list[str],
        metrics: dict,
    ) -> None:
        with self._connect() as db:
            _insert_cycle(
                db, batch_id, run_id, challenger_version, champion_version, decision, reasons, metrics
            )

    def record_decision(
        self,
        batch_id: str,
        status: str,
        run_id: str | None,
        challenger_version: str,
        champion_version: str | None,
        decision: str,
        reasons: list[str],
        summary: str,
        metrics: dict,
    ) -> None:
        """The end of a cycle in one transaction: the batch's final status and its cycle row, so a
        crash leaves either a batch still to decide or a decided batch with its cycle, never half."""
        with self._connect() as db:
            _transition(db, batch_id, status, summary, challenger_version)
            _insert_cycle(
                db, batch_id, run_id, challenger_version, champion_version, decision, reasons, metrics
            )

    def cycles(self) -> list[Cycle]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM cycles ORDER BY cycle").fetchall()
        return [
            Cycle(
                **{**dict(row), "reasons": json.loads(row["reasons"]), "metrics": json.loads(row["metrics"])}
            )
            for row in rows
        ]

    # Label set: an ordered list that only grows. Its order is the order of every model's output
    # rows: the first batch's labels sorted, then each later label appended as it arrives.
    @contextmanager
    def _labels_db(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute(_LABELS_SCHEMA)  # created on first use: older ledgers lack it
            yield db

    def label_set(self) -> list[str] | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'label_set'").fetchone()
        return json.loads(row["value"]) if row else None

    def fix_label_set(
        self, labels: list[str], batch_id: str | None = None, rows: dict[str, int] | None = None
    ) -> list[str]:
        """Record the first label set (sorted) once; later calls return the recorded one unchanged."""
        if self.label_set() is None:
            self.add_labels(sorted(labels), batch_id, rows)
        return self.label_set() or sorted(labels)

    def add_labels(
        self, labels: list[str], batch_id: str | None = None, rows: dict[str, int] | None = None
    ) -> list[str]:
        """Append the labels not yet in the set, in the order given, with the batch that brought
        them; returns the ones appended. One transaction: the set and its arrivals move together."""
        stamp = now()
        with self._labels_db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'label_set'").fetchone()
            current: list[str] = json.loads(row["value"]) if row else []
            added = [label for label in dict.fromkeys(labels) if label not in current]
            if not added:
                return []
            for position, label in enumerate(added, start=len(current)):
                db.execute(
                    "INSERT OR REPLACE INTO label_arrivals (label, position, batch_id, rows, arrived_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (label, position, batch_id, (rows or {}).get(label), stamp),
                )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('label_set', ?)",
                (json.dumps([*current, *added]),),
            )
        return added

    def label_history(self) -> list[LabelArrival]:
        """Every label in set order, with the batch that brought it where that is known."""
        with self._labels_db() as db:
            found = {row["label"]: row for row in db.execute("SELECT * FROM label_arrivals").fetchall()}
        history = []
        for position, label in enumerate(self.label_set() or []):
            row = found.get(label)
            if row is None:
                history.append(LabelArrival(label, position, None, None, None))
            else:
                history.append(LabelArrival(**{**dict(row), "position": position}))
        return history

    # Drift checks: what the monitor saw and did, for `perennial status` and the retrain cooldown.
    def record_drift_check(
        self,
        champion_version: str | None,
        drifted: bool,
        action: str,
        message: str,
        score: float | None,
        report_path: str | None,
        checked_at: str | None = None,
    ) -> DriftCheck:
        """Record a check; `checked_at` (ISO, UTC) is the time the check's decision used, default now."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO drift_checks (checked_at, champion_version, drifted, action, message, score,"
                " report_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (checked_at or now(), champion_version, int(drifted), action, message, score, report_path),
            )
            check_id = cursor.lastrowid
        return next(c for c in self.drift_checks() if c.check_id == check_id)

    def drift_checks(self) -> list[DriftCheck]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM drift_checks ORDER BY check_id").fetchall()
        return [DriftCheck(**{**dict(row), "drifted": bool(row["drifted"])}) for row in rows]

    # Label flags: a rejected batch whose labels contradict the champion.
    @contextmanager
    def _flags_db(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute(_FLAGS_SCHEMA)  # created on first use: older ledgers lack it
            yield db

    def set_label_flag(self, batch_id: str, reason: str | None, details: dict | None = None) -> None:
        """Flag the batch with `reason` (one line) and its numbers, or clear its flag (reason None):
        a retried cycle's decision replaces the interrupted one's."""
        with self._flags_db() as db:
            if reason is None:
                db.execute("DELETE FROM batch_flags WHERE batch_id = ?", (batch_id,))
                return
            db.execute(
                "INSERT OR REPLACE INTO batch_flags (batch_id, reason, details, flagged_at)"
                " VALUES (?, ?, ?, ?)",
                (batch_id, one_line(reason), json.dumps(details or {}), now()),
            )

    def label_flags(self) -> dict[str, BatchFlag]:
        """batch id -> its flag, for the flagged batches only."""
        with self._flags_db() as db:
            rows = db.execute("SELECT * FROM batch_flags ORDER BY flagged_at").fetchall()
        return {
            row["batch_id"]: BatchFlag(**{**dict(row), "details": json.loads(row["details"])}) for row in rows
        }

    # Alias history
    def begin_alias_move(
        self, alias: str, from_version: str | None, to_version: str | None, kind: str, reason: str, actor: str
    ) -> int:
        """Write the intent to move `alias` (state pending) before moving it; returns its id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO alias_moves (alias, moved_at, from_version, to_version, kind, reason, actor,"
                " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (alias, now(), from_version, to_version, kind, one_line(reason), actor, MOVE_PENDING),
            )
            return _inserted_id(cursor)

    def finish_alias_move(self, move_id: int) -> AliasMove:
        """The alias moved: the intent becomes a recorded move (even if a reader gave up on it)."""
        return self._set_move_state(move_id, MOVE_DONE)

    def abandon_alias_move(self, move_id: int) -> AliasMove:
        """The alias did not move (the registry call failed)."""
        return self._set_move_state(move_id, MOVE_ABANDONED)

    def _set_move_state(self, move_id: int, state: str) -> AliasMove:
        with self._connect() as db:
            db.execute("UPDATE alias_moves SET state = ? WHERE move_id = ?", (state, move_id))
            row = db.execute("SELECT * FROM alias_moves WHERE move_id = ?", (move_id,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown alias move {move_id}")
        return AliasMove(**row)

    def alias_moves(self, alias: str, states: tuple[str, ...] = RECORDED_STATES) -> list[AliasMove]:
        """The recorded moves of `alias`, oldest first (by when each was started)."""
        marks = ",".join("?" * len(states))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM alias_moves WHERE alias = ? AND state IN ({marks}) ORDER BY move_id",
                (alias, *states),
            ).fetchall()
        return [AliasMove(**row) for row in rows]

    def reconcile_alias(self, alias: str, current: str | None) -> AliasMove | None:
        """Make the history agree with where the registry says `alias` points (`current`, read by the
        caller before this call). Returns the move this added or completed, None when nothing was
        missing.

        * The last recorded move ends at `current`: consistent; pending intents after it never
          happened (the alias is not where they were going) and are marked abandoned.
        * A pending intent newer than the last recorded move goes to `current`: the run moved the
          alias and stopped before marking it done; it is marked recovered.
        * Otherwise the alias moved without any record (outside perennial, or before this table
          existed): an `unrecorded` move from the last recorded version to `current` is added, timed
          now, the moment it was noticed. Nothing is invented about who moved it or why.
        One immediate transaction: two readers cannot both add the same unrecorded move.
        """
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = self._reconcile(db, alias, current)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()
        return result

    @staticmethod
    def _reconcile(db: sqlite3.Connection, alias: str, current: str | None) -> AliasMove | None:
        rows = [
            AliasMove(**row)
            for row in db.execute("SELECT * FROM alias_moves WHERE alias = ? ORDER BY move_id", (alias,))
        ]
        recorded = [m for m in rows if m.state in RECORDED_STATES]
        last_to = recorded[-1].to_version if recorded else None
        last_id = recorded[-1].move_id if recorded else 0
        pending = [m for m in rows if m.state == MOVE_PENDING]
        found = None
        if current != last_to:
            arrived = [m for m in pending if m.move_id > last_id and m.to_version == current]
            if arrived:
                found = arrived[-1]
                db.execute(
                    "UPDATE alias_moves SET state = ? WHERE move_id = ?", (MOVE_RECOVERED, found.move_id)
                )
                found = AliasMove(**{**found.__dict__, "state": MOVE_RECOVERED})
            else:
                reason = (
                    f"{alias} found at {_v(current)} but the last recorded move left it at {_v(last_to)}:"
                    " moved outside perennial, or a run stopped between moving it and recording the move"
                    " (time is when this was noticed)"
                )
                stamp = now()
                cursor = db.execute(
                    "INSERT INTO alias_moves (alias, moved_at, from_version, to_version, kind, reason, actor,"
                    " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (alias, stamp, last_to, current, UNRECORDED, reason, "unknown", MOVE_DONE),
                )
                found = AliasMove(
                    _inserted_id(cursor), alias, stamp, last_to, current, UNRECORDED, reason, "unknown",
                    MOVE_DONE,
                )  # fmt: skip
        for move in pending:
            if found is None or move.move_id != found.move_id:
                db.execute(
                    "UPDATE alias_moves SET state = ? WHERE move_id = ?", (MOVE_ABANDONED, move.move_id)
                )
        return found


def _v(version: str | None) -> str:
    return f"v{version}" if version else "no version"


def _transition(
    db: sqlite3.Connection, batch_id: str, status: str, reason: str, model_version: str | None
) -> None:
    row = db.execute("SELECT status FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    if row is None:
        raise LedgerError(f"unknown batch {batch_id}")
    if status not in TRANSITIONS[row["status"]]:
        raise LedgerError(f"batch {batch_id}: cannot go from {row['status']} to {status}")
    db.execute(
        "UPDATE batches SET status = ?, reason = ?, model_version = COALESCE(?, model_version),"
        " updated_at = ? WHERE batch_id = ?",
        (status, reason, model_version, now(), batch_id),
    )


def _insert_cycle(
    db: sqlite3.Connection,
    batch_id: str,
    run_id: str | None,
    challenger_version: str | None,
    champion_version: str | None,
    decision: str,
    reasons: list[str],
    metrics: dict,
) -> None:
    db.execute(
        "INSERT INTO cycles (batch_id, run_id, challenger_version, champion_version, decision,"
        " reasons, metrics, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            batch_id,
            run_id,
            challenger_version,
            champion_version,
            decision,
            json.dumps(reasons),
            json.dumps(metrics),
            now(),
        ),
    )
