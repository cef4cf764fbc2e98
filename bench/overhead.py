"""overhead: one `perennial run` cycle against a plain script doing the same work (bench/plain_cycle.py).

Set-up (not timed): a workspace that has run one cycle on an earlier batch, so the measured cycle
warm-starts from a champion, replays earlier rows and is evaluated on two slices. Then, alternately,
`--repeats` times each, on a fresh copy of that workspace: `perennial run` on a new batch of `--rows`
examples, and the plain script on the same batch, champion, memory and earlier splits. Both are whole
processes (start-up and imports included). Reports the ratio of the medians (goal: at most 1.15)
and its spread over the paired repeats (repeat i of each side ran back to back, under the same load):
a 95% percentile-bootstrap interval for the ratio of medians (10,000 resamples of the pairs, numpy,
fixed seed), and the per-repeat ratios with their min and max. With few repeats the bootstrap is
coarse (it can only recombine the pairs there are); the min-max range of the per-repeat ratios is
a distribution-free interval for their median, covering it with probability 1 - 2^(1 - repeats)
(94% at 5 repeats).

    python bench/overhead.py                 # MiniLM, 2,000 examples, 5 repeats each (~30 min on 2 cores)
    python bench/overhead.py --rows 300 --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
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
RESAMPLES = 10_000


def ratio_interval(ours: list[float], theirs: list[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval for median(ours) / median(theirs), resampling the pairs."""
    a, b = np.asarray(ours), np.asarray(theirs)
    picks = np.random.default_rng(0).integers(0, len(a), size=(RESAMPLES, len(a)))
    ratios = np.median(a[picks], axis=1) / np.median(b[picks], axis=1)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def prepared_workspace(root: Path, earlier, log_dir: Path) -> Path:
    """A workspace after one promoted cycle on `earlier` (the champion the measured cycle starts from)."""
    workspace = root / "prepared"
    drop_batch(workspace, earlier, "earlier")
    run_measured(perennial("run"), workspace_env(workspace), log_dir / "prepare.log")
    return workspace


def plain_command(prepared: Path, batch: Path, out: Path) -> list[str]:
    from perennial.core.settings import Settings

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
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, alternated")
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

    ours, theirs = runs["perennial run"], runs["plain script"]
    ratio = median(ours) / median(theirs)
    low, high = ratio_interval(ours, theirs)
    paired = [a / b for a, b in zip(ours, theirs, strict=True)]
    rows = [
        {"what": f"{k} (s)", "median": median(v), "per repeat": ", ".join(f"{s:.1f}" for s in v)}
        for k, v in runs.items()
    ]
    rows.append(
        {"what": "perennial / plain", "median": ratio, "per repeat": ", ".join(f"{r:.3f}" for r in paired)}
    )
    print_table(f"overhead: one cycle on {args.rows} new examples (whole processes)", rows)
    verdict = "met" if ratio <= GOAL else "not met"
    if ratio <= GOAL < high:
        verdict += ", but the interval reaches above it"
    print(
        f"\nratio of medians: {ratio:.3f}, 95% bootstrap interval {low:.3f}-{high:.3f} over "
        f"{args.repeats} paired repeats; per-repeat ratios {min(paired):.3f}-{max(paired):.3f} "
        f"(goal <= {GOAL}: {verdict})"
    )
    path = write_result(
        "overhead",
        {
            "rows": args.rows,
            "repeats": args.repeats,
            "seconds": runs,
            "ratio": ratio,
            "ratio_interval": {
                "method": f"95% percentile bootstrap over the paired repeats, {RESAMPLES} resamples",
                "low": low,
                "high": high,
            },
            "paired_ratios": paired,
            "paired_ratio_range": [min(paired), max(paired)],
            "goal": GOAL,
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
