"""The pipeline on a development stream: real `perennial run` cycles, gate on, against joint.

The forgetting benchmark measures methods without the gate. This measures what a user gets: every
slice of the stream is dropped in the inbox as a batch file (in order, the label set declared
upfront), one `perennial run` trains and decides each in turn with default settings (the gate, the
retry on forgetting), and the champion after the last batch is scored on every slice's test split,
as the pipeline split them. The reference is joint retraining on the same splits (`perennial bench
forgetting --from-workspace --strategies joint`). #18's goal: the final champion reaches at least
97% of joint's final average accuracy, on every development stream.

    python bench/pipeline.py --dataset trec-classes --rows 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
from harness import RESULTS, perennial, print_table, run_measured, workspace_env, write_result

from perennial.benchmarks.streams import DEV_STREAMS
from perennial.core.settings import Settings
from perennial.data.stream import write_stream

GOAL = 0.97


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DEV_STREAMS), default="trec-classes")
    parser.add_argument("--rows", type=int, default=300, help="rows per slice (class-stratified sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    logs = args.out / "logs" / "pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="perennial-bench-pipeline-"))
    try:
        stream = DEV_STREAMS[args.dataset](args.seed, Settings(workspace=workspace), rows=args.rows)
        # Each slice's rows whole: the pipeline splits them itself.
        parts = [(s.name, pd.concat([s.train, s.val, s.test])[["text", "label"]]) for s in stream.slices]
        write_stream(parts, workspace / "inbox", "csv")
        env = workspace_env(workspace, PERENNIAL_LABELS=json.dumps(stream.labels))
        run = run_measured(perennial("run"), env, logs / "run.log")
        joint_out = workspace / "joint"
        run_measured(
            perennial(
                "bench", "forgetting", "--from-workspace", "--strategies", "joint", "--seeds", "1",
                "--out", str(joint_out),
            ),
            env,
            logs / "joint.log",
        )  # fmt: skip
        joint = json.loads((joint_out / "forgetting.json").read_text())
        settings = Settings(workspace=workspace)
        champion = _champion_record(settings)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    joint_acc = joint["strategies"]["joint"]["avg_acc"]["mean"]
    ratio = champion["avg_acc"] / joint_acc if champion["avg_acc"] is not None else None
    rows = [
        {
            "measure": "champion after the last batch: average accuracy",
            "value": champion["avg_acc"],
            "goal": "",
        },
        {"measure": "joint retraining on the same splits", "value": joint_acc, "goal": ""},
        {"measure": "champion / joint", "value": ratio, "goal": f">= {GOAL:.2f}"},
        {"measure": "batches promoted", "value": champion["promoted"], "goal": ""},
        {"measure": "batches retried after forgetting", "value": champion["retried"], "goal": ""},
        {"measure": "perennial run, seconds", "value": run.seconds, "goal": ""},
    ]
    print_table(f"pipeline on {stream.description}", rows)
    path = write_result(
        "pipeline",
        {
            "stream": stream.description,
            "dataset": args.dataset,
            "rows_per_slice": args.rows,
            "seed": args.seed,
            "run_exit_code": run.returncode,
            "run_seconds": run.seconds,
            "champion": champion,
            "joint_avg_acc": joint_acc,
            "champion_vs_joint": ratio,
            "goal": GOAL,
            "goal_met": ratio is not None and ratio >= GOAL,
        },
        args.out,
    )
    print(f"wrote {path}")


def _champion_record(settings: Settings) -> dict:
    """The champion's accuracy matrix over the cycles, its final average accuracy and each decision."""
    from perennial.evaluation.champion_history import continual_metrics
    from perennial.workspace import ledger_for

    matrix, summary = continual_metrics(settings)
    cycles = ledger_for(settings).cycles()
    decisions = [
        {
            "batch_id": c.batch_id,
            "decision": c.decision,
            "retried": bool(c.reasons) and c.reasons[0].startswith("attempt 1"),
            "reasons": c.reasons,
        }
        for c in cycles
    ]
    # The champion after the last batch, on every slice it was scored on. The summary is undefined
    # when an early batch got no champion; the last row still says where the stream ended.
    final = [value for value in matrix.iloc[-1].tolist() if value == value] if len(matrix) else []
    return {
        "avg_acc": sum(final) / len(final) if final else None,
        "slices_scored": int(len(final)),
        "summary": summary,
        "matrix": json.loads(matrix.to_json(orient="split")),
        "decisions": decisions,
        "promoted": sum(d["decision"] == "promote" for d in decisions),
        "retried": sum(d["retried"] for d in decisions),
    }


if __name__ == "__main__":
    sys.exit(main())
