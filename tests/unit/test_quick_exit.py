"""The CLI's quick exit (`perennial.cli.entry`): it must end the process, whatever threads are left."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_quick_exit_ends_with_an_idle_thread_pool_and_runs_its_queued_work(tmp_path) -> None:
    """MLflow's artifact uploads leave ThreadPoolExecutor workers idle; they are not daemons, and a
    `perennial run` once hung at exit joining them. Queued work still runs before the exit."""
    marker = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import time
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path

        from perennial.cli.parsing import _exit_now

        pool = ThreadPoolExecutor(max_workers=2)
        pool.submit(lambda: None).result()  # a worker exists and waits for more
        pool.submit(lambda: (time.sleep(0.5), Path({str(marker)!r}).write_text("ok")))
        _exit_now(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr[-2000:]
    assert marker.read_text() == "ok"
