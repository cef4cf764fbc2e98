"""McNemar's exact test and the paired bootstrap on constructed predictions."""

from __future__ import annotations

import numpy as np
import pytest

from perennial.evaluation.significance import (
    EXACT_LIMIT,
    PairedTest,
    binomial_upper_tail,
    mcnemar,
    paired_bootstrap,
    paired_test,
)


def outcomes(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness with b champion-only and c challenger-only right answers, shuffled."""
    champion = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    challenger = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    order = np.random.default_rng(1).permutation(len(champion))
    return np.array(champion)[order], np.array(challenger)[order]


def exact_tail(k: int, n: int) -> float:
    """Reference in exact integers, walking down from C(n, n) = 1 so each term is one exact step."""
    term, total = 1, 0
    for i in range(n, k - 1, -1):
        total += term
        term = term * i // (n - i + 1)  # C(n, i-1) = C(n, i) * i / (n - i + 1)
    return total / 2**n


def test_all_discordant_pairs_favour_the_challenger() -> None:
    test = mcnemar(*outcomes(b=0, c=5, both_right=15))
    # P(X >= 5), X ~ Bin(5, 1/2) = C(5,5) / 2^5 = 1/32
    assert test.p_value == 1 / 32
    assert (test.n, test.b, test.c) == (20, 0, 5)
    assert test.delta == pytest.approx(5 / 20)
    assert test.significant(0.05) and not test.significant(0.01)


def test_hand_computed_tail() -> None:
    test = mcnemar(*outcomes(b=2, c=8, both_right=30, both_wrong=10))
    # P(X >= 8), X ~ Bin(10, 1/2) = (C(10,8) + C(10,9) + C(10,10)) / 1024 = (45 + 10 + 1) / 1024
    assert test.p_value == pytest.approx(56 / 1024, rel=1e-15)
    assert test.delta == pytest.approx(6 / 50)


def test_symmetric_and_reversed() -> None:
    # b = c = 5: P(X >= 5), X ~ Bin(10, 1/2) = (2^10 + C(10,5)) / 2 / 1024 = (1024 + 252) / 2048 = 638 / 1024
    even = mcnemar(*outcomes(b=5, c=5, both_right=10))
    assert even.p_value == pytest.approx(638 / 1024, rel=1e-15)
    assert even.delta == 0.0
    # Challenger worse (b=8, c=2): P(X >= 2) = 1 - (C(10,0) + C(10,1)) / 1024 = 1013 / 1024
    worse = mcnemar(*outcomes(b=8, c=2))
    assert worse.p_value == pytest.approx(1013 / 1024, rel=1e-15)
    assert worse.delta == pytest.approx(-0.6)
    assert not worse.significant(0.05)


def test_identical_predictions() -> None:
    champion, _ = outcomes(b=0, c=0, both_right=70, both_wrong=30)
    test = paired_test(champion, champion.copy(), resamples=500)
    assert (test.b, test.c, test.delta, test.p_value) == (0, 0, 0.0, 1.0)
    assert (test.ci_low, test.ci_high) == (0.0, 0.0)
    assert not test.significant(0.05)


def test_bootstrap_is_deterministic_and_contains_the_estimate() -> None:
    champion, challenger = outcomes(b=6, c=18, both_right=100, both_wrong=26)
    first = paired_bootstrap(champion, challenger, seed=7)
    assert paired_bootstrap(champion, challenger, seed=7) == first
    low, high = first
    delta = (18 - 6) / 150
    assert low < delta < high
    narrow_low, narrow_high = paired_bootstrap(champion, challenger, confidence=0.5, seed=7)
    assert low <= narrow_low <= delta <= narrow_high <= high


def test_bootstrap_matches_explicit_index_resampling() -> None:
    # The implementation samples discordant counts directly; it must agree with resampling example indices.
    champion, challenger = outcomes(b=12, c=30, both_right=300, both_wrong=58)
    low, high = paired_bootstrap(champion, challenger, resamples=4000, seed=3)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, len(champion), size=(4000, len(champion)))
    gains = challenger[idx].mean(axis=1) - champion[idx].mean(axis=1)
    ref_low, ref_high = np.quantile(gains, [0.025, 0.975])
    assert low == pytest.approx(ref_low, abs=0.01)
    assert high == pytest.approx(ref_high, abs=0.01)


def test_paired_test_and_describe() -> None:
    champion, challenger = outcomes(b=2, c=14, both_right=120, both_wrong=14)
    test = paired_test(champion, challenger, resamples=2000, confidence=0.95, seed=0)
    assert isinstance(test, PairedTest)
    # P(X >= 14), X ~ Bin(16, 1/2) = (C(16,14) + C(16,15) + C(16,16)) / 2^16 = (120 + 16 + 1) / 65536
    assert test.p_value == pytest.approx(137 / 65536, rel=1e-15)
    assert test.ci_low is not None and test.ci_high is not None
    assert test.ci_low < test.delta < test.ci_high
    text = test.describe()
    assert text.startswith("+8.0 points, 95% CI [+")
    assert text.endswith("McNemar exact p=0.0021 (challenger-only right 14, champion-only right 2, n=150)")
    # Without a bootstrap the CI is simply left out.
    assert mcnemar(champion, challenger).describe().startswith("+8.0 points, McNemar exact p=0.0021")


def test_accepts_zero_one_integers() -> None:
    test = mcnemar([1, 1, 0, 0, 1], [1, 0, 1, 1, 1])
    assert (test.b, test.c, test.n) == (1, 2, 5)


def test_binomial_tail_edges_and_log_space_accuracy() -> None:
    assert binomial_upper_tail(0, 0) == 1.0
    assert binomial_upper_tail(0, 10) == 1.0
    assert binomial_upper_tail(11, 10) == 0.0
    assert binomial_upper_tail(10, 10) == 2.0**-10
    # Just past the exact limit the log-space sum must still agree with exact integer arithmetic.
    n = EXACT_LIMIT + 1000
    for k in (n // 2 - 50, n // 2 + 1, n // 2 + 200, n // 2 + 400):
        assert binomial_upper_tail(k, n) == pytest.approx(exact_tail(k, n), rel=1e-9)


def test_large_n_is_stable() -> None:
    champion, challenger = outcomes(b=1000, c=1300, both_right=40_000, both_wrong=7_700)
    test = paired_test(champion, challenger, resamples=2000)
    assert test.n == 50_000
    # z ~ 300 / sqrt(2300) ~ 6.3: a clear gain, p around 1e-10.
    assert 0.0 < test.p_value < 1e-8
    assert test.ci_low is not None and 0.0 < test.ci_low < test.delta
    # Every example flipped to the challenger: 2^-50000 underflows to 0 without overflow or error.
    extreme = mcnemar(np.zeros(50_000, dtype=bool), np.ones(50_000, dtype=bool))
    assert extreme.p_value == 0.0
    assert "p=<1e-300" in extreme.describe()


@pytest.mark.parametrize(
    ("champion", "challenger", "message"),
    [
        ([True, False], [True], "different numbers"),
        ([], [], "empty"),
        ([[True]], [[True]], "1-D"),
        ([0, 2], [1, 1], "booleans"),
    ],
)
def test_invalid_inputs(champion: list, challenger: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mcnemar(champion, challenger)
    with pytest.raises(ValueError, match=message):
        paired_test(champion, challenger)


def test_invalid_bootstrap_settings() -> None:
    champion, challenger = outcomes(b=1, c=2, both_right=5)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(champion, challenger, confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(champion, challenger, resamples=0)


def test_binomial_tail_matches_the_exact_sum() -> None:
    from fractions import Fraction
    from math import comb

    from perennial.evaluation.significance import binomial_tail

    for n, p in ((0, 0.3), (1, 0.5), (10, 0.05), (40, 0.3), (200, 0.01)):
        q = Fraction(p)
        for k in range(-1, n + 2):
            exact = sum(comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(max(k, 0), n + 1))
            assert binomial_tail(k, n, p) == pytest.approx(float(exact), rel=1e-9, abs=1e-300)
    assert binomial_tail(3, 10, 0.0) == 0.0 and binomial_tail(3, 10, 1.0) == 1.0
    assert binomial_tail(20, 40, 0.5) == pytest.approx(binomial_upper_tail(20, 40))
    with pytest.raises(ValueError):
        binomial_tail(1, 5, 1.5)
