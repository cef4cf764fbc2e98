"""The drift detectors on real text (VADER domains) through a real, tiny BERT: quiet on exchangeable
samples, loud on a domain change, and growing with the share of foreign rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perennial.data.vader import sample_domain
from perennial.monitoring.drift_plot import plot_drift_report
from perennial.monitoring.drift_tests import TEST_NAMES, DriftReport, detect_drift, detect_drift_with_samples

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

ALPHA = 0.05
SETTINGS = {"permutations": 200, "batch_size": 64, "max_length": 64}


@pytest.fixture(scope="module")
def champion(tiny_model_dir: Path) -> tuple[object, object]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return (
        AutoModelForSequenceClassification.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
    )


def split_tweets(seed: int, rows: int) -> tuple[list[str], list[str]]:
    """One class-stratified sample of 2 * rows tweets, split at random into two disjoint halves."""
    texts = sample_domain("tweets", 2 * rows, seed=seed)["text"].tolist()
    order = np.random.default_rng(seed).permutation(len(texts))
    half = len(texts) // 2
    return [texts[i] for i in order[:half]], [texts[i] for i in order[half : 2 * half]]


def test_no_alarm_on_two_samples_of_the_same_domain(champion, tmp_path: Path) -> None:
    reference, current = split_tweets(seed=0, rows=200)
    report, ref_samples, cur_samples = detect_drift_with_samples(
        *champion, reference, current, alpha=ALPHA, seed=0, **SETTINGS
    )
    assert not report.drifted, report.to_dict()
    assert [t.name for t in report.tests] == list(TEST_NAMES)
    assert (report.reference_rows, report.current_rows) == (len(reference), len(current))
    assert report.threshold == pytest.approx(ALPHA / 5)
    assert DriftReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    # The samples behind the tests come back row for row, ready for the figure.
    assert all(len(ref_samples[k]) == len(reference) for k in ("text_length", "oov_rate", "confidence"))
    assert len(cur_samples["confidence"]) == len(current)
    png = plot_drift_report(report, ref_samples, cur_samples, tmp_path / "drift.png", "tweets vs tweets")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_false_alarm_rate_on_same_domain_draws_is_at_most_alpha(champion) -> None:
    """Family-wise false alarms over 100 exchangeable draws stay at most alpha.

    Why 100 draws and not 10: Bonferroni keeps the family-wise rate at most 0.05 but not at 0; measured
    over 200 draws it is about 0.03 here, so 10 draws show at least one alarm about a quarter of the time
    (seed 9 alarms: the oov_rate KS gives p = 0.009). With 100 draws a rate above alpha shows up as
    more than 5 alarms.
    """
    draws = 100
    alarms = []
    for seed in range(draws):
        reference, current = split_tweets(seed=seed, rows=200)
        report = detect_drift(*champion, reference, current, alpha=ALPHA, seed=seed, **SETTINGS)
        alarms.append(report.drifted)
    assert np.mean(alarms) <= ALPHA, f"{sum(alarms)} false alarms in {draws} draws"


def test_alarm_on_a_change_of_domain(champion) -> None:
    # 400 a side: the word-length KS distance between tweets and NYT editorials is about 0.19, which at
    # 200 a side sits near the critical value for the Bonferroni level 0.01 (detected only ~90% of the time).
    reference = sample_domain("tweets", 400, seed=0)["text"].tolist()
    current = sample_domain("nyt", 400, seed=0)["text"].tolist()
    report = detect_drift(*champion, reference, current, alpha=ALPHA, seed=0, **SETTINGS)
    assert report.drifted
    assert {"embedding_mmd", "text_length"} <= set(report.triggered_by()), report.to_dict()
    lengths = next(t for t in report.tests if t.name == "text_length")
    assert lengths.detail["current_mean"] > lengths.detail["reference_mean"]  # editorials run longer
    assert report.score > 0


def test_scores_grow_with_the_share_of_foreign_rows(champion) -> None:
    """current = tweets with a nested share f of its rows replaced by NYT rows.

    In the population both statistics grow with f (the MMD^2 as f^2, the KS distance linearly), but one
    draw of a few hundred rows is noisy at small f: a null KS distance (~0.06) is as large as the signal
    at f = 0.25 (~0.05), so a single draw is monotone only ~75% of the time at 200 rows. We therefore
    average each statistic over a few independent draws at 400 rows a side (monotone in 100 of 100
    simulated seed sets).
    """
    fractions = (0.0, 0.25, 0.5, 0.75, 1.0)
    rows, repeats = 400, 6
    mmd = np.zeros((repeats, len(fractions)))
    ks = np.zeros((repeats, len(fractions)))
    for r in range(repeats):
        reference, base = split_tweets(seed=100 + r, rows=rows)
        nyt = sample_domain("nyt", rows, seed=100 + r)["text"].tolist()
        # One order of replacement per draw, so the rows replaced at 0.25 are among those replaced at 0.5.
        order = np.random.default_rng(100 + r).permutation(len(base))
        for j, f in enumerate(fractions):
            current = list(base)
            for k, i in enumerate(order[: round(f * len(base))]):
                current[i] = nyt[k]
            report = detect_drift(*champion, reference, current, alpha=ALPHA, seed=r, **SETTINGS)
            tests = {t.name: t for t in report.tests}
            mmd[r, j] = tests["embedding_mmd"].statistic
            ks[r, j] = tests["text_length"].statistic
    mean_mmd, mean_ks = mmd.mean(axis=0), ks.mean(axis=0)
    assert np.all(np.diff(mean_mmd) >= 0), mean_mmd
    assert np.all(np.diff(mean_ks) >= 0), mean_ks
    # Not merely flat: all-NYT is far from the reference, the unmixed draw is not.
    assert mean_mmd[-1] > 10 * max(mean_mmd[0], 1e-4)
    assert mean_ks[-1] > 2 * mean_ks[0]
