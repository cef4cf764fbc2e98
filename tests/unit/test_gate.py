"""The promotion gate's truth table. Scores are binary fractions, so boundaries compare exactly.
With no champion: the trivial baselines, including Hypothesis properties over random label vectors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as settings_profile
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.data.batch_store import stratified_split
from perennial.evaluation.baselines import Baseline, macro_f1, majority_label, trivial_baseline
from perennial.evaluation.gate import (
    FORGETTING,
    NEW_SLICE,
    PROMOTE,
    REJECT,
    Decision,
    NewLabelScores,
    Scores,
    decide,
)
from perennial.evaluation.significance import PairedTest, paired_test

NEW = "batch-new"


@pytest.fixture(autouse=True)
def _no_outside_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)


def gate_settings(
    tmp_path: Path, min_delta: float = 0.0, max_forgetting: float = 0.125, min_accuracy: float = 0.0
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


# No champion: beat the trivial baselines (majority class beyond noise, best trivial macro-F1).


def first_scores(predictions: list[str], references: list[str]) -> Scores:
    """The challenger's scores on NEW from its predicted and true labels."""
    predicted, actual = np.array(predictions, dtype=object), np.array(references, dtype=object)
    return {NEW: {"accuracy": float((predicted == actual).mean()), "macro_f1": macro_f1(predicted, actual)}}


def first_decision(
    predictions: list[str], references: list[str], train: list[str], settings: Settings
) -> tuple[Decision, Baseline]:
    correct = np.array(predictions, dtype=object) == np.array(references, dtype=object)
    # Object arrays, as pandas gives the cycle its splits' labels.
    train_labels, test_labels = np.array(train, dtype=object), np.array(references, dtype=object)
    baseline = trivial_baseline(train_labels, test_labels, correct, resamples=200, seed=0)
    decision = decide(first_scores(predictions, references), None, NEW, settings.gate, baseline=baseline)
    check_shape(decision)
    return decision, baseline


def fixed_baseline(
    p_value: float, delta: float, majority_f1: float = 0.4, chance_f1: float = 0.5
) -> Baseline:
    test = PairedTest(n=100, b=5, c=5 + round(100 * delta), delta=delta, p_value=p_value)
    return Baseline("positive", 0.67, majority_f1, chance_f1, test)


@pytest.mark.parametrize("significant", [True, False])
@pytest.mark.parametrize("f1_margin", [0.02, 0.0])
@pytest.mark.parametrize("above_floor", [True, False, None])  # None: min_accuracy not set
def test_no_champion_truth_table(
    tmp_path: Path, significant: bool, f1_margin: float, above_floor: bool | None
) -> None:
    settings = gate_settings(tmp_path, min_accuracy={True: 0.75, False: 0.875, None: 0.0}[above_floor])
    baseline = fixed_baseline(0.01 if significant else 0.2, 0.08)
    challenger = {NEW: {"accuracy": 0.75, "macro_f1": 0.5 + f1_margin}}  # best trivial: chance 0.5
    decision = decide(challenger, None, NEW, settings.gate, baseline=baseline)
    check_shape(decision)
    assert decision.promote is (significant and f1_margin >= 0.02 and above_floor is not False)
    assert decision.reasons[0].startswith("no champion yet: accuracy 0.750 on batch-new vs majority class")
    assert ("< 0.05)" in decision.reasons[0]) is significant
    assert ("not beyond noise" in decision.reasons[0]) is not significant
    assert "best trivial baseline (chance) 0.500" in decision.reasons[1]
    assert (">= min_macro_f1_gain 0.020" in decision.reasons[1]) is (f1_margin >= 0.02)
    assert len(decision.reasons) == (2 if above_floor is None else 3)
    if above_floor is not None:
        assert ("accuracy 0.750 >=" in decision.reasons[2]) is above_floor


def test_no_champion_a_loss_to_the_majority_class_is_never_enough(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path).model_copy(update={"require_significant_gain": False})
    decision = decide(
        {NEW: {"accuracy": 0.6, "macro_f1": 0.9}},
        None,
        NEW,
        settings.gate,
        baseline=fixed_baseline(0.9, -0.07),
    )
    assert decision.promote is False
    assert "no gain over the majority class" in decision.reasons[0]
    # Without require_significant_gain a gain within noise is enough, as against a champion.
    decision = decide(
        {NEW: {"accuracy": 0.7, "macro_f1": 0.9}},
        None,
        NEW,
        settings.gate,
        baseline=fixed_baseline(0.3, 0.03),
    )
    assert decision.promote is True
    assert "significance not required" in decision.reasons[0]


