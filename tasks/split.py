from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.pipeline import intake


@task(name="split", retries=1, cache_policy=NONE)
def split(settings: Settings, batch_id: str) -> dict[str, int]:
    """Stratified, seeded train/val/test Parquet for the batch."""
    return intake.split(settings, batch_id)
