"""Process environment: offline, quiet, and every library's state inside the workspace.

Called once by entry points (CLI, flows, tests) before Prefect, MLflow or transformers are imported,
never at import time. Values the user already exported win, so a user with internet can opt back in.
"""

from __future__ import annotations

import os

from perennial.core.relocation import follow_move
from perennial.core.secrets import install_log_redaction
from perennial.core.settings import Settings

OFFLINE_AND_QUIET = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # The temporary Prefect server can take longer than Prefect's 20 s to start on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TRANSFORMERS_VERBOSITY": "error",  # no load report for every fresh classification head
    # With a tracking server MLflow prints "View run ..." links to stdout, which `--json` keeps for JSON.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def configure(settings: Settings) -> None:
    """Set environment defaults for this process and create the workspace folders.

    Call it before importing Prefect: Prefect reads PREFECT_HOME once, at import."""
    install_log_redaction()  # a token in a URI is masked in every library's log lines and warnings
    for key, value in OFFLINE_AND_QUIET.items():
        os.environ.setdefault(key, value)
    # MLflow's own retry with exponential backoff (urllib3) for a slow or absent tracking server:
    # bounded by settings, so a dead server fails a run in seconds instead of many minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(settings.mlflow_backoff_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_timeout_seconds))
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    os.environ.setdefault("HF_HOME", str(settings.hf_home))
    # The MLflow tracking URI is not exported: perennial passes settings.mlflow_tracking_uri to MLflow
    # explicitly, so two workspaces in one process never share a registry.
    for folder in (
        settings.inbox,
        settings.raw_dir,
        settings.batches_dir,
        settings.validation_dir,
        settings.models_dir,
        settings.reports_dir,
        settings.monitor_dir,
        settings.mlflow_artifacts_dir,
        settings.prefect_home,
        settings.hf_home,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    follow_move(settings)  # a copied or moved workspace: its stored paths point here from now on
