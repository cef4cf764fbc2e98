"""Ingest: take a batch file from the inbox, hash it, keep the raw copy, parse it, record it.
Over 400 lines because every way a file can be refused (and what is kept of it) is decided here,
in one sequence a reader can follow from top to bottom.

A batch's id is derived from the sha256 of its bytes, so the same content dropped twice is
recognised and skipped, unless its batch was quarantined: dropping that content again is a retry,
checked again with the current settings (a quarantine never blocks a fixed setting or a retry).
The raw file is kept byte for byte; the parsed rows (`read_batch`, on `perennial.data.batch_files`) go to
Parquet in the batch store (`perennial.data.batch_store`, which splits a batch once it is validated). A
batch whose rows mostly repeat earlier batches is quarantined (`perennial.data.overlap`).

Nothing in the inbox is left silently: every entry is recorded with a one-line reason, except names
in progress (see `perennial.data.inbox`, with how to upload safely). A file with an unknown suffix or a bad
name is quarantined, its raw copy kept; a link, symbolic or hard, is refused unread; a directory,
FIFO, socket or device is never opened, and is moved aside to `store/set-aside/<batch id>`.

A file still being written is never ingested: one another process holds open for writing (asked of
the kernel, on Linux), or whose size, modification time or inode changed while it was read, is left
for the next run and nothing is recorded.

Ingests exclude each other with a short lock per file (`<workspace>/.ingest.lock`), so concurrent
runs and `perennial ingest` commands record each batch once. A file whose reading killed the process
twice (out of memory) is set aside unread the third time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import signal
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from perennial.core.faults import fault_point
from perennial.core.files import write_text_atomic
from perennial.core.messages import one_line
from perennial.core.settings import Settings
from perennial.data.batch_errors import BadBatch, UnreadableBatch, human_size
from perennial.data.batch_files import SUFFIXES, read_table, safe_name, stored_suffix, unsafe_name_problem
from perennial.data.batch_store import rows_path, write_parquet
from perennial.data.ledger import PENDING, QUARANTINED, Batch, Ledger, LedgerError
from perennial.data.overlap import overlap_with_earlier

log = logging.getLogger(__name__)

SKIPPED = "skipped"  # an IngestResult status: nothing recorded (the file vanished, is still being written)
ID_CHARS = 16  # hex characters of the sha256 kept as the batch id
MAX_UNFINISHED_READS = 2  # reads of one content that killed the process before it is set aside unread
INGEST_LOCK = ".ingest.lock"
STILL_WRITTEN = "still being written; left for the next run"


@dataclass(frozen=True)
class IngestResult:
    source: str
    batch_id: str
    duplicate: bool
    status: str
    message: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_labels(labels: pd.Series) -> pd.Series:
    """Labels become strings; integral floats (1.0 from a column with gaps) become '1'."""
    if pd.api.types.is_float_dtype(labels):
        whole = labels.dropna()
        if (whole == whole.round()).all():
            labels = labels.astype("Int64")
    return labels.astype("string").astype(object).where(labels.notna(), None)


def read_batch(
    path: Path,
    display_name: str | None = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Parse a CSV, JSONL or Parquet batch into a frame; `label` comes back as strings.
    A file that cannot be used raises BadBatch (UnreadableBatch when it does not parse) with one line
    saying what is wrong, where, and what to do (see batch_files). `max_rows` and `max_bytes` (the
    decompressed size of a Parquet file) stop reading a batch that is too big; None: no limit."""
    frame = read_table(path, display_name or safe_name(path.name), max_rows=max_rows, max_bytes=max_bytes)
    if "label" in frame.columns:
        frame["label"] = _normalise_labels(frame["label"])
    for column in frame.columns:
        if column != "label" and not pd.api.types.is_numeric_dtype(frame[column]):
            # Mixed-type columns (numbers among strings in JSONL) would not round-trip through Parquet.
            values = frame[column]
            frame[column] = values.map(lambda v: v if v is None or isinstance(v, str) else str(v)).where(
                values.notna(), None
            )
    return frame


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One ingest at a time in a workspace (`<workspace>/.ingest.lock`): held for one file, from the
    look-up to the commit, so two processes never both record, or both write the rows of, one batch.
    flock: the kernel drops it when its holder dies, so it is never stale. Not the workspace lock
    (locking.py), which a training run holds for minutes."""
    settings.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.root / INGEST_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ingest_file(path: Path, settings: Settings, ledger: Ledger) -> IngestResult:
    """Record one inbox entry. Idempotent: the same content twice is a no-op that says so, unless the
    first was quarantined: then it is a retry, checked again with the current settings.

    Whatever is wrong with the entry, it is recorded with a one-line reason and quarantined, a file's
    bytes kept in the store; nothing is raised for a bad file, so one cannot stop the others. The
    name is only shown (made safe first), never used to build a path; a link is never followed and
    an entry that is not a regular file is never opened. A file still being written is left alone
    and nothing is recorded (status `skipped`).
    """
    path = Path(path)
    name = safe_name(path.name)
    # A file named outside the inbox (`perennial ingest FILE`) was chosen by its user: its other
    # names do not matter, and what is not a file there is not ours to move.
    inside = _in_inbox(path, settings)
    with ingest_lock(settings):
        try:
            entry = path.lstat()
        except OSError as error:
            return _skipped(name, error)
        if stat.S_ISLNK(entry.st_mode):
            return _record_symlink(path, name, settings, ledger)
        if not stat.S_ISREG(entry.st_mode):
            if not inside:
                return _skipped(name, OSError(errno.EINVAL, "not a regular file"))
            return _record_not_a_file(path, name, entry, settings, ledger)
        if entry.st_nlink > 1 and inside:
            return _record_hard_link(path, name, entry, settings, ledger)
        return _ingest_regular(path, name, settings, ledger, refuse_links=inside)


def _skipped(name: str, error: OSError) -> IngestResult:
    why = "gone before it could be read" if error.errno == errno.ENOENT else error.strerror or str(error)
    return IngestResult(name, "", False, SKIPPED, f"{name}: {why}; nothing recorded")


def _ingest_regular(
    path: Path, name: str, settings: Settings, ledger: Ledger, refuse_links: bool
) -> IngestResult:
    try:
        copy = _copy_into_store(path, settings, refuse_links)
    except _HardLink as link:  # linked after the check above
        return _record_hard_link(path, name, link.entry, settings, ledger)
    except _LeftForLater as why:
        return IngestResult(name, "", False, SKIPPED, f"{name}: {STILL_WRITTEN} ({why})")
    except OSError as error:
        if error.errno == errno.ELOOP:  # became a link after the check above
            return _record_symlink(path, name, settings, ledger)
        return _skipped(name, error)
    problem = unsafe_name_problem(path.name) or _suffix_problem(path.name, name)
    known = ledger.find_by_hash(copy.sha)
    # A refused name must not block the same bytes under a good name: such a record is keyed by both.
    record_sha = copy.sha if problem is None else _digest(b"name", os.fsencode(path.name), copy.sha.encode())
    if known is None and problem is not None:
        known = ledger.find_by_hash(record_sha)
    if known is not None and known.status != QUARANTINED:
        copy.tmp.unlink(missing_ok=True)
        _remove_from_inbox(path, settings, copy.identity)
        return IngestResult(
            name,
            known.batch_id,
            True,
            known.status,
            f"{name}: same content as batch {known.batch_id} ({known.source}, {known.status}); skipped",
        )
    # Same content as a quarantined batch: a retry. Its reason may be gone (a limit raised, a file
    # fixed by renaming, an internal error), so it is checked again, never skipped.
    record_sha = known.sha256 if known is not None else record_sha
    batch_id = record_sha[:ID_CHARS]
    try:
        if problem is None and ledger.start_read(copy.sha) >= MAX_UNFINISHED_READS:
            problem = (
                f"{name}: reading it stopped perennial twice (out of memory or killed?); set aside unread:"
                " split it into smaller batches or give perennial more memory, then drop it again"
            )
        raw = settings.raw_dir / f"{batch_id}{stored_suffix(path.name)}"
        os.replace(copy.tmp, raw)
        fault_point("ingest-copied", settings.root)
        if known is not None:
            rows_path(settings, batch_id).unlink(missing_ok=True)  # the earlier attempt's, if any
        status, reason, rows = _outcome(raw, name, path.name, copy.size, batch_id, problem, settings, ledger)
        if _identity(path) != copy.identity:  # a writer came back: record nothing, take it next run
            if known is None or str(raw) != known.raw_path:
                raw.unlink(missing_ok=True)
            rows_path(settings, batch_id).unlink(missing_ok=True)
            ledger.finish_read(copy.sha)
            message = f"{name}: {STILL_WRITTEN} (it changed while it was read)"
            return IngestResult(name, "", False, SKIPPED, message)
        return _commit(
            path, settings, ledger, batch_id, record_sha, name, raw, status, reason, rows,
            identity=copy.identity, retried=known, read=copy.sha,
        )  # fmt: skip
    except BaseException:  # raised, not killed: not a read that stopped perennial
        copy.tmp.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            ledger.finish_read(copy.sha)
        raise


def _outcome(
    raw: Path,
    name: str,
    file_name: str,
    size: int,
    batch_id: str,
    problem: str | None,
    settings: Settings,
    ledger: Ledger,
) -> tuple[str, str, int | None]:
    """(pending, "", row count) with the rows stored, or (quarantined, one-line reason, None)."""
    try:
        if problem is not None:
            raise BadBatch(problem)
        suffix = Path(file_name).suffix.lower()
        frame = _checked_rows(raw, name, suffix, size, batch_id, settings, ledger)
        write_parquet(frame, rows_path(settings, batch_id))
    except Exception as error:  # anything unusable is quarantined; the raw copy stays
        reason = str(error) if isinstance(error, BadBatch) else f"cannot store {name}: {error}"
        return QUARANTINED, one_line(reason), None
    return PENDING, "", len(frame)


def _suffix_problem(file_name: str, name: str) -> str | None:
    suffix = Path(file_name).suffix.lower()
    if suffix in SUFFIXES:
        return None
    what = f"unsupported file type {suffix!r}" if suffix else "no file type (no suffix)"
    return (
        f"{name}: {what}; it was kept but not read: use one of {', '.join(SUFFIXES)} (a file still being"
        " written belongs under a hidden or .part name until it is complete)"
    )


def _commit(
    path: Path,
    settings: Settings,
    ledger: Ledger,
    batch_id: str,
    sha: str,
    name: str,
    raw: Path,
    status: str,
    reason: str,
    rows: int | None = None,
    *,
    identity: tuple[int, int, int, int] | None = None,
    retried: Batch | None = None,
    read: str | None = None,
    remove: bool = True,
    linked_only: bool = False,
) -> IngestResult:
    """The ledger row is ingest's commit point: before it, a crash leaves the file in the inbox for the
    next run (raw copy and rows are simply written again); after it, the same file is a known
    duplicate, or a retry when it was quarantined. `read`: the content whose read is now finished."""
    try:
        if retried is None:
            ledger.add_batch(batch_id, sha, name, raw, status=status, reason=reason, rows=rows)
        else:
            ledger.retry_batch(batch_id, name, raw, status, reason, rows)
    except (sqlite3.IntegrityError, LedgerError):  # recorded meanwhile by a process without the lock
        known = ledger.find_by_hash(sha)
        if read is not None:
            ledger.finish_read(read)
        if remove:
            _remove_from_inbox(path, settings, identity, linked_only)
        shown = f"batch {known.batch_id} ({known.source}, {known.status})" if known else "another batch"
        return IngestResult(
            name, known.batch_id if known else batch_id, True, known.status if known else status,
            f"{name}: recorded by another process meanwhile, as {shown}; skipped",
        )  # fmt: skip
    if read is not None:
        ledger.finish_read(read)
    fault_point("ingest-recorded", settings.root)
    if remove:
        _remove_from_inbox(path, settings, identity, linked_only)
    message = f"{name}: batch {batch_id}, {rows} rows" if status == PENDING else reason
    if retried is not None:
        message = f"{name}: retrying batch {batch_id}, quarantined earlier: {retried.reason}; now: {message}"
    return IngestResult(name, batch_id, False, status, one_line(message))


def _checked_rows(
    raw: Path, name: str, suffix: str, size: int, batch_id: str, settings: Settings, ledger: Ledger
) -> pd.DataFrame:
    """The batch's rows, or BadBatch saying why not: size limits first (before parsing), then the
    parse, then rows that only repeat earlier batches."""
    if suffix not in SUFFIXES:
        raise UnreadableBatch(f"{name}: unsupported file type {suffix!r} (use one of {', '.join(SUFFIXES)})")
    if size > settings.max_file_bytes:
        raise BadBatch(
            f"{name} is {human_size(size)}, above the {human_size(settings.max_file_bytes)} limit "
            "(max_file_bytes); it was not read: split it into smaller batches"
        )
    if size == 0:
        raise BadBatch(f"{name} is empty (0 bytes): export the batch again, a header line then the rows")
    frame = read_batch(
        raw, display_name=name, max_rows=settings.max_rows, max_bytes=settings.max_decompressed_bytes
    )
    if frame.empty:
        columns = ", ".join(map(str, frame.columns))
        raise BadBatch(
            f"{name} has no rows"
            + (f" (only a header: {columns})" if columns else "")
            + f": add the rows, at least {settings.min_rows}"
        )
    overlap = overlap_with_earlier(frame, batch_id, settings, ledger)
    if overlap is not None:
        raise BadBatch(f"{name}: {overlap}")
    # Our own column wins: a user's `batch_id` column (e.g. a re-exported split) is replaced.
    frame = frame.drop(columns=["batch_id"], errors="ignore")
    frame.insert(0, "batch_id", batch_id)
    return frame


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


@dataclass(frozen=True)
class _Copy:
    """A file copied into the store: the temporary copy, the sha256 and size of its bytes, and the
    file's identity while it was read."""

    tmp: Path
    sha: str
    size: int
    identity: tuple[int, int, int, int]


