"""predict: texts per second through `perennial predict`, each engine in-process, and start-up time.

Set-up: a workspace whose champion was trained by one short cycle (not timed), and a first
`perennial predict` of one text (timed apart: it makes the ONNX export, once per champion). Then
`perennial predict --file` on `--texts` short real sentences (tweets and review snippets), as a whole
process, start-up and model loading included: texts / wall seconds (goal: at least 300/s), with the
engine and precision that ran. In-process, on the same champion and the first `--compare` texts:
texts/s of each engine (torch float32, ONNX Runtime float32, torch bfloat16 where it is native) and
how often each gives torch float32's label. And `perennial --help`, the median of five whole
processes (goal: under 1 s).

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
    median,
    mib,
    perennial,
    print_table,
    run_measured,
    workspace_with_champion,
    write_result,
)

TEXTS_GOAL = 300.0
HELP_GOAL_S = 1.0


def short_texts(count: int) -> list[str]:
    from perennial.data.vader import DOMAINS, load_domain

    pool = pd.concat([load_domain(d)["text"] for d in DOMAINS], ignore_index=True)
    texts = pool[pool.str.len() <= 200].str.replace("\n", " ").tolist()
    return (texts * (count // len(texts) + 1))[:count]


def _plan() -> tuple[str, str]:
    """The engine and precision `perennial predict` resolves to here (the caller's settings)."""
    from perennial.core.settings import Settings
    from perennial.serving.onnx_predict import resolve_engine

    return resolve_engine(Settings())


def compare_engines(model_dir: Path, texts: list[str]) -> dict[str, dict]:
    """Texts/s of each available engine in this process, and its agreement with torch float32."""
    import time

    import numpy as np
    import torch

    from perennial.core.precision import cpu_has_native_bf16, inference_precision
    from perennial.core.settings import Settings
    from perennial.models.inference import load_model_dir, predict

    settings = Settings()
    kwargs = {"batch_size": settings.eval_batch_size, "max_length": settings.max_length}
    model, tokenizer = load_model_dir(model_dir, "cpu")
    cpu = torch.device("cpu")

    def torch_run(precision: str) -> tuple[np.ndarray, np.ndarray]:
        with inference_precision(precision, cpu):
            return predict(model, tokenizer, texts, device=cpu, **kwargs)

    runs = {"torch float32": lambda: torch_run("float32")}
    if cpu_has_native_bf16():  # emulated bfloat16 is several times slower: not worth the wait
        runs["torch bfloat16"] = lambda: torch_run("bfloat16")
    try:
        from perennial.serving.onnx_predict import OnnxClassifier

        classifier = OnnxClassifier(model_dir, settings.torch_threads)  # exported already by the CLI
        runs["onnxruntime float32"] = lambda: classifier.predict(texts, **kwargs)
    except ImportError as error:  # onnxruntime not installed: torch alone
        print(f"onnxruntime skipped: {error}")
    results: dict[str, dict] = {}
    reference = None
    for name, run in runs.items():
        run_started = time.perf_counter()
        ids, _ = run()
        seconds = time.perf_counter() - run_started
        reference = ids if reference is None else reference
        results[name] = {"texts_per_s": len(texts) / seconds, "agreement": float(np.mean(ids == reference))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=3_000, help="texts for the in-process comparison")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    logs = args.out / "logs" / "predict"
    logs.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="perennial-bench-predict-"))
    try:
        batch, env = workspace_with_champion(workspace, logs / "prepare.log")

        # The first predict of a champion makes its ONNX export (when that engine runs): timed apart.
        first = run_measured(perennial("predict", "warm up"), env, logs / "first.log")
        texts = short_texts(args.texts)
        file = workspace / "texts.txt"
        file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        scored = run_measured(perennial("predict", "--file", str(file)), env, logs / "predict.log")
        output = (logs / "predict.log").read_text(encoding="utf-8").splitlines()
        lines = sum(1 for line in output if line.count("\t") >= 2)
        if lines != len(texts):
            raise RuntimeError(f"perennial predict printed {lines} predictions for {len(texts)} texts")
        engine, precision = _plan()
        if any("predicting with torch" in line for line in output):  # ONNX Runtime could not run
            engine = "torch (fallback)"
        (model_dir,) = [p for p in (workspace / "models").glob("v*") if (p / "config.json").is_file()]
        engines = compare_engines(model_dir, texts[: args.compare])
        helps = [run_measured(perennial("--help"), dict(os.environ)).seconds for _ in range(5)]
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    rate = len(texts) / scored.seconds
    rows = [
        {
            "measure": f"perennial predict, {len(texts)} texts ({engine}, {precision})",
            "value": rate,
            "unit": "texts/s",
            "goal": ">= 300",
        },
        {"measure": "  its wall time", "value": scored.seconds, "unit": "s", "goal": ""},
        {"measure": "  its peak memory", "value": mib(scored.peak_rss_bytes), "unit": "MiB", "goal": ""},
        {"measure": "first predict of a champion (export)", "value": first.seconds, "unit": "s", "goal": ""},
        {"measure": "perennial --help (median of 5)", "value": median(helps), "unit": "s", "goal": "< 1"},
    ]
    print_table("predict: whole processes, start-up included", rows)
    compared = min(len(texts), args.compare)
    print_table(
        f"predict in-process, {compared} texts, the same champion",
        [
            row
            for name, result in engines.items()
            for row in (
                {"measure": name, "value": result["texts_per_s"], "unit": "texts/s", "goal": ""},
                {
                    "measure": "  labels as torch float32",
                    "value": 100 * result["agreement"],
                    "unit": "%",
                    "goal": "",
                },
            )
        ],
    )
    mean_chars = sum(map(len, texts)) / len(texts)
    path = write_result(
        "predict",
        {
            "texts": len(texts),
            "mean_chars": mean_chars,
            "seconds": scored.seconds,
            "texts_per_s": rate,
            "engine": engine,
            "precision": precision,
            "first_predict_seconds": first.seconds,
            "in_process": {"texts": compared, "engines": engines},
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
