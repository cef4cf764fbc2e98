"""The paired test behind the promotion gate: is the challenger really better than the champion?

Both models are scored on the same examples, so only the discordant pairs carry information:
b = champion right and challenger wrong, c = challenger right and champion wrong. McNemar's exact test
asks whether c is surprisingly large given b + c; a paired bootstrap gives a CI for the accuracy gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

# Up to this many discordant pairs the tail is summed in exact integers (milliseconds); beyond, in log
# space, since the exact sum grows quadratically (n-bit integers, n terms) and takes minutes at n ~ 100k.
EXACT_LIMIT = 5000

BoolArray = np.ndarray | Sequence[bool] | Sequence[int]


@dataclass(frozen=True)
class PairedTest:
    n: int
    b: int  # champion right, challenger wrong
    c: int  # challenger right, champion wrong
    delta: float  # challenger accuracy - champion accuracy = (c - b) / n
    p_value: float  # one-sided: the challenger is better
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None  # of the CI, so describe() can name it

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the gain is significant at level alpha (one-sided)."""
        return self.p_value < alpha

    def describe(self) -> str:
        """One line for gate reasons and logs, gains in percentage points."""
        parts = [f"{100 * self.delta:+.1f} points"]
        if self.ci_low is not None and self.ci_high is not None:
            level = f"{100 * self.confidence:g}% " if self.confidence is not None else ""
            parts.append(f"{level}CI [{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}]")
        parts.append(
            f"McNemar exact p={format_p(self.p_value)} (challenger-only right {self.c}, "
            f"champion-only right {self.b}, n={self.n})"
        )
        return ", ".join(parts)


def format_p(p: float) -> str:
    """A p-value for a reason line: 4 decimals, scientific below 1e-4."""
    if p == 0.0:
        return "<1e-300"  # underflowed: far beyond any threshold anyone uses
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _pair(champion_correct: BoolArray, challenger_correct: BoolArray) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D boolean arrays of equal, non-zero length."""
    arrays = []
    for name, values in (("champion_correct", champion_correct), ("challenger_correct", challenger_correct)):
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if array.dtype != bool:
            if array.size and not np.isin(array, (0, 1)).all():
                raise ValueError(f"{name} must hold booleans (or 0/1): one per test example")
            array = array.astype(bool)
        arrays.append(array)
    champion, challenger = arrays
    if len(champion) != len(challenger):
        raise ValueError(
            f"champion and challenger were scored on different numbers of examples: "
            f"{len(champion)} != {len(challenger)}"
        )
    if len(champion) == 0:
        raise ValueError("cannot compare models on an empty test slice")
    return champion, challenger


def _discordant(champion: np.ndarray, challenger: np.ndarray) -> tuple[int, int]:
    return int(np.count_nonzero(champion & ~challenger)), int(np.count_nonzero(challenger & ~champion))


def binomial_upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): exact for n <= EXACT_LIMIT, log-space beyond."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= EXACT_LIMIT:
        # C(n, i+1) = C(n, i) (n - i) / (i + 1) stays exact in integers and avoids a math.comb per term;
        # Python's int / int rounds correctly however large both are.
        term, total = math.comb(n, k), 0
        for i in range(k, n + 1):
            total += term
            term = term * (n - i) // (i + 1)
        return total / 2**n
    return _log_upper_tail(k, n)


def _log_upper_tail(k: int, n: int) -> float:
    """P(X >= k) via lgamma log-pmfs summed with log-sum-exp: no overflow, relative error ~1e-10."""
    i = np.arange(k, n + 1)
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    log_pmf = math.lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) - n * math.log(2.0)
    top = log_pmf.max()
    log_tail = top + math.log(float(np.exp(log_pmf - top).sum()))
    return min(1.0, math.exp(log_tail))  # exp underflows to 0.0 only for p < ~1e-308


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided exact binomial test of "more than p" (log space,
    relative error ~1e-10)."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability, got {p}")
    if k <= 0:
        return 1.0
    if k > n or p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    i = np.arange(k, n + 1)
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    log_pmf = (
        math.lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    )
    top = log_pmf.max()
    return min(1.0, math.exp(top + math.log(float(np.exp(log_pmf - top).sum()))))


def mcnemar(champion_correct: BoolArray, challenger_correct: BoolArray) -> PairedTest:
    """Exact one-sided McNemar test that the challenger is better; the CI fields are left empty."""
    champion, challenger = _pair(champion_correct, challenger_correct)
    b, c = _discordant(champion, challenger)
    n = len(champion)
    # Under H0 each discordant pair is equally likely to go either way: c ~ Binomial(b + c, 1/2).
    return PairedTest(n=n, b=b, c=c, delta=(c - b) / n, p_value=binomial_upper_tail(c, b + c))


def paired_bootstrap(
    champion_correct: BoolArray,
    challenger_correct: BoolArray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of the accuracy gain (challenger - champion), resampling examples as pairs."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    champion, challenger = _pair(champion_correct, challenger_correct)
    b, c = _discordant(champion, challenger)
    n = len(champion)
    # A resampled example keeps both models' outcomes (that is the pairing), and its contribution to the
    # gain is -1 (champion-only right), +1 (challenger-only right) or 0. Drawing n indices with replacement
    # therefore yields category counts ~ Multinomial(n, (b/n, c/n, rest)): sampling those counts directly is
    # the same bootstrap distribution in O(resamples) memory instead of O(resamples * n).
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, c / n, (n - b - c) / n], size=resamples)
    gains = (counts[:, 1] - counts[:, 0]) / n
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_test(
    champion_correct: BoolArray,
    challenger_correct: BoolArray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """McNemar's exact p-value plus the paired-bootstrap CI of the gain, in one record."""
    test = mcnemar(champion_correct, challenger_correct)
    low, high = paired_bootstrap(
        champion_correct, challenger_correct, resamples=resamples, confidence=confidence, seed=seed
    )
    return replace(test, ci_low=low, ci_high=high, confidence=confidence)
