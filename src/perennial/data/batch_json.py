"""Read a JSON Lines batch (one object per line), or a .json file: an array of objects, one object
(a row), or a table laid out as pandas' `to_json` writes one (orient "columns", "index", "split" or
"table"). Each record keeps where it came from ("line 7", "record 3", "index 12"), for messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from perennial.data.batch_errors import UnreadableBatch
from perennial.data.batch_values import is_nested, kind_of
from perennial.data.validation import REQUIRED_COLUMNS

_RECORDS_FIX = 'write one object per row: df.to_json(path, orient="records", lines=True)'
_INTEGER = re.compile(r"-?\d+")
_Rows = tuple[list[dict], list[str]]


def read_json_records(path: Path, prefix: str, max_rows: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Records of a JSON Lines file (or a JSON array, or a table pandas' `to_json` writes), with where
    each came from ("line 7"). At most `max_rows` + 1 records are kept (a longer file is refused)."""
    with path.open(encoding="utf-8-sig") as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        whole = None
        if first in ("[", "{") and path.suffix.lower() == ".json":
            whole = _whole_json(handle, prefix)
        if whole is not None:
            records, where = _json_rows(whole, prefix)
        else:
            handle.seek(0)
            numbered = _json_lines(handle, prefix, max_rows)
            table = _pandas_layout(numbered[0][1], prefix) if len(numbered) == 1 else None
            records, where = table or _objects(numbered, prefix, "line")
    if max_rows is not None:
        records, where = records[: max_rows + 1], where[: max_rows + 1]
    return pd.DataFrame.from_records(records), where


def _whole_json(handle, prefix: str) -> Any:
    """The file as one JSON value, or None when it is JSON Lines (one object per line) instead."""
    try:
        return json.load(handle)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several values: JSON Lines in a .json file
            return None
        raise UnreadableBatch(
            f"{prefix}: not valid JSON at line {error.lineno}, column {error.colno} ({error.msg})"
        ) from None


