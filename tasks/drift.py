from prefect import task
from prefect.cache_policies import NONE

from perennial.core.settings import Settings
from perennial.monitoring import drift_check as monitoring
from perennial.monitoring.drift_check import DriftSummary


@task(name="check-drift", cache_policy=NONE)
def check_drift(settings: Settings, can_trigger: bool) -> DriftSummary:
    """Recent monitored inputs against the champion's reference: tests, report, decision."""
    return monitoring.check_drift(settings, can_trigger=can_trigger)
