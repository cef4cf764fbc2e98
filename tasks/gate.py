from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.pipeline import decide_step


@task(name="gate", cache_policy=NONE)
def gate(settings: Settings, scores: dict, judge_labels: bool = True) -> dict:
    """Promote or reject, with reasons."""
    return decide_step.gate(settings, scores, judge_labels)