class _LeftForLater(Exception):
    """The file is still being written: nothing is recorded, it stays in the inbox for the next run."""


class _HardLink(Exception):
    """The file has other names: it is refused unread."""

    def __init__(self, entry: os.stat_result) -> None:
        super().__init__(f"{entry.st_nlink} names")
        self.entry = entry


def _identity_of(entry: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is written to or replaced: device, inode, size, modification time."""
    return (entry.st_dev, entry.st_ino, entry.st_size, entry.st_mtime_ns)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        return _identity_of(path.lstat())
    except OSError:
        return None


def open_for_writing(fd: int) -> bool | None:
    """Whether some process holds the file open for writing, asked of the kernel (Linux): a read
    lease is refused (EAGAIN) while any writer has it open. None when it cannot tell: not Linux, not
    the file's owner (EACCES), a network file system (EINVAL)."""
    if not sys.platform.startswith("linux"):
        return None
    setlease = getattr(fcntl, "F_SETLEASE", 1024)
    try:
        # A writer opening the file while the lease is held signals its holder: SIGIO by default,
        # which would end this process; SIGURG is ignored unless handled. Held for two calls only.
        fcntl.fcntl(fd, getattr(fcntl, "F_SETSIG", 10), signal.SIGURG)
        fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
    except OSError as error:
        return True if error.errno in (errno.EAGAIN, errno.EBUSY) else None
    with contextlib.suppress(OSError):  # closing the descriptor right after drops the lease too
        fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
    return False


def _copy_into_store(path: Path, settings: Settings, refuse_links: bool = True) -> _Copy:
    """Copy a regular file into a temporary file in the raw store, hashing it on the way: one read, so
    the hash is of exactly the bytes kept. Never follows a symbolic link (ELOOP); never reads a file
    with other names (_HardLink) or one still being written (_LeftForLater): held open for writing by
    another process, or changed (size, modification time, inode) while it was read."""
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as source:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if before.st_nlink > 1 and refuse_links:
            raise _HardLink(before)
        if open_for_writing(fd):
            raise _LeftForLater("another process has it open for writing")
        settings.raw_dir.mkdir(parents=True, exist_ok=True)
        out, tmp = tempfile.mkstemp(dir=settings.raw_dir, prefix=".incoming.")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(out, "wb") as target:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
            identity = _identity_of(before)
            if _identity_of(os.fstat(fd)) != identity or _identity(path) != identity:
                raise _LeftForLater("it changed while it was read")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return _Copy(Path(tmp), digest.hexdigest(), size, identity)


def _record_symlink(path: Path, name: str, settings: Settings, ledger: Ledger) -> IngestResult:
    """A symbolic link is refused and recorded (where it pointed), never followed: its target is not
    read or copied. The link is removed from the inbox; its target is left alone."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    sha = _digest(b"symlink", os.fsencode(path.name), os.fsencode(target))
    known = ledger.find_by_hash(sha)
    if known is not None:
        _remove_from_inbox(path, settings)
        return IngestResult(name, known.batch_id, True, known.status, f"{name}: the same link again; skipped")
    batch_id = sha[:ID_CHARS]
    shown = safe_name(target)
    inside = Path(os.path.normpath(path.parent / target)).is_relative_to(settings.inbox)
    where = "inside" if inside else "outside"
    raw = write_text_atomic(
        settings.raw_dir / f"{batch_id}.link.txt",
        f"symbolic link {name!r} -> {shown!r} ({where} the inbox); the target was not read\n",
    )
    reason = (
        f"{name} is a symbolic link to {shown!r} ({where} the inbox); links are never followed and the"
        " target was not read: put the file itself in the inbox"
    )
    return _commit(path, settings, ledger, batch_id, sha, name, raw, QUARANTINED, reason)


def _record_hard_link(
    path: Path, name: str, entry: os.stat_result, settings: Settings, ledger: Ledger
) -> IngestResult:
    """A regular file with other names (a hard link, perhaps to a file outside the inbox) is refused
    unread, like a symbolic link: recorded quarantined with a note as its raw file. This name is
    removed from the inbox (the file lives on under its other names); were it the last, it stays."""
    sha = _digest(b"hardlink", os.fsencode(path.name), f"{entry.st_dev}:{entry.st_ino}".encode())
    known = ledger.find_by_hash(sha)
    if known is not None:
        _remove_from_inbox(path, settings, linked_only=True)
        return IngestResult(name, known.batch_id, True, known.status, f"{name}: the same link again; skipped")
    batch_id = sha[:ID_CHARS]
    links = entry.st_nlink
    raw = write_text_atomic(
        settings.raw_dir / f"{batch_id}.link.txt",
        f"hard link {name!r}: the file has {links} names (inode {entry.st_ino}); it was not read\n",
    )
    reason = f"{name} has {links} names (a hard link); it was not read: copy the file into the inbox instead"
    return _commit(path, settings, ledger, batch_id, sha, name, raw, QUARANTINED, reason, linked_only=True)


_NOT_A_FILE = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def set_aside_dir(settings: Settings) -> Path:
    """Where inbox entries that are not files are moved (`store/set-aside/<batch id>`)."""
    return settings.root / "store" / "set-aside"


def _record_not_a_file(
    path: Path, name: str, entry: os.stat_result, settings: Settings, ledger: Ledger
) -> IngestResult:
    """An entry that is not a regular file (directory, FIFO, socket, device) is never opened (a FIFO
    would block): it is recorded quarantined with a note as its raw file and moved aside; one that
    cannot be moved stays in the inbox, with one warning a run."""
    kind = next((what for is_kind, what in _NOT_A_FILE if is_kind(entry.st_mode)), "not a regular file")
    sha = _digest(b"entry", os.fsencode(path.name), f"{entry.st_dev}:{entry.st_ino}".encode())
    known = ledger.find_by_hash(sha)
    batch_id = known.batch_id if known is not None else sha[:ID_CHARS]
    failed = _set_aside(path, name, settings, batch_id)
    if known is not None:
        now = "moved aside now" if failed is None else "still in the inbox: remove it"
        return IngestResult(name, batch_id, True, known.status, f"{name}: recorded before ({kind}); {now}")
    where = (
        f"was moved aside to store/set-aside/{batch_id}"
        if failed is None
        else f"could not be moved aside ({failed}): remove it from the inbox"
    )
    raw = write_text_atomic(
        settings.raw_dir / f"{batch_id}.entry.txt",
        f"{kind} {name!r} in the inbox: never opened; it {where}\n",
    )
    reason = (
        f"{name} is {kind}, not a batch file: it was never opened and {where}; put only batch files"
        f" ({', '.join(SUFFIXES)}) in the inbox"
    )
    return _commit(path, settings, ledger, batch_id, sha, name, raw, QUARANTINED, reason, remove=False)


def _set_aside(path: Path, name: str, settings: Settings, batch_id: str) -> str | None:
    """Move an entry out of the inbox without opening it; None when moved, else why not (logged)."""
    try:
        set_aside_dir(settings).mkdir(parents=True, exist_ok=True)
        os.rename(path, set_aside_dir(settings) / batch_id)
    except OSError as error:
        why = error.strerror or str(error)
        log.warning("%s: could not be moved out of the inbox (%s); left there: remove it", name, why)
        return why
    return None


def _in_inbox(path: Path, settings: Settings) -> bool:
    # The folder is resolved, not the entry: a link is looked at itself, never what it points to.
    return Path(os.path.abspath(path)).parent.resolve() == settings.inbox.resolve()


def _remove_from_inbox(
    path: Path,
    settings: Settings,
    identity: tuple[int, int, int, int] | None = None,
    linked_only: bool = False,
) -> None:
    # Only files inside the inbox are ours to remove; a file ingested from elsewhere is left alone.
    if not _in_inbox(path, settings):
        return
    if identity is not None and _identity(path) != identity:  # a writer came back after the read
        log.warning("%s: changed after it was read; %s", safe_name(path.name), STILL_WRITTEN)
        return
    if linked_only:  # a hard link's other names keep the file; its last name is never removed
        try:
            if path.lstat().st_nlink < 2:
                return
        except OSError:
            return
    path.unlink(missing_ok=True)
