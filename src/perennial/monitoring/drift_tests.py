"""Drift detectors: has production traffic moved away from what the champion was trained on?
Over 400 lines because the five tests share one procedure (samples, encoder features, the
family-wise correction and the report) that reads best in one place.

Compares recent unlabelled texts ("current") with a reference sample of the champion's training texts
("reference") through five two-sample tests, seen through the champion's own encoder and tokenizer:

* ``embedding_mmd``: MMD^2 between mean-pooled encoder embeddings, with a permutation p-value;
* ``text_length``: KS on words per text;
* ``oov_rate``: KS on the share of words the tokenizer has no whole-word entry for;
* ``predicted_label``: chi-square on the champion's predicted-label counts (prior shift);
* ``confidence``: KS on the champion's max softmax probability.

Five tests at level alpha each would raise a false alarm far more often than alpha, so the report uses
Bonferroni: a test alarms below alpha / 5, and the family-wise false-alarm rate stays at most alpha
whatever the dependence between the tests. Pure library code: no Prefect, no MLflow. Heavy libraries
(torch, scipy) are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TEST_NAMES = ("embedding_mmd", "text_length", "oov_rate", "predicted_label", "confidence")
# The per-text samples detect_drift_with_samples hands back (for plots); embeddings stay inside.
SAMPLE_KEYS = ("text_length", "oov_rate", "confidence", "predicted_label")
PSI_EPSILON = 1e-4  # stands in for an empty bin's share, so PSI stays finite
# Permutations evaluated per matrix product: bounds the [n, chunk] working set to a few MB.
PERMUTATION_CHUNK = 128
# Runs of letters (any script), no digits or underscores: what a whole-word vocabulary entry looks like.
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class DriftTest:
    name: str  # one of TEST_NAMES
    statistic: float  # MMD^2 for embeddings, KS D for continuous samples, chi-square for labels
    p_value: float
    detail: dict = field(default_factory=dict)  # extra JSON-safe numbers for the report


@dataclass(frozen=True)
class DriftReport:
    reference_rows: int
    current_rows: int
    alpha: float  # the family-wise false-alarm level
    tests: list[DriftTest]

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not self.tests:
            raise ValueError("a drift report needs at least one test")
        names = [t.name for t in self.tests]
        if len(set(names)) != len(names):
            raise ValueError(f"test names must be unique, got {names}")

    @property
    def threshold(self) -> float:
        """Per-test level: Bonferroni keeps the family-wise false-alarm rate at most alpha."""
        return self.alpha / len(self.tests)

    @property
    def drifted(self) -> bool:
        return bool(self.triggered_by())

    @property
    def score(self) -> float:
        """The headline drift magnitude: the embedding MMD^2 statistic (NaN if the report has none)."""
        for test in self.tests:
            if test.name == "embedding_mmd":
                return test.statistic
        return math.nan

    def triggered_by(self) -> list[str]:
        """Names of the tests whose p-value falls below the Bonferroni threshold, in report order."""
        return [t.name for t in self.tests if t.p_value < self.threshold]

    def to_dict(self) -> dict:
        """Every field and every test, plus the derived drifted, score and threshold; JSON-serialisable."""
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "score": self.score,
            "triggered_by": self.triggered_by(),
            "tests": [asdict(t) for t in self.tests],
        }

    @classmethod
    def from_dict(cls, data: dict) -> DriftReport:
        """Inverse of to_dict; the derived keys are recomputed, not trusted."""
        return cls(
            reference_rows=int(data["reference_rows"]),
            current_rows=int(data["current_rows"]),
            alpha=float(data["alpha"]),
            tests=[
                DriftTest(
                    name=str(t["name"]),
                    statistic=float(t["statistic"]),
                    p_value=float(t["p_value"]),
                    detail=dict(t.get("detail", {})),
                )
                for t in data["tests"]
            ],
        )


# --- the statistical tests ---------------------------------------------------------------------------


def _as_points(values: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(values, dtype=np.float64)
    if points.ndim == 1:
        points = points[:, None]  # a 1-D sample is n points in one dimension
    if points.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D [n, d], got shape {points.shape}")
    if len(points) < 2:
        raise ValueError(f"{name} needs at least 2 points, got {len(points)}")
    if not np.isfinite(points).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return points


def _median_bandwidth(sq_dists: np.ndarray) -> float:
    """Median heuristic: the median pairwise distance on the pooled sample (falls back when it is 0)."""
    # Square roots before the median: with an even number of pairs the median averages two middle values.
    upper = np.sqrt(sq_dists[np.triu_indices_from(sq_dists, k=1)])
    sigma = float(np.median(upper))
    if sigma > 0.0:
        return sigma
    # Over half the pairs coincide (e.g. many duplicate texts): use the typical non-zero distance.
    positive = upper[upper > 0.0]
    return float(np.median(positive)) if positive.size else 1.0


def _mmd_statistics(kernel: np.ndarray, row_sums: np.ndarray, assign: np.ndarray, m: int) -> np.ndarray:
    """Unbiased MMD^2 for each column of `assign` (1.0 marks the m points of the first sample).

    With a the indicator of sample X and b = 1 - a (n points), every block sum is a function of two numbers
    per assignment, a'Ka and r'a (r = K's row sums, s = 1'K1), so many assignments cost one product K @ A:
        sum_XX = a'Ka,  sum_XY = r'a - a'Ka,  sum_YY = s - 2 r'a + a'Ka.
    The RBF kernel's diagonal is 1, so removing the i = j terms subtracts m and n.
    """
    n = kernel.shape[0] - m
    total = float(row_sums.sum())
    xx = np.einsum("ip,ip->p", assign, kernel @ assign)
    ra = row_sums @ assign
    xy = ra - xx
    yy = total - 2.0 * ra + xx
    return (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)


def _mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, seed: int) -> tuple[float, float, float]:
    """(MMD^2, p-value, bandwidth): the body of mmd_permutation_test, also reporting the bandwidth."""
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y differ in dimension: {x.shape[1]} != {y.shape[1]}")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    pooled = np.concatenate([x, y])
    m, total = len(x), len(pooled)

    norms = np.einsum("ij,ij->i", pooled, pooled)
    sq_dists = np.maximum(norms[:, None] + norms[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    np.fill_diagonal(sq_dists, 0.0)  # exact zeros despite rounding, so the diagonal of K is exactly 1
    sigma = _median_bandwidth(sq_dists)
    kernel = np.exp(sq_dists / (-2.0 * sigma * sigma))
    del sq_dists
    row_sums = kernel.sum(axis=1)

    # The observed statistic goes through the same code path as the permuted ones, so a permutation that
    # reproduces the observed split counts as ">=" exactly, not up to rounding.
    identity = np.zeros((total, 1))
    identity[:m] = 1.0
    observed = float(_mmd_statistics(kernel, row_sums, identity, m)[0])

    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, permutations, PERMUTATION_CHUNK):
        size = min(PERMUTATION_CHUNK, permutations - start)
        # Each row of random keys ranks the pooled points; the m smallest form that permutation's X.
        chosen = np.argpartition(rng.random((size, total)), m - 1, axis=1)[:, :m]
        assign = np.zeros((total, size))
        assign[chosen, np.arange(size)[:, None]] = 1.0
        exceed += int((_mmd_statistics(kernel, row_sums, assign, m) >= observed).sum())
    return observed, (1 + exceed) / (1 + permutations), sigma


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int, seed: int
) -> tuple[float, float]:
    """Unbiased MMD^2 between samples x [m, d] and y [n, d] (1-D arrays are n points in one dimension),
    with the RBF kernel exp(-|u - v|^2 / (2 sigma^2)), sigma the median pairwise distance on the pooled
    sample; and its permutation p-value (1 + #{permuted MMD^2 >= observed}) / (1 + permutations).

    The unbiased estimate can be slightly negative when the samples match. The pooled [m+n, m+n] kernel
    is computed once (memory O((m+n)^2): 32 MB at 2000 points) and permutations are scored in chunks by
    matrix products, so 1000 x 1000 points with 500 permutations take about a second. Deterministic
    given the seed.
    """
    statistic, p_value, _ = _mmd_test(x, y, permutations, seed)
    return statistic, p_value


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (D, p-value). With ties (word counts) it is conservative."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
    return float(result.statistic), float(result.pvalue)


def label_shift_test(reference: np.ndarray, current: np.ndarray, num_labels: int) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table of label counts (reference row, current row).

    Labels neither side predicts are dropped (their expected count is 0); with fewer than 2 labels left
    there is nothing to compare and the answer is (0.0, 1.0). On a 2 x 2 table scipy applies Yates'
    continuity correction, which only makes the test more conservative.
    """
    from scipy.stats import chi2_contingency

    table = np.stack([_label_counts(reference, num_labels), _label_counts(current, num_labels)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _label_counts(labels: np.ndarray, num_labels: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"labels must lie in [0, {num_labels}), got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_labels)


def population_stability_index(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI = sum over bins of (c - r) * ln(c / r), r and c the reference and current shares.

    Bins are the reference's quantiles (duplicates merged, so discrete data get fewer bins), open at both
    ends so every current value lands somewhere; an empty bin counts as PSI_EPSILON. Rules of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    reference = np.asarray(reference, dtype=float).ravel()
    current = np.asarray(current, dtype=float).ravel()
    if reference.size == 0 or current.size == 0:
        raise ValueError("population_stability_index needs non-empty reference and current samples")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1)
    ref_share = np.maximum(ref_share / reference.size, PSI_EPSILON)
    cur_share = np.maximum(cur_share / current.size, PSI_EPSILON)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


# --- per-text features -------------------------------------------------------------------------------


def word_lengths(texts: Sequence[str]) -> np.ndarray:
    """Words per text, a word being a whitespace-separated token (so emoticons and '!!!' count)."""
    return np.array([len(text.split()) for text in texts], dtype=np.float64)


def oov_rates(texts: Sequence[str], vocabulary: Collection[str]) -> np.ndarray:
    """Per text, the share of its words (lowercased runs of letters) that are not in `vocabulary`;
    0 for a text without words. Digits and punctuation are not words here."""
    vocab = vocabulary if isinstance(vocabulary, set | frozenset | dict) else set(vocabulary)
    rates = np.zeros(len(texts), dtype=np.float64)
    for i, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        if words:
            rates[i] = sum(word not in vocab for word in words) / len(words)
    return rates


def whole_word_vocabulary(tokenizer: PreTrainedTokenizerBase) -> frozenset[str]:
    """The tokenizer's vocabulary entries that are plain alphabetic words: no '##' pieces, no [CLS]."""
    return frozenset(token for token in tokenizer.get_vocab() if token.isalpha())


# --- the champion's view of the texts ----------------------------------------------------------------


def _encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [n, hidden] and class probabilities [n, k], float32, in input order, from one forward
    pass per batch (the logits come with the hidden states, so predictions cost nothing extra)."""
    import torch

    from perennial.models.inference import encoded_batches, model_device

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    n = len(texts)
    hidden = int(model.config.hidden_size)
    num_labels = int(model.config.num_labels)  # type: ignore[arg-type]  # typed optional, always set
    embeddings = np.empty((n, hidden), dtype=np.float32)
    probs = np.empty((n, num_labels), dtype=np.float32)
    device = model_device(model)
    model.eval()  # dropout off: embeddings must not depend on the call

    with torch.inference_mode():
        for idx, encoded in encoded_batches(
            tokenizer, texts, batch_size=batch_size, max_length=max_length, device=device, desc="embed"
        ):
            output = model(**encoded, output_hidden_states=True)
            last = output.hidden_states[-1].float()
            # Mean over real tokens only: padding would otherwise pull short texts towards a common point.
            mask = encoded["attention_mask"].unsqueeze(-1).to(last.dtype)
            pooled = (last * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            embeddings[idx] = pooled.cpu().numpy()
            probs[idx] = torch.softmax(output.logits.float(), dim=-1).cpu().numpy()
    return embeddings, probs


def embed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    """Mean-pooled (attention-mask weighted) last hidden state of the classifier's encoder, float32
    [n, hidden] in the order of `texts`; computed under inference mode in length-sorted batches."""
    return _encode(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)[0]


# --- the whole battery -------------------------------------------------------------------------------


def _continuous_test(name: str, reference: np.ndarray, current: np.ndarray) -> DriftTest:
    statistic, p_value = ks_test(reference, current)
    return DriftTest(
        name=name,
        statistic=statistic,
        p_value=p_value,
        detail={
            "psi": population_stability_index(reference, current),
            "reference_mean": float(np.mean(reference)),
            "current_mean": float(np.mean(current)),
        },
    )


def detect_drift_with_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference_texts: Sequence[str],
    current_texts: Sequence[str],
    *,
    alpha: float,
    permutations: int = 500,
    seed: int = 0,
    batch_size: int = 64,
    max_length: int = 128,
) -> tuple[DriftReport, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """detect_drift, also returning the per-text samples behind the tests, for drift_plot.plot_drift_report:
    (report, reference samples, current samples), each dict keyed by SAMPLE_KEYS ("text_length",
    "oov_rate", "confidence": float arrays; "predicted_label": int class ids)."""
    reference_texts, current_texts = list(reference_texts), list(current_texts)
    for side, texts in (("reference", reference_texts), ("current", current_texts)):
        if len(texts) < 2:
            raise ValueError(f"drift detection needs at least 2 {side} texts, got {len(texts)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    # The smallest permutation p-value is 1 / (1 + permutations): it must fall below the Bonferroni
    # threshold, or the embedding test could never raise an alarm however large the shift.
    least = math.floor(len(TEST_NAMES) / alpha)
    if permutations < least:
        raise ValueError(
            f"permutations={permutations} is too few for alpha={alpha}: the MMD p-value could never fall "
            f"below the threshold {alpha / len(TEST_NAMES):g}; use at least {least}"
        )

    vocabulary = whole_word_vocabulary(tokenizer)
    samples: list[dict[str, np.ndarray]] = []
    embeddings: list[np.ndarray] = []
    for texts in (reference_texts, current_texts):
        emb, probs = _encode(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
        embeddings.append(emb)
        samples.append(
            {
                "text_length": word_lengths(texts),
                "oov_rate": oov_rates(texts, vocabulary),
                "confidence": probs.max(axis=1).astype(np.float64),
                "predicted_label": probs.argmax(axis=1).astype(np.int64),
            }
        )
    reference, current = samples

    mmd, mmd_p, bandwidth = _mmd_test(embeddings[0], embeddings[1], permutations, seed)
    num_labels = int(model.config.num_labels)  # type: ignore[arg-type]  # typed optional, always set
    chi2, chi2_p = label_shift_test(reference["predicted_label"], current["predicted_label"], num_labels)
    tests = [
        DriftTest(
            "embedding_mmd",
            mmd,
            mmd_p,
            {"bandwidth": bandwidth, "permutations": permutations, "dimension": int(embeddings[0].shape[1])},
        ),
        _continuous_test("text_length", reference["text_length"], current["text_length"]),
        _continuous_test("oov_rate", reference["oov_rate"], current["oov_rate"]),
        DriftTest(
            "predicted_label",
            chi2,
            chi2_p,
            {
                "reference_counts": _label_counts(reference["predicted_label"], num_labels).tolist(),
                "current_counts": _label_counts(current["predicted_label"], num_labels).tolist(),
            },
        ),
        _continuous_test("confidence", reference["confidence"], current["confidence"]),
    ]
    report = DriftReport(
        reference_rows=len(reference_texts), current_rows=len(current_texts), alpha=alpha, tests=tests
    )
    return report, reference, current


def detect_drift(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference_texts: Sequence[str],
    current_texts: Sequence[str],
    *,
    alpha: float,
    permutations: int = 500,
    seed: int = 0,
    batch_size: int = 64,
    max_length: int = 128,
) -> DriftReport:
    """Run all five tests of current against reference texts through the champion `model` and its
    `tokenizer` (a transformers sequence classifier; k = model.config.num_labels), with a family-wise
    false-alarm level `alpha`. Raises ValueError if either side has fewer than 2 texts.

    embedding_mmd: mmd_permutation_test on embed() outputs (`permutations`, `seed`); text_length: KS on
    word_lengths; oov_rate: KS on oov_rates against the tokenizer's whole-word vocabulary; predicted_label:
    chi-square on the argmax predictions; confidence: KS on the max softmax probability. Continuous tests
    carry psi and both means in their detail. Embeddings and predictions share one forward pass per batch.
    For the per-text samples as well (e.g. for drift_plot.plot_drift_report), call detect_drift_with_samples.
    """
    report, _, _ = detect_drift_with_samples(
        model,
        tokenizer,
        reference_texts,
        current_texts,
        alpha=alpha,
        permutations=permutations,
        seed=seed,
        batch_size=batch_size,
        max_length=max_length,
    )
    return report
