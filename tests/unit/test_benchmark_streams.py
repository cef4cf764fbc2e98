"""The forgetting benchmark's streams: the shipped development streams, a user's file or folder, a
workspace's accepted batches, and the split protocols (fractions or exact sizes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from perennial.benchmarks.streams import (
    SplitSizes,
    clean_rows,
    dir_stream,
    exact_split,
    file_stream,
    make_slice,
    trec_class_stream,
    trec_subtype_stream,
    vader_stream,
    workspace_stream,
)
from perennial.core.settings import Settings
from perennial.data.batch_store import split_path, write_parquet
from perennial.data.ledger import PENDING, PROMOTED, REJECTED_MODEL, TRAINED, Ledger
from perennial.data.trec import CLASS_ORDER, load_questions

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def plain(tmp_path: Path) -> Settings:
    return Settings(workspace=tmp_path / "ws")


# Split sizes
@given(st.integers(1, 10_000), st.integers(1, 10_000), st.integers(1, 10_000))
def test_split_sizes_parse_round_trip(train: int, val: int, test: int) -> None:
    assert SplitSizes.parse(f"{train}, {val},{test}") == SplitSizes(train, val, test)


@pytest.mark.parametrize(
    "text", ["480,60", "a,b,c", "480,60,240,1", "0,10,10", "10,10,0", "10,0,10", "-1,2,3", ""]
)
def test_split_sizes_refuse_what_is_not_three_usable_counts(text: str) -> None:
    with pytest.raises(ValueError, match="split sizes"):
        SplitSizes.parse(text)


labelled_frames = st.lists(
    st.tuples(st.text(min_size=1, max_size=12).filter(str.strip), st.sampled_from(["a", "b", "c"])),
    min_size=6,
    max_size=80,
    unique_by=lambda row: row[0],
).map(lambda rows: pd.DataFrame(rows, columns=["text", "label"]))


@given(labelled_frames, st.data())
@hyp_settings(max_examples=60, deadline=None)
def test_exact_split_gives_the_asked_sizes_disjoint_and_from_the_slice(frame: pd.DataFrame, data) -> None:
    n = len(frame)
    test = data.draw(st.integers(1, n - 2))
    val = data.draw(st.integers(1, n - test - 1))
    train = data.draw(st.integers(1, n - test - val))
    splits = exact_split(frame, SplitSizes(train, val, test), seed=data.draw(st.integers(0, 99)))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [train, val, test]
    texts = [set(splits[s]["text"]) for s in ("train", "val", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set().union(*texts) <= set(frame["text"])


def test_exact_split_keeps_the_class_mix_and_refuses_too_few_rows() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(400)], "label": ["a"] * 300 + ["b"] * 100})
    splits = exact_split(frame, SplitSizes(200, 40, 100), seed=3)
    assert splits["test"]["label"].value_counts().to_dict() == {"a": 75, "b": 25}
    assert splits["train"]["label"].value_counts().to_dict() == {"a": 150, "b": 50}
    with pytest.raises(ValueError, match="fewer than the 401"):
        exact_split(frame, SplitSizes(300, 1, 100), seed=3)


def test_a_slice_with_missing_labels_or_columns_is_a_clear_error(plain: Settings) -> None:
    with pytest.raises(ValueError, match=r"slice 'x': 1 of 3 rows have no text or no label"):
        clean_rows("x", pd.DataFrame({"text": ["a", "b", "c"], "label": ["p", None, "n"]}))
    with pytest.raises(ValueError, match=r"slice 'x' has no 'label' column; columns: text"):
        clean_rows("x", pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ValueError, match="too few rows"):
        make_slice("x", pd.DataFrame({"text": ["a", "b"], "label": ["p", "n"]}), 0, plain)


def test_slice_names_must_be_unique_and_split_errors_name_the_slice(plain: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "batches"
    folder.mkdir()
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a", "b"] * 15})
    frame.to_csv(folder / "a.csv", index=False)
    frame.to_json(folder / "a.jsonl", orient="records", lines=True)
    with pytest.raises(ValueError, match="two slices are named 'a'"):
        dir_stream(folder, 0, plain)
    (folder / "a.jsonl").rename(folder / "b.jsonl")
    with pytest.raises(ValueError, match=r"slice 'a': 30 rows, fewer than the 40"):
        dir_stream(folder, 0, plain, sizes=SplitSizes(20, 10, 10))


def test_clean_rows_keeps_each_text_once_and_drops_blank_texts() -> None:
    rows = clean_rows("s", pd.DataFrame({"text": ["a", "a", "  ", "b"], "label": [1, 1, 0, 0]}))
    assert list(rows["text"]) == ["a", "b"] and list(rows["label"]) == ["1", "0"]
    assert set(rows["batch_id"]) == {"s"}


# The shipped development streams
def test_trec_questions_are_distinct_with_six_classes() -> None:
    questions = load_questions()
    assert questions["text"].is_unique
    assert set(questions["label"]) == set(CLASS_ORDER)
    assert len(questions) > 5000  # ~5,400 distinct questions in the 15,452 lines
    assert (questions["fine"].str.split(":").str[0] == questions["label"]).all()


def test_trec_class_stream_brings_new_classes_each_slice_all_declared_upfront(plain: Settings) -> None:
    stream = trec_class_stream(0, plain, rows=200)
    assert stream.labels == sorted(CLASS_ORDER)
    seen: set[str] = set()
    for piece in stream.slices:
        labels = set(piece.train["label"]) | set(piece.test["label"])
        assert len(labels) == 2 and not labels & seen  # two classes, none seen before
        seen |= labels
    assert seen == set(CLASS_ORDER)


def test_trec_subtype_stream_has_disjoint_subtypes_and_similar_sizes(plain: Settings) -> None:
    stream = trec_subtype_stream(0, plain)
    questions = load_questions().set_index("text")
    fines = [set(questions.loc[list(piece.test["text"]), "fine"]) for piece in stream.slices]
    for i in range(len(fines)):
        for j in range(i + 1, len(fines)):
            assert not fines[i] & fines[j]
    sizes = [len(piece.train) for piece in stream.slices]
    assert len(sizes) == 5 and max(sizes) < 1.2 * min(sizes)


def test_vader_stream_and_exact_sizes(plain: Settings) -> None:
    stream = vader_stream(1, plain, rows=120, sizes=SplitSizes(60, 20, 40))
    assert [s.name for s in stream.slices] == ["tweets", "movies", "amazon", "nyt"]
    assert all((len(s.train), len(s.val), len(s.test)) == (60, 20, 40) for s in stream.slices)
    assert stream.labels == ["negative", "positive"] and "Hutto" in stream.source


# The user's streams
def test_file_stream_by_time_is_chronological(plain: Settings) -> None:
    sizes = SplitSizes(2, 1, 2)  # the fixture has a few rows a year
    stream = file_stream(DATA / "dated.csv", 0, plain, by_time="created_at", every="year", sizes=sizes)
    names = [s.name for s in stream.slices]
    assert names == sorted(names) and len(names) >= 2
    assert "dated.csv" in stream.description and "year" in stream.description
    with pytest.raises(ValueError, match="exactly one of by"):
        file_stream(DATA / "dated.csv", 0, plain)


def test_file_stream_by_column_keeps_first_appearance_order(plain: Settings, tmp_path: Path) -> None:
    rows = [(f"text {i}", "pos" if i % 2 else "neg", group) for group in ("z", "a", "m") for i in range(20)]
    path = tmp_path / "history.csv"
    pd.DataFrame(rows, columns=["text", "label", "source"]).to_csv(path, index=False)
    stream = file_stream(path, 0, plain, by="source")
    assert [s.name for s in stream.slices] == ["z", "a", "m"]
    assert stream.labels == ["neg", "pos"]
    one_source = tmp_path / "one.csv"
    pd.DataFrame(rows, columns=["text", "label", "source"]).assign(source="z").to_csv(one_source, index=False)
    with pytest.raises(ValueError, match="splits into 1 slice by column 'source'; a stream needs 2 or more"):
        file_stream(one_source, 0, plain, by="source")
    with pytest.raises(ValueError, match="not in the declared label set"):
        file_stream(path, 0, plain.model_copy(update={"labels": ["neg", "other"]}), by="source")


def test_dir_stream_reads_batch_files_in_name_order(plain: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "batches"
    folder.mkdir()
    for name in ("002-later.jsonl", "001-first.csv", "notes.txt"):
        frame = pd.DataFrame({"text": [f"{name} {i}" for i in range(30)], "label": ["a", "b"] * 15})
        if name.endswith(".csv"):
            frame.to_csv(folder / name, index=False)
        elif name.endswith(".jsonl"):
            frame.to_json(folder / name, orient="records", lines=True)
        else:
            (folder / name).write_text("not a batch")
    stream = dir_stream(folder, 0, plain)
    assert [s.name for s in stream.slices] == ["001-first", "002-later"]
    (folder / "002-later.jsonl").unlink()
    with pytest.raises(ValueError, match="has 1 batch files"):
        dir_stream(folder, 0, plain)
    with pytest.raises(FileNotFoundError):
        dir_stream(tmp_path / "missing", 0, plain)


def test_dir_stream_names_an_unreadable_file(plain: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "batches"
    folder.mkdir()
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a", "b"] * 15}).to_csv(
        folder / "001.csv", index=False
    )
    (folder / "002.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(ValueError, match="002.parquet"):
        dir_stream(folder, 0, plain)


def test_workspace_stream_uses_the_pipelines_splits_of_accepted_batches_in_order(plain: Settings) -> None:
    ledger = Ledger(plain.ledger_path)
    plain.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    statuses = {"a" * 16: PROMOTED, "b" * 16: PENDING, "c" * 16: REJECTED_MODEL, "d" * 16: PROMOTED}
    for n, (batch_id, status) in enumerate(statuses.items()):
        ledger.add_batch(batch_id, batch_id * 4, f"batch-{n}.csv", Path(f"/raw/{n}.csv"))
        if status != PENDING:
            ledger.transition(batch_id, TRAINED)
            ledger.transition(batch_id, status)
        for split in ("train", "val", "test"):
            frame = pd.DataFrame(
                {"batch_id": batch_id, "text": [f"{batch_id} {split} {i}" for i in range(4)]}
            )
            write_parquet(frame.assign(label=["x", "y"] * 2), split_path(plain, batch_id, split))
    ledger.fix_label_set(["x", "y"])
    stream = workspace_stream(plain)
    assert [s.name for s in stream.slices] == ["001-batch-0", "002-batch-2", "003-batch-3"]
    assert stream.slices[1].test["text"].iloc[0] == f"{'c' * 16} test 0"
    assert stream.labels == ["x", "y"]
    # Batches whose labels the gate flagged feed nothing, here as in the pipeline.
    ledger.set_label_flag("d" * 16, "labels contradict the champion")
    assert [s.name for s in workspace_stream(plain).slices] == ["001-batch-0", "002-batch-2"]
    ledger.set_label_flag("c" * 16, "labels contradict the champion")
    with pytest.raises(ValueError, match="has 1 accepted batches"):
        workspace_stream(plain)
