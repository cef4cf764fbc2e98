"""The split's leak guard: no slice's test text is trained on, whichever batch it arrives in, even as a
near-copy (case, spacing, Unicode width, zero-width characters)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.data.batch_store import load_split, rows_path, split_batch
from perennial.data.leakage import GUARD_FILE
from perennial.data.ledger import QUARANTINED, Ledger
from perennial.data.text_keys import text_key

SPLITS = ("train", "val", "test")
LABELS = ("negative", "positive")


def make_settings(root: Path) -> Settings:
    return Settings(workspace=root / "ws", val_fraction=0.2, test_fraction=0.2)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    return make_settings(tmp_path)


def add_batch(settings: Settings, name: str, texts: list[str], status: str = "pending") -> str:
    """A batch as ingest leaves it: a ledger row and its stored rows (labels alternate)."""
    sha = hashlib.sha256(f"{name}\0{texts!r}".encode()).hexdigest()
    batch_id = sha[:16]
    frame = pd.DataFrame(
        {"batch_id": batch_id, "text": texts, "label": [LABELS[i % 2] for i in range(len(texts))]}
    )
    path = rows_path(settings, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    Ledger(settings.ledger_path).add_batch(batch_id, sha, name, path, status=status, rows=len(texts))
    return batch_id


def split_texts(settings: Settings, batch_id: str, *names: str) -> list[str]:
    return [t for name in names for t in load_split(settings, batch_id, name)["text"]]


def keys(texts: list[str]) -> set[str]:
    return {text_key(t) for t in texts}


def near_copy(text: str, how: int) -> str:
    """Another spelling of the same text: what a person would still call the same review."""
    if how == 0:
        return text.upper()
    if how == 1:
        return "  " + text.replace(" ", " \t ") + "\n"
    if how == 2:  # full-width letters and digits: NFKC folds them back
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
    return "\u200b".join(text[:3]) + "\u200e" + text[3:] + "\ufeff"


def first_batch(settings: Settings, n: int = 40) -> str:
    batch_id = add_batch(settings, "one.csv", [f"first batch review {i} was fine" for i in range(n)])
    split_batch(settings, batch_id)
    return batch_id


@pytest.mark.parametrize("how", range(4), ids=["case", "whitespace", "nfkc", "zero-width"])
def test_near_copies_of_test_rows_are_dropped_and_of_train_rows_kept_in_train(
    settings: Settings, how: int, caplog: pytest.LogCaptureFixture
) -> None:
    one = first_batch(settings)
    test_1 = split_texts(settings, one, "test")
    seen_1 = split_texts(settings, one, "train", "val")
    fresh = [f"second batch review {i} was new" for i in range(30)]
    copies_of_test = [near_copy(t, how) for t in test_1]
    copies_of_seen = [near_copy(t, how) for t in seen_1[:10]]
    two = add_batch(settings, "two.csv", fresh + copies_of_test + copies_of_seen)

    with caplog.at_level("INFO", logger="perennial.data.ingest"):
        counts = split_batch(settings, two)

    assert counts["dropped_test_leaks"] == len(test_1) > 0
    assert counts["train"] + counts["val"] + counts["test"] == len(fresh) + len(copies_of_seen)
    train_2 = split_texts(settings, two, "train")
    assert set(copies_of_seen) <= set(train_2)  # kept, but only for training
    assert not keys(split_texts(settings, two, *SPLITS)) & keys(test_1)
    assert not keys(split_texts(settings, two, "val", "test")) & keys(seen_1)
    line = [r.getMessage() for r in caplog.records if two in r.getMessage()]
    assert len(line) == 1 and f"{len(test_1)} rows dropped" in line[0], line
    assert "\n" not in line[0]


def test_near_copies_within_a_batch_are_one_text(settings: Settings) -> None:
    texts = [f"review {i} of the week" for i in range(30)]
    batch = add_batch(settings, "dups.csv", texts + [near_copy(t, i % 4) for i, t in enumerate(texts[:8])])
    counts = split_batch(settings, batch)
    assert counts["train"] + counts["val"] + counts["test"] == 30
    stored = split_texts(settings, batch, *SPLITS)
    assert len(keys(stored)) == len(stored) == 30


def test_a_quarantined_batch_or_one_never_split_is_not_a_reference(settings: Settings) -> None:
    texts = [f"shared review {i} text" for i in range(30)]
    add_batch(settings, "bad.csv", texts, status=QUARANTINED)
    unsplit = add_batch(settings, "unsplit.csv", texts[::-1])  # same texts, but no splits yet
    batch = add_batch(settings, "good.csv", texts + ["one more review here"])
    counts = split_batch(settings, batch)
    assert counts["dropped_test_leaks"] == 0
    assert counts["test"] > 0
    # The unsplit batch, split now, is checked against the one split first.
    later = split_batch(settings, unsplit)
    assert later["dropped_test_leaks"] == counts["test"]
    assert later["val"] == later["test"] == 0  # every other text was trained or tuned on


def test_splitting_again_gives_the_same_splits_after_later_batches(settings: Settings) -> None:
    one = first_batch(settings)
    before = {name: load_split(settings, one, name) for name in SPLITS}
    two = add_batch(settings, "two.csv", split_texts(settings, one, *SPLITS)[::-1] + ["a new text here"])
    split_batch(settings, two)

    counts = split_batch(settings, one)  # a retried cycle splits its batch again

    assert counts["dropped_test_leaks"] == 0
    for name in SPLITS:
        pd.testing.assert_frame_equal(before[name], load_split(settings, one, name))
    assert (settings.batches_dir / one / GUARD_FILE).is_file()


def test_split_counts_still_read_by_name(settings: Settings) -> None:
    from perennial.pipeline.intake import split

    one = first_batch(settings)
    counts = split(settings, add_batch(settings, "two.csv", [f"other review {i} here" for i in range(20)]))
    assert {"train", "val", "test"} <= set(counts)
    assert all(len(load_split(settings, one, name)) for name in SPLITS)


# Any two batches: texts drawn from a small pool, so that they share many, each spelt in any way.
_POOL = [f"pooled review number {i}" for i in range(25)]
_texts = st.lists(
    st.tuples(st.sampled_from(_POOL), st.integers(0, 4)).map(
        lambda pair: pair[0] if pair[1] == 4 else near_copy(*pair)
    ),
    min_size=1,
    max_size=40,
)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_texts, second=_texts)
def test_no_test_text_of_one_batch_is_ever_trained_on_by_the_next(
    first: list[str], second: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp))
        one = add_batch(settings, "one.csv", first)
        split_batch(settings, one)
        two = add_batch(settings, "two.csv", second)
        counts = split_batch(settings, two)

        test_1 = keys(split_texts(settings, one, "test"))
        all_1 = keys(split_texts(settings, one, *SPLITS))
        assert not keys(split_texts(settings, two, "train", "val")) & test_1
        assert not keys(split_texts(settings, two, "test")) & all_1
        assert not keys(split_texts(settings, two, "val")) & all_1
        assert counts["dropped_test_leaks"] == sum(text_key(t) in test_1 for t in second)
        for batch in (one, two):  # one copy of each text per batch
            stored = split_texts(settings, batch, *SPLITS)
            assert len(keys(stored)) == len(stored)