def test_no_champion_without_baseline_scores_rejects(tmp_path: Path) -> None:
    decision = decide(scores(new=1.0), None, NEW, gate_settings(tmp_path).gate)
    check_shape(decision)
    assert decision.promote is False and "no baseline" in decision.reasons[0]


def test_constant_model_on_an_imbalanced_slice_is_rejected(tmp_path: Path) -> None:
    # 67% positive: always saying "positive" scores 0.67 accuracy but macro-F1 0.40.
    references = ["positive"] * 67 + ["negative"] * 33
    train = ["positive"] * 670 + ["negative"] * 330
    decision, baseline = first_decision(
        ["positive"] * 100, references, train, gate_settings(tmp_path, min_accuracy=0)
    )
    assert decision.promote is False
    assert baseline.majority_label == "positive" and baseline.majority_accuracy == pytest.approx(0.67)
    assert baseline.majority_macro_f1 == pytest.approx(0.401, abs=1e-3)
    assert "majority class 'positive' 0.670" in decision.reasons[0]
    assert "no gain over the majority class" in decision.reasons[0]
    assert "best trivial baseline (chance) 0.500" in decision.reasons[1]  # chance by 67/33 priors


def test_a_real_model_on_the_imbalanced_slice_is_promoted(tmp_path: Path) -> None:
    references = ["positive"] * 67 + ["negative"] * 33
    # Right on all negatives and on 60 of 67 positives: 0.93 accuracy.
    predictions = ["positive"] * 60 + ["negative"] * 7 + ["negative"] * 33
    decision, _ = first_decision(
        predictions, references, references * 10, gate_settings(tmp_path, min_accuracy=0)
    )
    assert decision.promote is True, decision.summary()
    assert "p=" in decision.reasons[0] and "< 0.05" in decision.reasons[0]


def six_class_model(per_class: int, right: int) -> tuple[list[str], list[str]]:
    """Six balanced classes; per class `right` rows predicted correctly, the rest as the next class."""
    labels = [f"c{k}" for k in range(6)]
    references, predictions = [], []
    for k, label in enumerate(labels):
        references += [label] * per_class
        predictions += [label] * right + [labels[(k + 1) % 6]] * (per_class - right)
    return predictions, references


def test_a_six_class_model_at_042_is_promoted_with_enough_rows(tmp_path: Path) -> None:
    # The old absolute floor (0.6) kept such a model out forever; chance here is 1/6.
    predictions, references = six_class_model(per_class=50, right=21)  # 126 of 300 = 0.42
    decision, baseline = first_decision(
        predictions, references, references * 4, gate_settings(tmp_path, min_accuracy=0)
    )
    assert baseline.chance_macro_f1 == pytest.approx(1 / 6)
    assert baseline.majority_accuracy == pytest.approx(1 / 6)
    assert decision.promote is True, decision.summary()
    assert "accuracy 0.420" in decision.reasons[0]
    # The same rate on 12 rows is within noise.
    predictions, references = six_class_model(per_class=2, right=1)
    decision, _ = first_decision(
        predictions, references, references * 4, gate_settings(tmp_path, min_accuracy=0)
    )
    assert decision.promote is False
    assert "not beyond noise" in decision.reasons[0]


def test_a_slice_too_small_for_any_model_says_so(tmp_path: Path) -> None:
    """8 test rows, 4 outside the majority class: even a perfect model has p = 1/16."""
    references = np.array(["negative", "positive"] * 4)
    decision, _ = first_decision(references, references, references, gate_settings(tmp_path))
    assert decision.promote is False
    assert any("only 4 rows outside the majority class, too few" in r for r in decision.reasons)
    # 20 rows, 10 outside: a perfect model is significant, and nothing is said about size.
    references = np.array(["negative", "positive"] * 10)
    decision, _ = first_decision(references, references, references, gate_settings(tmp_path))
    assert decision.promote is True, decision.summary()
    assert not any("too few" in r for r in decision.reasons)


