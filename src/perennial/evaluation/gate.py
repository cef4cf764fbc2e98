"""The promotion gate: decide(challenger, champion) -> Decision with the reasons spelt out.

With no champion, the challenger is compared with the trivial baselines (perennial.evaluation.baselines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from perennial.core.settings import GateSettings
from perennial.evaluation.baselines import Baseline
from perennial.evaluation.significance import PairedTest, format_p


class Verdict(StrEnum):
    """The gate's decision, as the ledger, the registry tags and every report spell it."""

    PROMOTE = "promote"
    REJECT = "reject"


PROMOTE, REJECT = Verdict.PROMOTE, Verdict.REJECT
METRIC = "accuracy"  # the metric the gate compares; macro-F1 is reported alongside

Scores = Mapping[str, Mapping[str, float]]  # slice -> metric -> value


# What a rejection failed on; a cycle retries with a protective recipe only when it is forgetting alone.
class FailedOn(StrEnum):
    NEW_SLICE = "new-slice"  # not good enough on the new slice (gain, significance, first-champion bars)
    FORGETTING = "forgetting"  # lost more than max_forgetting on an earlier slice
    LABELS = "labels"  # the batch's labels contradict the champion (perennial.evaluation.label_check)


NEW_SLICE, FORGETTING, LABELS = tuple(FailedOn)
# Accuracies are row counts over slice sizes: 0.97 - 0.94 is 0.030000000000000027 in floating point.
# A loss of exactly `max_forgetting` (or a gain of exactly `min_delta`) is within the limit.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    failed_on: tuple[str, ...] = ()  # NEW_SLICE, FORGETTING and/or LABELS when rejected
    # When the batch's labels contradict the champion: the reason and the label check's numbers.
    label_flag: dict | None = None

    @property
    def label(self) -> Verdict:
        return PROMOTE if self.promote else REJECT

    def summary(self) -> str:
        return f"{self.label}: " + "; ".join(self.reasons)

    def with_reasons(self, before: Sequence[str] = (), after: Sequence[str] = ()) -> Decision:
        return replace(self, reasons=[*before, *self.reasons, *after])


@dataclass(frozen=True)
class NewLabelScores:
    """The new slice split by what the champion could know: rows of labels its head lacks (it can
    never predict them) and rows of the labels it has."""

    labels: tuple[str, ...]  # the new slice's labels the champion lacks
    label_count: int  # labels in the grown set: chance on a new label is 1 / label_count
    new_rows: int
    challenger_new: float  # accuracy on the rows of the new labels
    old_rows: int
    challenger_old: float  # accuracy on the rows of labels the champion knows
    champion_old: float
    # (label, test rows, challenger accuracy) for each new label: each must be learned, not only
    # their pool (a model right on a frequent new label and never on a rare one has not learned both)
    per_label: tuple[tuple[str, int, float], ...] = ()

    @property
    def champion_ceiling(self) -> float:
        """The best the champion could score on the whole new slice."""
        total = self.new_rows + self.old_rows
        return self.old_rows / total if total else 0.0


FEW_TEST_ROWS = 5  # fewer rows of a new label in the test split: its accuracy is a rough guess


def _judge_new_labels(split: NewLabelScores, settings: GateSettings) -> tuple[list[str], bool, bool]:
    """(reasons, learned the new labels, kept the old ones on the new slice). The new labels must be
    learned beyond chance; on the rows of the labels both know, the challenger may lose at most
    `max_forgetting` against the champion (a grown head must not take old labels' rows)."""
    listed = ", ".join(repr(label) for label in split.labels)
    chance = 1 / max(1, split.label_count)
    learned = split.challenger_new > chance + _ROUNDING
    unlearned = [(label, n, acc) for label, n, acc in split.per_label if acc <= chance + _ROUNDING]
    reasons = [
        f"new label(s) {listed}: the champion cannot predict them ({split.new_rows} of "
        f"{split.new_rows + split.old_rows} rows; its ceiling on the new slice is "
        f"{split.champion_ceiling:.3f}); "
        f"challenger {split.challenger_new:.3f} on them ({'>' if learned else '<='} chance {chance:.3f})"
    ]
    if len(split.per_label) > 1 and unlearned:
        reasons.append(
            "not learned beyond chance: "
            + ", ".join(f"{label!r} {acc:.3f} on {n} row(s)" for label, n, acc in unlearned)
        )
    learned = learned and not unlearned
    few = [f"{label!r} ({n})" for label, n, _ in split.per_label if n < FEW_TEST_ROWS]
    if few:  # said, not blocked: a rare label's first batch has few test rows by nature
        reasons.append(f"few test rows to judge new label(s) on: {', '.join(few)}")
    drop = split.champion_old - split.challenger_old
    kept = split.old_rows == 0 or drop <= settings.max_forgetting + _ROUNDING
    if split.old_rows:
        reasons.append(
            f"known labels on the new slice: {split.challenger_old:.3f} vs champion {split.champion_old:.3f}"
            f" ({-drop:+.3f}{'' if kept else f' < -max_forgetting {settings.max_forgetting:.3f}'})"
        )
    return reasons, learned, kept


