"""The drift detectors' statistics on constructed data (no real model): MMD permutation test, KS, label
shift, PSI, per-text features, mean pooling, the report and its figure."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import binom

from perennial.monitoring.drift_plot import plot_drift_report
from perennial.monitoring.drift_tests import (
    DriftReport,
    DriftTest,
    detect_drift,
    embed,
    ks_test,
    label_shift_test,
    mmd_permutation_test,
    oov_rates,
    population_stability_index,
    whole_word_vocabulary,
    word_lengths,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gaussians(seed: int, n: int = 100, dim: int = 4, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift


# --- MMD -----------------------------------------------------------------------------------------------


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 written out pair by pair, median-heuristic RBF on the pooled sample."""
    pooled = np.concatenate([x, y])
    total = len(pooled)
    dists = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(total) for j in range(i + 1, total)]
    sigma = float(np.median(dists))

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * sigma**2))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_statistic_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(9, 3)) + 0.7  # unequal sizes on purpose
    statistic, _ = mmd_permutation_test(x, y, permutations=10, seed=0)
    assert statistic == pytest.approx(brute_force_mmd2(x, y), rel=1e-9, abs=1e-12)


def test_mmd_same_distribution_is_not_significant() -> None:
    x, y = gaussians(seed=1)
    statistic, p_value = mmd_permutation_test(x, y, permutations=500, seed=0)
    assert p_value > 0.2
    assert abs(statistic) < 0.01


def test_mmd_shifted_mean_is_significant() -> None:
    x, y = gaussians(seed=1, shift=0.5)
    statistic, p_value = mmd_permutation_test(x, y, permutations=500, seed=0)
    assert p_value < 0.01
    assert statistic > 0.02


def test_mmd_p_value_lies_in_zero_one() -> None:
    for shift in (0.0, 0.3, 5.0):
        _, p_value = mmd_permutation_test(*gaussians(seed=2, n=40, shift=shift), permutations=99, seed=0)
        assert 0.0 < p_value <= 1.0
    # A huge shift: no permutation reaches the observed statistic, so p is its floor 1 / (1 + permutations).
    _, p_value = mmd_permutation_test(*gaussians(seed=2, n=40, shift=5.0), permutations=99, seed=0)
    assert p_value == pytest.approx(1 / 100)
    # Identical samples: the observed split is as unremarkable as can be.
    x = np.random.default_rng(0).normal(size=(30, 2))
    _, p_value = mmd_permutation_test(x, x.copy(), permutations=99, seed=0)
    assert p_value > 0.5


def test_mmd_false_alarm_rate_at_most_alpha() -> None:
    """30 same-distribution draws at alpha = 0.1: the alarms are consistent with a rate of at most alpha.

    Not "at most 3 of 30": a valid test with p-values on a 1/200 grid alarms with probability 0.095, so
    even a perfect test shows 4 or more alarms in 30 draws 32% of the time (these seeds give 4). The
    assertion is a one-sided binomial test at 1%: more alarms than that would betray a rate above alpha.
    The calibration test below checks the rate far more tightly over 300 draws.
    """
    alpha, draws = 0.1, 30
    p_values = np.array(
        [
            mmd_permutation_test(*gaussians(seed=seed, n=50, dim=2), permutations=199, seed=seed)[1]
            for seed in range(draws)
        ]
    )
    alarms = int(np.sum(p_values < alpha))
    assert alarms <= binom.ppf(0.99, draws, alpha)  # 7 of 30
    assert 0.25 < np.median(p_values) < 0.75  # about uniform: a dead test (p = 1 always) fails here


def test_mmd_permutation_p_values_are_calibrated() -> None:
    """Over many null draws the alarm rate at 0.1 lies within the binomial 99.9% range of a valid test,
    so neither an anti-conservative test (too many alarms) nor a dead one (never alarms) passes."""
    draws, alpha = 300, 0.1
    p_values = np.array(
        [
            mmd_permutation_test(*gaussians(seed=1000 + s, n=20, dim=2), permutations=99, seed=s)[1]
            for s in range(draws)
        ]
    )
    low, high = binom.ppf([0.0005, 0.9995], draws, alpha)
    assert low <= np.sum(p_values < alpha) <= high
    assert 0.4 < np.median(p_values) < 0.6  # uniform under the null


