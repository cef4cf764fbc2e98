"""Two `perennial run` processes on one workspace: the second is turned away while the first holds
the workspace, with a message naming the holder; the batch gets exactly one cycle and one version."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_cli
from perennial import registry
from perennial.config import Settings
from perennial.cycle import ledger_for
from perennial.faults import ENV
from perennial.ledger import PROMOTED, TRAINED
from perennial.locking import WorkspaceBusy, workspace_lock
from processes import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]


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
        "from perennial.config import Settings\n"
        "from perennial.locking import workspace_lock\n"
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
