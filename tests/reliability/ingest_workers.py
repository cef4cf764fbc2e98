"""Work for spawned processes in the reliability tests: a module light to import (a spawned child
imports the module its target lives in, and a test module pulls in MLflow and Prefect)."""

from __future__ import annotations

import traceback
from pathlib import Path


def ingest_all(root: str, paths: list[str], start, results) -> None:
    """Wait for the others at `start`, then ingest `paths` in order; put each outcome (or the
    traceback) on `results`."""
    try:
        from perennial.core.settings import Settings
        from perennial.data.ingest import ingest_file
        from perennial.data.ledger import Ledger

        settings = Settings(workspace=root)
        ledger = Ledger(settings.ledger_path)
        start.wait(timeout=120)
        for path in paths:
            result = ingest_file(Path(path), settings, ledger)
            results.put((result.source, result.status, result.duplicate, result.message))
    except BaseException:
        results.put(("error", traceback.format_exc(), None, None))
        raise
