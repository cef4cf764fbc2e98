"""The ledger: one SQLite file recording every batch, every cycle, and the label set.

Every write is a single transaction, so a crash leaves either the old or the new row, never half.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PENDING = "pending"
QUARANTINED = "quarantined"
TRAINED = "trained"
REJECTED_MODEL = "rejected-model"
PROMOTED = "promoted"
STATUSES = (PENDING, QUARANTINED, TRAINED, REJECTED_MODEL, PROMOTED)

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
"""


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
    def add_batch(self, batch_id: str, sha256: str, source: str, raw_path: Path) -> Batch:
        stamp = now()
        with self._connect() as db:
            db.execute(
                "INSERT INTO batches (batch_id, sha256, source, arrived_at, status, raw_path, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch_id, sha256, source, stamp, PENDING, str(raw_path), stamp),
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

    def set_rows(self, batch_id: str, rows: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE batches SET rows = ?, updated_at = ? WHERE batch_id = ?", (rows, now(), batch_id)
            )

    def transition(
        self, batch_id: str, status: str, reason: str = "", model_version: str | None = None
    ) -> Batch:
        with self._connect() as db:
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
        return self.batch(batch_id)

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

    def cycles(self) -> list[Cycle]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM cycles ORDER BY cycle").fetchall()
        return [
            Cycle(
                **{**dict(row), "reasons": json.loads(row["reasons"]), "metrics": json.loads(row["metrics"])}
            )
            for row in rows
        ]

    # Label set: fixed by settings or by the first accepted batch.
    def label_set(self) -> list[str] | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'label_set'").fetchone()
        return json.loads(row["value"]) if row else None

    def fix_label_set(self, labels: list[str]) -> list[str]:
        """Record the label set once; later calls return the recorded one unchanged."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('label_set', ?)",
                (json.dumps(sorted(labels)),),
            )
        return self.label_set() or sorted(labels)

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
