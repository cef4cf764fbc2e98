"""serve: texts per second through `mlflow models serve` for the registered champion.

Set-up (not timed): a workspace whose champion was trained by one short cycle. Then
`mlflow models serve -m models:/<name>@champion --env-manager local` on a free port, the way the
README serves it; the seconds until /ping answers are reported, not counted. Then `--texts` short real
sentences (tweets and review snippets) are POSTed to /invocations as `{"inputs": [...]}` in requests
of `--request-size` texts, one request after another: texts / seconds of the whole send (goal: at
least 500/s). Every text must come back with one of the champion's labels.

    python bench/serve.py                    # MiniLM, 2,000 texts (~1 min on 2 cores, most of it set-up)
    python bench/serve.py --texts 500 --request-size 50
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    BIN,
    RESULTS,
    mib,
    print_table,
    workspace_with_champion,
    write_result,
)
from predict import short_texts

from perennial.core.startup import _free_port as free_port  # one free-port probe for the project

TEXTS_GOAL = 500.0
START_TIMEOUT_S = 300.0


def _tracking_uri(workspace: Path) -> str:
    """The workspace's MLflow store, as `perennial` itself resolves it (caller's settings included)."""
    from perennial.core.settings import Settings

    return Settings(workspace=workspace).mlflow_tracking_uri


def _model_name(workspace: Path) -> str:
    from perennial.core.settings import Settings

    return Settings(workspace=workspace).registered_model_name


def _wait_for_ping(server: subprocess.Popen, url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {server.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"mlflow models serve did not answer {url} in {START_TIMEOUT_S:.0f} s; see {log}")


def _tree_rss(pid: int) -> int:
    """RSS of the server and its children now (uvicorn runs the model in a child)."""
    import psutil

    total = 0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def _stop(server: subprocess.Popen) -> None:
    """The server and its workers: it was started in its own session, so its group is all of them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _send(url: str, texts: list[str], size: int, labels: set[str]) -> tuple[float, list[float]]:
    """POST every text in requests of `size`; the whole send's seconds and each request's seconds."""
    import httpx

    latencies = []
    with httpx.Client(timeout=600) as client:
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            sent = time.perf_counter()
            response = client.post(url, json={"inputs": chunk})
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                raise RuntimeError(f"/invocations answered {response.status_code}: {response.text[:500]}")
            predictions = response.json()["predictions"]
            if len(predictions) != len(chunk):
                raise RuntimeError(f"{len(predictions)} predictions for a request of {len(chunk)} texts")
            wrong = [p for p in predictions if p.get("label") not in labels]
            if wrong:
                raise RuntimeError(f"predictions without one of the labels {sorted(labels)}: {wrong[:3]}")
        seconds = time.perf_counter() - started
    return seconds, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--request-size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    logs = args.out / "logs" / "serve"
    logs.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="perennial-bench-serve-"))
    server = None
    try:
        batch, env = workspace_with_champion(workspace, logs / "prepare.log")
        labels = set(batch["label"].astype(str))
        texts = short_texts(args.texts)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        model = f"models:/{_model_name(workspace)}@champion"
        command = [
            str(BIN / "mlflow"),
            *("models", "serve", "-m", model, "--env-manager", "local"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        server_env = {
            **env,
            "MLFLOW_TRACKING_URI": _tracking_uri(workspace),
            # The server execs `uvicorn` by name: this environment's, also when it is not activated.
            "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")]),
        }
        server_log = logs / "server.log"
        with open(server_log, "w") as out:
            started = time.perf_counter()
            server = subprocess.Popen(
                command, env=server_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            _wait_for_ping(server, f"{base}/ping", server_log)
            start_seconds = time.perf_counter() - started
            seconds, latencies = _send(f"{base}/invocations", texts, args.request_size, labels)
            server_rss = _tree_rss(server.pid)
            _stop(server)
            server = None
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(workspace, ignore_errors=True)

    rate = len(texts) / seconds
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2]
    rows = [
        {
            "measure": f"mlflow models serve, {len(texts)} texts in requests of {args.request_size}",
            "value": rate,
            "unit": "texts/s",
            "goal": f">= {TEXTS_GOAL:.0f}",
        },
        {"measure": "  the whole send", "value": seconds, "unit": "s", "goal": ""},
        {"measure": "  first request", "value": latencies[0], "unit": "s", "goal": ""},
        {"measure": "  median request", "value": p50, "unit": "s", "goal": ""},
        {"measure": "  server memory after the send", "value": mib(server_rss), "unit": "MiB", "goal": ""},
        {"measure": "server start to /ping (not counted)", "value": start_seconds, "unit": "s", "goal": ""},
    ]
    print_table("serve: the champion through mlflow models serve, server start excluded", rows)
    path = write_result(
        "serve",
        {
            "texts": len(texts),
            "request_size": args.request_size,
            "requests": len(latencies),
            "mean_chars": sum(map(len, texts)) / len(texts),
            "seconds": seconds,
            "texts_per_s": rate,
            "request_seconds": latencies,
            "median_request_s": p50,
            "start_seconds": start_seconds,
            "server_rss_mib": mib(server_rss),
            "goals": {"texts_per_s": TEXTS_GOAL},
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
