"""Helpers for tests that run perennial as separate processes: environment, ports, waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def tiny_cli_env(workspace: Path, model: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without its perennial, Prefect or MLflow settings, pointed at a fresh
    workspace that trains the tiny model quickly; `overrides` are more PERENNIAL_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERENNIAL_", "PREFECT_", "MLFLOW_"))}
    env.pop("HF_HOME", None)
    env.update(
        {
            "PERENNIAL_WORKSPACE": str(workspace),
            "PERENNIAL_BASE_MODEL": str(model),
            "PERENNIAL_MAX_LENGTH": "32",
            "PERENNIAL_EPOCHS": "3",
            "PERENNIAL_BATCH_SIZE": "16",
            "PERENNIAL_LEARNING_RATE": "0.005",
            "PERENNIAL_MIN_ROWS": "20",
            "PERENNIAL_TEST_FRACTION": "0.25",  # as the `settings` fixture (tests/conftest.py) says why
            "PERENNIAL_INBOX_SETTLE_SECONDS": "0.2",
            "PERENNIAL_TRAIN_PRECISION": "float32",  # as the `settings` fixture: the same on every CPU
        }
    )
    env.update({f"PERENNIAL_{key.upper()}": value for key, value in overrides.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """Call `check` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def answers(url: str, timeout: float = 5) -> bool:
    """Whether a GET of `url` comes back 200 (False while the server is not up)."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=timeout).status_code == 200
    return False


def stop_group(process: subprocess.Popen, first: int = signal.SIGINT, grace: float = 30) -> str | None:
    """Send `first` to a process started with `start_new_session=True` and all its children (a server's
    workers), wait up to `grace` seconds, then SIGKILL what is left: nothing may outlive the test.
    Returns the process's output when it was piped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        out, _ = process.communicate(timeout=grace)
        return out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
