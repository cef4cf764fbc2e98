"""The key two texts share when a person would call them the same text.

Used wherever perennial asks "was this row seen before?": the overlap check at ingest, and the guard
that keeps every slice's test rows out of training. Exact string equality misses near-copies that
differ only in letter case, Unicode form (full-width letters, ligatures, composed accents),
invisible format characters (zero-width spaces, bidi marks) or whitespace.
"""

from __future__ import annotations

import unicodedata

import pandas as pd

_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))


def text_key(text: str) -> str:
    """NFKC, case-folded, invisible characters dropped, whitespace runs made one space, trimmed."""
    folded = unicodedata.normalize("NFKC", str(text)).casefold()
    # Tabs and newlines are whitespace (kept as spaces); every other invisible character is dropped.
    visible = "".join(c for c in folded if c.isspace() or unicodedata.category(c) not in _INVISIBLE)
    return " ".join(visible.split())


def text_keys(texts: pd.Series) -> pd.Series:
    """`text_key` of every non-null text (nulls stay null), same index."""
    keys = texts.astype(object)
    mask = keys.notna()
    keys[mask] = keys[mask].map(text_key)
    return keys
