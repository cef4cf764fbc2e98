"""A workspace that was copied or moved works where it now lies, and leaves the original alone.

MLflow's local store records absolute locations (the experiment's artifact root, every run's
artifact URI, every model version's storage) and has no notion of a location relative to its
database; the ledger records where each raw file is kept. So the workspace remembers the folder it
was last used in (`store/location`). When a command finds it in another folder, every stored path or
`file:` URI under the old folder is pointed at the same place under the new one before anything
reads it. Without this a copy would read the original's artifacts, and write its new runs into the
original's artifact store.

Idempotent and safe to interrupt: a value already under the new folder is left as it is, and the
marker is written last, so a command stopped half-way does the rest next time.
"""

from __future__ import annotations

import fcntl
import logging
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

from perennial.core.files import write_text_atomic
from perennial.core.settings import Settings

log = logging.getLogger(__name__)

MARKER = Path("store") / "location"
# The databases a workspace owns. Prefect's (prefect/prefect.db) is left as it is: its paths are
# the history of runs, which did run in the old folder.
OWN_DATABASES = ("mlflow.db", "ledger.sqlite")
# SQLite's rule for a column of text affinity; MLflow declares VARCHAR, the ledger TEXT.
_TEXT_TYPES = ("CHAR", "CLOB", "TEXT")


def follow_move(settings: Settings) -> Path | None:
    """Point the workspace's stored paths at where it lies now; the folder it was last used in if
    that was elsewhere, else None. A new workspace only records where it is. Never stops a command:
    a store it cannot rewrite (read-only, locked) is said in one line and tried again next time."""
    marker = settings.root / MARKER
    try:
        if _recorded(marker) == str(settings.root):  # the usual case: one small read, no lock
            return None
        marker.parent.mkdir(parents=True, exist_ok=True)
        # One process rewrites; another starting beside it waits, then finds the marker up to date.
        with (marker.parent / ".location.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _follow_move(settings)
    except (OSError, sqlite3.Error) as error:
        log.warning(
            "workspace %s: stored paths not updated (%s); tried again next time", settings.root, error
        )
        return None


def _recorded(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _follow_move(settings: Settings) -> Path | None:
    root = settings.root
    marker = root / MARKER
    recorded = _recorded(marker)
    if recorded is None:
        recorded = _root_in_store(root)  # a workspace from before the marker, or a bare copy
    if recorded == str(root):
        if _recorded(marker) is None:
            write_text_atomic(marker, recorded)
        return None
    previous = Path(recorded) if recorded else None
    if previous is not None:
        changed = sum(rebase_database(root / name, previous, root) for name in OWN_DATABASES)
        changed += sum(rebase_text_file(path, previous, root) for path in _mlmodel_files(settings))
        log.warning(
            "workspace moved from %s to %s: %d stored locations now point here (webhooks set up with "
            "`perennial notify` match the old folder: set them up again)",
            previous,
            root,
            changed,
        )
    write_text_atomic(marker, str(root))
    return previous


def _root_in_store(root: Path) -> str:
    """The folder a workspace without a marker was used in, as its stores say ("" for a new one):
    MLflow's artifact root is `<workspace>/mlartifacts`, a raw file `<workspace>/store/raw/<file>`."""
    questions = (
        (
            "mlflow.db",
            "SELECT artifact_location FROM experiments WHERE artifact_location LIKE '%/mlartifacts'",
            1,
        ),
        ("ledger.sqlite", "SELECT raw_path FROM batches", 3),
    )
    for name, query, depth in questions:
        if not (root / name).is_file():
            continue
        try:
            with closing(sqlite3.connect(root / name, timeout=30)) as db:
                row = db.execute(query).fetchone()
        except sqlite3.Error:  # not the schema we know (an older or newer store): nothing to infer
            continue
        if row and row[0]:
            location = str(row[0]).removeprefix("file://")
            return str(Path(unquote(location)).parents[depth - 1])
    return ""


def rebase_database(path: Path, old: Path, new: Path) -> int:
    """Rewrite every text value that is `old` or lies under it (as a path or as a file: URI) to the
    same place under `new`, in every table of the SQLite file at `path`; the number of values."""
    if not path.is_file():
        return 0
    changed = 0
    with closing(sqlite3.connect(path, timeout=30)) as db, db:
        for table in _tables(db):
            for column in _text_columns(db, table):
                for before, after in _forms(old, new):
                    changed += _rebase_column(db, table, column, before, after, new.is_relative_to(old))
    return changed


def rebase_text_file(path: Path, old: Path, new: Path) -> int:
    """The same rewrite in a small text file (MLflow's MLmodel names its own location)."""
    text = original = path.read_text(encoding="utf-8")
    # Moved into a folder of its own: what already lies under it was rewritten by an earlier try.
    inside = f"(?!{re.escape(new.relative_to(old).as_posix() + '/')})" if new.is_relative_to(old) else ""
    for before, after in _forms(old, new):
        # Backslashes doubled: re.sub reads them as escapes, and a folder name may hold one.
        text = re.sub(re.escape(before + "/") + inside, (after + "/").replace("\\", "\\\\"), text)
    if text == original:
        return 0
    write_text_atomic(path, text)
    return 1


def _forms(old: Path, new: Path) -> list[tuple[str, str]]:
    # URI first: the plain path is a substring of it only after "file://", which the URI form
    # has already rewritten by then.
    return [(old.as_uri(), new.as_uri()), (str(old), str(new))]


def _tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [name for (name,) in rows]


def _text_columns(db: sqlite3.Connection, table: str) -> list[str]:
    columns = db.execute(f"PRAGMA table_info({_quoted(table)})")
    return [name for _, name, declared, *_ in columns if any(t in declared.upper() for t in _TEXT_TYPES)]


def _rebase_column(
    db: sqlite3.Connection, table: str, column: str, before: str, after: str, nested: bool
) -> int:
    c = _quoted(column)
    under_before = f"({c} = :before OR substr({c}, 1, :before_len) = :before_dir)"
    # Moved into a folder of its own (`nested`): a value already under the new folder was rewritten
    # by an interrupted earlier attempt. Otherwise nothing under the old folder is under the new one.
    under_after = f" AND NOT ({c} = :after OR substr({c}, 1, :after_len) = :after_dir)" if nested else ""
    cursor = db.execute(
        f"UPDATE {_quoted(table)} SET {c} = :after || substr({c}, :rest) WHERE {under_before}{under_after}",
        {
            "before": before,
            "before_dir": before + "/",
            "before_len": len(before) + 1,
            "after": after,
            "after_dir": after + "/",
            "after_len": len(after) + 1,
            "rest": len(before) + 1,
        },
    )
    return cursor.rowcount


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _mlmodel_files(settings: Settings) -> list[Path]:
    return (
        sorted(settings.mlflow_artifacts_dir.rglob("MLmodel"))
        if settings.mlflow_artifacts_dir.is_dir()
        else []
    )
