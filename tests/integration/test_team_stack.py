"""The team stack without Docker: PostgreSQL, an MLflow tracking server and a Prefect server on it, and
two `perennial run` cycles pointed at them by environment variables alone. Registry, aliases, runs and
flow runs live in PostgreSQL, model files in the server's shared artifact folder; restarting both
servers loses none of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perennial.core.settings import Settings
from processes import free_port, tiny_cli_env
from team_services import Postgres, mlflow_server, postgres, postgres_bin, prefect_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed (make test installs it)"),
]

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL = "perennial-classifier"
# Every challenger is promoted: the test is about where things are stored, not about the gate.
LENIENT = {"min_delta": "-1", "max_forgetting": "1", "require_significant_gain": "false"}


def perennial(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "perennial.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def registry_rows(db: Postgres) -> dict[str, list[tuple]]:
    """What the MLflow tracking server keeps in PostgreSQL, and what Prefect keeps of the flow runs."""
    return {
        "versions": db.query(
            "mlflow", f"SELECT version, status FROM model_versions WHERE name = '{MODEL}' ORDER BY version"
        ),
        "aliases": db.query("mlflow", "SELECT alias, version FROM registered_model_aliases ORDER BY alias"),
        "runs": db.query("mlflow", "SELECT run_uuid, status FROM runs ORDER BY run_uuid"),
        "flow_runs": db.query(
            "prefect",
            "SELECT flow_run.id, flow.name, flow_run.state_type FROM flow_run "
            "JOIN flow ON flow.id = flow_run.flow_id ORDER BY flow_run.id",
        ),
    }


def champion_predicts(tracking_uri: str) -> str:
    """Load `models:/…@champion` from the server, as a serving host would, and predict."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    version = MlflowClient(tracking_uri).get_model_version_by_alias(MODEL, "champion").version
    predictions = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(["a warm, lovely film"])
    assert set(predictions["label"]) <= {"negative", "positive"}
    return version


def test_two_cycles_on_postgres_backed_servers_survive_a_restart(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    artifacts = tmp_path / "shared-artifacts"  # the Compose stack's shared volume
    workspace = tmp_path / "ws"
    mlflow_port, prefect_port = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    with postgres(("mlflow", "prefect")) as db:
        with (
            mlflow_server(db, artifacts, mlflow_port, logs / "mlflow.log") as tracking_uri,
            prefect_server(db, tmp_path / "prefect-home", prefect_port, logs / "prefect.log") as api_url,
        ):
            # Settings only: the same command as the embedded mode, pointed at the team's servers.
            env = tiny_cli_env(workspace, pretrained_tiny_model_dir, **LENIENT)
            env.update(MLFLOW_TRACKING_URI=tracking_uri, PREFECT_API_URL=api_url)
            inbox = Settings(workspace=workspace).inbox
            inbox.mkdir(parents=True)
            for batch in ("reviews.csv", "films.jsonl"):
                shutil.copyfile(DATA / batch, inbox / batch)
                out = perennial(env, tmp_path, "run")
                assert ": v" in out and " promote (champion v" in out, out

            before = registry_rows(db)
            assert [version for version, _ in before["versions"]] == [1, 2]
            assert before["aliases"] == [("champion", 2)]
            assert len(before["runs"]) >= 2 and all(status == "FINISHED" for _, status in before["runs"])
            training = [row for row in before["flow_runs"] if row[1] == "continual-training"]
            assert len(training) == 2 and all(state == "COMPLETED" for *_, state in training)
            # Model files went to the server's shared store, not to the client's workspace.
            assert list(artifacts.rglob("model.safetensors")), "no model in the shared artifact store"
            assert not list((workspace / "mlartifacts").rglob("*.safetensors"))
            assert champion_predicts(tracking_uri) == "2"

        # Both servers stopped; start them again on the same database and folder.
        with (
            mlflow_server(db, artifacts, mlflow_port, logs / "mlflow.log") as tracking_uri,
            prefect_server(db, tmp_path / "prefect-home", prefect_port, logs / "prefect.log"),
        ):
            assert registry_rows(db) == before
            assert champion_predicts(tracking_uri) == "2"
            status = perennial(env, tmp_path, "status")
            assert "v2" in status, status
