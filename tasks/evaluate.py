from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.evaluation.contracts import Challenger, Scores
from perennial.pipeline import evaluate_step


@task(name="evaluate", cache_policy=NONE)
def evaluate(settings: Settings, batch_id: str, challenger: Challenger) -> Scores:
    """Challenger and champion on the new test slice and every earlier one."""
    return evaluate_step.evaluate_challenger(settings, batch_id, challenger)
