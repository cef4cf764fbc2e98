"""Generated inputs for the batch suite: whatever values a file holds, `validate` answers with a report
(never an exception), fails exactly the batches with a null or blank text or label, and fails texts that
show nothing (control, zero-width, bidi or filler characters only)."""

from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.data.batch_files import BadBatch
from perennial.data.ingest import read_batch
from perennial.data.validation import invisible_ranges, invisible_text_regex, validate

FUZZ = hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def lenient() -> Settings:
    # Only the null and blank checks can fail: any row count, any share of repeats.
    return Settings(workspace=Path(tempfile.mkdtemp()), min_rows=1, max_duplicate_fraction=1.0)


# Values a file may hold where a text or a label belongs.
_MISSING = st.sampled_from([None, math.nan, pd.NA, "", " ", "\t \n"])
_LABEL_KINDS = [["negative", "positive"], [0, 1], [False, True]]
_DTYPES = [object, "string", float, "Int64"]


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(_LABEL_KINDS))  # one kind of label per file, as validation wants
    texts = [
        draw(
            st.one_of(
                st.just(f"review {i} says something"),
                _MISSING,
                st.sampled_from([1000 + i, 0.5 + i, True, False]),
            )
        )
        for i in range(n)
    ]
    labels = [draw(st.one_of(st.sampled_from(kind), _MISSING)) for _ in range(n)]
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object), "label": pd.Series(labels, dtype=object)})
    for column in frame.columns:
        dtype = draw(st.sampled_from(_DTYPES))
        with contextlib.suppress(TypeError, ValueError):  # values it cannot hold stay as objects
            frame[column] = frame[column].astype(dtype)
    return frame


def write(frame: pd.DataFrame, suffix: str, folder: Path) -> Path:
    path = folder / f"batch{suffix}"
    try:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_parquet(path, index=False)
    except Exception:  # noqa: BLE001 - a frame the writer itself refuses is no file to read
        assume(False)
    return path


def stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as validation reads them: through Parquet, as ingest stores them."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return pd.read_parquet(buffer)


def null_or_blank(values: pd.Series) -> bool:
    return bool(values.isna().any() or values.dropna().map(lambda v: not str(v).strip()).any())


@FUZZ
@given(frame=frames(), suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]))
def test_any_values_give_a_report_that_fails_exactly_on_null_or_blank(
    lenient: Settings, frame: pd.DataFrame, suffix: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(frame, suffix, Path(tmp))
        try:
            rows = stored(read_batch(path))
        except BadBatch as error:  # e.g. numbers where texts belong: refused with one clear line
            assert str(error) and "\n" not in str(error)
            return
    report = validate(rows, lenient.validation, None)  # never raises

    bad = null_or_blank(rows["text"]) or null_or_blank(rows["label"])
    assert report.success is not bad, (report.reason, rows.to_dict("list"))
    assert "\n" not in report.reason
    if bad:
        assert re.search(r"(text|label) is (null|blank)", report.reason), report.reason


# Invisible texts
_INVISIBLE_SET = frozenset(chr(c) for first, last in invisible_ranges() for c in range(first, last + 1))
# Lone surrogates cannot be stored (Parquet is UTF-8) nor held by pandas' string dtype: never a row.
_INVISIBLE = sorted(c for c in _INVISIBLE_SET if not 0xD800 <= ord(c) <= 0xDFFF)
_invisible_texts = st.text(st.sampled_from(_INVISIBLE), min_size=1, max_size=8)
_visible = st.characters(categories=["L", "N"]).filter(lambda c: c not in _INVISIBLE_SET)


@st.composite
def visible_texts(draw: st.DrawFn) -> str:
    """Invisible characters around at least one letter or digit."""
    return draw(_invisible_texts | st.just("")) + draw(_visible) + draw(st.text(max_size=5))


def test_the_character_class_holds_the_known_invisible_characters() -> None:
    for (
        char
    ) in "\u200b\u200c\u200d\u200e\u200f\u202e\u2066\ufeff\u00ad\u3164\u115f\u1160\uffa0\ufe0f\x00\x7f":
        assert char in _INVISIBLE_SET, hex(ord(char))
    assert "\U000e0101" in _INVISIBLE_SET  # a variation selector outside the BMP
    for char in "aZ9\u00e9\u4e2d\u0661!.\u2603":
        assert char not in _INVISIBLE_SET


@hsettings(max_examples=300, deadline=None)
@given(invisible=_invisible_texts, visible=visible_texts())
def test_the_regex_tells_invisible_texts_from_texts_with_a_letter(invisible: str, visible: str) -> None:
    # The way GX's pandas engine applies it: Series.astype(str).str.contains(regex).
    found = pd.Series([invisible, visible]).astype(str).str.contains(invisible_text_regex())
    assert bool(found[0]) is (not invisible.isspace())  # whitespace only: the blank check's
    assert not found[1]


@FUZZ
@given(
    invisible=st.lists(_invisible_texts, min_size=1, max_size=4),
    visible=st.lists(visible_texts(), max_size=4),
)
def test_the_suite_fails_texts_without_visible_characters(
    lenient: Settings, invisible: list[str], visible: list[str]
) -> None:
    texts = visible + invisible
    frame = pd.DataFrame(
        {"text": texts, "label": [("negative", "positive")[i % 2] for i in range(len(texts))]}
    )
    report = validate(frame, lenient.validation, None)

    assert not report.success
    hidden = [t for t in invisible if not t.isspace()]
    if hidden:
        assert f"text has no visible characters: {len(hidden)} of {len(texts)} rows" in report.reason
    else:
        assert "no visible characters" not in report.reason
        assert "text is blank or whitespace only" in report.reason


def test_an_invisible_text_is_reported_with_rows_and_an_example(lenient: Settings) -> None:
    texts = [f"review number {i} says something" for i in range(40)]
    texts[2], texts[8] = "\u200b\u200b", "\u202e\u2066\u3164"
    frame = pd.DataFrame({"text": texts, "label": ["negative", "positive"] * 20})
    report = validate(frame, lenient.model_copy(update={"min_rows": 20}).validation, None)
    assert report.reason == (
        "text has no visible characters: 2 of 40 rows (rows 3, 9),"
        " e.g. '\\u200b\\u200b', '\\u202e\\u2066\\u3164'"
    )
    # Shown as a GX expectation, so Data Docs lists it.
    checks = [r["expectation_config"]["meta"].get("check") for r in report.result["results"]]
    assert "invisible_text" in checks
