"""One Prefect test harness (a throwaway local API and database) for the whole session."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import tiny_cli_env  # tests/integration is on sys.path

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
    return tiny_cli_env(tmp_path / "ws", tiny_model_dir)
