"""Does a rejected batch's labelling contradict the champion far beyond its usual error?

Flipped or corrupted labels are stopped by the gate's forgetting check, but the batch's rows would
still feed the replay memory, joint training and the evaluation slices of every later cycle. The
champion's *confident* predictions are the witness: see `LabelCheck` for the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from perennial.core.settings import GateSettings
from perennial.evaluation.significance import binomial_tail, format_p

CONFIDENT = 0.9  # a row counts as confident when the champion's top class probability is at least this
FLAG_RATIO = 2.0  # the new slice's confident-error rate must be at least this multiple of the usual one
FLAG_MARGIN = 0.10  # ... and this many points above it
# ... and the contradicted rows must be at least this share of the slice's scored rows: a flag
# drops the whole batch from replay and evaluation, which a few contradicted rows among many (label
# noise any real labelling has) cannot justify. Two confident rows, both contradicted, on a test
# slice of 99 rows once cost a TREC-subtypes batch its place in the memory.
FLAG_MIN_SHARE = 0.05
FLAG_LEFT_OUT = "left out of replay and evaluation"
# The challenger "fits both" the new labels and the old ones when it comes within this of the
# champion's accuracy on the earlier slices, on the new slice and on the earlier ones alike.
FIT_MARGIN = 0.10


def confident_errors(
    probabilities: np.ndarray, references: np.ndarray, threshold: float = CONFIDENT
) -> tuple[int, int]:
    """(rows where the top class probability >= threshold, of those the rows whose top class is not
    the label), from class probabilities [n, k] and reference ids [n]."""
    probabilities, references = np.asarray(probabilities), np.asarray(references)
    if len(probabilities) == 0:
        return 0, 0
    confident = probabilities.max(axis=1) >= threshold
    wrong = probabilities.argmax(axis=1) != references
    return int(np.count_nonzero(confident)), int(np.count_nonzero(confident & wrong))


@dataclass(frozen=True)
class LabelCheck:
    """The champion's confident rows and how many contradict their labels, on the new slice and on
    the earlier slices together (where its labels were accepted).

    Rule: the batch is flagged when, among the new slice's confident rows, the share the champion
    contradicts (k of m) is (1) above its usual confident-error rate r0 by a one-sided exact binomial
    test, P(X >= k | m, r0) < significance_level, (2) at least FLAG_RATIO x r0 and (3) at least r0 +
    FLAG_MARGIN, and (4) k is at least FLAG_MIN_SHARE of the new slice's scored rows (when known).
    r0 = (k0 + 1) / (m0 + 2) on the earlier slices (smoothed: a champion that never erred there is
    not taken to be infallible). Conditioning on confident rows keeps plain drift out: a
    champion on an unfamiliar domain is mostly less sure, not confidently contradicted."""

    champion_version: str | None
    threshold: float
    new_confident: int
    new_wrong: int
    earlier_confident: int
    earlier_wrong: int
    new_rows: int | None = None  # the new slice's scored rows; None in checks recorded before it was kept

    @property
    def new_rate(self) -> float:
        return self.new_wrong / self.new_confident if self.new_confident else 0.0

    @property
    def usual_rate(self) -> float:
        return (self.earlier_wrong + 1) / (self.earlier_confident + 2)

    @property
    def p_value(self) -> float:
        return binomial_tail(self.new_wrong, self.new_confident, self.usual_rate)

    def flagged(self, alpha: float) -> bool:
        if not self.new_confident or not self.earlier_confident:
            return False  # nothing to compare: no confident row on one side
        rate, usual = self.new_rate, self.usual_rate
        enough = self.new_rows is None or self.new_wrong >= FLAG_MIN_SHARE * self.new_rows - 1e-9
        return (
            enough
            and self.p_value < alpha
            and rate >= FLAG_RATIO * usual
            and rate >= usual + FLAG_MARGIN - 1e-12
        )

    def describe(self, slice_name: str, alpha: float) -> str:
        champion = f"v{self.champion_version}" if self.champion_version else "the champion"
        return (
            f"labels disagree with the champion: {champion} is confident (max prob >= {self.threshold:.2f}) "
            f"on {self.new_confident} rows of {slice_name} and contradicts {self.new_wrong} of their labels "
            f"({self.new_rate:.0%}) vs {self.earlier_wrong} of {self.earlier_confident} on earlier slices "
            f"(usual rate {self.usual_rate:.0%}; binomial p={format_p(self.p_value)} < {alpha:g}, "
            f">= {FLAG_RATIO:g}x and +{100 * FLAG_MARGIN:.0f} points{self._share()}); {FLAG_LEFT_OUT}"
        )

    def _share(self) -> str:
        if not self.new_rows:
            return ""
        return f"; {self.new_wrong / self.new_rows:.0%} of the slice's {self.new_rows} rows"

    def to_dict(self) -> dict:
        return asdict(self)


DRIFT_READING = "labels unlike the champion's"  # how the note that reads a contradiction as drift starts


@dataclass(frozen=True)
class ChallengerFit:
    """Did the challenger learn the new slice's labels *and* keep every old slice?

    A champion can be confidently wrong on a subpopulation it never saw (new subtypes of a class,
    a new outlet): real drift looks like contradicting labels from the champion's side. Bad labels
    differ in that no model can fit them and the earlier slices at once: the challenger, trained on
    the new rows with replay of the old, stays poor on the new slice's held-out labels (random
    flips) or loses the earlier slice whose inputs they resemble (a systematic flip). So a
    contradiction is read as drift when the challenger is within FIT_MARGIN of the champion's
    accuracy on the earlier slices on the new slice, and within FIT_MARGIN of the champion on each
    earlier slice (the worst one decides: pooling would let one destroyed slice hide among many)."""

    usual: float  # the champion on the earlier slices, pooled
    new: float  # the challenger on the new slice
    worst_slice: str  # the earlier slice the challenger lost most on, against the champion
    worst_loss: float  # champion minus challenger there (negative: a gain)

    @property
    def fits_both(self) -> bool:
        return self.new >= self.usual - FIT_MARGIN - 1e-12 and self.worst_loss <= FIT_MARGIN + 1e-12

    def describe(self, slice_name: str, names: Mapping[str, str] | None = None) -> str:
        worst = (names or {}).get(self.worst_slice, self.worst_slice)
        return (
            f"{DRIFT_READING} on {slice_name} read as drift, not bad labels: the challenger learned "
            f"them ({self.new:.3f}, the champion's usual accuracy {self.usual:.3f}) and lost at most "
            f"{max(self.worst_loss, 0.0):.3f} on an earlier slice ({worst}); both within {FIT_MARGIN:.2f}"
        )


def challenger_fit(
    challenger: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, Mapping[str, float]],
    new_slice: str,
) -> ChallengerFit | None:
    """The fit from the cycle's per-slice scores, or None without an earlier slice."""
    earlier = [name for name in champion if name != new_slice and name in challenger]
    if not earlier or new_slice not in challenger:
        return None
    losses = {
        name: float(champion[name]["accuracy"]) - float(challenger[name]["accuracy"]) for name in earlier
    }
    worst = max(losses, key=losses.__getitem__)
    return ChallengerFit(
        usual=_pooled(champion, earlier),
        new=float(challenger[new_slice]["accuracy"]),
        worst_slice=worst,
        worst_loss=losses[worst],
    )


