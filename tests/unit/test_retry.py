"""When a cycle tries a second, protective recipe: only after a rejection for forgetting alone."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.evaluation.contracts import Challenger
from perennial.evaluation.gate import FORGETTING, LABELS, NEW_SLICE, Decision
from perennial.evaluation.label_check import DRIFT_READING
from perennial.evaluation.retry import (
    first_attempt_reasons,
    retry_recipe,
    retry_settings,
    should_retry,
    with_failed_retry,
)
from perennial.learning.strategy import Strategy

pytestmark = pytest.mark.usefixtures("no_outside_settings")

FAILURES = [(), (FORGETTING,), (NEW_SLICE,), (NEW_SLICE, FORGETTING), (FORGETTING, LABELS)]


def trained(
    champion_version: str | None = "1", attempt: int = 1, new_classes: tuple[str, ...] = (), **facts
) -> Challenger:
    facts = {"batch_id": "b", "run_id": "r", "model_dir": "m", **facts}
    return Challenger(champion_version=champion_version, attempt=attempt, new_classes=new_classes, **facts)


@pytest.mark.parametrize(
    ("promote", "failed_on", "champion", "setting", "strategy", "attempt"),
    list(
        itertools.product(
            [True, False], FAILURES, ["1", None], [True, False], ["replay", "naive", "joint"], [1, 2]
        )
    ),
)
def test_truth_table(
    tmp_path: Path,
    promote: bool,
    failed_on: tuple[str, ...],
    champion: str | None,
    setting: bool,
    strategy: str,
    attempt: int,
) -> None:
    settings = Settings(workspace=tmp_path, retry_on_forgetting=setting, strategy=strategy)
    decision = Decision(promote, [], failed_on)
    challenger = trained(champion, attempt)
    expected = (
        setting
        and not promote
        and failed_on == (FORGETTING,)
        and champion is not None
        and strategy != "joint"
        and attempt == 1
    )
    assert should_retry(settings, decision, challenger) is expected


def test_a_rejection_that_names_no_failure_is_never_retried(tmp_path: Path) -> None:
    decision = Decision(False, ["forgets slice a"])
    assert not should_retry(Settings(workspace=tmp_path), decision, trained())


@pytest.mark.parametrize(
    ("ratio", "retry_ratio", "expected"), [(1.0, 2.0, 2.0), (3.0, 2.0, 3.0), (0.5, 1.5, 1.5)]
)
def test_the_recipe_replays_more_and_averages_with_the_champion(
    tmp_path: Path, ratio: float, retry_ratio: float, expected: float
) -> None:
    settings = Settings(
        workspace=tmp_path, strategy="naive", replay_ratio=ratio, retry_replay_ratio=retry_ratio
    )
    assert retry_recipe(settings) == {"strategy": "replay", "replay_ratio": expected, "merge": "wise"}
    retried = retry_settings(settings)
    assert Strategy.from_settings(retried) == Strategy("replay", settings.regularizer, merge="wise")
    assert retried.replay_ratio == expected and retried.workspace == settings.workspace
    # Everything else, the gate's thresholds included, is the user's.
    assert retried.max_forgetting == settings.max_forgetting and retried.min_delta == settings.min_delta


def test_a_batch_with_classes_new_to_the_champion_is_retried_without_averaging(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, replay_ratio=1.0, retry_replay_ratio=2.0)
    challenger = trained(new_classes=("NUM", "ABBR"), strategy="replay+lwf")
    assert retry_recipe(settings, challenger) == {"strategy": "replay", "replay_ratio": 2.0}
    retried = retry_settings(settings, challenger)
    assert Strategy.from_settings(retried) == Strategy(
        "replay", settings.regularizer
    )  # merge as the user set
    assert retried.replay_ratio == 2.0
    rejected = Decision(False, ["forgets slice a: 0.8 vs champion 0.9"], (FORGETTING,))
    assert should_retry(settings, rejected, challenger)
    [reason] = first_attempt_reasons(settings, challenger, rejected)
    assert reason.endswith(
        "replay 2 memory rows per new row, not averaged (the champion never trained on NUM, ABBR)"
    )
    # Already replaying at the retry's ratio, with nothing to average: the same model again, no retry.
    same = settings.model_copy(update={"replay_ratio": 2.0})
    assert not should_retry(same, rejected, challenger)
    assert should_retry(same, rejected, trained())  # averaging still changes it


def test_the_first_attempt_leads_the_final_reasons(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path)
    first = trained(run_id="abc123", strategy="replay")
    rejected = Decision(
        False, ["new slice b: 0.900 vs champion 0.700", "forgets slice a: 0.600 vs champion 0.800"]
    )
    [reason] = first_attempt_reasons(settings, first, rejected)
    assert reason.startswith("attempt 1 (replay, run abc123) rejected for forgetting (forgets slice a")
    assert "attempt 2 retrained with replay 2 memory rows per new row" in reason
    final = Decision(True, ["new slice b: ok"]).with_reasons(before=[reason])
    assert final.reasons == [reason, "new slice b: ok"] and final.promote is True


def test_a_drift_reading_of_the_first_attempt_is_carried_to_the_final_reasons(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path)
    note = f"{DRIFT_READING} on b read as drift, not bad labels: ..."
    rejected = Decision(False, ["forgets slice a: 0.85 vs champion 0.9", note])
    reasons = first_attempt_reasons(settings, trained(strategy="replay"), rejected)
    assert len(reasons) == 2 and reasons[0].startswith("attempt 1 (replay, run r)") and reasons[1] == note


def test_no_retry_when_the_recipe_is_already_what_ran(tmp_path: Path) -> None:
    decision = Decision(False, [], (FORGETTING,))
    same = Settings(workspace=tmp_path, strategy="replay", merge="wise", replay_ratio=2.0)
    assert not should_retry(same, decision, trained())  # the same seeds: the same model
    assert should_retry(same.model_copy(update={"replay_ratio": 1.0}), decision, trained())


def test_a_failed_retry_keeps_the_first_rejection_and_says_why() -> None:
    decision = Decision(False, ["forgets slice a: 0.5 vs champion 0.9"], (FORGETTING,))
    kept = with_failed_retry(decision, MemoryError("out of memory\nwhile averaging"))
    assert kept.promote is False and kept.reasons[0] == decision.reasons[0]
    assert kept.failed_on == (FORGETTING,)
    assert kept.reasons[1] == "retry failed, first attempt kept: out of memory while averaging"
