"""The promotion gate's truth table. Scores are binary fractions, so boundaries compare exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perennial.config import Settings
from perennial.gate import PROMOTE, REJECT, Decision, Scores, decide
from perennial.significance import PairedTest, paired_test

NEW = "batch-new"


@pytest.fixture(autouse=True)
def _no_outside_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)


def gate_settings(
    tmp_path: Path, min_delta: float = 0.0, max_forgetting: float = 0.125, min_accuracy: float = 0.5
) -> Settings:
    return Settings(
        workspace=tmp_path, min_delta=min_delta, max_forgetting=max_forgetting, min_accuracy=min_accuracy
    )


def scores(**accuracy: float) -> Scores:
    """scores(a=0.5, b=0.75) -> {'a': {'accuracy': 0.5, 'macro_f1': ...}, ...}; NEW is spelt `new`."""
    return {
        (NEW if name == "new" else name): {"accuracy": value, "macro_f1": 1.0 - value, "n": 40.0}
        for name, value in accuracy.items()
    }


def check_shape(decision: Decision) -> None:
    assert decision.reasons, "a decision always says why"
    assert all(isinstance(r, str) and r for r in decision.reasons)
    assert decision.label == (PROMOTE if decision.promote else REJECT)
    assert decision.summary().startswith(f"{decision.label}: ")
    assert decision.summary() == f"{decision.label}: " + "; ".join(decision.reasons)


# No champion: an absolute floor.


@pytest.mark.parametrize(
    ("accuracy", "promote"),
    [(0.75, True), (0.5, True), (0.4375, False), (0.0, False), (1.0, True)],
)
def test_no_champion_floor(tmp_path: Path, accuracy: float, promote: bool) -> None:
    decision = decide(scores(new=accuracy), None, NEW, gate_settings(tmp_path, min_accuracy=0.5))
    check_shape(decision)
    assert decision.promote is promote
    assert len(decision.reasons) == 1
    assert "floor" in decision.reasons[0]
    assert "no champion" in decision.reasons[0]
    assert ("<" in decision.reasons[0]) is not promote


def test_no_champion_below_floor_rejects(tmp_path: Path) -> None:
    decision = decide(scores(new=0.25), None, NEW, gate_settings(tmp_path, min_accuracy=0.5))
    assert decision.promote is False
    assert decision.label == "reject"
    assert "floor" in decision.reasons[0]
    assert "0.250" in decision.reasons[0] and "0.500" in decision.reasons[0]


def test_no_champion_ignores_other_slices(tmp_path: Path) -> None:
    decision = decide(scores(new=0.75, old=0.0), None, NEW, gate_settings(tmp_path))
    assert decision.promote is True


# With a champion.


def test_better_on_new_and_no_forgetting_promotes(tmp_path: Path) -> None:
    decision = decide(
        scores(new=0.75, a=0.75, b=0.5), scores(new=0.5, a=0.75, b=0.5), NEW, gate_settings(tmp_path)
    )
    check_shape(decision)
    assert decision.promote is True
    assert decision.label == "promote"
    assert any(NEW in r for r in decision.reasons)
    assert any("no earlier slice (2)" in r for r in decision.reasons)


def test_equal_on_new_with_zero_min_delta_promotes(tmp_path: Path) -> None:
    decision = decide(scores(new=0.5), scores(new=0.5), NEW, gate_settings(tmp_path, min_delta=0.0))
    check_shape(decision)
    assert decision.promote is True
    assert len(decision.reasons) == 1, "no earlier slices, so no forgetting line"


def test_worse_on_new_slice_rejects(tmp_path: Path) -> None:
    decision = decide(scores(new=0.5, a=0.75), scores(new=0.75, a=0.75), NEW, gate_settings(tmp_path))
    check_shape(decision)
    assert decision.promote is False
    assert decision.label == "reject"
    assert any(NEW in r and "< min_delta" in r for r in decision.reasons)
    assert not any("no earlier slice" in r for r in decision.reasons)


def test_negative_min_delta_tolerates_a_small_loss(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, min_delta=-0.125)
    assert decide(scores(new=0.625), scores(new=0.75), NEW, settings).promote is True
    assert decide(scores(new=0.5), scores(new=0.75), NEW, settings).promote is False


def test_forgetting_an_earlier_slice_rejects_and_names_it(tmp_path: Path) -> None:
    challenger = scores(new=1.0, alpha=0.75, beta=0.25)
    champion = scores(new=0.5, alpha=0.75, beta=0.5)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.125))
    check_shape(decision)
    assert decision.promote is False
    forgets = [r for r in decision.reasons if r.startswith("forgets")]
    assert len(forgets) == 1
    assert "beta" in forgets[0]
    assert "alpha" not in forgets[0]
    assert "max_forgetting 0.125" in forgets[0]
    assert not any("no earlier slice" in r for r in decision.reasons)


def test_every_forgotten_slice_is_named(tmp_path: Path) -> None:
    challenger = scores(new=1.0, alpha=0.25, beta=0.25, gamma=0.75)
    champion = scores(new=0.5, alpha=0.5, beta=0.75, gamma=0.75)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.125))
    assert decision.promote is False
    forgets = [r for r in decision.reasons if r.startswith("forgets")]
    assert [r.split(":")[0] for r in forgets] == ["forgets slice alpha", "forgets slice beta"]


def test_forgetting_exactly_max_forgetting_still_promotes(tmp_path: Path) -> None:
    challenger = scores(new=0.75, old=0.5)
    champion = scores(new=0.5, old=0.75)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.25))
    check_shape(decision)
    assert decision.promote is True
    # One step past the boundary rejects.
    past = decide(scores(new=0.75, old=0.4375), champion, NEW, gate_settings(tmp_path, max_forgetting=0.25))
    assert past.promote is False
    assert any("old" in r for r in past.reasons if r.startswith("forgets"))


def test_zero_max_forgetting_rejects_any_loss(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, max_forgetting=0.0)
    assert decide(scores(new=1.0, old=0.5), scores(new=0.5, old=0.5), NEW, settings).promote is True
    assert decide(scores(new=1.0, old=0.4375), scores(new=0.5, old=0.5), NEW, settings).promote is False


def test_improving_an_earlier_slice_is_fine(tmp_path: Path) -> None:
    decision = decide(scores(new=0.75, old=1.0), scores(new=0.5, old=0.25), NEW, gate_settings(tmp_path))
    assert decision.promote is True


def test_positive_min_delta_requires_that_gain(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, min_delta=0.125)
    champion = scores(new=0.5)
    exact = decide(scores(new=0.625), champion, NEW, settings)
    more = decide(scores(new=0.75), champion, NEW, settings)
    less = decide(scores(new=0.5625), champion, NEW, settings)
    same = decide(scores(new=0.5), champion, NEW, settings)
    for decision in (exact, more, less, same):
        check_shape(decision)
    assert (exact.promote, more.promote, less.promote, same.promote) == (True, True, False, False)
    assert ">= min_delta +0.125" in exact.reasons[0]
    assert "< min_delta +0.125" in less.reasons[0]


def test_worse_on_new_and_forgetting_gives_both_reasons(tmp_path: Path) -> None:
    decision = decide(scores(new=0.25, old=0.25), scores(new=0.75, old=0.75), NEW, gate_settings(tmp_path))
    check_shape(decision)
    assert decision.promote is False
    assert len(decision.reasons) == 2
    assert "< min_delta" in decision.reasons[0]
    assert decision.reasons[1].startswith("forgets slice old")


def test_slices_only_one_side_has_are_ignored(tmp_path: Path) -> None:
    # The champion was never scored on `extra`; the challenger never on `gone`.
    challenger = scores(new=0.75, shared=0.75, extra=0.0)
    champion = scores(new=0.5, shared=0.75, gone=1.0)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path))
    assert decision.promote is True
    assert any("no earlier slice (1)" in r for r in decision.reasons)


def test_macro_f1_does_not_drive_the_gate(tmp_path: Path) -> None:
    challenger = {NEW: {"accuracy": 0.75, "macro_f1": 0.0}, "old": {"accuracy": 0.75, "macro_f1": 0.0}}
    champion = {NEW: {"accuracy": 0.5, "macro_f1": 1.0}, "old": {"accuracy": 0.75, "macro_f1": 1.0}}
    assert decide(challenger, champion, NEW, gate_settings(tmp_path)).promote is True


@pytest.mark.parametrize(
    ("challenger_new", "champion_new", "challenger_old", "champion_old", "promote"),
    [
        (0.75, 0.5, 0.5, 0.5, True),
        (0.5, 0.5, 0.5, 0.5, True),
        (0.5, 0.75, 0.5, 0.5, False),
        (0.75, 0.5, 0.375, 0.5, True),  # drop 0.125 == max_forgetting
        (0.75, 0.5, 0.25, 0.5, False),  # drop 0.25 > max_forgetting
        (0.25, 0.75, 0.25, 0.75, False),
    ],
)
def test_truth_table(
    tmp_path: Path,
    challenger_new: float,
    champion_new: float,
    challenger_old: float,
    champion_old: float,
    promote: bool,
) -> None:
    decision = decide(
        scores(new=challenger_new, old=challenger_old),
        scores(new=champion_new, old=champion_old),
        NEW,
        gate_settings(tmp_path, min_delta=0.0, max_forgetting=0.125),
    )
    check_shape(decision)
    assert decision.promote is promote


def test_decision_label_and_summary() -> None:
    assert Decision(True, ["fine"]).label == "promote"
    assert Decision(False, ["bad", "worse"]).label == "reject"
    assert Decision(False, ["bad", "worse"]).summary() == "reject: bad; worse"
    assert Decision(True, ["fine"]).summary() == "promote: fine"


def test_reasons_use_readable_slice_names(tmp_path) -> None:
    settings = Settings(workspace=tmp_path, max_forgetting=0.125)
    challenger = {"new": {"accuracy": 0.75}, "old": {"accuracy": 0.25}}
    champion = {"new": {"accuracy": 0.5}, "old": {"accuracy": 0.5}}
    decision = decide(challenger, champion, "new", settings, names={"new": "02-movies", "old": "01-tweets"})
    assert not decision.promote
    assert "new slice 02-movies" in decision.reasons[0]
    assert any("forgets slice 01-tweets" in r for r in decision.reasons)


# The paired test on the new slice, and forgetting measured from the best earlier champion.


def paired(b: int, c: int, n: int = 40) -> PairedTest:
    """A paired test where the champion alone is right on `b` rows and the challenger alone on `c`."""
    champion = np.array([True] * b + [False] * c + [True] * (n - b - c))
    challenger = np.array([False] * b + [True] * c + [True] * (n - b - c))
    return paired_test(champion, challenger, resamples=500, confidence=0.95, seed=0)


def test_gain_within_noise_is_rejected(tmp_path: Path) -> None:
    # +2 rows of 40 (b=1, c=3): p = P(X >= 3 | n=4) = 5/16, far from significant.
    decision = decide(
        scores(new=0.75, old=0.5),
        scores(new=0.70, old=0.5),
        NEW,
        gate_settings(tmp_path),
        paired=paired(1, 3),
    )
    check_shape(decision)
    assert decision.promote is False
    assert any(r.startswith("gain within noise") and "p=0.3125" in r for r in decision.reasons)


def test_significant_gain_promotes_and_reports_the_test(tmp_path: Path) -> None:
    # b=0, c=10: p = 2**-10 < 0.05.
    decision = decide(
        scores(new=0.75, old=0.5),
        scores(new=0.5, old=0.5),
        NEW,
        gate_settings(tmp_path),
        paired=paired(0, 10),
    )
    assert decision.promote is True
    assert any(r.startswith("paired test:") and "CI" in r for r in decision.reasons)


def test_noise_can_be_allowed_by_setting(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path).model_copy(update={"require_significant_gain": False})
    decision = decide(scores(new=0.75), scores(new=0.70), NEW, settings, paired=paired(1, 3))
    assert decision.promote is True
    assert any(r.startswith("paired test:") and ">= 0.05" in r for r in decision.reasons)


def test_forgetting_is_measured_from_the_best_earlier_champion(tmp_path: Path) -> None:
    # The champion of the day already lost 0.125 on `old`; a further 0.0625 stays under max_forgetting
    # against it, but not against the best champion ever (0.875 -> 0.6875 is -0.1875).
    challenger, champion = scores(new=0.75, old=0.6875), scores(new=0.5, old=0.75)
    settings = gate_settings(tmp_path, max_forgetting=0.125)
    assert decide(challenger, champion, NEW, settings).promote is True
    decision = decide(challenger, champion, NEW, settings, best_before={"old": 0.875})
    assert decision.promote is False
    assert any("vs best earlier champion 0.875" in r for r in decision.reasons)
    # A best_before below the champion's own score changes nothing.
    assert decide(challenger, champion, NEW, settings, best_before={"old": 0.5}).promote is True
