"""Named points where the reliability tests make a cycle fail, as a crash or a full disk would.

Test-only: nothing happens unless `PERENNIAL_FAULT_AT` names the point. Its value is
`<point>` or `<point>:<action>`, with these actions:

* `kill` (default): SIGKILL this process on the spot: no `finally`, no cleanup, like a power cut.
* `enospc`: raise `OSError(ENOSPC)`, as a write to a full disk does.
* `pause`: create `.fault-<point>` in the folder the point passes (the workspace; for the training
  points, the folder the challenger is saved in) and wait until someone deletes it (a test uses the
  pause to stop a server under a running cycle).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

ENV = "PERENNIAL_FAULT_AT"
# Where a cycle can be stopped, in the order a cycle passes them.
POINTS = (
    "ingest-copied",  # raw file kept, nothing recorded yet
    "ingest-recorded",  # batch in the ledger, rows not yet stored
    "validated",
    "split",
    "training",  # after the first epoch's optimiser steps
    "model-saving",  # the challenger's weights are being written
    "trained",  # challenger saved and logged, ledger says trained
    "evaluated",
    "registered",  # version in the registry, no alias moved
    "champion-moved",  # champion alias on the new version, ledger not yet told
    "recorded",  # ledger has the decision, run not yet closed
)
ACTIONS = ("kill", "enospc", "pause")


def fault_point(name: str, workspace: Path | None = None) -> None:
    """Fail here if `PERENNIAL_FAULT_AT` names this point; otherwise do nothing."""
    spec = os.environ.get(ENV, "")
    if not spec:
        return
    point, _, action = spec.partition(":")
    if point != name:
        return
    action = action or "kill"
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {name})")
    elif action == "pause":
        marker = Path(workspace or ".") / f".fault-{name}"
        marker.write_text(str(os.getpid()))
        while marker.exists():
            time.sleep(0.2)
    else:
        raise ValueError(f"{ENV}: unknown action {action!r} (one of {', '.join(ACTIONS)})")
