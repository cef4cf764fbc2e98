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
    """The archive or the target cannot be used, or the copy failed; nothing was left written."""


def backup(settings: Settings, archive: Path) -> int:
    """Write the workspace into `archive` (a .tar.gz); the number of entries. A failure leaves no
    archive behind (and no half of one)."""
    root = settings.root
    archive = archive.expanduser().resolve()
    if archive.is_relative_to(root):
        raise BackupProblem(f"{archive} lies inside the workspace it would archive: write it elsewhere")
    if not root.is_dir():
        raise BackupProblem(f"no workspace at {root}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    try:
        # The database copies go beside the archive (room for the archive means room for them), one
        # at a time, rather than to a /tmp that may be a small tmpfs.
        with workspace_lock(settings, "backup"), tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
            with tarfile.open(partial, "w:gz") as tar:
                count = sum(_add(tar, path, root, Path(scratch)) for path in sorted(root.rglob("*")))
            partial.replace(archive)
    except sqlite3.Error as error:
        raise BackupProblem(f"a database of {root} could not be copied: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return count


def _add(tar: tarfile.TarFile, path: Path, root: Path, scratch: Path) -> int:
    """Add one entry (1), or leave it out (0): a folder (its files come on their own), a lock, a
    link out of the workspace, a file that went away meanwhile (a prediction log rotated)."""
    name = path.relative_to(root).as_posix()
    if path.is_symlink():  # Hugging Face's cache is links into its own blobs: kept as links
        if not path.resolve().is_relative_to(root):
            return 0
        tar.add(path, arcname=name)
        return 1
    if not path.is_file() or _skipped(path):
        return 0
    try:
        if _is_sqlite(path):
            copy = _consistent_copy(path, scratch)
            tar.add(copy, arcname=name)
            copy.unlink()
        else:
            tar.add(path, arcname=name)
    except FileNotFoundError:
        return 0
    return 1


def restore(archive: Path, target: Path) -> int:
    """Unpack `archive` into `target`, which must not exist or be empty; the number of entries.
    Unpacked beside the target first and renamed into place: a failure leaves the target as it was."""
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupProblem(f"{target} is not empty: restore into a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            members = [m for m in tar.getmembers() if m.isfile() or m.issym()]
            if not any(m.name in {"ledger.sqlite", "mlflow.db"} for m in members):
                raise BackupProblem(f"{archive} holds no perennial workspace (no ledger.sqlite or mlflow.db)")
            unpacked = Path(scratch) / "workspace"
            # The "data" filter refuses absolute names, ".." and links out of the target.
            tar.extractall(unpacked, members=members, filter="data")
            if target.exists():
                target.rmdir()  # empty, as checked
            unpacked.replace(target)
    except FileNotFoundError as error:
        if Path(archive).exists():
            raise BackupProblem(f"{archive} cannot be restored: {error}") from None
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
    copy = scratch / path.name
    with closing(sqlite3.connect(path, timeout=30)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return copy
