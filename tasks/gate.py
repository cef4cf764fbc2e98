from prefect import task
from prefect.cache_policies import NONE

from perennial import cycle
from perennial.config import Settings


@task(name="gate", cache_policy=NONE)
def gate(settings: Settings, scores: dict, judge_labels: bool = True) -> dict:
    """Promote or reject, with reasons."""
    return cycle.gate(settings, scores, judge_labels)
