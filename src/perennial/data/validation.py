"""Data-quality gate for incoming batches, as a Great Expectations (1.x) suite built in code.
Over 400 lines because each expectation and the plain-words explanation of its failure are kept
side by side, so a check cannot change without its message.

``validate`` runs the suite on a pandas frame in a throwaway in-memory GX context and turns the
result into a ``ValidationReport`` whose ``reason`` says in plain words what was wrong, how many
rows, and a few examples. Great Expectations is imported lazily: it takes seconds to import and
most users of this module (the CLI, the API) only need it when a batch actually arrives.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perennial.core.settings import ValidationSettings

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

REQUIRED_COLUMNS = ("text", "label")
OPTIONAL_COLUMNS = ("id", "domain", "timestamp")  # kept in the splits; any other column is "extra"
OWN_COLUMNS = ("batch_id",)  # added by ingest

SUITE_NAME = "perennial-batch"
_EXAMPLES = 3  # examples quoted per failure
_EXAMPLE_CHARS = 40  # long texts are cut to this many characters in messages
_ROWS_SHOWN = 5  # row numbers quoted per failure
_STORED_CHARS = 1000  # longer strings are cut in the stored result (a text of megabytes stays out)

# Keys stored in each expectation's ``meta["check"]``: they survive into the validation result,
# which is how a result is mapped back to its plain-words message (GX reorders the results, and
# two checks can share one expectation type, e.g. the two length bounds).
_NULL_TEXT = "null_text"
_BLANK_TEXT = "blank_text"
_INVISIBLE_TEXT = "invisible_text"
_SHORT_TEXT = "short_text"
_LONG_TEXT = "long_text"
_DUPLICATES = "duplicate_text"
_NULL_LABEL = "null_label"
_BLANK_LABEL = "blank_label"
_LABEL_SET = "label_set"
_ROW_COUNT = "row_count"
_EXTRA_COLUMNS = "extra_columns"
_LABEL_KINDS = "label_kinds"  # not a GX check: see _label_kinds_line
_ORDER = (
    _ROW_COUNT, _EXTRA_COLUMNS, _NULL_TEXT, _BLANK_TEXT, _INVISIBLE_TEXT, _SHORT_TEXT, _LONG_TEXT,
    _DUPLICATES, _NULL_LABEL, _BLANK_LABEL, _LABEL_SET, _LABEL_KINDS,
)  # fmt: skip


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one batch."""

    success: bool
    reason: str  # "" on success, else one line naming every failed check
    failures: list[str] = field(default_factory=list)  # one line per failed check
    result: dict = field(default_factory=dict)  # GX validation result, JSON-serialisable

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "reason": self.reason,
            "failures": list(self.failures),
            "result": self.result,
        }

    def save(self, path: Path) -> Path:
        """Write the report as JSON, atomically so a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                # default=str: a stray non-JSON value must not lose the whole report
                json.dump(self.to_dict(), fh, indent=2, ensure_ascii=False, default=str)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def import_gx() -> Any:
    """Import GX quietly, once. Kept out of module scope because the import costs seconds."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline machine: never phone home
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # respect a level the application chose itself
        gx_logger.setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


# Characters that show nothing: controls, format characters (zero-width, bidi marks), separators,
# and the default-ignorable code points of other categories that fonts draw as nothing (Hangul
# fillers, variation selectors, ...) or as blank (U+2800). A text made only of these is not text.
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zs", "Zl", "Zp"))
_INVISIBLE_EXTRA = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2065, 0x2065),
    (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)  # fmt: skip


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@functools.cache
def invisible_ranges() -> tuple[tuple[int, int], ...]:
    """The invisible code points as sorted, merged (first, last) ranges; built once (~0.3 s)."""
    codes = {c for c in range(0x110000) if unicodedata.category(chr(c)) in _INVISIBLE_CATEGORIES}
    codes.update(c for first, last in _INVISIBLE_EXTRA for c in range(first, last + 1))
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return tuple((first, last) for first, last in ranges)


@functools.cache
def _invisible_class() -> str:
    """A regex character class of the invisible characters, in ASCII escapes (readable in Data Docs;
    Python `re`, GX's pandas engine through ``str.contains``, understands them)."""
    members = "".join(
        _escape(first) if first == last else f"{_escape(first)}-{_escape(last)}"
        for first, last in invisible_ranges()
    )
    return f"[{members}]"


def invisible_text_regex() -> str:
    """Matches a text made only of invisible characters, at least one of them not whitespace (a
    whitespace-only text is the blank check's)."""
    return rf"^(?!\s*$){_invisible_class()}+$"


