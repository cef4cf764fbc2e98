from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.evaluation.contracts import Challenger
from perennial.pipeline import train_step


@task(name="train", cache_policy=NONE)
def train(settings: Settings, batch_id: str, attempt: int = 1) -> Challenger:
    """Fine-tune a challenger warm-started from the champion, with replay (attempt 2: the retry)."""
    return train_step.train_challenger(settings, batch_id, attempt)
