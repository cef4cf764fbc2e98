"""overhead: one `perennial run` cycle against a plain script doing the same work (bench/plain_cycle.py).

Set-up (not timed): a workspace that has run one cycle on an earlier batch, so the measured cycle
warm-starts from a champion, replays earlier rows and is evaluated on two slices. Then, alternately,
`--repeats` times each, on a fresh copy of that workspace: `perennial run` on a new batch of `--rows`
examples, and the plain script on the same batch, champion, memory and earlier splits. Both are whole
processes (start-up and imports included). Reports the ratio of the medians (goal: at most 1.15).

    python bench/overhead.py                 # MiniLM, 2,000 examples, 3 repeats each (~20 min on 2 cores)
    python bench/overhead.py --rows 300 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from harness import (
    RESULTS,
    drop_batch,
    median,
    perennial,
    print_table,
    run_measured,
    vader_batches,
    workspace_env,
    write_result,
)

GOAL = 1.15


def prepared_workspace(root: Path, earlier, log_dir: Path) -> Path:
    """A workspace after one promoted cycle on `earlier` (the champion the measured cycle starts from)."""
    workspace = root / "prepared"
    drop_batch(workspace, earlier, "earlier")
    run_measured(perennial("run"), workspace_env(workspace), log_dir / "prepare.log")
    return workspace


def plain_command(prepared: Path, batch: Path, out: Path) -> list[str]:
    from perennial.config import Settings

    settings = Settings(workspace=prepared)
    champion = max(settings.models_dir.glob("v*"), key=lambda p: int(p.name[1:]))
    (earlier,) = [p for p in settings.batches_dir.iterdir() if p.is_dir()]
    memory = settings.memory_dir / f"{earlier.name}.parquet"  # the memory once that batch was added
    script = Path(__file__).with_name("plain_cycle.py")
    return [sys.executable, str(script), "--batch", str(batch), "--champion", str(champion),
            "--earlier", str(earlier), "--memory", str(memory), "--out", str(out)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows", type=int, default=2000, help="examples in the new batch (and the earlier one)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    earlier, new = vader_batches(2, args.rows)
    root = Path(tempfile.mkdtemp(prefix="perennial-bench-overhead-"))
    logs = args.out / "logs" / "overhead"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        prepared = prepared_workspace(root, earlier, logs)
        batch = root / "new.csv"
        new.to_csv(batch, index=False)
        runs: dict[str, list[float]] = {"perennial run": [], "plain script": []}
        for i in range(args.repeats):
            workspace = root / f"run-{i}"
            shutil.copytree(prepared, workspace)
            drop_batch(workspace, new, "new")
            cycle = run_measured(perennial("run"), workspace_env(workspace), logs / f"perennial-{i}.log")
            runs["perennial run"].append(cycle.seconds)
            plain = run_measured(
                plain_command(prepared, batch, root / f"plain-{i}"),
                workspace_env(prepared),
                logs / f"plain-{i}.log",
            )
            runs["plain script"].append(plain.seconds)
            shutil.rmtree(workspace)
            shutil.rmtree(root / f"plain-{i}", ignore_errors=True)
            print(
                f"repeat {i + 1}/{args.repeats}: perennial {cycle.seconds:.1f} s, plain {plain.seconds:.1f} s"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ratio = median(runs["perennial run"]) / median(runs["plain script"])
    rows = [
        {"what": k, "median_s": median(v), "runs_s": ", ".join(f"{s:.1f}" for s in v)}
        for k, v in runs.items()
    ]
    print_table(f"overhead: one cycle on {args.rows} new examples (whole processes)", rows)
    print(f"\nratio of medians: {ratio:.3f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'not met'})")
    path = write_result(
        "overhead",
        {"rows": args.rows, "repeats": args.repeats, "seconds": runs, "ratio": ratio, "goal": GOAL},
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
