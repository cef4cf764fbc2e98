from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.evaluation.contracts import Scores
from perennial.evaluation.gate import Decision
from perennial.pipeline import decide_step


@task(name="gate", cache_policy=NONE)
def gate(settings: Settings, scores: Scores, judge_labels: bool = True) -> Decision:
    """Promote or reject, with reasons."""
    return decide_step.gate(settings, scores, judge_labels)