def test_macro_f1_matches_sklearn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        predictions = rng.choice(["a", "b", "c", "d"], size=int(rng.integers(1, 30)))
        references = rng.choice(["a", "b", "c"], size=len(predictions))
        expected = f1_score(references, predictions, average="macro", zero_division=0)
        assert macro_f1(predictions, references) == pytest.approx(expected)


def test_majority_label_breaks_ties_by_name() -> None:
    assert majority_label(["b", "a", "b", "a"]) == "a"
    assert majority_label(["b", "b", "a"]) == "b"
    assert majority_label(pd.Series(["b", "a", "b"]).to_numpy()) == "b"  # object dtype, as from a split
    with pytest.raises(ValueError):
        majority_label([])


LABELS = ["a", "b", "c", "d"]


@settings_profile(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    train=st.lists(st.sampled_from(LABELS), min_size=1, max_size=200),
    test=st.lists(st.sampled_from(LABELS), min_size=1, max_size=200),
    require=st.booleans(),
)
def test_property_the_train_majority_constant_is_never_promoted(
    tmp_path: Path, train: list[str], test: list[str], require: bool
) -> None:
    settings = gate_settings(tmp_path, min_accuracy=0).model_copy(
        update={"require_significant_gain": require}
    )
    constant = [majority_label(train)] * len(test)
    decision, _ = first_decision(constant, test, train, settings)
    assert decision.promote is False


@settings_profile(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=300), min_size=2, max_size=6),
    constant=st.integers(min_value=0, max_value=5),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_property_no_constant_predictor_is_promoted_on_a_stratified_split(
    tmp_path: Path, counts: list[int], constant: int, seed: int
) -> None:
    """Any constant label, on train and test splits made the way perennial makes them."""
    labels = [f"l{k}" for k, n in enumerate(counts) for _ in range(n)]
    assume(labels)
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})
    splits = stratified_split(frame, seed, 0.1, 0.1)
    train, test = splits["train"]["label"].tolist(), splits["test"]["label"].tolist()
    assume(train and test)
    predictions = [f"l{constant % len(counts)}"] * len(test)
    decision, _ = first_decision(predictions, test, train, gate_settings(tmp_path, min_accuracy=0))
    assert decision.promote is False, decision.summary()


# With a champion.


def test_better_on_new_and_no_forgetting_promotes(tmp_path: Path) -> None:
    decision = decide(
        scores(new=0.75, a=0.75, b=0.5), scores(new=0.5, a=0.75, b=0.5), NEW, gate_settings(tmp_path).gate
    )
    check_shape(decision)
    assert decision.promote is True
    assert decision.label == "promote"
    assert any(NEW in r for r in decision.reasons)
    assert any("no earlier slice (2)" in r for r in decision.reasons)


def test_equal_on_new_with_zero_min_delta_promotes(tmp_path: Path) -> None:
    decision = decide(scores(new=0.5), scores(new=0.5), NEW, gate_settings(tmp_path, min_delta=0.0).gate)
    check_shape(decision)
    assert decision.promote is True
    assert len(decision.reasons) == 1, "no earlier slices, so no forgetting line"


def test_worse_on_new_slice_rejects(tmp_path: Path) -> None:
    decision = decide(scores(new=0.5, a=0.75), scores(new=0.75, a=0.75), NEW, gate_settings(tmp_path).gate)
    check_shape(decision)
    assert decision.promote is False
    assert decision.label == "reject"
    assert any(NEW in r and "< min_delta" in r for r in decision.reasons)
    assert not any("no earlier slice" in r for r in decision.reasons)


def test_negative_min_delta_tolerates_a_small_loss(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, min_delta=-0.125)
    assert decide(scores(new=0.625), scores(new=0.75), NEW, settings.gate).promote is True
    assert decide(scores(new=0.5), scores(new=0.75), NEW, settings.gate).promote is False


def test_forgetting_an_earlier_slice_rejects_and_names_it(tmp_path: Path) -> None:
    challenger = scores(new=1.0, alpha=0.75, beta=0.25)
    champion = scores(new=0.5, alpha=0.75, beta=0.5)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.125).gate)
    check_shape(decision)
    assert decision.promote is False
    forgets = [r for r in decision.reasons if r.startswith("forgets")]
    assert len(forgets) == 1
    assert "beta" in forgets[0]
    assert "alpha" not in forgets[0]
    assert "max_forgetting 0.125" in forgets[0]
    assert not any("no earlier slice" in r for r in decision.reasons)