def _pooled(scores: Mapping[str, Mapping[str, float]], names: list[str]) -> float:
    """Accuracy over several slices' rows together (each slice weighs its row count; equal weights
    when some count is missing)."""
    counts = [scores[name].get("n") for name in names]
    weights = np.array([float(n or 0) for n in counts]) if all(counts) else np.ones(len(names))
    accuracies = np.array([float(scores[name]["accuracy"]) for name in names])
    return float((weights * accuracies).sum() / weights.sum())


@dataclass(frozen=True)
class LabelVerdict:
    flag: str | None = None  # why the batch is flagged (left out of replay and evaluation)
    note: str | None = None  # why a contradiction was read as drift instead


def check_labels(
    check: LabelCheck | None,
    slice_name: str,
    settings: GateSettings,
    fit: ChallengerFit | None = None,
    names: Mapping[str, str] | None = None,
) -> LabelVerdict:
    """A rejected batch is flagged when its labels contradict the champion (see LabelCheck) and the
    challenger could not fit them beside the old ones (see ChallengerFit). `names`: display names
    of slices, for the note."""
    if check is None or not check.flagged(settings.significance_level):
        return LabelVerdict()
    if fit is not None and fit.fits_both:
        return LabelVerdict(note=fit.describe(slice_name, names))
    return LabelVerdict(flag=check.describe(slice_name, settings.significance_level))