def test_mmd_is_deterministic_given_the_seed() -> None:
    x, y = gaussians(seed=4, n=60, shift=0.2)
    first = mmd_permutation_test(x, y, permutations=300, seed=7)
    assert mmd_permutation_test(x, y, permutations=300, seed=7) == first
    # The statistic does not depend on the seed; only the permutation draw does.
    assert mmd_permutation_test(x, y, permutations=300, seed=8)[0] == first[0]


def test_mmd_is_symmetric_and_ignores_row_order() -> None:
    x, y = gaussians(seed=5, n=30, shift=0.3)
    statistic, _ = mmd_permutation_test(x, y, permutations=10, seed=0)
    assert mmd_permutation_test(y, x, permutations=10, seed=0)[0] == pytest.approx(statistic)
    shuffled = x[np.random.default_rng(0).permutation(len(x))]
    assert mmd_permutation_test(shuffled, y, permutations=10, seed=0)[0] == pytest.approx(statistic)


def test_mmd_accepts_one_dimensional_samples() -> None:
    rng = np.random.default_rng(6)
    _, p_value = mmd_permutation_test(
        rng.normal(size=80), rng.normal(size=80) + 1.0, permutations=199, seed=0
    )
    assert p_value < 0.01


def test_mmd_rejects_bad_input() -> None:
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="dimension"):
        mmd_permutation_test(x, np.zeros((5, 2)), permutations=10, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        mmd_permutation_test(x, np.zeros((1, 3)), permutations=10, seed=0)
    with pytest.raises(ValueError, match="permutations"):
        mmd_permutation_test(x, x, permutations=0, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        mmd_permutation_test(x, np.full((5, 3), np.nan), permutations=10, seed=0)


# --- KS, labels, PSI -----------------------------------------------------------------------------------


def test_ks_test_on_constructed_samples() -> None:
    assert ks_test(np.arange(50.0), np.arange(50.0)) == (0.0, 1.0)
    # ECDFs of {1,2,3,4} and {3,4,5,6} differ most at 2: 0.5 against 0.
    statistic, _ = ks_test(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6]))
    assert statistic == pytest.approx(0.5)
    statistic, p_value = ks_test(np.arange(100.0), np.arange(100.0) + 1000)
    assert statistic == 1.0
    assert p_value < 1e-10


