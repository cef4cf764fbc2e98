"""Two `perennial run` processes on one workspace: the second is turned away while the first holds
the workspace, with a message naming the holder; the batch gets exactly one cycle and one version.
Processes ingesting the same files at once record each batch once, correctly."""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_workers import ingest_all

from conftest import run_cli
from perennial.core.faults import ENV
from perennial.core.locking import WorkspaceBusy, workspace_lock
from perennial.core.settings import Settings
from perennial.data.ledger import PENDING, PROMOTED, TRAINED
from perennial.registry import mlflow_registry as registry
from perennial.workspace import ledger_for
from processes import wait_for

pytestmark = [pytest.mark.reliability]


@pytest.mark.usefixtures("prefect_harness")
def test_two_runs_started_together_give_one_cycle_and_the_other_says_why(
    lenient: Settings, run_env: dict[str, str], drop: Callable[..., Path], tmp_path: Path
) -> None:
    drop(lenient, "reviews.csv")
    # The first run pauses with its batch trained and undecided: the moment a second run could do harm.
    first = subprocess.Popen(
        [sys.executable, "-m", "perennial.cli", "run"],
        env={**run_env, ENV: "trained:pause"}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    marker = lenient.root / ".fault-trained"
    try:
        wait_for(lambda: marker.exists() or first.poll() is not None, 300, "the first run to pause")
        assert marker.exists(), first.communicate()[0][-3000:]

        second = run_cli(run_env, tmp_path)
        rollback = run_cli(run_env, tmp_path, "rollback")

        assert second.returncode == 1
        assert "is busy" in second.stderr and "held by continual-training run" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "rollback refused" in rollback.stderr and "is busy" in rollback.stderr
        assert [b.status for b in ledger_for(lenient).batches()] == [TRAINED]  # untouched by the others
    finally:
        marker.unlink(missing_ok=True)
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]

    batches = ledger_for(lenient).batches()
    assert [b.status for b in batches] == [PROMOTED]
    assert len(ledger_for(lenient).cycles()) == 1
    assert [v["version"] for v in registry.list_versions(lenient)] == ["1"]  # one promotion, one version


def test_the_lock_is_free_again_when_its_holder_is_gone(settings: Settings) -> None:
    # Nested in one process: no self-deadlock.
    with workspace_lock(settings, "first holder"), workspace_lock(settings, "the same process again"):
        pass
    with workspace_lock(settings, "next holder"):
        pass


def test_a_killed_holder_never_leaves_a_stale_lock(settings: Settings, tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from perennial.core.settings import Settings\n"
        "from perennial.core.locking import workspace_lock\n"
        f"with workspace_lock(Settings(workspace={str(settings.root)!r}), 'doomed run'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    busy = pytest.raises(WorkspaceBusy, match=rf"held by doomed run \(pid {holder.pid}")
    with busy, workspace_lock(settings, "a second run", wait_seconds=0.5):
        pass
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    with workspace_lock(settings, "after the kill", wait_seconds=5):  # taken at once: no stale lock
        pass


@pytest.mark.parametrize("where", ["inbox", "elsewhere"])
def test_processes_ingesting_the_same_files_at_once_record_each_batch_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    for key in list(os.environ):
        if key.startswith("PERENNIAL_"):
            monkeypatch.delenv(key)
    settings = Settings(workspace=tmp_path / "ws")
    folder = settings.inbox if where == "inbox" else tmp_path / "elsewhere"
    folder.mkdir(parents=True)
    names = ["a.csv", "b.csv", "c.csv"]
    for n, name in enumerate(names):
        rows = "".join(f"batch {n} says thing number {i},{'xy'[i % 2]}\n" for i in range(200))
        (folder / name).write_text("text,label\n" + rows, encoding="utf-8")
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(4), spawn.Queue()
    workers = [
        spawn.Process(
            target=ingest_all,
            args=(
                str(settings.root),
                [str(folder / name) for name in names[i % 3 :] + names[: i % 3]],
                start,
                results,
            ),
        )
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[tuple] = []
    deadline = time.monotonic() + 180
    while len(outcomes) < 12 and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break
    for worker in workers:
        worker.join(timeout=60)

    assert [o for o in outcomes if o[0] == "error"] == []
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    batches = ledger_for(settings).batches()
    assert sorted(b.source for b in batches) == names
    assert all(b.status == PENDING and b.rows == 200 for b in batches), [
        (b.source, b.reason) for b in batches
    ]
    for name in names:  # each file: recorded once, every other process says why it did nothing
        mine = [o for o in outcomes if o[0] == name]
        recorded = [o for o in mine if o[1] == PENDING and not o[2]]
        assert len(recorded) == 1 and len(mine) == 4, mine
        others = [o for o in mine if o is not recorded[0]]
        assert all(o[2] or "gone before it could be read" in o[3] for o in others), others
    assert sorted(p.name for p in settings.raw_dir.iterdir()) == sorted(f"{b.batch_id}.csv" for b in batches)
