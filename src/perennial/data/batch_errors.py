"""What is wrong with a batch file: the exceptions every reader raises, and wording their messages
share (a size, too many rows).

Each message is one line: what is wrong, where (byte offset, line, row, column), and what to do.
"""

from __future__ import annotations


class BadBatch(ValueError):
    """A batch that cannot be used as it is; the message is one line: what, where, what to do."""


class UnreadableBatch(BadBatch):
    """The file cannot be parsed as a table."""


def human_size(size: int) -> str:
    if size < 1_000_000:
        return f"{size:,} bytes"
    return f"{size / 1e6:,.1f} MB" if size < 1_000_000_000 else f"{size / 1e9:,.1f} GB"


def too_many_rows(name: str, max_rows: int, rows: int | None = None) -> BadBatch:
    if rows is None:  # counted while reading, which stopped there
        held = f"more than {max_rows:,} rows, the limit (max_rows); reading stopped there"
    else:
        held = f"{rows:,} rows, above the {max_rows:,} limit (max_rows)"
    return BadBatch(f"{name} holds {held}: split it into smaller batches")
