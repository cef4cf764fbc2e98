"""One Prefect test harness (a throwaway local API and database) for the whole session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perennial.config import Settings

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _drop(settings: Settings, fixture: str, name: str | None = None) -> Path:
    target = settings.inbox / (name or fixture)
    shutil.copyfile(DATA / fixture, target)
    return target


@pytest.fixture
def drop() -> Callable[..., Path]:
    """Copy a fixture batch into the inbox, as a user would drop a file."""
    return _drop


@pytest.fixture
def cli_env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERENNIAL_", "PREFECT_", "MLFLOW_"))}
    env.pop("HF_HOME", None)
    env.update(
        {
            "PERENNIAL_WORKSPACE": str(tmp_path / "ws"),
            "PERENNIAL_BASE_MODEL": str(tiny_model_dir),
            "PERENNIAL_MAX_LENGTH": "32",
            "PERENNIAL_EPOCHS": "2",
            "PERENNIAL_BATCH_SIZE": "16",
            "PERENNIAL_LEARNING_RATE": "0.001",
            "PERENNIAL_MIN_ROWS": "20",
            "PERENNIAL_MIN_ACCURACY": "0",
        }
    )
    return env