def _json_lines(handle, prefix: str, max_rows: int | None) -> list[tuple[str, object]]:
    numbered: list[tuple[str, object]] = []
    for number, line in enumerate(handle, 1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            numbered.append((f"line {number}", json.loads(stripped)))
        except json.JSONDecodeError as error:
            raise UnreadableBatch(
                f"{prefix}: line {number} is not valid JSON ({error.msg} at column {error.colno}): "
                "write one JSON object per line"
            ) from None
        if max_rows is not None and len(numbered) > max_rows:
            break  # enough to refuse it; the rest is not read
    return numbered


def _json_rows(value: list | dict, prefix: str) -> _Rows:
    """Rows of a whole .json file: an array of objects, a table pandas writes, or one object (a row)."""
    if isinstance(value, list):
        return _objects([(f"record {i}", v) for i, v in enumerate(value, 1)], prefix, "record")
    table = _pandas_layout(value, prefix)
    if table is not None:
        return table
    if any(is_nested(v) for v in value.values()):
        raise UnreadableBatch(
            f"{prefix}: one JSON object whose values are not one table layout pandas writes (columns, "
            f"index, split or table): {_RECORDS_FIX}"
        )
    return [value], ["record 1"]


def _objects(numbered: list[tuple[str, object]], prefix: str, unit: str) -> _Rows:
    for place, value in numbered:
        if not isinstance(value, dict):
            advice = (
                f"write one object per {'line' if unit == 'line' else 'record'}, "
                'e.g. {"text": "...", "label": "..."}'
            )
            if isinstance(value, list):  # pandas' orient="values" has no column names
                advice += ', from pandas: df.to_json(path, orient="records", lines=True)'
            raise UnreadableBatch(f"{prefix}: {place} holds {kind_of(value)}, not an object: {advice}")
    return [v for _, v in numbered], [p for p, _ in numbered]  # type: ignore[misc]


def _pandas_layout(value: object, prefix: str) -> _Rows | None:
    """Rows of one JSON object laid out as pandas' `to_json` writes a frame: orient "columns" (its
    default), "index", "split" or "table"; None when the object is not one of those (a row). Rows come
    in index order; an object of objects that could be either "columns" or "index" is refused."""
    if not isinstance(value, dict) or not value:
        return None
    keys = set(value)
    if {"columns", "data"} <= keys <= {"columns", "index", "data", "name"}:
        return _split_layout(value, prefix)
    if keys == {"schema", "data"} and isinstance(value["schema"], dict) and "fields" in value["schema"]:
        return _table_layout(value, prefix)
    if not all(isinstance(v, dict) for v in value.values()):
        return None
    outer = list(value)
    inner = list(dict.fromkeys(k for v in value.values() for k in v))
    if _by_columns(outer, inner):
        labels = [inner[i] for i in _index_order(inner)]
        return [{c: value[c].get(i) for c in outer} for i in labels], [f"index {i}" for i in labels]
    if _by_columns(inner, outer):
        labels = [outer[i] for i in _index_order(outer)]
        return [value[i] for i in labels], [f"index {i}" for i in labels]
    raise UnreadableBatch(
        f"{prefix}: an object of objects where neither the outer nor the inner keys are clearly the "
        f"columns (e.g. text, label): {_RECORDS_FIX}"
    )


def _by_columns(columns: list[str], labels: list[str]) -> bool:
    """Whether `columns` are column names and `labels` index labels (not the other way round)."""
    required = [c for c in REQUIRED_COLUMNS if c in columns or c in labels]
    if required:
        return all(c in columns and c not in labels for c in required)
    return all(_INTEGER.fullmatch(k) for k in labels) and not all(_INTEGER.fullmatch(k) for k in columns)


def _index_order(labels: list) -> list[int]:
    """Positions of the rows in index order: integer labels (pandas' default index, as numbers or
    as object keys) sorted as numbers; other labels as written."""
    if all(isinstance(k, str) and _INTEGER.fullmatch(k) for k in labels) or all(
        isinstance(k, int) and not isinstance(k, bool) for k in labels
    ):
        return sorted(range(len(labels)), key=lambda i: int(labels[i]))
    return list(range(len(labels)))


def _split_layout(value: dict, prefix: str) -> _Rows:
    columns, data, index = value["columns"], value["data"], value.get("index")
    ok = (
        isinstance(columns, list)
        and all(isinstance(c, str | int | float) for c in columns)
        and isinstance(data, list)
        and all(isinstance(r, list) and len(r) == len(columns) for r in data)
        and (index is None or (isinstance(index, list) and len(index) == len(data)))
    )
    if not ok:
        raise UnreadableBatch(
            f'{prefix}: an object with "columns" and "data" that is not pandas\' split layout (each '
            f'row of "data" an array of one value per column): {_RECORDS_FIX}'
        )
    order = list(range(len(data))) if index is None else _index_order(index)
    return [dict(zip(columns, data[i], strict=True)) for i in order], [_place(index, i) for i in order]


def _table_layout(value: dict, prefix: str) -> _Rows:
    fields, data = value["schema"].get("fields"), value["data"]
    key = value["schema"].get("primaryKey") or []
    if not (isinstance(fields, list) and isinstance(data, list) and all(isinstance(r, dict) for r in data)):
        raise UnreadableBatch(
            f'{prefix}: an object with "schema" and "data" that is not pandas\' table layout (an array '
            f'of objects in "data"): {_RECORDS_FIX}'
        )
    # pandas names an unnamed index "index" (or "level_0"...): not a column of the batch.
    unnamed = [k for k in key if isinstance(k, str) and (k == "index" or k.startswith("level_"))]
    labels = [r.get(unnamed[0]) for r in data] if len(unnamed) == 1 else None
    order = list(range(len(data))) if labels is None else _index_order(labels)
    rows = [{k: v for k, v in data[i].items() if k not in unnamed} for i in order]
    return rows, [_place(labels, i) for i in order]


def _place(labels: list | None, position: int) -> str:
    return f"record {position + 1}" if labels is None else f"index {labels[position]}"
