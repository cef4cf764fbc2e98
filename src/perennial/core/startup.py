"""Overlap a run's start-up costs instead of paying them one after another.

With no Prefect server to talk to, a flow first starts Prefect's temporary server: a subprocess that
takes ~7 s on 2 cores before it answers. The libraries a cycle needs (torch, transformers, MLflow,
Great Expectations, evaluate) take ~9 s to import. Started first, the server boots on one core while
the imports run on the other, so a run pays for the slower of the two, not both.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# What a training cycle imports sooner or later; importing them early only moves the cost.
CYCLE_MODULES = (
    "torch",
    "transformers.models.auto.modeling_auto",
    "transformers.models.bert.modeling_bert",
    "mlflow.transformers",
    "great_expectations",
    "evaluate",
)


class EarlyServer:
    """Prefect's temporary API server, started the way Prefect starts it (uvicorn serving
    `prefect.server.api.server:create_app`, UI off, in ephemeral mode) and announced to this
    process's flows through PREFECT_API_URL. Started here rather than by Prefect, so that this process
    never imports the server's code (~4 s of imports that would compete with the preload for the
    GIL), and stopped at exit like Prefect's own (the atexit handler)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process = subprocess.Popen(self._command(), env={**os.environ, **_SERVER_ENV})
        atexit.register(self.stop)
        self._announced = {"PREFECT_API_URL": self.url}
        if "PREFECT_UI_URL" not in os.environ:
            self._announced["PREFECT_UI_URL"] = ""  # it serves no UI: no "View at" links to it
        os.environ.update(self._announced)

    def _command(self) -> list[str]:
        spec = importlib.util.find_spec("prefect")
        if spec is None or spec.origin is None:
            raise RuntimeError("prefect is not installed")
        app_dir = str(Path(spec.origin).parent.parent)  # where Prefect points uvicorn's --app-dir
        return [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on"]  # fmt: skip

    def wait(self, timeout: float | None = None) -> None:
        """Return once the server answers /health; raise if it exits or does not answer in time."""
        limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect's temporary server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Prefect's temporary server did not answer at {self.url} within {limit:.0f} s")

    def withdraw(self) -> None:
        """Stop, and leave the start to Prefect (as if this server had never been announced)."""
        self.stop()
        for key in self._announced:
            os.environ.pop(key, None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# What Prefect sets for its own temporary server (prefect.server.api.server.SubprocessASGIServer).
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_prefect_early() -> EarlyServer | None:
    """Start the temporary server now, unless flows will talk to a configured server."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    return EarlyServer()


def preload(modules: Iterable[str] = CYCLE_MODULES) -> None:
    """Import `modules` now (while something else starts); a missing optional one is skipped."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            log.debug("not preloaded: %s (%s)", name, error)
