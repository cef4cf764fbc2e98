"""Helpers for the reliability suite: a gate that always promotes, `perennial run` in a subprocess on
the session's Prefect server, and the checks every fault test ends with."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from perennial.registry import mlflow_registry as registry
from processes import tiny_cli_env

# Every evaluated challenger is promoted: the tests are about what happens around the decision.
LENIENT = {
    "min_delta": -1.0,
    "max_forgetting": 1.0,
    "require_significant_gain": False,
    "min_macro_f1_gain": -1.0,
}
SAMPLE_TEXTS = ["a lovely, warm film", "dull and far too long"]


@pytest.fixture
def lenient(settings: Settings) -> Settings:
    return settings.model_copy(update=LENIENT)


@pytest.fixture
def run_env(settings: Settings, pretrained_tiny_model_dir: Path, prefect_harness: None) -> dict[str, str]:
    """Environment for `perennial run` subprocesses: the same workspace and settings as `lenient`,
    on the session's Prefect server (no temporary server per process)."""
    from prefect.settings import get_current_settings

    env = tiny_cli_env(settings.root, pretrained_tiny_model_dir, **{k: str(v) for k, v in LENIENT.items()})
    env["PREFECT_API_URL"] = str(get_current_settings().api.url)
    return env


def run_cli(env: dict[str, str], cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perennial.cli", *(args or ("run",))],
        env={**env, **extra}, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def champion_predicts(settings: Settings) -> str:
    """Load `models:/<name>@champion` the way a server would and predict; returns its version."""
    import mlflow

    champ = registry.champion(settings)
    assert champ is not None, "no champion"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@champion")
    labels = set(model.predict(SAMPLE_TEXTS)["label"])
    assert labels <= {"negative", "positive"}, labels
    return champ.version


def open_runs(settings: Settings) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(registry.EXPERIMENT_NAME)
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
    return [r.info.run_id for r in runs]


@pytest.fixture
def first_champion(lenient: Settings, drop: Callable[..., Path]) -> Callable[[], str]:
    """Train and promote v1 on reviews.csv in this process; returns a callable giving its version."""

    def make() -> str:
        from perennial.flows.continual_training import continual_training

        drop(lenient, "reviews.csv")
        state = continual_training(lenient, return_state=True)
        assert state.is_completed(), state.message
        return champion_predicts(lenient)

    return make
