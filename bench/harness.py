"""What every benchmark shares: whole-process timing with peak memory, the data, and the report.

Benchmarks run `perennial` (and their baselines) as whole processes, the way a user or a scheduler
does, so start-up, imports and orchestration are all counted. PERENNIAL_* variables in the caller's
environment pass through (the tests use them to run every benchmark on a tiny model in seconds).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

BIN = Path(sys.executable).parent
RESULTS = Path("results")


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_bytes: int  # the process itself
    peak_tree_rss_bytes: int  # the process and its children together (e.g. Prefect's temporary server)
    returncode: int


def run_measured(
    command: Sequence[str], env: Mapping[str, str] | None = None, log: Path | None = None
) -> Measured:
    """Run `command` to completion; wall time, the process's peak RSS (from the kernel) and the
    peak of the whole process tree's RSS (sampled every 0.2 s). Raises if it fails."""
    import psutil

    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), env=dict(env or os.environ), stdout=out, stderr=subprocess.STDOUT
    )
    tree_peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        try:
            root = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not done.wait(0.2):
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                continue
            tree_peak = max(tree_peak, total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if log:
        out.close()
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code  # reaped by wait4, not by Popen
    if code != 0:
        where = f"; see {log}" if log else ""
        raise RuntimeError(f"{' '.join(command)} exited with {code}{where}")
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    return Measured(seconds, peak, max(tree_peak, peak), code)


def perennial(*args: str) -> list[str]:
    return [str(BIN / "perennial"), *args]


def workspace_env(workspace: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment aimed at `workspace`; inbox files are ingested without waiting."""
    return {
        **os.environ,
        "PERENNIAL_WORKSPACE": str(workspace),
        "PERENNIAL_INBOX_SETTLE_SECONDS": "0",
        **overrides,
    }


def vader_batches(count: int, rows: int, seed: int = 0) -> list[pd.DataFrame]:
    """`count` disjoint labelled batches of `rows` real sentences, the VADER domains in turn."""
    from perennial.data.vader import DOMAINS, load_domain

    domains = list(DOMAINS)
    pools = {d: load_domain(d).sample(frac=1.0, random_state=seed).reset_index(drop=True) for d in domains}
    taken = dict.fromkeys(domains, 0)
    batches = []
    for i in range(count):
        domain = domains[i % len(domains)]
        start = taken[domain]
        part = pools[domain].iloc[start : start + rows]
        if len(part) < rows:
            raise ValueError(f"domain {domain} has too few rows for {count} batches of {rows}")
        taken[domain] += rows
        batches.append(part[["text", "label"]].reset_index(drop=True))
    return batches


def drop_batch(workspace: Path, frame: pd.DataFrame, name: str) -> Path:
    inbox = workspace / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    import torch

    from perennial.core.precision import cpu_has_native_bf16

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        # Whether bfloat16 is native here decides what train/predict_precision "auto" runs.
        "native_bf16": cpu_has_native_bf16(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def write_result(name: str, result: dict, out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    stamped = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    path.write_text(json.dumps({**stamped, **result}, indent=2, default=_plain) + "\n")
    return path


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    return str(value)


def print_table(title: str, rows: Sequence[Mapping[str, object]]) -> None:
    """A plain aligned table on stdout."""
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def mib(n: int) -> float:
    return n / 2**20


def workspace_with_champion(workspace: Path, log: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """A workspace whose champion comes from one short cycle on 300 VADER tweets, and its environment.

    The champion's accuracy does not matter to the benchmarks that need one, only that it exists:
    one epoch, and any first model is promoted (no baseline to beat, no significance needed)."""
    (batch,) = vader_batches(1, 300)
    drop_batch(workspace, batch, "first")
    env = workspace_env(
        workspace,
        PERENNIAL_EPOCHS="1",
        PERENNIAL_MIN_DELTA="-1",
        PERENNIAL_REQUIRE_SIGNIFICANT_GAIN="false",
        PERENNIAL_MIN_MACRO_F1_GAIN="-1",
    )
    run_measured(perennial("run"), env, log)
    return batch, env
