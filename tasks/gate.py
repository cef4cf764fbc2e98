from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.pipeline import cycle_steps as cycle


@task(name="gate", cache_policy=NONE)
def gate(settings: Settings, scores: dict, judge_labels: bool = True) -> dict:
    """Promote or reject, with reasons."""
    return cycle.gate(settings, scores, judge_labels)
