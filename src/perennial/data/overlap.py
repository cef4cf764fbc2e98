"""Overlap across batches: a batch whose rows mostly repeat texts of earlier batches is refused.

Ingest asks before it stores a batch's rows. Texts are compared by their normalised key
(`perennial.data.text_keys`) with the stored rows of every earlier batch that was not quarantined.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow.parquet as pq

from perennial.core.messages import one_line
from perennial.core.settings import Settings
from perennial.data.batch_store import rows_path
from perennial.data.ledger import QUARANTINED, STATUSES, Batch, Ledger
from perennial.data.text_keys import text_keys

# Split out of ingest: its log lines keep ingest's logger name, as log filters and tests expect.
log = logging.getLogger("perennial.data.ingest")


def overlap_with_earlier(
    frame: pd.DataFrame, batch_id: str, settings: Settings, ledger: Ledger
) -> str | None:
    """Why the batch repeats too much of earlier batches (more than `max_overlap_fraction` of its rows
    have a text already sent in a batch that was not quarantined), naming the batch it repeats most;
    None when it does not.

    Texts are compared by their normalised key (text_keys): a near-copy (letter case, whitespace,
    Unicode form, invisible characters) is a repeat. A check on one batch never fails another: an
    earlier batch whose stored rows have no `text` column (pending, not yet validated) is left out,
    one whose rows cannot be read is left out with a log line, and nothing is raised."""
    if "text" not in frame.columns or settings.max_overlap_fraction >= 1:
        return None
    try:
        keys = text_keys(frame["text"].dropna())
    except Exception as error:  # odd values are validation's to report, not this check's
        log.warning("batch %s: texts not comparable (%s); overlap not checked", batch_id, one_line(error))
        return None
    if keys.empty:
        return None
    seen = pd.Series(False, index=keys.index)
    per_batch = []
    for batch in ledger.batches(tuple(s for s in STATUSES if s != QUARANTINED)):
        if batch.batch_id == batch_id:
            continue
        earlier = _earlier_keys(settings, batch)
        if not earlier:
            continue
        repeated = keys.isin(earlier) & (keys != "")
        if repeated.any():
            seen |= repeated
            per_batch.append((int(repeated.sum()), batch))
    count = int(seen.sum())
    if not count or count / len(keys) <= settings.max_overlap_fraction:
        return None
    most, batch = max(per_batch, key=lambda pair: pair[0])
    return (
        f"{count} of {len(keys)} rows ({count / len(keys):.0%}) repeat texts of earlier batches, {most} of"
        f" them from batch {batch.batch_id} ({batch.source}, {batch.status}); at most"
        f" {settings.max_overlap_fraction:.0%} may (max_overlap_fraction): send only the new rows"
    )


def _earlier_keys(settings: Settings, batch: Batch) -> set[str]:
    """The text keys of an earlier batch's stored rows; empty when it has none to compare with."""
    path = rows_path(settings, batch.batch_id)
    if not path.is_file():
        return set()
    try:
        if "text" not in pq.read_schema(path).names:  # a pending batch that validation will refuse
            return set()
        return set(text_keys(pd.read_parquet(path, columns=["text"])["text"].dropna()))
    except Exception as error:
        log.warning(
            "overlap check: the rows of batch %s (%s) cannot be read, left out: %s",
            batch.batch_id,
            batch.source,
            one_line(error),
        )
        return set()
