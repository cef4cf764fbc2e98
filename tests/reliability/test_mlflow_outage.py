"""The MLflow tracking server goes away: before a run (it fails at once, clearly, touching nothing) and
in the middle of a cycle (the cycle fails after MLflow's retries, the batch stays to be done). When
the server is back, the next run completes the batch and the champion serves throughout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import champion_predicts, run_cli
from perennial.core.faults import ENV
from perennial.core.settings import Settings
from perennial.data.ledger import ACCEPTED, PENDING, TRAINED
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.workspace import ledger_for
from processes import answers, free_port, stop_group, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]

RETRIES = {"PERENNIAL_MLFLOW_RETRIES": "1", "PERENNIAL_MLFLOW_BACKOFF_SECONDS": "0"}


@contextlib.contextmanager
def mlflow_server(workspace: Path, port: int) -> Iterator[None]:
    """`mlflow server` on 127.0.0.1:port over a registry database in the workspace."""
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{workspace / 'server-mlflow.db'}",
            "--default-artifact-root", (workspace / "mlartifacts").as_uri(),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )  # fmt: skip

    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/health", timeout=2), 120, "the MLflow server")
        yield
    finally:
        stop_group(server, signal.SIGKILL)  # the server and its workers, at once: an outage


@pytest.fixture
def remote(lenient: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, int]:
    """The workspace's settings with MLflow on a tracking server (MLFLOW_TRACKING_URI, as a team sets it)."""
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert lenient.mlflow_tracking_uri == f"http://127.0.0.1:{port}"
    return lenient, port


def test_mlflow_stopped_mid_run_loses_nothing_and_the_next_run_finishes(
    remote: tuple[Settings, int], run_env: dict[str, str], drop: Callable[..., Path], tmp_path: Path
) -> None:
    settings, port = remote
    env = {**run_env, **RETRIES, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    marker = settings.root / ".fault-evaluated"
    with mlflow_server(settings.root, port):
        drop(settings, "reviews.csv")
        assert continual_training(settings, return_state=True).is_completed()
        v1 = champion_predicts(settings)
        drop(settings, "films.jsonl")
        # The cycle pauses after evaluation; the server dies; the cycle goes on to register.
        running = subprocess.Popen(
            [sys.executable, "-m", "perennial.cli", "run"], env={**env, ENV: "evaluated:pause"},
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: marker.exists() or running.poll() is not None, 300, "the run to pause")
            assert marker.exists(), running.communicate()[0][-3000:]
        except BaseException:
            running.kill()
            raise
    marker.unlink()  # the server is gone now
    out, _ = running.communicate(timeout=300)

    assert running.returncode == 1, out[-3000:]
    assert f"MLflow at http://127.0.0.1:{port} did not answer after 1 retries" in out
    assert "stopped, 0 more batch(es) stay pending" in out
    films = next(b for b in ledger_for(settings).batches() if b.source == "films.jsonl")
    assert films.status == TRAINED  # not lost: the next run takes it up

    # While it is down, a new run fails at once and says so, without touching any batch.
    down = run_cli(env, tmp_path)
    assert down.returncode == 1 and "did not answer" in down.stderr
    assert "nothing was trained, 1 batch(es) stay pending" in down.stderr

    with mlflow_server(settings.root, port):
        assert registry.champion(settings).version == v1  # the outage changed nothing
        champion_predicts(settings)
        again = run_cli(env, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        statuses = {b.source: b.status for b in ledger_for(settings).batches()}
        assert set(statuses.values()) <= set(ACCEPTED), statuses
        assert PENDING not in statuses.values()
        assert len(ledger_for(settings).cycles()) == 2
        champion_predicts(settings)
