"""The new-label policy: which labels may grow the label set, and the one-line reasons when not."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from perennial.data.new_labels import NewLabels, check_new_labels, label_counts, spelling_key
from perennial.workspace import ordered_labels

KNOWN = ["billing", "refund"]


def test_a_label_with_enough_rows_grows_the_set() -> None:
    found = check_new_labels({"billing": 20, "outage": 12, "login": 10}, KNOWN, "grow", 10)
    assert found == NewLabels(["login", "outage"], {"login": 10, "outage": 12})
    assert found.line(2) == (
        "new label(s) 'login' (10 rows), 'outage' (12 rows): the model's head grows from 2 to 4 labels"
    )


def test_known_labels_only_bring_nothing() -> None:
    assert check_new_labels({"billing": 3, "refund": 40}, KNOWN, "grow", 10) == NewLabels()


@pytest.mark.parametrize(
    ("counts", "policy", "needle"),
    [
        ({"outage": 9}, "grow", "new label(s) 'outage' (9 rows) below new_label_min_rows = 10"),
        ({"outage": 1}, "grow", "'outage' (1 row)"),
        ({"outage": 50}, "quarantine", "new_labels = quarantine: set new_labels = grow"),
        ({"Billing": 50}, "grow", "differs from the known label 'billing' only in case"),
        ({"re-fund ": 50}, "grow", "differs from the known label 'refund'"),
        ({"Outage": 20, "outage": 20}, "grow", "differs from the new label 'Outage'"),
        ({"3": 50}, "grow", "are numbers where the label set holds names"),
    ],
)
def test_a_label_that_cannot_grow_the_set_says_why(counts: dict, policy: str, needle: str) -> None:
    found = check_new_labels(counts, KNOWN, policy, 10)  # type: ignore[arg-type]
    assert found.labels == [] and needle in found.reason and "\n" not in found.reason


def test_names_where_the_set_holds_numbers() -> None:
    assert (
        "are names where the label set holds numbers"
        in check_new_labels({"x": 30}, ["0", "1"], "grow", 10).reason
    )


def test_label_counts_leave_out_nulls_and_blanks() -> None:
    labels = pd.Series(["a", "a", None, " ", "b", float("nan")], dtype=object)
    assert label_counts(labels) == {"a": 2, "b": 1}


LABEL = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=8
)


@given(
    known=st.lists(LABEL, min_size=1, max_size=4, unique=True),
    counts=st.dictionaries(LABEL, st.integers(1, 40), max_size=6),
    min_rows=st.integers(1, 30),
)
def test_only_unseen_well_supported_distinct_labels_ever_grow_the_set(
    known: list[str], counts: dict[str, int], min_rows: int
) -> None:
    found = check_new_labels(counts, known, "grow", min_rows)
    unseen = sorted(set(counts) - set(known))
    if found.reason:
        assert found.labels == [] and "\n" not in found.reason
    else:
        assert found.labels == unseen  # all of them or none: a batch is accepted whole
        assert all(counts[label] >= min_rows for label in found.labels)
        keys = [spelling_key(label) for label in [*known, *found.labels]]
        assert len({k for k in keys if k}) == len([k for k in keys if k])  # no two spelt alike


@given(
    recorded=st.lists(LABEL, max_size=5, unique=True),
    declared=st.none() | st.lists(LABEL, max_size=5, unique=True),
)
def test_recorded_labels_keep_their_positions(recorded: list[str], declared: list[str] | None) -> None:
    labels = ordered_labels(recorded, declared)
    assert labels[: len(recorded)] == recorded
    assert set(labels) == set(recorded) | set(declared or [])
    assert len(labels) == len(set(labels))


WORD = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=2, max_size=8)


@st.composite
def spelt_another_way(draw: st.DrawFn, label: str) -> str:
    """`label` as a typo would write it: other case, an accent, a space, a hyphen or a full stop."""
    chars = list(label)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(chars) - 1))
        chars[i] = draw(
            st.sampled_from(
                [chars[i].upper(), chars[i] + "\u0301", chars[i] + " ", chars[i] + "-", chars[i] + "."]
            )
        )
    variant = "".join(chars)
    assume(variant != label)
    return variant


@given(data=st.data(), known=st.lists(WORD, min_size=1, max_size=4, unique=True), rows=st.integers(10, 40))
def test_a_known_label_spelt_another_way_never_grows_the_set(
    data: st.DataObject, known: list[str], rows: int
) -> None:
    twin = data.draw(st.sampled_from(known))
    variant = data.draw(spelt_another_way(twin))
    assume(variant not in known)
    found = check_new_labels({variant: rows, twin: rows}, known, "grow", 10)
    assert found.labels == [] and f"differs from the known label {twin!r}" in found.reason
