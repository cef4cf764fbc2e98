"""A workspace as one archive, and back: `perennial backup` and `perennial restore`.

A plain copy of the folder works too (see `relocation`), but only while nothing writes to it. The
backup holds the workspace lock, so no cycle, rollback or retention runs meanwhile, and copies each
SQLite database through SQLite's online backup, so a reader such as `perennial ui` cannot leave a
half-written page in the copy. A restore unpacks into a new folder; the first command there points
the stored paths at it.
"""

from __future__ import annotations

import sqlite3
import tarfile
import tempfile
from contextlib import closing
from pathlib import Path

from perennial.core.locking import workspace_lock
from perennial.core.settings import Settings

# Left out: locks (the workspace's, ingestion's, the log file's: held by whoever runs now, not by
# the restored copy) and SQLite's side files, whose content the online backup folds into the copy.
SKIPPED_SUFFIXES = (".lock", "-wal", "-shm", "-journal", ".partial")
_SQLITE_HEADER = b"SQLite format 3\x00"


class BackupProblem(ValueError):
    """The archive or the target cannot be used; nothing was written."""


def backup(settings: Settings, archive: Path) -> int:
    """Write the workspace into `archive` (a .tar.gz); the number of files."""
    root = settings.root
    archive = archive.expanduser().resolve()
    if archive.is_relative_to(root):
        raise BackupProblem(f"{archive} lies inside the workspace it would archive: write it elsewhere")
    if not root.is_dir():
        raise BackupProblem(f"no workspace at {root}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    count = 0
    with workspace_lock(settings, "backup"), tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(partial, "w:gz") as tar:
            for path in sorted(root.rglob("*")):
                if not path.is_file() or path.is_symlink() or _skipped(path):
                    continue
                name = path.relative_to(root).as_posix()
                tar.add(_consistent_copy(path, Path(scratch)) if _is_sqlite(path) else path, arcname=name)
                count += 1
        partial.replace(archive)
    return count


def restore(archive: Path, target: Path) -> int:
    """Unpack `archive` into `target`, which must not exist or be empty; the number of files."""
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupProblem(f"{target} is not empty: restore into a new folder")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            if not any(m.name in {"ledger.sqlite", "mlflow.db"} for m in members):
                raise BackupProblem(f"{archive} holds no perennial workspace (no ledger.sqlite or mlflow.db)")
            target.mkdir(parents=True, exist_ok=True)
            # The "data" filter refuses absolute names, ".." and links out of the target.
            tar.extractall(target, members=members, filter="data")
    except FileNotFoundError:
        raise BackupProblem(f"no archive at {archive}") from None
    except (tarfile.ReadError, EOFError):
        raise BackupProblem(f"{archive} is not a .tar.gz archive (perennial backup writes one)") from None
    except (tarfile.TarError, OSError) as error:  # a member named outside the target, a full disk
        raise BackupProblem(f"{archive} cannot be restored: {error}") from None
    return len(members)


def _skipped(path: Path) -> bool:
    return path.name.endswith(SKIPPED_SUFFIXES)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _consistent_copy(path: Path, scratch: Path) -> Path:
    copy = scratch / f"{len(list(scratch.iterdir()))}-{path.name}"
    with closing(sqlite3.connect(path, timeout=30)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return copy
