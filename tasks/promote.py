from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.evaluation.contracts import Challenger, Outcome, Scores
from perennial.evaluation.gate import Decision
from perennial.pipeline import decide_step


@task(name="promote", cache_policy=NONE)
def promote(
    settings: Settings, batch_id: str, challenger: Challenger, scores: Scores, decision: Decision
) -> Outcome:
    """Register the challenger; move the champion alias only on a promote decision."""
    return decide_step.promote(settings, batch_id, challenger, scores, decision)
