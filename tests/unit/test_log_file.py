"""The workspace's log file, written by several processes at once, rotates without losing lines."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

# Each writer attaches the log file, waits for the others (the file `go`), then writes its lines
# interleaved with theirs.
WRITER = """
import logging, sys, time
from pathlib import Path
from perennial.core.console import attach_log_file
root = Path(sys.argv[1])
attach_log_file(root, max_bytes=4_000, backups=500)
(root / f"ready-{sys.argv[2]}").touch()
while not (root / "go").exists():
    time.sleep(0.01)
log = logging.getLogger("perennial.writer")
for i in range(int(sys.argv[3])):
    log.info("writer %s line %d %s", sys.argv[2], i, "x" * 40)
    time.sleep(0.002)
"""


def test_processes_rotating_one_log_lose_no_line(tmp_path: Path) -> None:
    writers, lines = 3, 150
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), str(lines)])
        for n in range(writers)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < writers and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    assert all(p.wait(timeout=300) == 0 for p in processes)
    # Oldest first: perennial.log.N, ..., perennial.log.1, then perennial.log itself.
    logs = sorted(
        (tmp_path / "logs").glob("perennial.log*"),
        key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
    )
    assert len(logs) > 5  # it did rotate, many times, while all three wrote
    written = [
        match.groups()
        for log in logs
        for line in log.read_text(encoding="utf-8").splitlines()
        if (match := re.search(r"writer (\d+) line (\d+) x{40}$", line))
    ]
    expected = {(str(n), str(i)) for n in range(writers) for i in range(lines)}
    assert set(written) == expected and len(written) == len(expected)  # every line, once
    # ... and in the order it was written: no process went on writing into a file another had rotated.
    for n in range(writers):
        order = [int(i) for writer, i in written if writer == str(n)]
        assert order == sorted(order), f"writer {n}'s lines are out of order across the rotated files"