def test_limits_hold_exactly_on_row_count_accuracies(tmp_path: Path) -> None:
    # 97 -> 94 right of 100 is a loss of 0.030000000000000027 in floating point: exactly the limit.
    settings = gate_settings(tmp_path, max_forgetting=0.03, min_delta=0.01)
    champion = scores(new=92 / 100, alpha=97 / 100)
    assert decide(scores(new=93 / 100, alpha=94 / 100), champion, NEW, settings.gate).promote is True
    decision = decide(scores(new=93 / 100, alpha=93 / 100), champion, NEW, settings.gate)
    assert decision.failed_on == (FORGETTING,)  # one row more is beyond it
    assert decide(scores(new=92 / 100, alpha=97 / 100), champion, NEW, settings.gate).failed_on == (
        NEW_SLICE,
    )


@given(
    hundreds=st.integers(1, 20),
    limit_percent=st.integers(0, 10),
    offset=st.integers(-1, 1),
    data=st.data(),
)
@settings_profile(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_property_forgetting_is_judged_on_whole_rows(
    tmp_path: Path, hundreds: int, limit_percent: int, offset: int, data
) -> None:
    # Slices of 100, 200, ... rows losing one row less than, exactly, or one row more than the limit:
    # forgotten exactly when the loss in rows is above limit x rows, whatever floating point says.
    rows = 100 * hundreds
    lost = max(0, limit_percent * hundreds + offset)
    right_before = data.draw(st.integers(lost, rows))
    settings = gate_settings(tmp_path, max_forgetting=limit_percent / 100)
    champion = scores(new=0.5, old=right_before / rows)
    decision = decide(scores(new=0.5, old=(right_before - lost) / rows), champion, NEW, settings.gate)
    assert (FORGETTING in decision.failed_on) == (lost > limit_percent * hundreds)


def test_every_forgotten_slice_is_named(tmp_path: Path) -> None:
    challenger = scores(new=1.0, alpha=0.25, beta=0.25, gamma=0.75)
    champion = scores(new=0.5, alpha=0.5, beta=0.75, gamma=0.75)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.125).gate)
    assert decision.promote is False
    forgets = [r for r in decision.reasons if r.startswith("forgets")]
    assert [r.split(":")[0] for r in forgets] == ["forgets slice alpha", "forgets slice beta"]


def test_forgetting_exactly_max_forgetting_still_promotes(tmp_path: Path) -> None:
    challenger = scores(new=0.75, old=0.5)
    champion = scores(new=0.5, old=0.75)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path, max_forgetting=0.25).gate)
    check_shape(decision)
    assert decision.promote is True
    # One step past the boundary rejects.
    past = decide(
        scores(new=0.75, old=0.4375), champion, NEW, gate_settings(tmp_path, max_forgetting=0.25).gate
    )
    assert past.promote is False
    assert any("old" in r for r in past.reasons if r.startswith("forgets"))


def test_zero_max_forgetting_rejects_any_loss(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, max_forgetting=0.0)
    assert decide(scores(new=1.0, old=0.5), scores(new=0.5, old=0.5), NEW, settings.gate).promote is True
    assert decide(scores(new=1.0, old=0.4375), scores(new=0.5, old=0.5), NEW, settings.gate).promote is False


def test_improving_an_earlier_slice_is_fine(tmp_path: Path) -> None:
    decision = decide(scores(new=0.75, old=1.0), scores(new=0.5, old=0.25), NEW, gate_settings(tmp_path).gate)
    assert decision.promote is True


def test_positive_min_delta_requires_that_gain(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, min_delta=0.125)
    champion = scores(new=0.5)
    exact = decide(scores(new=0.625), champion, NEW, settings.gate)
    more = decide(scores(new=0.75), champion, NEW, settings.gate)
    less = decide(scores(new=0.5625), champion, NEW, settings.gate)
    same = decide(scores(new=0.5), champion, NEW, settings.gate)
    for decision in (exact, more, less, same):
        check_shape(decision)
    assert (exact.promote, more.promote, less.promote, same.promote) == (True, True, False, False)
    assert ">= min_delta +0.125" in exact.reasons[0]
    assert "< min_delta +0.125" in less.reasons[0]


