"""Streams for the forgetting benchmark: where the slices come from and how each is split.

A stream is an ordered list of slices, each with train/val/test rows, plus the label set the model
is built with. Sources: the shipped development streams (VADER domains, TREC question types arriving
a few classes at a time, TREC question subtypes), one labelled file split like `perennial stream`
does, a folder of batch files, or the accepted batches of a workspace exactly as the pipeline split
them. Pure pandas: cheap to import and to test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perennial.data.batch_store import stratified_split
from perennial.workspace import earlier_batches, labels_for, ledger_for

if TYPE_CHECKING:
    from perennial.core.settings import Settings

COLUMNS = ["batch_id", "text", "label"]


@dataclass(frozen=True)
class Slice:
    name: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class Stream:
    name: str  # short, for file names and tables: "vader", "trec-classes", "file news.csv"
    description: str  # one line for the report and the plot
    slices: list[Slice]
    labels: list[str]  # the label set the model is built with, declared upfront
    source: str = ""  # who made the data, and its licence

    @property
    def test_rows(self) -> list[int]:
        return [len(s.test) for s in self.slices]


@dataclass(frozen=True)
class SplitSizes:
    """Exact rows per split of every slice (the protocol of a study that fixed them), not fractions."""

    train: int
    val: int
    test: int

    @classmethod
    def parse(cls, text: str) -> SplitSizes:
        """ "480,60,240" -> SplitSizes(480, 60, 240)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(
                f"split sizes are three whole numbers TRAIN,VAL,TEST (e.g. 480,60,240), not {text!r}"
            )
        train, val, test = map(int, parts)
        if min(train, val, test) < 1:
            # No validation rows: early stopping would see 0 accuracy every epoch and keep epoch 1.
            raise ValueError(f"split sizes need at least one train, val and test row, not {text!r}")
        return cls(train, val, test)

    @property
    def total(self) -> int:
        return self.train + self.val + self.test


def _proportional(counts: pd.Series, n: int) -> pd.Series:
    """`n` spread over the classes in proportion to `counts` (largest remainder), never above a count."""
    exact = counts / counts.sum() * n
    take = np.floor(exact).astype(int)
    for label in (exact - take).sort_values(ascending=False, kind="stable").index[: n - int(take.sum())]:
        take[label] += 1
    return take.clip(upper=counts)


def exact_split(frame: pd.DataFrame, sizes: SplitSizes, seed: int) -> dict[str, pd.DataFrame]:
    """Test, then val, then train rows in the given numbers, each keeping the slice's class mix."""
    if len(frame) < sizes.total:
        raise ValueError(
            f"{len(frame)} rows, fewer than the {sizes.total} the split sizes ask for "
            f"({sizes.train} train, {sizes.val} val, {sizes.test} test)"
        )
    rng = np.random.default_rng(seed)
    remaining = frame.loc[rng.permutation(frame.index.to_numpy())]
    out: dict[str, pd.DataFrame] = {}
    for name, n in (("test", sizes.test), ("val", sizes.val), ("train", sizes.train)):
        take = _proportional(remaining["label"].value_counts(), n)
        chosen = pd.concat([remaining[remaining["label"] == label].iloc[:k] for label, k in take.items()])
        # Rounding can leave a row or two short; top up from whatever remains.
        short = n - len(chosen)
        if short > 0:
            chosen = pd.concat([chosen, remaining.drop(chosen.index).iloc[:short]])
        out[name] = chosen.sort_index().reset_index(drop=True)
        remaining = remaining.drop(chosen.index)
    return out


