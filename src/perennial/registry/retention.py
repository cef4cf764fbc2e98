"""Retention: how many model copies a workspace keeps, so disk use does not grow ~90 MB per cycle.

Two stores hold a version's weights:

* the registry's artifact store. A rejected (or interrupted) challenger's files are deleted once
  `keep_rejected_models` newer rejected versions exist. Its registry record stays: tags, reasons,
  metrics, run, model card and lineage, so every decision can still be read; only the weights go.
* the workspace's local copies (`models/v<N>`), a cache of the registry. Kept for the versions that
  have an alias and the latest promoted one; any other comes back from the registry when needed
  (`perennial.registry.champion.champion_model_dir` downloads a missing copy).

Never touched, whatever the settings: a version with an alias (champion, challenger) and the latest
promoted version (the one a rollback of a bad alias move would want).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from perennial.core.settings import Settings
from perennial.evaluation.gate import PROMOTE, REJECT

log = logging.getLogger(__name__)

FILES_TAG = "model_files"
DELETED = "deleted"
# Versions that never served: rejected by the gate, or left by a cycle that stopped before deciding.
PRUNABLE_DECISIONS = frozenset({REJECT, "interrupted"})


@dataclass(frozen=True)
class RetentionPlan:
    delete_files: list[str]  # versions whose registry files go
    drop_local: list[str]  # versions whose local copy goes


def _number(row: dict) -> int:
    return int(row["version"])


def latest_promoted(versions: Sequence[dict]) -> str | None:
    promoted = [row for row in versions if row["tags"].get("decision") == PROMOTE]
    return str(max(promoted, key=_number)["version"]) if promoted else None


def plan_retention(versions: Sequence[dict], keep_rejected: int, local: Sequence[str]) -> RetentionPlan:
    """Which files to delete, from `registry.list_versions` rows and the versions copied locally.

    Pure: the policy in one place, testable without a registry."""
    protected = {row["version"] for row in versions if row["aliases"]}
    newest_promoted = latest_promoted(versions)
    if newest_promoted is not None:
        protected.add(newest_promoted)
    never_served = sorted(
        (row for row in versions if row["tags"].get("decision") in PRUNABLE_DECISIONS),
        key=_number,
        reverse=True,
    )
    delete = [
        row["version"]
        for row in never_served[keep_rejected:]
        if row["version"] not in protected and row["tags"].get(FILES_TAG) != DELETED
    ]
    drop_local = [version for version in local if version not in protected]
    return RetentionPlan(delete_files=sorted(delete, key=int), drop_local=sorted(drop_local, key=int))


def local_versions(settings: Settings) -> list[str]:
    if not settings.models_dir.is_dir():
        return []
    return [
        path.name[1:]
        for path in settings.models_dir.iterdir()
        if path.is_dir() and path.name.startswith("v") and path.name[1:].isdigit()
    ]


def apply_retention(settings: Settings) -> RetentionPlan:
    """Delete what the policy allows; returns what was deleted. Call under the workspace lock.

    Files are deleted before the version is tagged, so a stop in between only means the next
    cycle deletes (nothing) again; a tag never claims files are gone while they are not."""
    from perennial.registry import mlflow_registry as registry

    policy = settings.retention
    if not policy.prune_rejected_models:
        return RetentionPlan([], [])
    versions = registry.list_versions(settings)
    plan = plan_retention(versions, policy.keep_rejected_models, local_versions(settings))
    for version in plan.drop_local:
        shutil.rmtree(settings.models_dir / f"v{version}", ignore_errors=True)
    for version in plan.delete_files:
        location = registry.delete_model_files(settings, version)
        registry.set_version_tags(
            settings,
            version,
            {
                FILES_TAG: DELETED,
                f"{FILES_TAG}_reason": f"retention keeps the {policy.keep_rejected_models} newest "
                f"rejected challengers' model files; deleted from {location}",
            },
        )
        log.info("retention: deleted the model files of rejected v%s", version)
    return plan


def files_deleted(tags: dict[str, str]) -> bool:
    return tags.get(FILES_TAG) == DELETED
