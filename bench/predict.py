"""predict: texts per second through `perennial predict`, and the CLI's start-up time.

Set-up (not timed): a workspace whose champion was trained by one short cycle. Then
`perennial predict --file` on `--texts` short real sentences (tweets and review snippets), as a whole
process, start-up and model loading included: texts / wall seconds (goal: at least 300/s). And
`perennial --help`, the median of five whole processes (goal: under 1 s).

    python bench/predict.py                  # MiniLM, 10,000 texts (~2 min on 2 cores)
    python bench/predict.py --texts 500
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from harness import (
    RESULTS,
    drop_batch,
    median,
    mib,
    perennial,
    print_table,
    run_measured,
    vader_batches,
    workspace_env,
    write_result,
)

TEXTS_GOAL = 300.0
HELP_GOAL_S = 1.0


def short_texts(count: int) -> list[str]:
    from perennial.vader import DOMAINS, load_domain

    pool = pd.concat([load_domain(d)["text"] for d in DOMAINS], ignore_index=True)
    texts = pool[pool.str.len() <= 200].str.replace("\n", " ").tolist()
    return (texts * (count // len(texts) + 1))[:count]


def _precision() -> str:
    """What `predict_precision` resolves to here (the caller's settings, on the CPU)."""
    import torch

    from perennial.config import Settings
    from perennial.precision import resolve_precision

    return resolve_precision(Settings().predict_precision, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    logs = args.out / "logs" / "predict"
    logs.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="perennial-bench-predict-"))
    try:
        (batch,) = vader_batches(1, 300)
        drop_batch(workspace, batch, "first")
        # One short cycle makes a champion; its accuracy does not matter here, only that it exists.
        env = workspace_env(
            workspace,
            PERENNIAL_EPOCHS="1",
            # Any first model is promoted: no baseline to beat, no significance needed.
            PERENNIAL_MIN_DELTA="-1",
            PERENNIAL_REQUIRE_SIGNIFICANT_GAIN="false",
            PERENNIAL_MIN_MACRO_F1_GAIN="-1",
        )
        run_measured(perennial("run"), env, logs / "prepare.log")

        texts = short_texts(args.texts)
        file = workspace / "texts.txt"
        file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        scored = run_measured(perennial("predict", "--file", str(file)), env, logs / "predict.log")
        output = (logs / "predict.log").read_text(encoding="utf-8").splitlines()
        lines = sum(1 for line in output if line.count("\t") >= 2)
        if lines != len(texts):
            raise RuntimeError(f"perennial predict printed {lines} predictions for {len(texts)} texts")
        helps = [run_measured(perennial("--help"), dict(os.environ)).seconds for _ in range(5)]
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    rate = len(texts) / scored.seconds
    precision = _precision()
    rows = [
        {
            "measure": f"perennial predict, {len(texts)} texts",
            "value": rate,
            "unit": "texts/s",
            "goal": ">= 300",
        },
        {"measure": "  its wall time", "value": scored.seconds, "unit": "s", "goal": ""},
        {"measure": "  its peak memory", "value": mib(scored.peak_rss_bytes), "unit": "MiB", "goal": ""},
        {"measure": "perennial --help (median of 5)", "value": median(helps), "unit": "s", "goal": "< 1"},
    ]
    print_table("predict: whole processes, start-up included", rows)
    mean_chars = sum(map(len, texts)) / len(texts)
    path = write_result(
        "predict",
        {
            "texts": len(texts),
            "mean_chars": mean_chars,
            "seconds": scored.seconds,
            "texts_per_s": rate,
            "precision": precision,
            "peak_rss_mib": mib(scored.peak_rss_bytes),
            "help_seconds": helps,
            "help_median_s": median(helps),
            "goals": {"texts_per_s": TEXTS_GOAL, "help_s": HELP_GOAL_S},
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
