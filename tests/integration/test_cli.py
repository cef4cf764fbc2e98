"""The real `perennial` entry point, as a user runs it, in a fresh process on fixture batches."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from processes import free_port, stop_group, wait_for  # tests/ is on sys.path

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"


def perennial(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "perennial.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_run_status_predict_end_to_end(cli_env: dict[str, str], tmp_path: Path) -> None:
    inbox = tmp_path / "ws" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(DATA / "reviews.csv", inbox / "reviews.csv")
    shutil.copyfile(DATA / "bad_labels.csv", inbox / "bad_labels.csv")

    run = perennial("run", "--json", env=cli_env, cwd=tmp_path)
    # The bad batch fails the run, with its reason; the good batch is promoted regardless.
    assert run.returncode == 1, run.stderr[-3000:]
    assert "quarantined" in run.stderr
    outcome = json.loads(run.stdout)
    assert "quarantined" in outcome["failed"]
    assert [(o["decision"], o["version"], o["champion_version"]) for o in outcome["outcomes"]] == [
        ("promote", "1", "1")
    ]

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
    assert not any(r["truncated"] for r in rows)

    # A version or an alias instead of the champion; a text past max_length (32 here) is flagged.
    long_text = " ".join(["the battery lasted all week and the screen was bright"] * 8)
    by_alias = perennial("predict", "--json", "--alias", "champion", long_text, env=cli_env, cwd=tmp_path)
    assert by_alias.returncode == 0, by_alias.stderr[-3000:]
    assert json.loads(by_alias.stdout)["truncated"] is True
    assert "text(s) 1 are longer than max_length (32 tokens)" in by_alias.stderr
    by_version = perennial("predict", "--json", "--version", "v1", "fine", env=cli_env, cwd=tmp_path)
    assert json.loads(by_version.stdout)["model_version"] == "1", by_version.stderr[-3000:]
    for wrong, said in (("--version", "has no version 7"), ("--alias", "has no alias 'prod'")):
        missing = perennial(
            "predict", wrong, "7" if wrong == "--version" else "prod", "x", env=cli_env, cwd=tmp_path
        )
        assert missing.returncode == 1 and said in missing.stderr, missing.stderr[-3000:]
        assert "Traceback" not in missing.stderr

    # The state for a monitoring system, as node_exporter's textfile collector reads it.
    prom = tmp_path / "perennial.prom"
    metrics = perennial("metrics", "--textfile", str(prom), env=cli_env, cwd=tmp_path)
    assert metrics.returncode == 0, metrics.stderr[-3000:]
    assert 'perennial_champion_version{workspace="' in prom.read_text() and "} 1.0" in prom.read_text()

    # What `push --to-hub` would upload: the champion as a Hugging Face folder, its card included.
    plan = perennial("push", "--to-hub", "acme/reviews", "--dry-run", env=cli_env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr[-3000:]
    listed = {line.split()[0] for line in plan.stdout.splitlines()[1:]}
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= listed, plan.stdout
    assert plan.stdout.startswith("would upload perennial-classifier v1 to acme/reviews:")
    offline = perennial(
        "push", "--to-hub", "acme/reviews", env={**cli_env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path
    )
    assert offline.returncode == 2 and offline.stderr.strip() == (
        "error: HF_HUB_OFFLINE is set: unset it to push to the Hub"
    )

    # The command exits without the interpreter's teardown (cli.entry): every flow run's last log
    # line still reached Prefect's database before the temporary server stopped.
    def flow_runs() -> tuple[int, int]:
        with sqlite3.connect(tmp_path / "ws" / "prefect" / "prefect.db") as db:
            runs = db.execute("SELECT count(*) FROM flow_run").fetchone()[0]
            finished = db.execute(
                "SELECT count(DISTINCT flow_run_id) FROM log"
                " WHERE message LIKE 'Finished in state%' AND task_run_id IS NULL"
            ).fetchone()[0]
        return runs, finished

    runs, finished = flow_runs()
    assert runs >= 2 and finished == runs
    # Nothing in the inbox and nothing pending: said at once, without starting Prefect for nothing.
    again = perennial("run", env=cli_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout
    assert flow_runs() == (runs, finished)

    # Scored texts logged for the drift monitor; two are too few to test, and it says so.
    logged = perennial("predict", "--log", "first input", "second input", env=cli_env, cwd=tmp_path)
    assert logged.returncode == 0, logged.stderr[-3000:]
    assert "logged 2 prediction(s)" in logged.stderr
    drift = perennial("drift", env=cli_env, cwd=tmp_path)
    assert drift.returncode == 0, drift.stderr[-3000:]
    assert "skipped: only 2 monitored text(s)" in drift.stdout
    status = perennial("status", env=cli_env, cwd=tmp_path)
    assert "drift:     only 2 monitored text(s)" in status.stdout

    # `perennial ui` serves this workspace's registry on 127.0.0.1: the champion alias is there.
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "perennial.cli", "ui"],
        env={**cli_env, "PERENNIAL_MLFLOW_UI_PORT": str(port)}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        model = _wait_for_json(f"{url}/api/2.0/mlflow/registered-models/get?name=perennial-classifier", 120)
        aliases = {a["alias"]: a["version"] for a in model["registered_model"].get("aliases", [])}
        assert aliases.get("champion") == "1"
        # One user's UI: one server worker, no background job consumers (MLflow's defaults: 16).
        import psutil

        processes = [ui.pid, *(child.pid for child in psutil.Process(ui.pid).children(recursive=True))]
        assert len(processes) <= 5, [psutil.Process(pid).cmdline()[:4] for pid in processes]
    finally:
        out = stop_group(ui)  # like Ctrl-C: the command and the MLflow server it started
    assert f"MLflow UI:  {url}" in out and "Prefect UI: no server" in out


def _wait_for_json(url: str, timeout: float) -> dict:
    import httpx

    def answer() -> dict | None:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    return wait_for(answer, timeout, f"an answer from {url}")


def test_help_and_predict_without_champion(cli_env: dict[str, str], tmp_path: Path) -> None:
    help_text = perennial("--help", env=cli_env, cwd=tmp_path)
    assert help_text.returncode == 0
    for command in ("run", "ingest", "demo", "status", "predict"):
        assert command in help_text.stdout

    missing = perennial("predict", "hello", env=cli_env, cwd=tmp_path)
    assert missing.returncode == 2 and "no workspace at" in missing.stderr  # and none was created
    assert not (tmp_path / "ws").exists()

    (tmp_path / "ws").mkdir()
    predict = perennial("predict", "hello", env=cli_env, cwd=tmp_path)
    assert predict.returncode != 0
    assert "no champion yet" in predict.stderr


def test_stream_writes_ordered_batches_into_the_inbox(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = perennial(
        "stream",
        str(DATA / "dated.csv"),
        "--by-time",
        "created_at",
        "--every",
        "quarter",
        env=cli_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    inbox = (tmp_path / "ws" / "inbox").resolve()  # the default --out: the workspace inbox
    names = ["001-2024-Q1.csv", "002-2024-Q2.csv", "003-2024-Q3.csv", "004-2024-Q4.csv", "005-2025-Q1.csv"]
    assert sorted(p.name for p in inbox.iterdir()) == names
    lines = result.stdout.splitlines()
    assert len(lines) == len(names) + 1
    for name, line in zip(names, lines, strict=False):
        rows = len((inbox / name).read_text(encoding="utf-8").splitlines()) - 1
        assert line == f"{inbox / name}: {rows} rows"
    assert lines[-1] == f"wrote 5 files, 40 rows, to {inbox}"

    out = tmp_path / "by-label"
    result = perennial(
        "stream",
        str(DATA / "reviews.csv"),
        "--by",
        "label",
        "--out",
        str(out),
        "--format",
        "parquet",
        env=cli_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["001-positive.parquet", "002-negative.parquet"]


def test_stream_bad_column_is_a_one_line_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = perennial(
        "stream", str(DATA / "reviews.csv"), "--by", "topic", "--out", str(out), env=cli_env, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no column 'topic'; available columns: id, domain, text, label"
    ]
    assert result.stdout == ""
    assert not out.exists()
