from typing import cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from perennial.core.progress import listening
from perennial.core.settings import Settings
from perennial.evaluation.contracts import Challenger
from perennial.pipeline import train_step


@task(name="train", cache_policy=NONE)
def train(settings: Settings, batch_id: str, attempt: int = 1) -> Challenger:
    """Fine-tune a challenger warm-started from the champion, with replay (attempt 2: the retry).
    Prefect's UI shows how far it got: a progress artifact `training-progress`, updated about every
    5% of the steps and at each epoch's end."""
    with listening(_ProgressArtifact(f"training the challenger for batch {batch_id} (attempt {attempt})")):
        return train_step.train_challenger(settings, batch_id, attempt)


class _ProgressArtifact:
    """Created at the first report (a run that fails before training shows none), then updated."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.artifact_id: UUID | None = None
        self.failed = False

    def __call__(self, percent: float, description: str) -> None:
        if self.failed:  # the API did not take the first one: no retry at every step
            return
        self.failed = True  # until this call succeeds
        text = f"{self.title}: {description}"
        if self.artifact_id is None:
            created = create_progress_artifact(percent, key="training-progress", description=text)
            self.artifact_id = cast(UUID, created)  # typed for async callers too; a sync task gets the id
        else:
            update_progress_artifact(self.artifact_id, percent, description=text)
        self.failed = False
