"""New labels: whether a batch that brings labels never seen before may grow the label set.

With `new_labels = grow` (the default) a batch may bring labels the ledger has not recorded: they
are appended to the label set and the next model's head gains an output row for each (see
perennial.learning.head_growth). Three things stop a label from growing the set, each with a
one-line reason: too few rows of it to learn from (`new_label_min_rows`), a spelling that differs
from a known label only in case, spaces or punctuation (a typo would become a class of its own),
and a number where the set holds names or the reverse.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from perennial.data.validation import is_number


@dataclass(frozen=True)
class NewLabels:
    """What a batch brings to the label set: `labels` (sorted) with their row counts when it may
    grow the set, or `reason` (one line) when the batch must be quarantined instead."""

    labels: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def line(self, known: int) -> str:
        """The one line a user reads when the set grows."""
        listed = ", ".join(f"{label!r} ({self.rows.get(label, 0)} rows)" for label in self.labels)
        grown = known + len(self.labels)
        return f"new label(s) {listed}: the model's head grows from {known} to {grown} labels"


def label_counts(labels: pd.Series) -> dict[str, int]:
    """Rows per label, leaving out nulls and blank labels (validation refuses those itself)."""
    named = labels.dropna().map(str)
    named = named[named.str.strip() != ""]
    return {str(k): int(v) for k, v in named.value_counts().items()}


def labels_in_arrival_order(batches: Iterable[Iterable[str]]) -> list[str]:
    """The label set as the pipeline grows it: the first batch's labels sorted, then each later
    batch's unseen labels, sorted, appended (perennial.data.ledger.Ledger.add_labels)."""
    order: list[str] = []
    for labels in batches:
        order += sorted(set(map(str, labels)) - set(order))
    return order


def spelling_key(label: str) -> str:
    """What is left of a label without case, accents, spaces and punctuation: two labels with the
    same key are almost surely one label written two ways."""
    decomposed = unicodedata.normalize("NFKD", label.casefold())
    return re.sub(r"[\W_]+", "", "".join(c for c in decomposed if not unicodedata.combining(c)))


def check_new_labels(
    counts: dict[str, int],
    known: Sequence[str],
    policy: Literal["grow", "quarantine"],
    min_rows: int,
) -> NewLabels:
    """The labels in `counts` that `known` lacks, and whether they may grow the set."""
    new = sorted(label for label in counts if label not in set(known))
    if not new:
        return NewLabels()
    rows = {label: counts[label] for label in new}
    if policy == "quarantine":
        return NewLabels(
            rows=rows,
            reason=f"label(s) {_listed(new, rows)} not in the label set {list(known)} and new_labels = "
            "quarantine: set new_labels = grow to learn new labels, or fix the rows",
        )
    problems = [*_lookalikes(new, known), *_kind_mismatch(new, known)]
    few = [label for label in new if rows[label] < min_rows]
    if few:
        problems.append(
            f"new label(s) {_listed(few, rows)} below new_label_min_rows = {min_rows}: send at least "
            f"{min_rows} rows of each new label (or lower new_label_min_rows)"
        )
    if problems:
        return NewLabels(rows=rows, reason="; ".join(problems))
    return NewLabels(new, rows)


def _listed(labels: Iterable[str], rows: dict[str, int]) -> str:
    return ", ".join(f"{label!r} ({rows[label]} row{'s' if rows[label] != 1 else ''})" for label in labels)


def _lookalikes(new: Sequence[str], known: Sequence[str]) -> list[str]:
    """A new label spelt like a known one, or like another new one."""
    lines = []
    seen = {spelling_key(label): label for label in known}
    for label in new:
        key = spelling_key(label)
        twin = seen.get(key)
        if twin is not None and key:
            where = "the known label" if twin in known else "the new label"
            lines.append(
                f"new label {label!r} differs from {where} {twin!r} only in case, accents, spaces or "
                "punctuation: fix the labels (a typo would become a class of its own)"
            )
        seen.setdefault(key, label)
    return lines


def _kind_mismatch(new: Sequence[str], known: Sequence[str]) -> list[str]:
    numbers = [label for label in new if is_number(label)]
    if known and not any(map(is_number, known)) and numbers:
        return [f"new label(s) {numbers} are numbers where the label set holds names: write the label names"]
    names = [label for label in new if not is_number(label)]
    if known and all(map(is_number, known)) and names:
        return [f"new label(s) {names} are names where the label set holds numbers: write the numeric labels"]
    return []
