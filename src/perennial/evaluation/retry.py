"""A second attempt when the gate rejects a challenger only for forgetting.

A gate that refuses every forgetful challenger, with nothing better to offer, leaves a stale champion:
the pipeline stops learning. So when the first challenger is good on the new slice but loses an
earlier one, the cycle trains once more with a recipe that protects the old slices: replay on
(`retry_replay_ratio` memory rows per new row, at least the usual ratio) and the result averaged with
the champion it started from (WiSE-FT). When the batch brings classes the champion never trained on,
the retry does not average: measured on TREC classes, averaging with a champion that knows nothing
of the new classes learns them only half-way (replay+wise 80.6% against replay 88.6% accuracy),
whether or not their output rows are kept. The same gate, with the same thresholds, then decides; both
attempts are recorded (the first attempt's MLflow run is tagged `retried`, the decision's reasons
start with what the first attempt failed on, and the model card shows them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perennial.core.messages import one_line
from perennial.evaluation.contracts import Challenger
from perennial.evaluation.gate import FORGETTING, Decision
from perennial.evaluation.label_check import DRIFT_READING

if TYPE_CHECKING:
    from perennial.core.settings import Settings


def should_retry(settings: Settings, decision: Decision, challenger: Challenger) -> bool:
    """Retry only a rejection for forgetting alone (not the new slice, not contradicting labels), of
    a challenger warm-started from a champion, once, when `retry_on_forgetting` is on."""
    return (
        settings.retry_on_forgetting
        and not decision.promote
        and list(decision.failed_on) == [FORGETTING]
        and challenger.champion_version is not None
        and settings.strategy != "joint"  # joint starts from the base model: nothing to average with
        and challenger.attempt == 1
        and changes_something(settings, challenger)
    )


def changes_something(settings: Settings, challenger: Challenger | None = None) -> bool:
    """Whether the recipe differs from the settings: the same seeds would train the same model."""
    return any(getattr(settings, key) != value for key, value in retry_recipe(settings, challenger).items())


def retry_recipe(settings: Settings, challenger: Challenger | None = None) -> dict:
    """The setting changes of the protective second attempt for this first challenger."""
    recipe: dict = {
        "strategy": "replay",
        "replay_ratio": max(settings.replay_ratio, settings.retry_replay_ratio),
    }
    if not (challenger and challenger.new_classes):
        recipe["merge"] = "wise"
    return recipe


def retry_settings(settings: Settings, challenger: Challenger | None = None) -> Settings:
    return settings.model_copy(update=retry_recipe(settings, challenger))


def describe_recipe(settings: Settings, challenger: Challenger | None = None) -> str:
    recipe = retry_recipe(settings, challenger)
    text = f"replay {recipe['replay_ratio']:g} memory rows per new row"
    if recipe.get("merge") == "wise":
        return f"{text}, averaged with the champion (wise_alpha {settings.wise_alpha:g})"
    new = ", ".join(challenger.new_classes if challenger else ())
    return f"{text}, not averaged (the champion never trained on {new})"


def first_attempt_reasons(settings: Settings, first: Challenger, decision: Decision) -> list[str]:
    """Lines for the final decision's reasons: what the first attempt was and why it was retried,
    and, when its labels contradicted the champion, why they were read as drift (the retry does not
    judge the labels again: they are the same rows)."""
    failed = "; ".join(r for r in decision.reasons if r.startswith("forgets slice")) or "forgetting"
    return [
        f"attempt 1 ({first.strategy}, run {first.run_id}) rejected for forgetting ({failed}); "
        f"attempt 2 retrained with {describe_recipe(settings, first)}",
        *(r for r in decision.reasons if r.startswith(DRIFT_READING)),
    ]


def with_failed_retry(decision: Decision, error: BaseException) -> Decision:
    """The first attempt's rejection, with why the retry could not replace it."""
    return decision.with_reasons(after=[f"retry failed, first attempt kept: {one_line(error)}"])
