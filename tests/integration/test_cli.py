"""The real `perennial` entry point, as a user runs it, in a fresh process on fixture batches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"


def perennial(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "perennial.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


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


def test_run_status_predict_end_to_end(cli_env: dict[str, str], tmp_path: Path) -> None:
    inbox = tmp_path / "ws" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(DATA / "reviews.csv", inbox / "reviews.csv")
    shutil.copyfile(DATA / "bad_labels.csv", inbox / "bad_labels.csv")

    run = perennial("run", env=cli_env, cwd=tmp_path)
    # The bad batch fails the run, with its reason; the good batch is promoted regardless.
    assert run.returncode == 1, run.stderr[-3000:]
    assert "quarantined" in run.stderr

    status = perennial("status", "--json", env=cli_env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr[-3000:]
    report = json.loads(status.stdout)
    assert report["champion"]["version"] == "1"
    by_source = {b["source"]: b for b in report["batches"]}
    assert by_source["reviews.csv"]["status"] == "promoted"
    assert by_source["bad_labels.csv"]["status"] == "quarantined"
    assert (tmp_path / "ws" / "mlflow.db").is_file()  # everything stayed in the workspace
    # Prefect's temporary server kept its database in the workspace, not in ~/.prefect.
    assert (tmp_path / "ws" / "prefect" / "prefect.db").is_file()

    predict = perennial(
        "predict", "--json", "the battery was great", "the plot was awful", env=cli_env, cwd=tmp_path
    )
    assert predict.returncode == 0, predict.stderr[-3000:]
    rows = [json.loads(line) for line in predict.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["the battery was great", "the plot was awful"]
    assert all(r["label"] in {"negative", "positive"} and 0.0 <= r["score"] <= 1.0 for r in rows)
    assert {r["model_version"] for r in rows} == {"1"}

    again = perennial("run", env=cli_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout


def test_help_and_predict_without_champion(cli_env: dict[str, str], tmp_path: Path) -> None:
    help_text = perennial("--help", env=cli_env, cwd=tmp_path)
    assert help_text.returncode == 0
    for command in ("run", "ingest", "demo", "status", "predict"):
        assert command in help_text.stdout

    predict = perennial("predict", "hello", env=cli_env, cwd=tmp_path)
    assert predict.returncode != 0
    assert "no champion yet" in predict.stderr
