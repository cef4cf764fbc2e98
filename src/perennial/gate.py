"""The promotion gate: decide(challenger, champion) -> Decision with the reasons spelt out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from perennial.config import Settings

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


def decide(challenger: Scores, champion: Scores | None, new_slice: str, settings: Settings) -> Decision:
    """Promote only if the challenger is good enough on the new slice and forgets nothing
    beyond `max_forgetting` on any earlier slice. With no champion, an absolute floor applies."""
    new = challenger[new_slice][METRIC]
    if champion is None:
        ok = new >= settings.min_accuracy
        sign = ">=" if ok else "<"
        return Decision(
            ok,
            [f"no champion yet: {METRIC} {new:.3f} on {names.get(new_slice, new_slice)} {sign} floor {settings.min_accuracy:.3f}"],
        )

    reasons: list[str] = []
    ok = True
    delta = new - champion[new_slice][METRIC]
    if delta >= settings.min_delta:
        reasons.append(
            f"new slice {names.get(new_slice, new_slice)}: {new:.3f} vs champion {champion[new_slice][METRIC]:.3f} "
            f"({delta:+.3f} >= min_delta {settings.min_delta:+.3f})"
        )
    else:
        ok = False
        reasons.append(
            f"new slice {names.get(new_slice, new_slice)}: {new:.3f} vs champion {champion[new_slice][METRIC]:.3f} "
            f"({delta:+.3f} < min_delta {settings.min_delta:+.3f})"
        )
    for name in sorted(set(challenger) & set(champion) - {new_slice}):
        drop = champion[name][METRIC] - challenger[name][METRIC]
        if drop > settings.max_forgetting:
            ok = False
            reasons.append(
                f"forgets slice {names.get(name, name)}: {challenger[name][METRIC]:.3f} vs champion "
                f"{champion[name][METRIC]:.3f} (-{drop:.3f} > max_forgetting {settings.max_forgetting:.3f})"
            )
    earlier = len(set(challenger) & set(champion) - {new_slice})
    if ok and earlier:
        reasons.append(f"no earlier slice ({earlier}) lost more than {settings.max_forgetting:.3f}")
    return Decision(ok, reasons)
