"""Leaving perennial running: a real Prefect server on 127.0.0.1, `perennial serve`, and events.

One server and one serving process for the module, as a user runs them (`perennial server`,
`perennial serve`), each in its own process. The tests then drop files, emit events and create runs,
and read the outcome from the server's REST API and the workspace's ledger.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from perennial.data.ledger import Ledger
from processes import free_port, tiny_cli_env, wait_for

pytestmark = pytest.mark.integration

BURST_WINDOW = 4  # seconds
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Served:
    api: str
    env: dict[str, str]
    workspace: Path
    cwd: Path
    deployment_id: str

    def runs(self) -> list[dict]:
        """Flow runs of the training deployment, oldest first."""
        body = {
            "flow_runs": {"deployment_id": {"any_": [self.deployment_id]}},
            "sort": "EXPECTED_START_TIME_ASC",
        }
        response = httpx.post(f"{self.api}/flow_runs/filter", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def triggered_runs(self) -> list[dict]:
        """Runs started by an event or a request, not the nightly schedule's future runs."""
        return [r for r in self.runs() if not r["auto_scheduled"]]


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def _stop(process: subprocess.Popen, log: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _batch(domain: str, seed: int, path: Path, rows: int = 60) -> Path:
    from perennial.data.vader import sample_domain

    sample_domain(domain, rows, seed)[["text", "label"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pretrained_tiny_model_dir: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    port = free_port()
    env = tiny_cli_env(
        root / "ws",
        pretrained_tiny_model_dir,
        epochs="1",
        # These tests are about triggers, not the gate: any first model becomes champion (one epoch of
        # the tiny model on 60 VADER rows rarely beats the majority class).
        require_significant_gain="false",
        min_delta="-1",
        min_macro_f1_gain="-1",
        server_port=str(port),
        burst_window_seconds=str(BURST_WINDOW),
        watch_interval_seconds="0.5",
        torch_threads="1",
    )
    api = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "perennial.cli"]
    server_log, serve_log = root / "server.log", root / "serve.log"
    server = subprocess.Popen(
        [*command, "server"], env=env, cwd=root, stdout=server_log.open("w"), stderr=subprocess.STDOUT
    )
    serve = None
    try:
        wait_for(lambda: (r := _get(f"{api}/health")) is not None and r.status_code == 200, 180, "the server")
        serve = subprocess.Popen(
            [*command, "serve"], env=env, cwd=root, stdout=serve_log.open("w"), stderr=subprocess.STDOUT
        )

        def deployment() -> str | None:
            assert serve.poll() is None, serve_log.read_text()[-3000:]
            r = _get(f"{api}/deployments/name/continual-training/perennial")
            return r.json()["id"] if r is not None and r.status_code == 200 else None

        deployment_id = wait_for(deployment, 180, "the training deployment")
        # The watcher starts with the deployments; give it one poll before dropping files.
        wait_for(lambda: "watching" in serve_log.read_text(), 60, "the inbox watcher")
        yield Served(api, env, root / "ws", root, str(deployment_id))
    finally:
        # The serving process first: it pauses its deployments through the server on the way out.
        if serve is not None:
            _stop(serve, serve_log)
        _stop(server, server_log)


def _finished(served: Served, count: int, timeout: float = 240) -> list[dict]:
    def done() -> list[dict] | None:
        runs = served.triggered_runs()
        if len(runs) >= count and all(r["state_type"] in TERMINAL for r in runs[:count]):
            return runs
        return None

    return wait_for(done, timeout, f"{count} finished training run(s)", every=2)  # type: ignore[return-value]


def test_a_burst_of_files_starts_one_run_that_trains_them_all(served: Served, tmp_path: Path) -> None:
    inbox = served.workspace / "inbox"
    first, second = _batch("amazon", 1, tmp_path / "first.csv"), _batch("movies", 2, tmp_path / "second.csv")
    shutil.copyfile(first, inbox / "first.csv")
    time.sleep(1)  # within the burst window of the first
    shutil.copyfile(second, inbox / "second.csv")
    runs = _finished(served, 1)
    time.sleep(BURST_WINDOW + 3)  # long enough for a second run to appear, if the window failed
    runs = served.triggered_runs()
    assert len(runs) == 1, [(r["name"], r["parameters"].get("reason")) for r in runs]
    run = runs[0]
    assert run["state_type"] == "COMPLETED", run["state"]
    # The run is named after the event that fired the trigger: the first of the burst as a rule, but
    # Prefect does not promise to process two events a second apart in the order they were sent.
    assert run["parameters"]["reason"] in {"batch arrived: first.csv", "batch arrived: second.csv"}
    assert run["parameters"]["settings"]["workspace"] == str(served.workspace)
    ledger = Ledger(served.workspace / "ledger.sqlite")
    batches = {b.source: b.status for b in ledger.batches()}
    assert set(batches) == {"first.csv", "second.csv"}
    assert all(status in {"promoted", "rejected-model"} for status in batches.values()), batches
    assert not any(inbox.iterdir())


def test_ingest_from_another_system_triggers_a_run(served: Served, tmp_path: Path) -> None:
    before = len(served.triggered_runs())
    source = _batch("tweets", 3, tmp_path / "exported.csv")
    result = _cli(served, "ingest", str(source))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sent perennial.batch.arrived for 1 file(s)" in result.stdout
    runs = _finished(served, before + 1)
    assert runs[before]["parameters"]["reason"] == "batch arrived: exported.csv"
    assert runs[before]["state_type"] == "COMPLETED"
    statuses = {b.source: b.status for b in Ledger(served.workspace / "ledger.sqlite").batches()}
    assert statuses["exported.csv"] in {"promoted", "rejected-model"}


def test_ingest_of_a_bad_file_sends_the_quarantine_event(served: Served, tmp_path: Path) -> None:
    """A file refused by `perennial ingest` outside any run is announced as a run's ingestion would."""
    bad = tmp_path / "refused.csv"
    bad.write_bytes(b"\x00\x01\x02 not a table")  # unreadable: refused at ingest, before validation
    result = _cli(served, "ingest", str(bad))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sent perennial.batch.quarantined for 1 file(s)" in result.stdout
    assert "sent perennial.batch.arrived" not in result.stdout
    body = {"filter": {"event": {"name": ["perennial.batch.quarantined"]}}, "limit": 50}
    events = wait_for(
        lambda: [e for e in httpx.post(f"{served.api}/events/filter", json=body, timeout=30).json()["events"]
                 if e["payload"].get("source") == "refused.csv"],
        30, "the quarantine event on the server",
    )  # fmt: skip
    assert events[0]["payload"]["reason"] and events[0]["payload"]["batch_id"]


def test_concurrent_runs_are_serialised(served: Served, tmp_path: Path) -> None:
    before = len(served.triggered_runs())
    # A pending batch, so the first run trains for a while.
    source = _batch("nyt", 4, tmp_path / "quiet.csv", rows=120)
    ingest = _cli(served, "ingest", "--no-event", str(source))
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    url = f"{served.api}/deployments/{served.deployment_id}/create_flow_run"
    for reason in ("first", "second"):
        response = httpx.post(url, json={"parameters": {"reason": reason}}, timeout=30)
        response.raise_for_status()
    runs = _finished(served, before + 2)[before : before + 2]
    assert [r["parameters"]["reason"] for r in runs] == ["first", "second"]
    assert all(r["state_type"] == "COMPLETED" for r in runs), [r["state"] for r in runs]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert second["start_time"] >= first["end_time"], "two training runs overlapped"
    status = Ledger(served.workspace / "ledger.sqlite").batches()
    assert [b.status for b in status if b.source == "quiet.csv"] in (["promoted"], ["rejected-model"])


def test_drift_with_a_waiting_batch_triggers_training(served: Served, tmp_path: Path) -> None:
    """`perennial drift` runs on the served server, finds drift, and its event starts a training run
    that trains the batch waiting in the ledger."""
    before = len(served.triggered_runs())
    waiting = _batch("tweets", 5, tmp_path / "waiting.csv")
    ingest = _cli(served, "ingest", "--no-event", str(waiting))
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    # Production inputs unlike anything trained on: far longer texts.
    monitor = served.workspace / "monitor"
    monitor.mkdir(exist_ok=True)
    essay = " ".join(["the committee deliberated at length over the annual budget report"] * 8)
    (monitor / "inputs.txt").write_text("".join(f"{essay} {i}\n" for i in range(80)))
    drift = _cli(served, "drift")
    assert drift.returncode == 0, drift.stderr[-3000:]
    assert drift.stdout.startswith("retrain: drift detected, 1 labelled batch(es) waiting"), drift.stdout
    runs = _finished(served, before + 1)
    assert runs[before]["parameters"]["reason"] == "drift detected"
    assert runs[before]["state_type"] == "COMPLETED"
    statuses = {b.source: b.status for b in Ledger(served.workspace / "ledger.sqlite").batches()}
    assert statuses["waiting.csv"] in {"promoted", "rejected-model"}
    # The check itself ran on the served server (not a temporary one): a run outside the deployment.
    flow = httpx.get(f"{served.api}/flows/name/drift-monitor", timeout=30).json()
    body = {"flows": {"id": {"any_": [flow["id"]]}}}
    checks = httpx.post(f"{served.api}/flow_runs/filter", json=body, timeout=30).json()
    assert [r["state_type"] for r in checks if r["deployment_id"] is None] == ["COMPLETED"]


def _cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perennial.cli", *args],
        env=served.env, cwd=served.cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["serve", "watch"])
def test_serve_and_watch_without_a_server_say_how_to_start_one(
    tmp_path: Path, served: Served, command: str
) -> None:
    env = {
        **served.env,
        "PERENNIAL_SERVER_PORT": str(free_port()),
        "PERENNIAL_WORKSPACE": str(tmp_path / "w"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "perennial.cli", command],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no Prefect server at http://127.0.0.1:" in result.stderr and "perennial server" in result.stderr
    shutil.rmtree(tmp_path / "w", ignore_errors=True)


def test_watch_alone_sends_an_event_for_a_new_file(tmp_path: Path, served: Served) -> None:
    """`perennial watch` (the team stack's `inbox-watch`): the watcher without serving any flow. Its
    own workspace, so the served deployment's trigger (which matches its workspace only) stays quiet."""
    workspace = tmp_path / "w"
    log = tmp_path / "watch.log"
    env = {**served.env, "PERENNIAL_WORKSPACE": str(workspace)}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "perennial.cli", "watch"],
        env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: "watching" in log.read_text(), 60, "the watcher")
        _batch("tweets", 7, workspace / "inbox" / "tweets.csv")
        wait_for(lambda: "tweets.csv arrived: event" in log.read_text(), 30, "the batch.arrived event")
        event_id = log.read_text().split("tweets.csv arrived: event ")[1].split()[0]
        body = {"filter": {"event": {"name": ["perennial.batch.arrived"]}}, "limit": 50}
        events = wait_for(
            lambda: [e for e in httpx.post(f"{served.api}/events/filter", json=body, timeout=30).json()
                     ["events"] if e["id"] == event_id],
            30, "the event on the server",
        )  # fmt: skip
        assert events[0]["payload"]["name"] == "tweets.csv"
    finally:
        _stop(watcher, log)