def test_worse_on_new_and_forgetting_gives_both_reasons(tmp_path: Path) -> None:
    decision = decide(
        scores(new=0.25, old=0.25), scores(new=0.75, old=0.75), NEW, gate_settings(tmp_path).gate
    )
    check_shape(decision)
    assert decision.promote is False
    assert len(decision.reasons) == 2
    assert "< min_delta" in decision.reasons[0]
    assert decision.reasons[1].startswith("forgets slice old")


def test_slices_only_one_side_has_are_ignored(tmp_path: Path) -> None:
    # The champion was never scored on `extra`; the challenger never on `gone`.
    challenger = scores(new=0.75, shared=0.75, extra=0.0)
    champion = scores(new=0.5, shared=0.75, gone=1.0)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path).gate)
    assert decision.promote is True
    assert any("no earlier slice (1)" in r for r in decision.reasons)


def test_macro_f1_does_not_drive_the_gate(tmp_path: Path) -> None:
    challenger = {NEW: {"accuracy": 0.75, "macro_f1": 0.0}, "old": {"accuracy": 0.75, "macro_f1": 0.0}}
    champion = {NEW: {"accuracy": 0.5, "macro_f1": 1.0}, "old": {"accuracy": 0.75, "macro_f1": 1.0}}
    assert decide(challenger, champion, NEW, gate_settings(tmp_path).gate).promote is True


@pytest.mark.parametrize(
    ("challenger_new", "champion_new", "challenger_old", "champion_old", "promote", "failed_on"),
    [
        (0.75, 0.5, 0.5, 0.5, True, ()),
        (0.5, 0.5, 0.5, 0.5, True, ()),
        (0.5, 0.75, 0.5, 0.5, False, (NEW_SLICE,)),
        (0.75, 0.5, 0.375, 0.5, True, ()),  # drop 0.125 == max_forgetting
        (0.75, 0.5, 0.25, 0.5, False, (FORGETTING,)),  # drop 0.25 > max_forgetting: forgetting alone
        (0.25, 0.75, 0.25, 0.75, False, (NEW_SLICE, FORGETTING)),
    ],
)
def test_truth_table(
    tmp_path: Path,
    challenger_new: float,
    champion_new: float,
    challenger_old: float,
    champion_old: float,
    promote: bool,
    failed_on: tuple[str, ...],
) -> None:
    decision = decide(
        scores(new=challenger_new, old=challenger_old),
        scores(new=champion_new, old=champion_old),
        NEW,
        gate_settings(tmp_path, min_delta=0.0, max_forgetting=0.125).gate,
    )
    check_shape(decision)
    assert decision.promote is promote
    assert decision.failed_on == failed_on


def test_decision_label_and_summary() -> None:
    assert Decision(True, ["fine"]).label == "promote"
    assert Decision(False, ["bad", "worse"]).label == "reject"
    assert Decision(False, ["bad", "worse"]).summary() == "reject: bad; worse"
    assert Decision(True, ["fine"]).summary() == "promote: fine"


def test_reasons_use_readable_slice_names(tmp_path) -> None:
    settings = Settings(workspace=tmp_path, max_forgetting=0.125)
    challenger = {"new": {"accuracy": 0.75}, "old": {"accuracy": 0.25}}
    champion = {"new": {"accuracy": 0.5}, "old": {"accuracy": 0.5}}
    decision = decide(
        challenger, champion, "new", settings.gate, names={"new": "02-movies", "old": "01-tweets"}
    )
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
        gate_settings(tmp_path).gate,
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
        gate_settings(tmp_path).gate,
        paired=paired(0, 10),
    )
    assert decision.promote is True
    assert any(r.startswith("paired test:") and "CI" in r for r in decision.reasons)


def test_noise_can_be_allowed_by_setting(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path).model_copy(update={"require_significant_gain": False})
    decision = decide(scores(new=0.75), scores(new=0.70), NEW, settings.gate, paired=paired(1, 3))
    assert decision.promote is True
    assert any(r.startswith("paired test:") and ">= 0.05" in r for r in decision.reasons)


