"""Fine-tuning as a job for data-parallel worker processes, while everything else stays in one process.

With `train_processes` 1, `run_training` simply calls `fine_tune` here. Above 1 it writes a job folder
(the arguments, the rows as Parquet, the settings as JSON) next to the output folder and runs

    python -m torch.distributed.run --standalone --nproc-per-node N \
        -m perennial.learning.training_job JOB/job.json

Each worker rebuilds the regulariser from the settings and calls `fine_tune`, which joins the process
group (gloo on CPU, NCCL with one GPU per process). Rank 0 saves the model and writes `result.json`;
the caller reads it back, then evaluates and registers once, as after a one-process run. A job file
runs under the user's own launcher too (`torchrun ...` or
`accelerate launch -m perennial.learning.training_job`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from perennial.core.settings import Settings
from perennial.learning.training import TrainResult, fine_tune

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
ERROR_PREFIX = "error-rank"  # error-rank<RANK>.txt: a failed worker's exception, for the caller's message


class TrainingJobFailed(RuntimeError):
    """The worker processes did not produce a trained model."""


def processes_for(settings: Settings) -> int:
    """How many training processes `settings` asks for (0: one per visible GPU, else 1)."""
    if settings.train_processes:
        return settings.train_processes
    import torch

    if settings.device != "cpu" and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


def run_training(
    init_from: str | Path,
    labels: Sequence[str],
    train: pd.DataFrame,
    val: pd.DataFrame,
    settings: Settings,
    out_dir: Path,
    *,
    tuning: str = "full",
    regularizer: str = "none",
    progress: bool = True,
) -> TrainResult:
    """`fine_tune` in this process, or in `train_processes` data-parallel workers.

    `regularizer` names one (none, lwf, ewc), built from `settings` where the training runs."""
    from perennial.learning.regularizers import build_regularizer

    processes = processes_for(settings)
    if processes == 1:
        return fine_tune(
            init_from,
            labels,
            train,
            val,
            settings.training,
            out_dir,
            progress,
            tuning=tuning,
            regularizer=build_regularizer(regularizer, settings.regularizers),
        )
    check_devices(settings, processes)
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Next to the output: inside the workspace, on the same disk, gone when the job is done.
    folder = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-job-", dir=out_dir.parent))
    try:
        arguments = {
            "init_from": str(init_from),
            "labels": list(labels),
            "out_dir": str(out_dir),
            "tuning": tuning,
            "regularizer": regularizer,
            "progress": progress,
        }
        job = write_job(folder, train, val, settings, arguments)
        result = launch(job, processes, settings)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # never leave a half-written model behind
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # What the caller waited for, process start-up included.
    result.seconds = time.perf_counter() - started
    return result


def check_devices(settings: Settings, processes: int) -> None:
    """NCCL needs a GPU of its own for each process: refuse more processes than GPUs."""
    from perennial.models.inference import resolve_device

    if resolve_device(settings.device).type != "cuda":
        return
    import torch

    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise ValueError(
            f"train_processes={processes} but {gpus} CUDA device(s) are visible: NCCL needs one GPU per "
            f"process; set train_processes to at most {gpus}, or device='cpu' for gloo on CPU"
        )


def write_job(
    folder: Path, train: pd.DataFrame, val: pd.DataFrame, settings: Settings, arguments: dict
) -> Path:
    """Write everything a worker needs into `folder`; returns the job file."""
    folder.mkdir(parents=True, exist_ok=True)
    # Only the columns training reads: other columns may hold types Parquet cannot store.
    train[["text", "label"]].reset_index(drop=True).to_parquet(folder / "train.parquet", index=False)
    val[["text", "label"]].reset_index(drop=True).to_parquet(folder / "val.parquet", index=False)
    values = settings.model_dump(mode="json")
    values["workspace"] = str(settings.root)  # absolute: the worker may start elsewhere
    # `arguments`: fine_tune's other inputs (init_from, labels, out_dir, tuning, regularizer, progress).
    job = {**arguments, "train": "train.parquet", "val": "val.parquet", "settings": values}
    path = folder / JOB_FILE
    path.write_text(json.dumps(job, indent=2))
    return path


def worker_command(job: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        "perennial.learning.training_job",
        str(job),
    ]


def launch(job: Path, processes: int, settings: Settings) -> TrainResult:
    """Run the job in `processes` workers and return rank 0's result; raise if any worker failed."""
    env = dict(os.environ)
    # torchrun would set 1 thread per worker (and say so); share the cores, or use torch_threads.
    env.setdefault("OMP_NUM_THREADS", str(settings.torch_threads or max(1, _cpus() // processes)))
    command = worker_command(job, processes)
    log.info("training in %d data-parallel processes: %s", processes, " ".join(command))
    # Output streams straight through (rank 0's progress bar included); the exit code decides.
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except BaseException:  # interrupted or cancelled: do not leave the workers training
        process.send_signal(signal.SIGTERM)  # torchrun passes it on to the workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    result_path = job.parent / RESULT_FILE
    if code != 0 or not result_path.is_file():
        raise TrainingJobFailed(failure_message(job.parent, code, processes))
    return TrainResult(**json.loads(result_path.read_text()))


def failure_message(folder: Path, code: int, processes: int) -> str:
    """One line naming what failed: the workers' own errors where they wrote one."""
    errors = []
    for path in sorted(folder.glob(f"{ERROR_PREFIX}*.txt")):
        rank = path.stem.removeprefix(ERROR_PREFIX)
        first = (path.read_text().strip().splitlines() or ["(empty)"])[0]
        errors.append(f"rank {rank}: {first}")
    what = "; ".join(errors) if errors else "no worker reported an error (killed?); see the output above"
    if code == 0:
        return f"distributed training ({processes} processes) exited without writing its result; {what}"
    return f"distributed training ({processes} processes) failed with exit code {code}; {what}"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_job(job_path: Path) -> TrainResult:
    """One worker's part: read the job, train (joining the process group), rank 0 writes the result."""
    from perennial.core.environment import configure
    from perennial.learning.regularizers import build_regularizer

    folder = job_path.parent
    job = json.loads(job_path.read_text())
    # Every field given, so no environment variable or settings file changes what the caller chose.
    settings = Settings(**job["settings"])
    configure(settings)
    result = fine_tune(
        job["init_from"],
        job["labels"],
        pd.read_parquet(folder / job["train"]),
        pd.read_parquet(folder / job["val"]),
        settings.training,
        Path(job["out_dir"]),
        job["progress"],
        tuning=job["tuning"],
        regularizer=build_regularizer(job["regularizer"], settings.regularizers),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        partial = folder / f"{RESULT_FILE}.partial"
        partial.write_text(json.dumps(result.to_dict(), indent=2))
        partial.replace(folder / RESULT_FILE)  # whole or absent
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            "usage: python -m perennial.learning.training_job JOB.json (under torchrun or accelerate launch)"
        )
        return 2
    job_path = Path(args[0]).resolve()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_job(job_path)
    except BaseException as exc:
        rank = os.environ.get("RANK", "0")
        (job_path.parent / f"{ERROR_PREFIX}{rank}.txt").write_text(
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        )
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
