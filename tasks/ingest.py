from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.data.ingest import IngestResult
from perennial.pipeline import intake


@task(name="ingest", retries=2, retry_delay_seconds=2, cache_policy=NONE)
def ingest_inbox(settings: Settings) -> list[IngestResult]:
    """Hash, record and store every inbox file (file I/O, so it retries)."""
    return intake.ingest_inbox(settings)


@task(name="pending-batches", cache_policy=NONE)
def pending_batches(settings: Settings) -> list[str]:
    return intake.pending_batches(settings)