def test_forgetting_is_measured_from_the_best_earlier_champion(tmp_path: Path) -> None:
    # The champion of the day already lost 0.125 on `old`; a further 0.0625 stays under max_forgetting
    # against it, but not against the best champion ever (0.875 -> 0.6875 is -0.1875).
    challenger, champion = scores(new=0.75, old=0.6875), scores(new=0.5, old=0.75)
    settings = gate_settings(tmp_path, max_forgetting=0.125)
    assert decide(challenger, champion, NEW, settings.gate).promote is True
    decision = decide(challenger, champion, NEW, settings.gate, best_before={"old": 0.875})
    assert decision.promote is False
    assert any("vs best earlier champion 0.875" in r for r in decision.reasons)
    # A best_before below the champion's own score changes nothing.
    assert decide(challenger, champion, NEW, settings.gate, best_before={"old": 0.5}).promote is True


def test_no_champion_lenient_settings_accept_any_model(tmp_path: Path) -> None:
    """A user (or a benchmark) that lowers min_delta, drops significance and sets min_macro_f1_gain to
    -1 accepts even a constant model as the first champion; the reasons still give the numbers."""
    lenient = gate_settings(tmp_path).model_copy(
        update={"min_delta": -1.0, "require_significant_gain": False, "min_macro_f1_gain": -1.0}
    )
    references = ["positive"] * 67 + ["negative"] * 33
    constant = ["positive"] * 100
    decision, _ = first_decision(constant, references, references, lenient)
    assert decision.promote is True, decision.summary()
    assert "macro-F1 0.401 vs best trivial baseline" in decision.reasons[1]
    # The default settings refuse the same model.
    decision, _ = first_decision(constant, references, references, gate_settings(tmp_path))
    assert decision.promote is False


# A grown label set: the champion cannot predict the new slice's new labels.
@pytest.mark.parametrize("learned", [True, False])
@pytest.mark.parametrize("kept_old", [True, False])
@pytest.mark.parametrize("forgot_earlier", [True, False])
def test_new_labels_truth_table(tmp_path: Path, learned: bool, kept_old: bool, forgot_earlier: bool) -> None:
    """Promote only a challenger that learned the new labels beyond chance, kept the known labels on
    the new slice and forgot no earlier slice; the reasons say what the champion could not do."""
    split = NewLabelScores(
        labels=("outage",),
        label_count=4,  # chance 0.25
        new_rows=16,
        challenger_new=0.75 if learned else 0.25,
        old_rows=48,
        challenger_old=0.875 if kept_old else 0.625,
        champion_old=0.875,
    )
    challenger = scores(new=0.875, a=0.625 if forgot_earlier else 0.875)
    champion = scores(new=0.625, a=0.875)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path).gate, new_labels=split)
    check_shape(decision)
    assert decision.promote == (learned and kept_old and not forgot_earlier)
    assert "'outage': the champion cannot predict them (16 of 64 rows" in decision.reasons[1]
    assert "ceiling on the new slice is 0.750" in decision.reasons[1]
    assert (NEW_SLICE in decision.failed_on) == (not learned)
    assert (FORGETTING in decision.failed_on) == (not kept_old or forgot_earlier)


def test_every_new_label_must_be_learned_not_only_their_pool(tmp_path: Path) -> None:
    """Right on a frequent new label and never on a rare one: the pool beats chance, the rare label
    does not, and the challenger is refused with the label named; few test rows are said."""
    split = NewLabelScores(
        labels=("outage", "refund"),
        label_count=4,
        new_rows=40,
        challenger_new=0.9,
        old_rows=40,
        challenger_old=0.9,
        champion_old=0.9,
        per_label=(("outage", 36, 1.0), ("refund", 4, 0.0)),
    )
    challenger, champion = scores(new=0.9, a=0.9), scores(new=0.45, a=0.9)
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path).gate, new_labels=split)
    check_shape(decision)
    assert decision.promote is False and NEW_SLICE in decision.failed_on
    assert "not learned beyond chance: 'refund' 0.000 on 4 row(s)" in decision.summary()
    assert "few test rows to judge new label(s) on: 'refund' (4)" in decision.summary()

    learned = replace(split, per_label=(("outage", 36, 1.0), ("refund", 4, 0.5)))
    decision = decide(challenger, champion, NEW, gate_settings(tmp_path).gate, new_labels=learned)
    assert decision.promote is True, decision.summary()
