"""The split's leak guard: a slice's test rows are never trained on, whatever batch they arrive in.

Every slice's test split is the yardstick the gate reads for forgetting. A later batch that repeats a
test text (even as a near-copy: other case, width, zero-width characters or spacing; see
`perennial.data.text_keys`) would otherwise put it into training and flatter the model on that slice. So,
when a batch is split:

* rows whose text is in another batch's *test* split are dropped from the batch entirely;
* rows whose text is in another batch's train or val split are forced into this batch's train split,
  so this batch's test and val hold only texts no model has seen;
* rows repeating a text of the same batch are dropped, so no text sits in two splits.

"Another batch" is each batch with stored splits that is not quarantined. Which ones a batch was
checked against is recorded beside its splits once they are written: splitting it again (a retried
cycle) uses the same ones, so its splits never change; a batch split later checks against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perennial.data.ledger import QUARANTINED, STATUSES, Ledger
from perennial.data.text_keys import text_keys

GUARD_FILE = "leak_guard.json"  # in the batch's folder: the batches its split was checked against
_HELD_OUT = ("test",)
_SEEN = ("train", "val")


@dataclass(frozen=True)
class Guarded:
    """A batch's rows after the guard, and what it did."""

    rows: pd.DataFrame  # free rows: any split; index kept from the input
    forced: pd.DataFrame  # rows whose text was trained on or tuned on elsewhere: train only
    dropped_test_leaks: int = 0  # rows dropped: their text is in another batch's test split
    dropped_repeats: int = 0  # rows dropped: they repeat a text of this batch
    against: list[str] = field(default_factory=list)  # the batches checked against


def split_keys(folder: Path, splits: tuple[str, ...]) -> set[str]:
    """The normalised texts of the named splits stored in a batch's folder."""
    keys: set[str] = set()
    for name in splits:
        texts = pd.read_parquet(folder / f"{name}.parquet", columns=["text"])["text"].dropna()
        keys.update(text_keys(texts))
    return keys


def has_splits(folder: Path) -> bool:
    # The test split is written last: with it, the batch's split is complete.
    return all((folder / f"{name}.parquet").is_file() for name in (*_SEEN, *_HELD_OUT))


def other_batches(batches_dir: Path, ledger: Ledger, batch_id: str) -> list[str]:
    """The batches `batch_id` is checked against: those recorded at its first split, else every
    other batch that is not quarantined and has stored splits (in arrival order)."""
    record = batches_dir / batch_id / GUARD_FILE
    if record.is_file():
        against = json.loads(record.read_text(encoding="utf-8"))["against"]
    else:
        statuses = tuple(s for s in STATUSES if s != QUARANTINED)
        against = [b.batch_id for b in ledger.batches(statuses) if b.batch_id != batch_id]
    return [b for b in against if has_splits(batches_dir / b)]


def record_guard(batches_dir: Path, batch_id: str, guarded: Guarded) -> None:
    """Remember what the split was checked against: written once, after the splits, so a split that
    never finished is done again from scratch."""
    record = batches_dir / batch_id / GUARD_FILE
    if record.is_file():
        return
    summary = {
        "against": guarded.against,
        "dropped_test_leaks": guarded.dropped_test_leaks,
        "forced_into_train": len(guarded.forced),
        "dropped_repeats": guarded.dropped_repeats,
    }
    tmp = record.with_name(f".{record.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(record)


def guard(frame: pd.DataFrame, batches_dir: Path, ledger: Ledger, batch_id: str) -> Guarded:
    """Apply the three rules above to a batch's rows (a `text` column); see the module docstring."""
    against = other_batches(batches_dir, ledger, batch_id)
    held_out: set[str] = set()
    seen: set[str] = set()
    for other in against:
        held_out |= split_keys(batches_dir / other, _HELD_OUT)
        seen |= split_keys(batches_dir / other, _SEEN)
    keys = text_keys(frame["text"]).fillna("")
    leaks = keys.isin(held_out)
    kept = frame[~leaks]
    repeats = keys[~leaks].duplicated()
    kept, kept_keys = kept[~repeats], keys[~leaks][~repeats]
    forced = kept_keys.isin(seen)
    return Guarded(
        rows=kept[~forced],
        forced=kept[forced],
        dropped_test_leaks=int(leaks.sum()),
        dropped_repeats=int(repeats.sum()),
        against=against,
    )
