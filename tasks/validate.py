from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.pipeline import intake


@task(name="validate", cache_policy=NONE)
def validate(settings: Settings, batch_id: str) -> intake.BatchValidation:
    """Great Expectations suite; a failing batch is quarantined and this task fails with the reason."""
    return intake.validate_batch(settings, batch_id)
