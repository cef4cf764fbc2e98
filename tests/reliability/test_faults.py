"""Faults: a real `perennial run` process killed (SIGKILL) at every stage of a cycle, or hitting a full
disk while writing the model; then the next run. Afterwards every batch is decided exactly once,
nothing is lost, and `models:/<name>@champion` loads and predicts at every moment in between."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import champion_predicts, open_runs, run_cli
from perennial.core.faults import ENV, POINTS
from perennial.core.settings import Settings
from perennial.data.ledger import ACCEPTED
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import alias_history
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]

# (point, action): a kill at every point, and a full disk where models are written.
FAULTS = [(point, "kill") for point in POINTS] + [("model-saving", "enospc"), ("registered", "enospc")]


def assert_every_batch_decided_once(settings: Settings, batches: int) -> None:
    ledger = ledger_for(settings)
    recorded = ledger.batches()
    assert len(recorded) == batches, [b.source for b in recorded]  # none lost, none doubled
    assert all(b.status in ACCEPTED for b in recorded), [(b.source, b.status) for b in recorded]
    per_batch = Counter(c.batch_id for c in ledger.cycles())
    assert per_batch == Counter({b.batch_id: 1 for b in recorded}), per_batch
    assert not list(settings.inbox.iterdir())
    decided = {c.challenger_version for c in ledger.cycles()}
    champ = registry.champion(settings)
    for row in registry.list_versions(settings):
        if row["version"] not in decided:  # left by the killed run: marked, never serving
            assert row["tags"].get("decision") == "interrupted", row
            assert "champion" not in row["aliases"], row
    assert champ is not None and champ.version in decided
    assert alias_history(settings)[-1].to_version == champ.version  # the history agrees
    assert open_runs(settings) == []  # no MLflow run left RUNNING by the dead process


@pytest.mark.parametrize(("point", "action"), FAULTS, ids=[f"{p}-{a}" for p, a in FAULTS])
def test_a_run_stopped_at_any_point_is_finished_exactly_once_by_the_next_run(
    point: str,
    action: str,
    lenient: Settings,
    run_env: dict[str, str],
    first_champion: Callable[[], str],
    drop: Callable[..., Path],
    tmp_path: Path,
) -> None:
    v1 = first_champion()
    drop(lenient, "films.jsonl")

    stopped = run_cli(run_env, tmp_path, **{ENV: f"{point}:{action}"})

    output = stopped.stdout + stopped.stderr
    if action == "kill":
        assert stopped.returncode == -signal.SIGKILL, output[-3000:]
    else:
        assert stopped.returncode == 1, output[-3000:]
        assert "No space left on device" in output
        assert registry.champion(lenient).version == v1  # a full disk never promotes
    serving = champion_predicts(lenient)  # right after the crash: the champion still serves
    assert serving in (v1, str(int(v1) + 1))

    again = continual_training(lenient, return_state=True)

    assert again.is_completed(), again.message
    assert_every_batch_decided_once(lenient, batches=2)
    champion_predicts(lenient)


def test_an_unhandled_point_name_does_nothing(
    lenient: Settings, run_env: dict[str, str], drop: Callable[..., Path], tmp_path: Path
) -> None:
    """The hook is inert unless it names a real point: a normal run with a stray value completes."""
    drop(lenient, "reviews.csv")
    done = run_cli(run_env, tmp_path, **{ENV: "no-such-point"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert_every_batch_decided_once(lenient, batches=1)