def _expectations(
    settings: ValidationSettings,
    label_set: list[str] | None,
    *,
    columns: bool = True,
    present: Iterable[str] | None = None,
) -> list[Any]:
    """The suite's expectations, table-level first; ``columns=False`` leaves out column checks.
    ``present``: the batch's columns; with ``extra_columns="reject"`` they must all be known ones."""
    gx = import_gx()
    E = gx.expectations
    out: list[Any] = [
        E.ExpectTableRowCountToBeBetween(min_value=settings.min_rows, meta={"check": _ROW_COUNT})
    ]
    if settings.extra_columns == "reject" and present is not None:
        known = [c for c in present if c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *OWN_COLUMNS)]
        out.append(
            E.ExpectTableColumnsToMatchSet(column_set=known, exact_match=True, meta={"check": _EXTRA_COLUMNS})
        )
    if not columns:
        return out
    out += [
        E.ExpectColumnValuesToNotBeNull(column="text", meta={"check": _NULL_TEXT}),
        E.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$", meta={"check": _BLANK_TEXT}),
        E.ExpectColumnValuesToNotMatchRegex(
            column="text", regex=invisible_text_regex(), meta={"check": _INVISIBLE_TEXT}
        ),
        E.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=settings.min_text_chars, meta={"check": _SHORT_TEXT}
        ),
        E.ExpectColumnValueLengthsToBeBetween(
            column="text", max_value=settings.max_text_chars, meta={"check": _LONG_TEXT}
        ),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="text",
            # rounded so e.g. 1 - 0.15 does not land a hair above 17/20 and fail a batch on the edge
            min_value=round(1.0 - settings.max_duplicate_fraction, 9),
            meta={"check": _DUPLICATES},
        ),
        E.ExpectColumnValuesToNotBeNull(column="label", meta={"check": _NULL_LABEL}),
        E.ExpectColumnValuesToNotMatchRegex(column="label", regex=r"^\s*$", meta={"check": _BLANK_LABEL}),
    ]
    if label_set is not None:
        out.append(
            E.ExpectColumnValuesToBeInSet(
                column="label", value_set=[str(v) for v in label_set], meta={"check": _LABEL_SET}
            )
        )
    return out


def make_suite(expectations: Iterable[Any]) -> gx.ExpectationSuite:
    gx = import_gx()
    expectations = list(expectations)
    # Passed to the constructor, not add_expectation(): in GX 1.x add_expectation() looks up the
    # "current" data context and raises DataContextRequiredError when none has been created yet.
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    if len(suite.expectations) != len(expectations):  # the constructor logs and drops bad ones
        raise ValueError("invalid expectation in the perennial batch suite")
    return suite


def build_suite(
    settings: ValidationSettings, label_set: list[str] | None, present: Iterable[str] | None = None
) -> gx.ExpectationSuite:
    """The full expectation suite for a batch with ``text`` and ``label`` columns (and ``present``)."""
    return make_suite(_expectations(settings, label_set, present=present))


def _run_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> Any:
    """Validate ``frame`` in a fresh in-memory context (~0.05 s), so no state leaks between calls."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        # no temp data-docs site: nothing is written to disk
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("perennial").add_dataframe_asset("batch")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": frame}
    )
    # SUMMARY: counts plus up to 20 example values, enough for messages and small to store
    return batch.validate(suite, result_format="SUMMARY")


def _as_str(series: pd.Series) -> pd.Series:
    """Non-null values as ``str`` (object dtype), nulls left null: GX's string checks need strings."""
    out = series.astype(object)
    mask = out.notna()
    out[mask] = out[mask].map(str)
    return out


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    data = frame.copy()
    # A default index keeps GX's row bookkeeping simple whatever the caller's index was.
    data = data.reset_index(drop=True)
    for column in REQUIRED_COLUMNS:
        data[column] = _as_str(data[column])
    return data


