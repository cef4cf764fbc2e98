"""Writing files so a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(target: Path, text: str, mode: int = 0o644) -> Path:
    """Write to a temporary file beside `target`, then rename over it: readers (a browser refreshing
    a page, a process loading a card) see the old file or the new one. `mode` because mkstemp makes
    files owner-only, and reports are meant to be read and served."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def share_like_new_files(folder: Path) -> None:
    """Give the files under `folder` the mode a new file gets (0644 under the usual umask 022).
    Libraries that save through a temporary file (safetensors' weights) leave them owner-only
    (0600), so another user, a model server or a backup job cannot read the model."""
    mode = 0o666 & ~_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, and setting it
    briefly races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