def clean_rows(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A slice's rows as batch_id, text, label: checked (a clear error, never a silent drop of a
    row with no label), blank texts left out, each text once."""
    for column in ("text", "label"):
        if column not in frame.columns:
            columns = ", ".join(map(str, frame.columns)) or "none"
            raise ValueError(f"slice {name!r} has no {column!r} column; columns: {columns}")
    missing = int((frame["text"].isna() | frame["label"].isna()).sum())
    if missing:
        raise ValueError(f"slice {name!r}: {missing} of {len(frame)} rows have no text or no label")
    rows = frame.assign(text=frame["text"].astype(str), label=frame["label"].astype(str), batch_id=name)
    rows = rows[rows["text"].str.strip() != ""].drop_duplicates(subset="text")
    return rows[COLUMNS].reset_index(drop=True)


def make_slice(
    name: str, frame: pd.DataFrame, seed: int, settings: Settings, sizes: SplitSizes | None = None
) -> Slice:
    """One slice from labelled rows: checked, each text once, split stratified by label."""
    rows = clean_rows(name, frame)
    if sizes is not None:
        try:
            splits = exact_split(rows, sizes, seed)
        except ValueError as error:
            raise ValueError(f"slice {name!r}: {error}") from None
    else:
        splits = stratified_split(rows, seed, settings.val_fraction, settings.test_fraction)
    for split in ("train", "test"):
        if splits[split].empty:
            raise ValueError(f"slice {name!r} has too few rows ({len(rows)}) for a {split} split")
    return Slice(name, splits["train"], splits["val"], splits["test"])


def _labels_of(slices: Sequence[Slice], declared: Sequence[str] | None) -> list[str]:
    seen = sorted({label for s in slices for part in (s.train, s.val, s.test) for label in part["label"]})
    if declared is None:
        return seen
    unknown = sorted(set(seen) - set(declared))
    if unknown:
        raise ValueError(f"labels not in the declared label set: {', '.join(unknown[:5])}")
    return sorted(declared)


def _sample(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """A class-stratified sample of at most `rows` rows (all of them when `rows` is None)."""
    if rows is None or rows >= len(frame):
        return frame
    take = _proportional(frame["label"].value_counts(), rows)
    parts = [frame[frame["label"] == label].sample(n=int(k), random_state=seed) for label, k in take.items()]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _from_parts(
    parts: Sequence[tuple[str, pd.DataFrame]],
    seed: int,
    settings: Settings,
    sizes: SplitSizes | None,
    rows: int | None = None,
) -> list[Slice]:
    names = [name for name, _ in parts]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"two slices are named {twice[0]!r}: rename one (slice names key the results)")
    return [
        make_slice(name, _sample(clean_rows(name, part), rows, seed + n), seed + n, settings, sizes)
        for n, (name, part) in enumerate(parts)
    ]


# The shipped development streams
def vader_stream(
    seed: int, settings: Settings, rows: int | None = None, sizes: SplitSizes | None = None
) -> Stream:
    """Sentiment across four domains: the easy stream, where naive fine-tuning hardly forgets."""
    from perennial.data.vader import CITATION, DOMAINS, load_domain

    parts = [(domain, load_domain(domain)) for domain in DOMAINS]
    slices = _from_parts(parts, seed, settings, sizes, rows)
    return Stream(
        "vader",
        "VADER sentiment, 4 domains in turn (tweets, movies, amazon, nyt); domain-incremental, 2 classes",
        slices,
        _labels_of(slices, None),
        CITATION,
    )


def trec_class_stream(
    seed: int,
    settings: Settings,
    rows: int | None = None,
    sizes: SplitSizes | None = None,
    per_slice: int = 2,
) -> Stream:
    """TREC question types arriving `per_slice` classes at a time, all six declared upfront: the
    class-incremental stream, where a model trained on new classes alone forgets the old ones."""
    from perennial.data.trec import CITATION, CLASS_ORDER, load_questions

    questions = load_questions()
    groups = [CLASS_ORDER[i : i + per_slice] for i in range(0, len(CLASS_ORDER), per_slice)]
    parts = [("+".join(g), questions[questions["label"].isin(g)]) for g in groups]
    slices = _from_parts(parts, seed, settings, sizes, rows)
    return Stream(
        "trec-classes",
        f"TREC question types, {per_slice} new classes per slice of 6; class-incremental",
        slices,
        sorted(CLASS_ORDER),
        CITATION,
    )


def trec_subtype_stream(
    seed: int, settings: Settings, rows: int | None = None, sizes: SplitSizes | None = None, slices_n: int = 5
) -> Stream:
    """TREC's six classes spread over slices that ask about different subtypes (people in one, dates
    and counts in others): subpopulation shift with the label priors moving; each slice holds 3 to 5
    of the classes."""
    from perennial.data.trec import CITATION, load_questions

    questions = load_questions()
    # Largest subtype first, each to the slice with the fewest rows so far: similar slice sizes, and
    # a class's subtypes end up spread over the stream (its dates in one slice, its counts in another).
    assignment: dict[str, int] = {}
    sizes_so_far = [0] * slices_n
    for fine, count in questions["fine"].value_counts().items():
        target = min(range(slices_n), key=lambda k: (sizes_so_far[k], k))
        assignment[str(fine)] = target
        sizes_so_far[target] += int(count)
    slot = questions["fine"].map(assignment)
    parts = [(f"subtypes-{k + 1}", questions[slot == k]) for k in range(slices_n)]
    slices = _from_parts(parts, seed, settings, sizes, rows)
    return Stream(
        "trec-subtypes",
        f"TREC question types, 6 classes over {slices_n} slices of different subtypes; subpopulation shift",
        slices,
        _labels_of(slices, None),
        CITATION,
    )


DEV_STREAMS: dict[str, Callable[..., Stream]] = {
    "vader": vader_stream,
    "trec-classes": trec_class_stream,
    "trec-subtypes": trec_subtype_stream,
}


# The user's own streams
def file_stream(
    path: Path,
    seed: int,
    settings: Settings,
    *,
    by: str | None = None,
    by_time: str | None = None,
    every: str = "month",
    sizes: SplitSizes | None = None,
    rows: int | None = None,
) -> Stream:
    """One labelled file split into slices by a column or by period, as `perennial stream` splits it."""
    from perennial.data.stream import split_file

    parts = split_file(path, by=by, by_time=by_time, every=every)
    if len(parts) < 2:
        how = f"column {by!r}" if by is not None else f"{by_time!r} by {every}"
        raise ValueError(
            f"{Path(path).name} splits into {len(parts)} slice by {how}; a stream needs 2 or more"
        )
    slices = _from_parts(parts, seed, settings, sizes, rows)
    how = f"by {by}" if by is not None else f"by {by_time}, one slice per {every}"
    return Stream(
        f"file {Path(path).name}",
        f"{Path(path).name} {how}: {len(slices)} slices",
        slices,
        _labels_of(slices, settings.labels),
    )


def dir_stream(
    folder: Path, seed: int, settings: Settings, *, sizes: SplitSizes | None = None, rows: int | None = None
) -> Stream:
    """Every batch file of a folder, in file-name order (as `perennial stream` numbers them)."""
    from perennial.data.ingest import read_batch
    from perennial.data.stream import FORMAT_OF_SUFFIX

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMAT_OF_SUFFIX)
    if len(files) < 2:
        raise ValueError(
            f"{folder} has {len(files)} batch files (CSV, JSONL or Parquet); a stream needs 2 or more"
        )
    slices = _from_parts([(p.stem, read_batch(p)) for p in files], seed, settings, sizes, rows)
    return Stream(
        f"folder {folder.name}",
        f"{len(files)} batch files of {folder.name}, in name order",
        slices,
        _labels_of(slices, settings.labels),
    )


def workspace_stream(settings: Settings) -> Stream:
    """The workspace's accepted batches in ledger order, with the very splits the pipeline made."""
    from perennial.data.batch_store import load_split

    ledger = ledger_for(settings)
    ids = earlier_batches(settings, batch_id="")
    if len(ids) < 2:
        raise ValueError(f"the workspace has {len(ids)} accepted batches; a stream needs 2 or more")
    slices = []
    for n, batch_id in enumerate(ids, 1):
        name = f"{n:03d}-{Path(ledger.batch(batch_id).source).stem}"
        splits = {s: load_split(settings, batch_id, s)[COLUMNS] for s in ("train", "val", "test")}
        slices.append(Slice(name, splits["train"], splits["val"], splits["test"]))
    labels = labels_for(settings)
    return Stream(
        "workspace",
        f"the {len(ids)} accepted batches of {settings.workspace}, in arrival order",
        slices,
        _labels_of(slices, labels),
    )
