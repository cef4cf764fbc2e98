"""Where a workspace keeps things, and the look-ups every stage and report shares.

Low in the import graph on purpose: orchestration (`perennial.pipeline`), reporting (report, model
cards, Data Docs, status) and monitoring all read the workspace through these functions, so none of
them needs to import another.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from perennial.core.settings import Settings
from perennial.data.ledger import ACCEPTED, Ledger


def ledger_for(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def slice_names(settings: Settings) -> dict[str, str]:
    """batch id -> the source file's name without suffix: how people recognise a slice. Unique, as
    every table keys its slices by it: the first batch of a name keeps it, a later batch of the same
    name gets its id's first characters ("reviews #1a2b3c"). Stable: it depends only on the ledger's
    arrival order and the sources, which never change."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for batch in ledger_for(settings).batches():
        stem = Path(batch.source).stem
        longer = (f"{stem} #{batch.batch_id}" + (f" ({n})" if n > 1 else "") for n in itertools.count(1))
        # The full id (and a count) only when other files were named like these suffixes.
        candidates = itertools.chain((stem, f"{stem} #{batch.batch_id[:6]}"), longer)
        name = next(c for c in candidates if c not in used)
        names[batch.batch_id] = name
        used.add(name)
    return names


def in_workspace(settings: Settings, path: Path) -> str:
    """`path` relative to the workspace where it lies inside it (the workspace can move), else whole."""
    return path.relative_to(settings.root).as_posix() if path.is_relative_to(settings.root) else str(path)


def validation_path(settings: Settings, batch_id: str) -> Path:
    return settings.validation_dir / f"{batch_id}.json"


def ordered_labels(recorded: list[str] | None, declared: list[str] | None) -> list[str]:
    """The label set in model order: the recorded labels in their order, then declared labels the
    ledger has not recorded yet (sorted). The order of a label never changes once recorded."""
    known = list(recorded or [])
    return known + sorted(set(declared or []) - set(known))


def labels_for(settings: Settings) -> list[str]:
    labels = ordered_labels(ledger_for(settings).label_set(), settings.labels)
    if not labels:
        raise RuntimeError("no label set yet: validate a batch first")
    return labels


def earlier_batches(settings: Settings, batch_id: str) -> list[str]:
    """Accepted batches other than `batch_id`, oldest first, less those whose labels the gate found
    contradicting the champion: they feed no replay, joint training or evaluation slice."""
    ledger = ledger_for(settings)
    flagged = ledger.label_flags()
    return [
        b.batch_id for b in ledger.batches(ACCEPTED) if b.batch_id != batch_id and b.batch_id not in flagged
    ]


def memory_path(settings: Settings, batch_id: str) -> Path:
    """The replay memory as it stood once `batch_id` was added."""
    return settings.memory_dir / f"{batch_id}.parquet"


def challenger_dir(settings: Settings, batch_id: str, attempt: int = 1) -> Path:
    """Where a challenger is trained. A retry trains beside the first attempt, which stays whole
    until the retry has succeeded."""
    suffix = f"-attempt{attempt}" if attempt > 1 else ""
    return settings.models_dir / f"challenger-{batch_id}{suffix}"