def _first_champion(
    new: Mapping[str, float], baseline: Baseline | None, name: str, settings: GateSettings
) -> Decision:
    """With no champion, the challenger must beat (a) the majority class in accuracy beyond noise
    (the same paired test and `min_delta` as against a champion; with `require_significant_gain` off
    a gain within noise is enough), (b) the best trivial baseline in macro-F1 by `min_macro_f1_gain`,
    and (c) `min_accuracy` when that floor is set."""
    if baseline is None:
        return Decision(False, ["no champion yet and no baseline scores to compare with: evaluate again"])
    accuracy, alpha, test = new[METRIC], settings.significance_level, baseline.paired
    significant = test.significant(alpha)
    # The majority class plays the champion's part: a gain of at least min_delta, and a real one
    # unless min_delta is negative (a user who lowers it accepts any model, as against a champion).
    gain = test.delta >= settings.min_delta and (test.delta > 0 or settings.min_delta < 0)
    beats_majority = gain and (significant or not settings.require_significant_gain)
    verdict = f"p={format_p(test.p_value)} {'<' if significant else '>='} {alpha:g}"
    if not gain:
        verdict += ": no gain over the majority class"
    elif not significant:
        verdict += (
            ": not beyond noise" if settings.require_significant_gain else "; significance not required"
        )
    reasons = [
        f"no champion yet: {METRIC} {accuracy:.3f} on {name} vs majority class {baseline.majority_label!r} "
        f"{baseline.majority_accuracy:.3f} (paired test {verdict})"
    ]
    if settings.require_significant_gain and not significant:
        # Even a perfect model is right on only the rows the majority class gets wrong: with few of
        # them no gain can reach significance, and the user should hear that rather than wait.
        minority_rows = round((1 - baseline.majority_accuracy) * test.n)
        if 0.5**minority_rows >= alpha:
            reasons.append(
                f"{name}'s test split has only {minority_rows} rows outside the majority class, too few"
                f" for any model to beat it at p < {alpha:g}: send bigger batches or raise test_fraction"
            )
    which, best = baseline.best
    margin = new["macro_f1"] - best
    beats_trivial = margin >= settings.min_macro_f1_gain
    reasons.append(
        f"macro-F1 {new['macro_f1']:.3f} vs best trivial baseline ({which}) {best:.3f} "
        f"({margin:+.3f} {'>=' if beats_trivial else '<'} min_macro_f1_gain {settings.min_macro_f1_gain:.3f})"
    )
    above_floor = accuracy >= settings.min_accuracy
    if settings.min_accuracy > 0:
        reasons.append(
            f"{METRIC} {accuracy:.3f} {'>=' if above_floor else '<'} "
            f"floor min_accuracy {settings.min_accuracy:.3f}"
        )
    promote = beats_majority and beats_trivial and above_floor
    return Decision(promote, reasons, () if promote else (NEW_SLICE,))


def decide(
    challenger: Scores,
    champion: Scores | None,
    new_slice: str,
    settings: GateSettings,
    names: Mapping[str, str] | None = None,
    paired: PairedTest | None = None,
    best_before: Mapping[str, float] | None = None,
    baseline: Baseline | None = None,
    new_labels: NewLabelScores | None = None,
) -> Decision:
    """Promote only if the challenger is good enough on the new slice and forgets nothing beyond
    `max_forgetting` on any earlier slice. With no champion, it must beat the trivial baselines
    (`baseline`; see `_first_champion`).

    `paired` is the paired test of challenger against champion on the new slice: with
    `require_significant_gain`, a gain within noise is not enough. Forgetting on a slice is measured,
    as in continual-learning papers, from the best accuracy any champion had on it (`best_before`,
    from earlier cycles) or the current champion's, whichever is higher.
    `names` gives slices readable names in the reasons (default: their keys). `new_labels`: the new
    slice split by the labels the champion lacks, when the label set grew (see _judge_new_labels)."""

    def named(key: str) -> str:
        return (names or {}).get(key, key)

    if champion is None:
        return _first_champion(challenger[new_slice], baseline, named(new_slice), settings)
    new = challenger[new_slice][METRIC]

    reasons: list[str] = []
    old = champion[new_slice][METRIC]
    delta = new - old
    new_ok = ok = delta >= settings.min_delta - _ROUNDING
    sign = ">=" if ok else "<"
    reasons.append(
        f"new slice {named(new_slice)}: {new:.3f} vs champion {old:.3f} "
        f"({delta:+.3f} {sign} min_delta {settings.min_delta:+.3f})"
    )
    if paired is not None:
        alpha = settings.significance_level
        significant = paired.significant(alpha)
        verdict = f"p {'<' if significant else '>='} {alpha:g}"
        if not significant and settings.require_significant_gain:
            new_ok = ok = False
            reasons.append(f"gain within noise: {paired.describe()}, {verdict}")
        else:
            reasons.append(f"paired test: {paired.describe()}, {verdict}")
    forgot = False
    if new_labels is not None and new_labels.labels:
        lines, learned, kept = _judge_new_labels(new_labels, settings)
        reasons += lines
        if not learned:
            new_ok = ok = False
        if not kept:
            ok, forgot = False, True
    earlier = sorted(set(challenger) & set(champion) - {new_slice})
    for name in earlier:
        reference = max(champion[name][METRIC], (best_before or {}).get(name, -1.0))
        which = "champion" if reference == champion[name][METRIC] else "best earlier champion"
        drop = reference - challenger[name][METRIC]
        if drop > settings.max_forgetting + _ROUNDING:
            ok, forgot = False, True
            reasons.append(
                f"forgets slice {named(name)}: {challenger[name][METRIC]:.3f} vs {which} "
                f"{reference:.3f} (-{drop:.3f} > max_forgetting {settings.max_forgetting:.3f})"
            )
    if ok and earlier:
        reasons.append(f"no earlier slice ({len(earlier)}) lost more than {settings.max_forgetting:.3f}")
    failed_on = (*(() if new_ok else (NEW_SLICE,)), *((FORGETTING,) if forgot else ()))
    return Decision(ok, reasons, failed_on)
