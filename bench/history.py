"""history, memory and storage: one series of cycles, each a whole `perennial run` process.

Nine batches of `--rows` real sentences (the VADER domains in turn) arrive one at a time in one
workspace; cycle k runs with k earlier batches. Same new-batch size and replay budget every cycle.
From the same runs:

* history: cycle wall time against the number of earlier batches (goal: 8 earlier <= 1.3x 1 earlier);
* memory: peak resident memory of the cycle's process, and of its process tree (Prefect's temporary
  server included), with 1 and 8 earlier batches (goal: <= 3 GiB, not growing with history);
* storage: bytes each cycle adds to the registry's artifact store, the local model copies, and the
  whole workspace, with the decision and what the retention policy deleted.

    python bench/history.py                  # MiniLM, 9 batches of 500 (~10 min on 2 cores)
    python bench/history.py --rows 200 --batches 5
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
from pathlib import Path

from harness import (
    RESULTS,
    drop_batch,
    mib,
    perennial,
    print_table,
    run_measured,
    vader_batches,
    workspace_env,
    write_result,
)

TIME_GOAL = 1.3
MEMORY_GOAL_GIB = 3.0


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def storage(workspace: Path) -> dict[str, int]:
    return {
        "registry": folder_bytes(workspace / "mlartifacts"),
        "local_models": folder_bytes(workspace / "models"),
        "workspace": folder_bytes(workspace),
    }


def last_decision(workspace: Path) -> str:
    with sqlite3.connect(workspace / "ledger.sqlite") as db:
        row = db.execute("SELECT status FROM batches ORDER BY rowid DESC LIMIT 1").fetchone()
    return row[0] if row else "?"


def run_series(rows: int, count: int, out: Path) -> list[dict]:
    batches = vader_batches(count, rows)
    logs = out / "logs" / "history"
    logs.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="perennial-bench-history-"))
    series = []
    try:
        before = storage(workspace)
        for earlier, batch in enumerate(batches):
            drop_batch(workspace, batch, f"batch-{earlier:02d}")
            cycle = run_measured(
                perennial("run"), workspace_env(workspace), logs / f"cycle-{earlier:02d}.log"
            )
            after = storage(workspace)
            series.append(
                {
                    "earlier_batches": earlier,
                    "seconds": cycle.seconds,
                    "peak_rss_mib": mib(cycle.peak_rss_bytes),
                    "peak_tree_rss_mib": mib(cycle.peak_tree_rss_bytes),
                    "status": last_decision(workspace),
                    **{f"added_{k}_mib": mib(after[k] - before[k]) for k in after},
                    "registry_total_mib": mib(after["registry"]),
                }
            )
            before = after
            print(
                f"cycle with {earlier} earlier batch(es): {cycle.seconds:.1f} s, "
                f"peak {mib(cycle.peak_rss_bytes):.0f} MiB, {series[-1]['status']}",
                flush=True,
            )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500, help="examples per batch")
    parser.add_argument("--batches", type=int, default=9, help="batches in the series (9: up to 8 earlier)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    series = run_series(args.rows, args.batches, args.out)
    by_earlier = {c["earlier_batches"]: c for c in series}
    last = series[-1]["earlier_batches"]
    settings = {"rows_per_batch": args.rows, "batches": args.batches}

    columns = ("earlier_batches", "seconds", "status")
    print_table("history: cycle wall time by earlier batches", [{k: c[k] for k in columns} for c in series])
    ratio = by_earlier[last]["seconds"] / by_earlier[1]["seconds"] if last >= 1 else None
    if ratio is not None:
        print(f"\n{last} earlier / 1 earlier: {ratio:.3f} (goal <= {TIME_GOAL})")
    write_result(
        "history", {**settings, "cycles": series, "ratio_last_to_one": ratio, "goal": TIME_GOAL}, args.out
    )

    columns = ("earlier_batches", "peak_rss_mib", "peak_tree_rss_mib")
    print_table("memory: peak resident memory per cycle", [{k: c[k] for k in columns} for c in series])
    peak_gib = max(c["peak_tree_rss_mib"] for c in series) / 1024
    print(f"\nhighest peak (process tree): {peak_gib:.2f} GiB (goal <= {MEMORY_GOAL_GIB} GiB)")
    write_result(
        "memory", {**settings, "cycles": series, "peak_gib": peak_gib, "goal_gib": MEMORY_GOAL_GIB}, args.out
    )

    columns = (
        "earlier_batches",
        "status",
        "added_registry_mib",
        "added_local_models_mib",
        "added_workspace_mib",
        "registry_total_mib",
    )
    print_table("storage: bytes added per cycle", [{k: c[k] for k in columns} for c in series])
    per_cycle = (series[-1]["registry_total_mib"]) / len(series)
    print(f"\nregistry: {per_cycle:.1f} MiB per cycle on average over {len(series)} cycles")
    path = write_result(
        "storage", {**settings, "cycles": series, "registry_mib_per_cycle": per_cycle}, args.out
    )
    print(f"wrote {path.parent}/history.json, memory.json, storage.json")


if __name__ == "__main__":
    main()
