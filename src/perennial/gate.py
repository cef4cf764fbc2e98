"""The promotion gate: decide(challenger, champion) -> Decision with the reasons spelt out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from perennial.config import Settings
from perennial.significance import PairedTest

PROMOTE = "promote"
REJECT = "reject"
METRIC = "accuracy"  # the metric the gate compares; macro-F1 is reported alongside

Scores = Mapping[str, Mapping[str, float]]  # slice -> metric -> value


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return PROMOTE if self.promote else REJECT

    def summary(self) -> str:
        return f"{self.label}: " + "; ".join(self.reasons)


def decide(
    challenger: Scores,
    champion: Scores | None,
    new_slice: str,
    settings: Settings,
    names: Mapping[str, str] | None = None,
    paired: PairedTest | None = None,
    best_before: Mapping[str, float] | None = None,
) -> Decision:
    """Promote only if the challenger is good enough on the new slice and forgets nothing beyond
    `max_forgetting` on any earlier slice. With no champion, an absolute floor applies.

    `paired` is the paired test of challenger against champion on the new slice: with
    `require_significant_gain`, a gain within noise is not enough. Forgetting on a slice is measured,
    as in continual-learning papers, from the best accuracy any champion had on it (`best_before`,
    from earlier cycles) or the current champion's, whichever is higher.
    `names` gives slices readable names in the reasons (default: their keys)."""

    def named(key: str) -> str:
        return (names or {}).get(key, key)

    new = challenger[new_slice][METRIC]
    if champion is None:
        ok = new >= settings.min_accuracy
        sign = ">=" if ok else "<"
        floor = settings.min_accuracy
        return Decision(
            ok, [f"no champion yet: {METRIC} {new:.3f} on {named(new_slice)} {sign} floor {floor:.3f}"]
        )

    reasons: list[str] = []
    old = champion[new_slice][METRIC]
    delta = new - old
    ok = delta >= settings.min_delta
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
            ok = False
            reasons.append(f"gain within noise: {paired.describe()}, {verdict}")
        else:
            reasons.append(f"paired test: {paired.describe()}, {verdict}")
    earlier = sorted(set(challenger) & set(champion) - {new_slice})
    for name in earlier:
        reference = max(champion[name][METRIC], (best_before or {}).get(name, -1.0))
        which = "champion" if reference == champion[name][METRIC] else "best earlier champion"
        drop = reference - challenger[name][METRIC]
        if drop > settings.max_forgetting:
            ok = False
            reasons.append(
                f"forgets slice {named(name)}: {challenger[name][METRIC]:.3f} vs {which} "
                f"{reference:.3f} (-{drop:.3f} > max_forgetting {settings.max_forgetting:.3f})"
            )
    if ok and earlier:
        reasons.append(f"no earlier slice ({len(earlier)}) lost more than {settings.max_forgetting:.3f}")
    return Decision(ok, reasons)
