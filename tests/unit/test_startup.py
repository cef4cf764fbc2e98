"""Overlapping a run's start-up: the early Prefect server and the preloaded imports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from perennial.core.startup import CYCLE_MODULES, EarlyServer, preload, start_prefect_early


def test_no_early_server_when_flows_talk_to_a_configured_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert start_prefect_early() is None


def test_preload_imports_what_a_cycle_needs_and_skips_what_is_missing() -> None:
    preload(["json", "perennial_no_such_module", "perennial.evaluation.gate"])
    assert "perennial.evaluation.gate" in sys.modules
    assert "perennial_no_such_module" not in sys.modules


def test_the_cycle_modules_exist() -> None:
    # A renamed module would silently stop being preloaded: every name must import.
    import importlib.util

    for name in CYCLE_MODULES:
        assert importlib.util.find_spec(name) is not None, name


@pytest.mark.integration
def test_early_server_answers_then_stops_and_withdraws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    for key in ("PREFECT_API_URL", "PREFECT_UI_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    server = start_prefect_early()
    assert server is not None
    try:
        # Announced at once, so a flow started later talks to it rather than starting another.
        assert os.environ["PREFECT_API_URL"] == server.url and os.environ["PREFECT_UI_URL"] == ""
        server.wait(timeout=120)
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.withdraw()
    assert server.process.poll() is not None
    assert "PREFECT_API_URL" not in os.environ and "PREFECT_UI_URL" not in os.environ


def test_wait_reports_a_server_that_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(EarlyServer, "_command", lambda self: [sys.executable, "-c", "raise SystemExit(3)"])
    server = EarlyServer()
    try:
        with pytest.raises(RuntimeError, match="exited with code 3"):
            server.wait(timeout=30)
    finally:
        server.withdraw()