def _quote(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    text = str(value)
    if len(text) > _EXAMPLE_CHARS:
        text = text[:_EXAMPLE_CHARS] + "..."
    return repr(text)  # repr keeps the message on one line (escapes newlines) and shows blanks


def _quote_invisible(value: Any) -> str:
    """Quoted with every invisible character escaped: repr leaves some (e.g. U+3164) as they are."""
    hidden = re.compile(_invisible_class())
    return hidden.sub(lambda m: m.group() if m.group() == " " else _escape(ord(m.group())), _quote(value))


def _examples(values: Iterable[Any], describe: Callable[[Any], str] = _quote) -> str:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
        if len(seen) == _EXAMPLES:
            break
    return ", e.g. " + ", ".join(describe(v) for v in seen) if seen else ""


def _with_length(value: Any) -> str:
    return f"{_quote(value)} ({len(str(value))} chars)"


def _rows(res: dict, total: int) -> str:
    """ "3 of 40 rows (rows 4, 9, 17)": where, counting the first data row as row 1."""
    count = res.get("unexpected_count")
    if count is None:
        return "some rows"
    where = [int(i) + 1 for i in (res.get("partial_unexpected_index_list") or []) if isinstance(i, int)]
    if not where:
        return f"{count} of {total} rows"
    shown = ", ".join(map(str, where[:_ROWS_SHOWN])) + (", ..." if count > _ROWS_SHOWN else "")
    return f"{count} of {total} rows (row{'s' if count > 1 else ''} {shown})"


_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def is_number(value: Any) -> bool:
    return bool(_NUMBER.match(str(value).strip()))


def _label_type_hint(unexpected: Iterable[Any], allowed: list[str]) -> str:
    """Say so when the labels are numbers and the label set names, or the reverse."""
    values = [v for v in unexpected if v is not None]
    if not values or not allowed:
        return ""
    if all(map(is_number, values)) and not any(map(is_number, allowed)):
        return ": type mismatch, numeric labels where the label set holds names: write the label names"
    if not any(map(is_number, values)) and all(map(is_number, allowed)):
        return ": type mismatch, named labels where the label set holds numbers: write the numeric labels"
    return ""


def _label_kinds_line(data: pd.DataFrame) -> str | None:
    """Labels that mix numbers and names (with no label set yet to say which is right)."""
    labels = data["label"].dropna().map(str)
    numeric = labels.map(is_number)
    if not numeric.any() or numeric.all():
        return None
    numbers, names = sorted(set(labels[numeric])), sorted(set(labels[~numeric]))
    return (
        f"labels mix numbers and names: {int(numeric.sum())} numeric rows{_examples(numbers)} and "
        f"{int((~numeric).sum())} named rows{_examples(names)}; use one kind (or set `labels`)"
    )


def describe_missing_columns(missing: Iterable[str], found: list[str]) -> str:
    """ "missing required column 'label' (found 'lable': misspelled?); the file has columns: ...".
    Suggests a column differing only in case, a close spelling, or a separator other than a comma."""
    found = [str(c) for c in found]
    notes = []
    for column in missing:
        same = [c for c in found if c.strip().lower() == column and c != column]
        close = difflib.get_close_matches(column, [c for c in found if c not in REQUIRED_COLUMNS], n=1)
        if same:
            notes.append(f"missing required column {column!r} (found {same[0]!r}: wrong case?)")
        elif close:
            notes.append(f"missing required column {column!r} (found {close[0]!r}: misspelled?)")
        else:
            notes.append(f"missing required column {column!r}")
    line = "; ".join(notes)
    if len(found) == 1:
        separator = next((s for s in (";", "\t", "|") if s in found[0]), None)
        if separator is not None:
            return (
                f"{line}; the file has one column {_quote(found[0])}: it seems to use {separator!r} as"
                " separator; use ','"
            )
    shown = ", ".join(found[:10]) + (f", ... ({len(found)} in all)" if len(found) > 10 else "")
    return f"{line}; the file has columns: {shown or 'none'}; a batch needs {' and '.join(REQUIRED_COLUMNS)}"


def _shorten(value: Any) -> Any:
    """The stored result with long strings cut: an example text of megabytes is not copied around."""
    if isinstance(value, str) and len(value) > _STORED_CHARS:
        return value[:_STORED_CHARS] + f"... ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


def _duplicates_line(data: pd.DataFrame, observed: Any, settings: ValidationSettings) -> str | None:
    texts = data["text"].dropna()
    if texts.empty:
        return None  # no texts at all: the row-count / null-text checks already say so
    counts = texts.value_counts()
    repeated = counts[counts > 1]
    extra = int((repeated - 1).sum())  # rows that repeat an earlier row
    shown = ", ".join(f"{_quote(t)} x{n}" for t, n in repeated.head(_EXAMPLES).items())
    unique = f"{observed:.0%}" if isinstance(observed, int | float) else "unknown"
    return (
        f"too many duplicate texts: {extra} of {len(texts)} texts repeat an earlier one "
        f"(unique share {unique}, need at least {1 - settings.max_duplicate_fraction:.0%})"
        + (f", e.g. {shown}" if shown else "")
    )


def _failure_line(
    check: str, res: dict, data: pd.DataFrame, settings: ValidationSettings, label_set: list[str] | None
) -> str | None:
    """One plain-words line for a failed check, or None when another check already covers it."""
    total = len(data)
    examples = res.get("partial_unexpected_list") or []
    if check == _ROW_COUNT:
        return f"too few rows: {res.get('observed_value', total)} (need at least {settings.min_rows})"
    if check == _EXTRA_COLUMNS:
        known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *OWN_COLUMNS)
        extra = [repr(str(c)) for c in data.columns if c not in known]
        return (
            f"extra column{'s' if len(extra) > 1 else ''} {', '.join(extra)} not allowed (extra_columns ="
            f" reject): remove {'them' if len(extra) > 1 else 'it'}, or set extra_columns = allow; allowed:"
            f" {', '.join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))}"
        )
    if check == _NULL_TEXT:
        return f"text is null: {_rows(res, total)}"
    if check == _BLANK_TEXT:
        return f"text is blank or whitespace only: {_rows(res, total)}{_examples(examples)}"
    if check == _INVISIBLE_TEXT:
        shown = _examples(examples, _quote_invisible)
        return f"text has no visible characters: {_rows(res, total)}{shown}"
    if check == _SHORT_TEXT:
        return (
            f"text shorter than {settings.min_text_chars} characters: {_rows(res, total)}"
            f"{_examples(examples, _with_length)}"
        )
    if check == _LONG_TEXT:
        return (
            f"text longer than {settings.max_text_chars} characters: {_rows(res, total)}"
            f"{_examples(examples, _with_length)}"
        )
    if check == _DUPLICATES:
        return _duplicates_line(data, res.get("observed_value"), settings)
    if check == _NULL_LABEL:
        return f"label is null: {_rows(res, total)}"
    if check == _BLANK_LABEL:
        return f"label is blank or whitespace only: {_rows(res, total)}{_examples(examples)}"
    if check == _LABEL_SET:
        allowed = [str(v) for v in label_set or []]
        hint = _label_type_hint(examples, allowed) or (
            ": to learn a new label, add it to `labels` (the model's head grows), or fix the rows"
        )
        return f"label outside the label set {allowed}: {_rows(res, total)}{_examples(examples)}{hint}"
    return f"{check} failed: {_rows(res, total)}{_examples(examples)}"


