"""Messages people read in one line: a reason in the ledger, an error on the terminal."""

from __future__ import annotations


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return one_line(text.splitlines()[0]) if text else type(error).__name__
