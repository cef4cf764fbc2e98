"""Value types in a parsed batch: texts must be strings and labels plain values (not nested).

CSV values are always strings; this matters for JSON and Parquet, which have types.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from perennial.data.batch_errors import BadBatch
from perennial.data.validation import REQUIRED_COLUMNS


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def is_nested(value: object) -> bool:
    return isinstance(value, dict | list | tuple | set | np.ndarray)


def _shown(value: object) -> str:
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def kind_of(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def check_value_types(frame: pd.DataFrame, name: str, where: Callable[[int], str]) -> None:
    """Texts must be strings and labels plain values: raise BadBatch naming the first offender.
    (CSV values are always strings; this matters for JSON Lines and Parquet, which have types.)"""
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column]
        if column == "text" and (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            present = np.flatnonzero(values.notna().to_numpy())
            if len(present):
                first = int(present[0])
                raise BadBatch(
                    f"{name}: column 'text' holds {values.dtype} values, not strings ({where(first)}: "
                    f"{_shown(values.iloc[first])}): texts must be strings"
                )
            continue
        if values.dtype != object:
            continue
        kinds = values.map(
            lambda v: (
                "nested"
                if is_nested(v)
                else "null"
                if _is_null(v)
                else "str"
                if isinstance(v, str)
                else "scalar"
            )
        )
        bad = kinds == "nested" if column == "label" else kinds.isin(["nested", "scalar"])
        positions = np.flatnonzero(bad.to_numpy())
        if not len(positions):
            continue
        first = int(positions[0])
        value = values.iloc[first]
        count = f"{len(positions)} row{'s' if len(positions) > 1 else ''}"
        if is_nested(value):
            what = f"nested values ({count}, first {where(first)}: {_shown(value)})"
            advice = f"each {column} must be one plain value: flatten it"
        else:
            example = f"{kind_of(value)} {_shown(value)}"
            what = f"non-text values ({count}, first {where(first)}: {example})"
            advice = "texts must be strings"
        raise BadBatch(f"{name}: column {column!r} holds {what}: {advice}")