def _failures(
    result_dict: dict, data: pd.DataFrame, settings: ValidationSettings, label_set: list[str] | None
) -> list[str]:
    lines: list[tuple[int, str]] = []
    for item in result_dict.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config") or {}
        check = (config.get("meta") or {}).get("check") or config.get("type", "expectation")
        exception = item.get("exception_info") or {}
        if exception.get("raised_exception"):
            # GX reports errors inside an expectation as a failed result rather than raising
            message = str(exception.get("exception_message") or "error").splitlines()[0]
            line: str | None = f"check {check} could not run: {message}"
        else:
            line = _failure_line(check, item.get("result") or {}, data, settings, label_set)
        if line is None:
            continue
        lines.append((_ORDER.index(check) if check in _ORDER else len(_ORDER), line))
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])]


def _report(failures: list[str], result: dict) -> ValidationReport:
    return ValidationReport(
        success=not failures,
        reason="; ".join(failures),
        failures=failures,
        result=result,
    )


def validate(
    frame: pd.DataFrame, settings: ValidationSettings, label_set: list[str] | None
) -> ValidationReport:
    """Run the batch suite on ``frame`` and explain any failure in one line."""
    present = [str(c) for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        # Column expectations on absent columns only produce GX errors; check the table alone.
        first = describe_missing_columns(missing, [c for c in present if c not in OWN_COLUMNS])
        data = frame.reset_index(drop=True)
        suite = make_suite(_expectations(settings, label_set, columns=False, present=present))
        result_dict = _run_suite(data, suite).to_json_dict()
        failures = [first, *_failures(result_dict, data, settings, label_set)]
        return _report(failures, _shorten(result_dict))

    data = _prepare(frame)
    result = _run_suite(data, build_suite(settings, label_set, present))
    result_dict = result.to_json_dict()
    failures = _failures(result_dict, data, settings, label_set)
    if label_set is None and (kinds := _label_kinds_line(data)) is not None:
        failures.append(kinds)
    if not failures and not result.success:  # should not happen, but never pass a failed run
        failures = ["validation failed for an unknown reason"]
    return _report(failures, _shorten(result_dict))