def test_label_shift_test_on_constructed_counts() -> None:
    same = np.array([0] * 40 + [1] * 60)
    assert label_shift_test(same, same.copy(), num_labels=2) == (0.0, 1.0)

    # A 2 x 3 table (no continuity correction beyond 2 x 2), computed by hand.
    reference = np.array([0] * 30 + [1] * 10 + [2] * 10)
    current = np.array([0] * 10 + [1] * 30 + [2] * 10)
    table = np.array([[30, 10, 10], [10, 30, 10]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    statistic, p_value = label_shift_test(reference, current, num_labels=3)
    assert statistic == pytest.approx(((table - expected) ** 2 / expected).sum())
    assert p_value == pytest.approx(math.exp(-statistic / 2))  # chi-square survival with 2 dof
    assert p_value < 0.001


def test_label_shift_test_drops_all_zero_columns() -> None:
    reference = np.array([0] * 30 + [2] * 20)
    current = np.array([0] * 20 + [2] * 30)
    # Label 1 is never predicted: same answer as the 2 x 2 table without it.
    assert label_shift_test(reference, current, num_labels=3) == pytest.approx(
        label_shift_test(np.where(reference == 2, 1, 0), np.where(current == 2, 1, 0), num_labels=2)
    )
    # One label left on both sides: nothing to compare.
    assert label_shift_test(np.zeros(10), np.zeros(7), num_labels=4) == (0.0, 1.0)
    with pytest.raises(ValueError, match="labels must lie"):
        label_shift_test(np.array([0, 5]), np.array([0, 1]), num_labels=2)


def test_population_stability_index() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=2000)
    assert population_stability_index(reference, reference.copy()) == pytest.approx(0.0, abs=1e-12)
    small = population_stability_index(reference, rng.normal(size=2000))
    large = population_stability_index(reference, rng.normal(size=2000) + 1.0)
    assert small < 0.05
    assert large > 0.25
    assert large > population_stability_index(reference, rng.normal(size=2000) + 0.3) > small

    # Deciles of 0..99; every current value falls in the first decile; nine empty bins count as 1e-4.
    psi = population_stability_index(np.arange(100.0), np.zeros(50))
    hand = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi == pytest.approx(hand)


# --- per-text features ---------------------------------------------------------------------------------


def test_word_lengths() -> None:
    texts = ["hello world", "  one   two\tthree ", "", "emoji :) !!!"]
    np.testing.assert_array_equal(word_lengths(texts), [2, 3, 0, 3])


def test_oov_rates() -> None:
    vocabulary = {"the", "cat", "sat"}
    texts = ["The cat sat", "The dog sat", "123 !!!", "Cat-dog, CAT's", "", "dog DOG"]
    # words: [the cat sat], [the dog sat], [], [cat dog cat s], [], [dog dog]
    np.testing.assert_allclose(oov_rates(texts, vocabulary), [0.0, 1 / 3, 0.0, 2 / 4, 0.0, 1.0])
    np.testing.assert_allclose(oov_rates(["the dog"], ["the"]), [0.5])  # any collection works


def test_whole_word_vocabulary_keeps_plain_words() -> None:
    tokenizer = SimpleNamespace(
        get_vocab=lambda: {"the": 0, "##ing": 1, "[CLS]": 2, "123": 3, "café": 4, "a1": 5, ",": 6}
    )
    assert whole_word_vocabulary(tokenizer) == {"the", "café"}


# --- mean pooling with a fake encoder -------------------------------------------------------------------


class FakeBatch(dict):
    def to(self, device: object) -> FakeBatch:
        return self


class FakeTokenizer:
    """One token per word, its id the word's length; padded to the longest text in the batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str], *, max_length: int, **_: object) -> FakeBatch:
        import torch

        self.batches.append(list(texts))
        ids = [[len(w) for w in t.split()][:max_length] for t in texts]
        width = max(len(row) for row in ids)
        return FakeBatch(
            input_ids=torch.tensor([row + [0] * (width - len(row)) for row in ids]),
            attention_mask=torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids]),
        )


def fake_model() -> object:
    import torch

    class Encoder(torch.nn.Module):
        config = SimpleNamespace(hidden_size=2, num_labels=2)

        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, output_hidden_states=False):  # noqa: ANN001
            # Token state (id, 1); padding gets 1000s, so any leak into the mean is obvious.
            state = torch.stack([input_ids.float(), torch.ones_like(input_ids, dtype=torch.float)], -1)
            state = torch.where(attention_mask.bool().unsqueeze(-1), state, torch.full_like(state, 1000.0))
            logits = torch.stack([torch.zeros(len(input_ids)), input_ids.float().sum(1)], -1)
            return SimpleNamespace(hidden_states=(state * 0, state), logits=logits)

    return Encoder().train()  # embed must switch dropout off itself


def test_embed_mean_pools_real_tokens_in_input_order() -> None:
    texts = ["a bb", "cccc", "a bb ccc dddd eeeee", "zz zz zz"]
    tokenizer = FakeTokenizer()
    model = fake_model()
    out = embed(model, tokenizer, texts, batch_size=2, max_length=4)
    assert out.dtype == np.float32
    assert out.shape == (4, 2)
    # Mean word length of the first 4 words (truncation), second coordinate the mean of ones.
    np.testing.assert_allclose(out, [[1.5, 1], [4, 1], [2.5, 1], [2, 1]])
    assert not model.training
    # Length-sorted batches: the two longest texts share the first batch.
    assert sorted(tokenizer.batches[0]) == sorted([texts[2], texts[3]])


def test_detect_drift_refuses_too_few_texts_or_permutations() -> None:
    with pytest.raises(ValueError, match="at least 2 reference texts"):
        detect_drift(None, None, ["only one"], ["a", "b"], alpha=0.05)
    with pytest.raises(ValueError, match="at least 2 current texts"):
        detect_drift(None, None, ["a", "b"], [], alpha=0.05)
    # 1 / (1 + 99) is not below 0.05 / 5: the MMD test could never alarm.
    with pytest.raises(ValueError, match="at least 100"):
        detect_drift(None, None, ["a", "b"], ["c", "d"], alpha=0.05, permutations=99)


# --- the report and its figure ---------------------------------------------------------------------------


def constructed_report(p_values: dict[str, float], alpha: float = 0.05) -> DriftReport:
    return DriftReport(
        reference_rows=200,
        current_rows=150,
        alpha=alpha,
        tests=[
            DriftTest(
                name,
                statistic=0.25 + i,
                p_value=p,
                detail={"psi": 0.1 * i, "reference_mean": 1.0, "current_mean": 2.0, "counts": [1, 2]},
            )
            for i, (name, p) in enumerate(p_values.items())
        ],
    )


P_VALUES = {"embedding_mmd": 0.002, "text_length": 0.03, "oov_rate": 0.0099, "predicted_label": 1.0}


def test_report_threshold_and_verdict() -> None:
    report = constructed_report({**P_VALUES, "confidence": 0.01})
    assert report.threshold == pytest.approx(0.05 / 5)
    assert report.triggered_by() == ["embedding_mmd", "oov_rate"]  # 0.01 itself is not below 0.01
    assert report.drifted
    assert report.score == 0.25  # the embedding_mmd statistic

    calm = constructed_report({"embedding_mmd": 0.2, "text_length": 0.025})
    assert calm.threshold == pytest.approx(0.025)
    assert calm.triggered_by() == []  # 0.025 itself is not below 0.025
    assert not calm.drifted
    # Without an MMD test there is no headline score.
    assert math.isnan(constructed_report({"text_length": 0.5}).score)


def test_report_round_trips_through_json() -> None:
    report = constructed_report({**P_VALUES, "confidence": 1e-300})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["drifted"] is True
    assert data["threshold"] == pytest.approx(0.01)
    assert data["score"] == 0.25
    assert data["triggered_by"] == ["embedding_mmd", "oov_rate", "confidence"]
    assert [t["name"] for t in data["tests"]] == list(P_VALUES) + ["confidence"]
    assert data["tests"][1]["detail"]["psi"] == pytest.approx(0.1)
    assert DriftReport.from_dict(data) == report


def test_report_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="alpha"):
        constructed_report(P_VALUES, alpha=1.5)
    with pytest.raises(ValueError, match="at least one test"):
        DriftReport(reference_rows=1, current_rows=1, alpha=0.05, tests=[])
    twice = DriftTest("oov_rate", 0.1, 0.5, {})
    with pytest.raises(ValueError, match="unique"):
        DriftReport(reference_rows=1, current_rows=1, alpha=0.05, tests=[twice, twice])


def test_plot_drift_report_writes_png(tmp_path: Path) -> None:
    report = constructed_report({**P_VALUES, "confidence": 0.0})  # p = 0 must not break -log10
    rng = np.random.default_rng(0)
    reference = {
        "text_length": rng.poisson(12, 200).astype(float),
        "oov_rate": rng.beta(1, 9, 200),
        "confidence": rng.uniform(0.5, 1, 200),
    }
    current = {
        "text_length": rng.poisson(18, 150).astype(float),
        "oov_rate": rng.beta(1, 5, 150),
        "confidence": np.full(150, 0.75),  # a degenerate sample still gets bins
    }
    out = plot_drift_report(report, reference, current, tmp_path / "reports" / "drift.png", "Drift check")
    assert out == tmp_path / "reports" / "drift.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    # The report shows images at most 72rem (1,152 px) wide: a wider plot is shrunk, and its 9-point
    # labels with it, past reading. Two panels a row fit at their natural size.
    width, height = struct.unpack(">II", data[16:24])  # the PNG's IHDR
    assert 900 <= width <= 1152 and height > width * 0.6

    # Missing keys skip their histograms; only the p-value panel is left.
    only = plot_drift_report(report, {}, {"oov_rate": current["oov_rate"]}, tmp_path / "bars.png", "Bars")
    assert only.read_bytes()[:8] == PNG_MAGIC
