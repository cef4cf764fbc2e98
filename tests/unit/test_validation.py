"""The batch data-quality suite: good batches pass, each kind of bad batch fails with a clear reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from perennial.core.settings import Settings
from perennial.data.validation import REQUIRED_COLUMNS, ValidationReport, build_suite, validate

LABELS = ["negative", "positive"]
N_ROWS = 40


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Local on purpose: the conftest fixture builds a tiny model this module does not need.
    return Settings(workspace=tmp_path, min_rows=20)


def good_frame(n: int = N_ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"review number {i} says something" for i in range(n)],
            "label": [LABELS[i % 2] for i in range(n)],
            "source": "unit-test",  # extra columns are allowed
        }
    )


def with_values(column: str, values: dict[int, object]) -> pd.DataFrame:
    frame = good_frame()
    frame[column] = frame[column].astype(object)
    for row, value in values.items():
        frame.at[row, column] = value
    return frame


def assert_fails(report: ValidationReport, *needles: str) -> None:
    assert not report.success
    assert report.failures, "a failed report must list its failures"
    assert "\n" not in report.reason
    for needle in needles:
        assert needle in report.reason, f"{needle!r} not in {report.reason!r}"


def test_good_frame_passes(settings: Settings) -> None:
    report = validate(good_frame(), settings.validation, LABELS)
    assert report.success
    assert report.reason == ""
    assert report.failures == []
    assert report.result["success"] is True
    json.dumps(report.result)  # JSON-serialisable as promised


def test_good_frame_passes_without_label_set_and_with_odd_index(settings: Settings) -> None:
    frame = good_frame().set_index(pd.Index(range(1000, 1000 + N_ROWS)))
    assert validate(frame, settings.validation, None).success


def test_non_string_labels_are_compared_as_strings(settings: Settings) -> None:
    frame = good_frame().assign(label=[i % 2 for i in range(N_ROWS)])
    assert validate(frame, settings.validation, ["0", "1"]).success


def test_missing_column(settings: Settings) -> None:
    frame = good_frame().rename(columns={"label": "lable"})
    report = validate(frame, settings.validation, LABELS)
    assert_fails(
        report,
        "missing required column 'label' (found 'lable': misspelled?)",
        "the file has columns: text, lable, source",
    )
    assert report.failures[0].startswith("missing required column")


def test_null_text(settings: Settings) -> None:
    report = validate(with_values("text", {3: None, 7: None}), settings.validation, LABELS)
    assert_fails(report, "text is null", "2 of 40 rows")
    assert len(report.failures) == 1


@pytest.mark.parametrize("blank", ["   ", "\t\n "])
def test_blank_text(settings: Settings, blank: str) -> None:
    report = validate(with_values("text", {5: blank}), settings.validation, LABELS)
    assert_fails(report, "blank or whitespace", "1 of 40 rows", repr(blank))


def test_empty_text(settings: Settings) -> None:
    report = validate(with_values("text", {0: ""}), settings.validation, LABELS)
    assert_fails(report, "blank or whitespace", "shorter than 1 characters")


def test_label_outside_set(settings: Settings) -> None:
    report = validate(
        with_values("label", {1: "neutral", 2: "meh", 3: "neutral"}), settings.validation, LABELS
    )
    assert_fails(report, "label outside the label set ['negative', 'positive']", "3 of 40 rows")
    assert "'neutral'" in report.reason and "'meh'" in report.reason
    assert len(report.failures) == 1


def test_label_set_is_skipped_when_none(settings: Settings) -> None:
    assert validate(with_values("label", {1: "neutral"}), settings.validation, None).success


def test_null_label(settings: Settings) -> None:
    report = validate(with_values("label", {4: None}), settings.validation, LABELS)
    assert_fails(report, "label is null", "1 of 40 rows")
    assert "outside the label set" not in report.reason  # nulls are not also counted as unknown


def test_too_long_text(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_text_chars": 100})
    report = validate(with_values("text", {9: "y" * 500}), settings.validation, LABELS)
    assert_fails(report, "longer than 100 characters", "1 of 40 rows", "(500 chars)")
    assert "y" * 41 not in report.reason  # long examples are truncated


def test_too_short_text(settings: Settings) -> None:
    settings = settings.model_copy(update={"min_text_chars": 5})
    report = validate(with_values("text", {2: "ok", 6: "meh"}), settings.validation, LABELS)
    assert_fails(report, "shorter than 5 characters", "2 of 40 rows", "'ok' (2 chars)", "'meh'")


def test_too_many_duplicates(settings: Settings) -> None:
    frame = with_values("text", dict.fromkeys(range(10), "same old text"))
    report = validate(frame, settings.validation, LABELS)  # 9 of 40 repeat: 77.5% unique < 90%
    assert_fails(report, "duplicate", "9 of 40", "'same old text' x10")
    assert len(report.failures) == 1


def test_duplicates_within_the_allowed_fraction_pass(settings: Settings) -> None:
    frame = with_values("text", dict.fromkeys(range(5), "same old text"))  # 4 of 40 = 10%
    assert validate(frame, settings.validation, LABELS).success


def test_too_few_rows(settings: Settings) -> None:
    report = validate(good_frame(5), settings.validation, LABELS)
    assert_fails(report, "too few rows: 5", "at least 20")
    assert len(report.failures) == 1


def test_empty_frame(settings: Settings) -> None:
    report = validate(pd.DataFrame({"text": [], "label": []}), settings.validation, LABELS)
    assert report.failures == ["too few rows: 0 (need at least 20)"]


def test_several_failures_are_all_reported(settings: Settings) -> None:
    frame = with_values("text", {0: None}).iloc[:10]
    report = validate(frame, settings.validation, LABELS)
    assert len(report.failures) == 2
    assert report.reason == "; ".join(report.failures)
    assert "too few rows" in report.failures[0] and "text is null" in report.failures[1]


def test_build_suite(settings: Settings) -> None:
    with_labels = build_suite(settings.validation, LABELS)
    without = build_suite(settings.validation, None)
    types = {e.expectation_type for e in with_labels.expectations}
    assert "expect_column_values_to_be_in_set" in types
    assert len(with_labels.expectations) == len(without.expectations) + 1
    assert {"text", "label"} == set(REQUIRED_COLUMNS)


def test_save_writes_json(settings: Settings, tmp_path: Path) -> None:
    report = validate(with_values("label", {1: "neutral"}), settings.validation, LABELS)
    path = report.save(tmp_path / "nested" / "report.json")
    assert path == tmp_path / "nested" / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["success"] is False
    assert data["reason"] == report.reason
    assert data["failures"] == report.failures
    assert data["result"]["success"] is False
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left behind


def test_import_is_cheap() -> None:
    # GX takes seconds to import; importing the module must not pull it in.
    code = "import sys, perennial.data.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Where and what to do: row numbers, close column names, label kinds, extra columns


def test_failures_name_the_rows(settings: Settings) -> None:
    report = validate(with_values("text", {3: None, 7: None}), settings.validation, LABELS)
    assert report.failures == ["text is null: 2 of 40 rows (rows 4, 8)"]
    many = validate(with_values("label", dict.fromkeys(range(0, 14, 2), "meh")), settings.validation, LABELS)
    assert "7 of 40 rows (rows 1, 3, 5, 7, 9, ...)" in many.reason


@pytest.mark.parametrize(
    ("columns", "needle"),
    [
        (["Text", "label"], "missing required column 'text' (found 'Text': wrong case?)"),
        (["txet", "label"], "missing required column 'text' (found 'txet': misspelled?)"),
        (["review", "label"], "missing required column 'text'; the file has columns: review, label"),
    ],
)
def test_missing_column_suggests_the_close_one(settings: Settings, columns: list[str], needle: str) -> None:
    frame = good_frame()[["text", "label"]].set_axis(columns, axis=1)
    report = validate(frame, settings.validation, LABELS)
    assert_fails(report, needle, "a batch needs text and label")


def test_missing_columns_spot_another_separator(settings: Settings) -> None:
    frame = pd.DataFrame({"text;label": [f"row {i};positive" for i in range(N_ROWS)]})
    assert_fails(validate(frame, settings.validation, LABELS), "it seems to use ';' as separator")


def test_numeric_labels_for_a_named_label_set_say_type_mismatch(settings: Settings) -> None:
    frame = good_frame().assign(label=[str(i % 2) for i in range(N_ROWS)])
    assert_fails(
        validate(frame, settings.validation, LABELS),
        "type mismatch, numeric labels where the label set holds names",
    )
    named = validate(good_frame(), settings.validation, ["0", "1"])
    assert_fails(named, "type mismatch, named labels where the label set holds numbers")
    # Unknown names among names: no type talk.
    assert (
        "type mismatch" not in validate(with_values("label", {1: "meh"}), settings.validation, LABELS).reason
    )


def test_labels_mixing_numbers_and_names_without_a_label_set(settings: Settings) -> None:
    report = validate(with_values("label", {1: "1", 2: "0"}), settings.validation, None)
    assert_fails(report, "labels mix numbers and names: 2 numeric rows, e.g. '0', '1' and 38 named rows")
    assert validate(
        with_values("label", {1: "1"}), settings.validation, ["1", "negative", "positive"]
    ).success


def test_extra_columns_allowed_or_rejected(settings: Settings) -> None:
    frame = good_frame().assign(id="x", batch_id="b")  # `source` is extra; id and batch_id are known
    assert validate(frame, settings.validation, LABELS).success
    strict = settings.model_copy(update={"extra_columns": "reject"})
    report = validate(frame, strict.validation, LABELS)
    assert_fails(report, "extra column 'source' not allowed (extra_columns = reject): remove it")
    assert len(report.failures) == 1
    assert validate(frame.drop(columns="source"), strict.validation, LABELS).success
    types = {
        e.expectation_type for e in build_suite(strict.validation, LABELS, list(frame.columns)).expectations
    }
    assert "expect_table_columns_to_match_set" in types


def test_stored_result_cuts_long_texts(settings: Settings) -> None:
    report = validate(with_values("text", {9: "y" * 200_000}), settings.validation, LABELS)
    assert "(200000 chars)" in report.reason  # the message has the true length...
    assert len(json.dumps(report.result)) < 20_000  # ...the stored result not the text
