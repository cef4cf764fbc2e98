"""Flipped labels on a rejected batch: the champion-disagreement check, the flag in the ledger, and
the flagged batch left out of replay, joint training and evaluation. No model, no MLflow: the
champion is simulated by class probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from perennial import workspace
from perennial.core.settings import Settings
from perennial.data.batch_store import split_path
from perennial.data.ledger import PROMOTED, REJECTED_MODEL, TRAINED, Ledger
from perennial.evaluation.contracts import Challenger, Scores
from perennial.evaluation.gate import FORGETTING, LABELS, Decision
from perennial.evaluation.label_check import (
    CONFIDENT,
    DRIFT_READING,
    FIT_MARGIN,
    FLAG_LEFT_OUT,
    FLAG_MARGIN,
    FLAG_MIN_SHARE,
    FLAG_RATIO,
    ChallengerFit,
    LabelCheck,
    LabelVerdict,
    challenger_fit,
    check_labels,
    confident_errors,
)
from perennial.evaluation.retry import should_retry
from perennial.pipeline import decide_step, evaluate_step, train_step
from perennial.reporting.status import format_status

ALPHA = 0.05


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERENNIAL_CONFIG", raising=False)
    return Settings(workspace=tmp_path / "ws", replay_memory_size=1000)


def champion_probabilities(references: np.ndarray, sureness: tuple[float, float], seed: int) -> np.ndarray:
    """Two-class probabilities of a simulated, calibrated champion: per row a confidence c drawn from
    Beta(*sureness), and the champion is right with probability c (so on a domain it knows, c is
    mostly high; on an unfamiliar one, mostly low)."""
    rng = np.random.default_rng(seed)
    n = len(references)
    top = np.clip(rng.beta(*sureness, size=n), 0.5, 0.999)
    right = rng.random(n) < top
    predicted = np.where(right, references, 1 - references)
    probabilities = np.empty((n, 2))
    probabilities[np.arange(n), predicted] = top
    probabilities[np.arange(n), 1 - predicted] = 1 - top
    return probabilities


KNOWN = (20.0, 1.0)  # mean sureness ~0.95: a domain the champion was trained on
UNFAMILIAR = (3.0, 2.0)  # mean ~0.6


def check_of(new_refs: np.ndarray, new_probs: np.ndarray, old_refs: np.ndarray, old_probs: np.ndarray):
    new, old = confident_errors(new_probs, new_refs), confident_errors(old_probs, old_refs)
    return LabelCheck("1", CONFIDENT, new[0], new[1], old[0], old[1])


def old_slice(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    references = np.random.default_rng(seed).integers(0, 2, 400)
    return references, champion_probabilities(references, KNOWN, seed + 1)


# The rule.


def test_flipped_labels_are_flagged() -> None:
    old_refs, old_probs = old_slice()
    references = np.random.default_rng(5).integers(0, 2, 120)
    probabilities = champion_probabilities(references, KNOWN, 6)  # the champion knows this domain
    flipped = references.copy()
    flip = np.random.default_rng(7).random(len(flipped)) < 0.4
    flipped[flip] = 1 - flipped[flip]
    check = check_of(flipped, probabilities, old_refs, old_probs)
    assert check.flagged(ALPHA)
    assert check.new_rate >= 0.3 and check.usual_rate < 0.05
    reason = check_labels(check, "films", Settings(significance_level=ALPHA).gate).flag
    assert reason is not None
    assert reason.startswith("labels disagree with the champion: v1 is confident")
    assert "films" in reason and reason.endswith(FLAG_LEFT_OUT) and "\n" not in reason
    # The same rows with their true labels are not.
    assert not check_of(references, probabilities, old_refs, old_probs).flagged(ALPHA)


@pytest.mark.parametrize("seed", range(5))
def test_plain_drift_is_not_flagged(seed: int) -> None:
    # A new domain: the champion drops from ~0.95 to ~0.65 accuracy, and is sure of fewer rows.
    old_refs, old_probs = old_slice(seed)
    references = np.random.default_rng(seed + 10).integers(0, 2, 300)
    probabilities = champion_probabilities(references, UNFAMILIAR, seed + 11)
    check = check_of(references, probabilities, old_refs, old_probs)
    assert (references != probabilities.argmax(axis=1)).mean() > 0.3  # far worse than on old slices
    assert not check.flagged(ALPHA)
    assert check_labels(check, "films", Settings(significance_level=ALPHA).gate) == LabelVerdict()


def test_each_part_of_the_rule_is_needed() -> None:
    usual = LabelCheck("1", CONFIDENT, 0, 0, 1000, 49)  # usual rate 50/1002 ~ 5%
    # Significant and +10 points but short of 2x? Not possible at 5%; at 20% usual, +10 points is 1.5x.
    high_usual = LabelCheck("1", CONFIDENT, 2000, 600, 1000, 199)  # 30% vs 20%: p tiny, 1.5x
    assert high_usual.p_value < 1e-6 and not high_usual.flagged(ALPHA)
    # Twice the usual rate but only +5 points.
    small = LabelCheck("1", CONFIDENT, 4000, 400, 1000, 49)  # 10% vs 5%
    assert small.p_value < 1e-6 and small.new_rate >= FLAG_RATIO * small.usual_rate
    assert not small.flagged(ALPHA)
    # Big effect on too few rows: not significant.
    few = LabelCheck("1", CONFIDENT, 2, 1, 1000, 49)
    assert few.new_rate == 0.5 and few.p_value > ALPHA and not few.flagged(ALPHA)
    # All three: flagged.
    assert LabelCheck("1", CONFIDENT, 100, 40, 1000, 49).flagged(ALPHA)
    # ... unless the contradicted rows are a sliver of the slice (here 40 of 1000 rows: 4%).
    assert not LabelCheck("1", CONFIDENT, 100, 40, 1000, 49, new_rows=1000).flagged(ALPHA)
    assert LabelCheck("1", CONFIDENT, 100, 40, 1000, 49, new_rows=800).flagged(ALPHA)  # 5%
    # Nothing to compare with: never flagged.
    assert not LabelCheck("1", CONFIDENT, 0, 0, 1000, 49).flagged(ALPHA)
    assert not LabelCheck("1", CONFIDENT, 100, 90, 0, 0).flagged(ALPHA)
    assert usual.usual_rate == pytest.approx(50 / 1002)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    new_confident=st.integers(0, 500),
    new_wrong=st.integers(0, 500),
    earlier_confident=st.integers(0, 500),
    earlier_wrong=st.integers(0, 500),
    unconfident=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_property_a_flag_always_meets_all_four_conditions(
    new_confident: int, new_wrong: int, earlier_confident: int, earlier_wrong: int, unconfident: int | None
) -> None:
    rows = None if unconfident is None else new_confident + unconfident
    check = LabelCheck(
        "1", CONFIDENT, new_confident, min(new_wrong, new_confident), earlier_confident,
        min(earlier_wrong, earlier_confident), new_rows=rows,
    )  # fmt: skip
    if check.flagged(ALPHA):
        assert check.p_value < ALPHA
        assert check.new_rate >= FLAG_RATIO * check.usual_rate
        assert check.new_rate >= check.usual_rate + FLAG_MARGIN - 1e-9
        assert rows is None or check.new_wrong >= FLAG_MIN_SHARE * rows - 1e-9
        assert f"of the slice's {rows} rows" in check.describe("films", ALPHA) or rows is None
    if check.new_wrong <= check.usual_rate * check.new_confident:
        assert not check.flagged(ALPHA)  # no more errors than usual


# Drift that looks like contradicting labels: the challenger fits the new labels and the old.


def test_a_few_confident_rows_contradicted_on_a_large_slice_are_not_a_bad_labelling() -> None:
    # Seen on TREC subtypes: the champion was sure of 2 rows of a 99-row test slice and both
    # contradicted their labels (p < 0.05 against a 6% usual rate), which dropped the whole batch
    # from the memory.
    check = LabelCheck("3", CONFIDENT, 2, 2, 300, 17, new_rows=99)
    assert check.p_value < ALPHA and check.new_rate >= FLAG_RATIO * check.usual_rate
    assert not check.flagged(ALPHA)
    assert check_labels(check, "batch-5", Settings(significance_level=ALPHA).gate) == LabelVerdict()
    # Recorded before the row count was kept: judged as before.
    assert LabelCheck("3", CONFIDENT, 2, 2, 300, 17).flagged(ALPHA)


def test_challenger_fit_truth_table() -> None:
    def fit(new: float, worst_loss: float) -> ChallengerFit:
        return ChallengerFit(usual=0.95, new=new, worst_slice="a", worst_loss=worst_loss)

    assert fit(0.90, 0.05).fits_both  # new subtypes learned, old slices kept
    assert fit(0.95 - FIT_MARGIN, FIT_MARGIN).fits_both  # the margins themselves are inside
    assert fit(0.99, -0.02).fits_both  # a gain on the old slices
    assert not fit(0.60, 0.01).fits_both  # random flips: not learnable on held-out rows
    assert not fit(0.90, 0.40).fits_both  # a systematic flip: the slice it resembles is lost
    assert not fit(0.50, 0.45).fits_both


def test_challenger_fit_judges_the_worst_earlier_slice_not_the_pool() -> None:
    # Six earlier slices; the flipped batch destroyed one (0.9 -> 0.4). Pooled, that is 8 points.
    champion = {f"s{i}": {"accuracy": 0.9, "n": 100} for i in range(6)}
    challenger = {
        **{f"s{i}": {"accuracy": 0.9, "n": 100} for i in range(5)},
        "s5": {"accuracy": 0.4, "n": 100},
    }
    champion["new"], challenger["new"] = {"accuracy": 0.2, "n": 100}, {"accuracy": 0.85, "n": 100}
    fit = challenger_fit(challenger, champion, "new")
    assert fit is not None and fit.worst_slice == "s5" and fit.worst_loss == pytest.approx(0.5)
    assert fit.usual == pytest.approx(0.9) and fit.new == 0.85
    assert not fit.fits_both


def test_challenger_fit_pools_the_usual_accuracy_by_rows() -> None:
    champion = {"a": {"accuracy": 1.0, "n": 300}, "b": {"accuracy": 0.5, "n": 100}}
    challenger = {"a": {"accuracy": 0.9, "n": 300}, "b": {"accuracy": 0.9, "n": 100}}
    champion["new"], challenger["new"] = {"accuracy": 0.2, "n": 50}, {"accuracy": 0.8, "n": 50}
    fit = challenger_fit(challenger, champion, "new")
    assert fit == ChallengerFit(
        usual=pytest.approx(0.875), new=0.8, worst_slice="a", worst_loss=pytest.approx(0.1)
    )
    del champion["b"]["n"]  # a count missing: equal weights
    assert challenger_fit(challenger, champion, "new").usual == pytest.approx(0.75)
    assert challenger_fit({"new": {"accuracy": 0.8}}, {"new": {"accuracy": 0.2}}, "new") is None


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    usual=st.floats(0.0, 1.0), new=st.floats(0.0, 1.0), earlier=st.floats(0.0, 1.0),
    wrong=st.integers(0, 60),
)  # fmt: skip
def test_property_a_flag_needs_a_contradiction_and_a_failed_fit(
    usual: float, new: float, earlier: float, wrong: int
) -> None:
    check = LabelCheck("1", CONFIDENT, 60, wrong, 400, 4)
    fit = ChallengerFit(usual=usual, new=new, worst_slice="a", worst_loss=usual - earlier)
    verdict = check_labels(check, "films", Settings(significance_level=ALPHA).gate, fit)
    assert (verdict.flag is not None) == (check.flagged(ALPHA) and not fit.fits_both)
    assert (verdict.note is not None) == (check.flagged(ALPHA) and fit.fits_both)
    # Without a challenger to judge by, the champion's contradiction alone decides (as before).
    alone = check_labels(check, "films", Settings(significance_level=ALPHA).gate)
    assert (alone.flag is not None) == check.flagged(ALPHA) and alone.note is None


def test_confident_errors_counts() -> None:
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.05, 0.95], [0.9, 0.1]])
    references = np.array([0, 1, 1, 0, 0])
    assert confident_errors(probabilities, references) == (4, 2)
    assert confident_errors(np.empty((0, 2)), np.empty(0, dtype=int)) == (0, 0)


# The cycle: gate() flags, promote records, the flagged batch is left out.

FLIPPED = LabelCheck("1", CONFIDENT, 40, 30, 200, 4)
DRIFTED = LabelCheck("1", CONFIDENT, 40, 4, 200, 4)


def add_batch(ledger: Ledger, settings: Settings, n: int, status: str) -> str:
    batch_id = f"{n:016x}"
    ledger.add_batch(batch_id, f"sha-{n}", f"batch-{n}.csv", Path(f"/raw/{batch_id}.csv"), rows=30)
    ledger.transition(batch_id, TRAINED)
    ledger.record_decision(batch_id, status, None, str(n), None, "x", [], "x", {})
    for split in ("train", "val", "test"):
        path = split_path(settings, batch_id, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "batch_id": [batch_id] * 10,
                "text": [f"{split} text {i} of {batch_id}" for i in range(10)],
                "label": ["negative", "positive"] * 5,
            }
        ).to_parquet(path, index=False)
    return batch_id


def scores_for(
    new: str, old: str, label_check: LabelCheck | None, new_accuracy: float
) -> tuple[Scores, dict, dict]:
    """The scores, and the challenger's and champion's per-slice metrics (to change in place)."""
    challenger = {new: {"accuracy": new_accuracy, "macro_f1": 0.5, "n": 40}, old: {"accuracy": 0.5}}
    champion = {new: {"accuracy": 0.25, "macro_f1": 0.2, "n": 40}, old: {"accuracy": 0.9}}
    return Scores(new, challenger, champion, label_check=label_check), challenger, champion


def test_gate_flags_a_rejected_batch_with_flipped_labels_only(settings: Settings) -> None:
    ledger = workspace.ledger_for(settings)
    old = add_batch(ledger, settings, 1, PROMOTED)
    new = "00000000000000ff"
    ledger.add_batch(new, "sha-new", "films.jsonl", Path("/raw/new.jsonl"), rows=40)

    # Forgets the old slice (0.9 -> 0.5): rejected, and the labels contradict the champion.
    decision = decide_step.gate(settings, scores_for(new, old, FLIPPED, 0.9)[0])
    assert decision.promote is False
    flag = decision.label_flag
    assert flag and flag["reason"] == decision.reasons[-1]
    assert flag["reason"].startswith("labels disagree with the champion: v1 is confident")
    assert "films" in flag["reason"] and FLAG_LEFT_OUT in flag["reason"]
    assert flag["new_wrong"] == 30 and flag["p_value"] < ALPHA
    assert any(r.startswith("forgets slice batch-1") for r in decision.reasons)

    # Drift (the champion is right where it is sure): rejected for forgetting, not flagged.
    decision = decide_step.gate(settings, scores_for(new, old, DRIFTED, 0.9)[0])
    assert decision.promote is False and decision.label_flag is None
    assert not any("labels disagree" in r for r in decision.reasons)

    # Promoted: never flagged, whatever the champion thinks of the labels.
    lenient = settings.model_copy(update={"max_forgetting": 1.0})
    decision = decide_step.gate(lenient, scores_for(new, old, FLIPPED, 0.9)[0])
    assert decision.promote is True and decision.label_flag is None


def test_gate_reads_a_learnable_contradiction_as_drift_and_lets_the_retry_run(settings: Settings) -> None:
    # A subpopulation shift: the champion is confidently wrong on new subtypes (FLIPPED's numbers),
    # yet the challenger learned them (0.9) and lost only 5 points of the old slice (0.95 -> 0.90).
    ledger = workspace.ledger_for(settings)
    old = add_batch(ledger, settings, 1, PROMOTED)
    new = "00000000000000ff"
    ledger.add_batch(new, "sha-new", "subtypes.csv", Path("/raw/new.csv"), rows=40)
    scores, challenger_scores, champion_scores = scores_for(new, old, FLIPPED, 0.9)
    challenger_scores[old] = {"accuracy": 0.90, "n": 40}
    champion_scores[old] = {"accuracy": 0.95, "n": 40}
    decision = decide_step.gate(settings, scores)
    assert decision.promote is False and decision.label_flag is None
    assert decision.failed_on == (FORGETTING,)
    assert decision.reasons[-1].startswith(f"{DRIFT_READING} on subtypes read as drift")
    assert "(batch-1)" in decision.reasons[-1]  # the worst earlier slice, by its display name
    assert not any("labels disagree" in r for r in decision.reasons)
    challenger = Challenger(new, "run", "model", champion_version="1")
    assert should_retry(settings, decision, challenger)

    # The same contradiction where the challenger lost the old slice (0.95 -> 0.5): flagged, no retry.
    challenger_scores[old] = {"accuracy": 0.5, "n": 40}
    decision = decide_step.gate(settings, scores)
    assert decision.label_flag is not None and LABELS in decision.failed_on
    assert not should_retry(settings, decision, challenger)
    # A retry's gate does not judge the labels again (attempt 1 did): no flag, whatever it fits.
    decision = decide_step.gate(settings, scores, judge_labels=False)
    assert decision.label_flag is None and decision.failed_on == (FORGETTING,)


def test_a_flagged_batch_is_left_out_of_replay_joint_training_and_evaluation(settings: Settings) -> None:
    ledger = workspace.ledger_for(settings)
    first = add_batch(ledger, settings, 1, PROMOTED)
    flipped = add_batch(ledger, settings, 2, REJECTED_MODEL)
    third = add_batch(ledger, settings, 3, REJECTED_MODEL)  # rejected, not flagged: still used
    new = "00000000000000ff"
    ledger.add_batch(new, "sha-new", "new.csv", Path("/raw/new.csv"), rows=30)
    for name in ("train", "val", "test"):
        src = split_path(settings, first, name)
        dst = split_path(settings, new, name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        pd.read_parquet(src).assign(batch_id=new).to_parquet(dst, index=False)
    assert workspace.earlier_batches(settings, new) == [first, flipped, third]

    decision = Decision(False, ["r"], label_flag={"reason": "labels disagree", "k": 1})
    decide_step._record_label_flag(ledger, flipped, Decision(False, ["r"]), decision)
    flags = ledger.label_flags()
    assert list(flags) == [flipped] and flags[flipped].details == {"k": 1}

    assert workspace.earlier_batches(settings, new) == [first, third]
    assert list(evaluate_step.evaluation_slices(settings, new)) == [first, third, new]
    memory = train_step.replay_memory(settings, workspace.earlier_batches(settings, new))
    assert set(memory.rows["batch_id"]) == {first, third}

    # A retried cycle that did not flag the batch clears the flag.
    decide_step._record_label_flag(ledger, flipped, Decision(False, ["r"]), Decision(False, ["r"]))
    assert ledger.label_flags() == {}
    assert workspace.earlier_batches(settings, new) == [first, flipped, third]


def test_status_says_the_batch_was_left_out() -> None:
    reason = LabelCheck("1", CONFIDENT, 40, 30, 200, 4).describe("films", ALPHA)
    status = {
        "workspace": "/ws",
        "registered_model": "m",
        "strategy": "replay",
        "champion": None,
        "champion_history": [],
        "label_set": ["negative", "positive"],
        "champion_metrics": {},
        "batches": [
            {
                "batch_id": "b2",
                "source": "films.jsonl",
                "rows": 40,
                "status": REJECTED_MODEL,
                "model_version": "2",
                "reason": "reject: forgets slice reviews",
            }
        ],
        "label_flags": {"b2": reason},
        "continual": {"matrix": {"index": [], "columns": [], "values": []}, "summary": None},
        "drift": None,
        "cycles": [],
    }
    text = format_status(status)
    flagged = [line for line in text.splitlines() if "FLAGGED" in line]
    assert len(flagged) == 1
    assert "labels disagree with the champion" in flagged[0] and flagged[0].endswith(FLAG_LEFT_OUT)
