#!/usr/bin/env python3
"""Entry points of the team stack's containers (installed in the image as `perennial-stack`).

    perennial-stack mlflow        MLflow tracking server: PostgreSQL backend, proxied artifacts
    perennial-stack worker        Prefect process worker: pool, deployments from deployments/prefect.yaml
    perennial-stack health URL    exit 0 when URL answers 200 (health checks; slim images have no curl)

Credentials come from the environment (docker/team.env), never from arguments or the image: the MLflow
backend URI is built here, its password URL-encoded, and handed to MLflow through its environment
variable, so it shows in no process list.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

MLFLOW_PORT = 5000
# Host headers the MLflow server accepts (its DNS-rebinding guard): the service name for the other
# containers, loopback for the published port. Set MLFLOW_SERVER_ALLOWED_HOSTS to expose it further.
MLFLOW_ALLOWED_HOSTS = "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
ARTIFACTS_DESTINATION = "/mlartifacts"


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"perennial-stack: {name} is not set (see docker/team.env.example)")
    return value


def mlflow_backend_uri(environ: Mapping[str, str]) -> str:
    """`postgresql://user:password@host:port/db` from MLFLOW_DB_* variables, the password URL-encoded.

    MLFLOW_BACKEND_STORE_URI, when set, wins (any SQLAlchemy URL, e.g. a managed database)."""
    if environ.get("MLFLOW_BACKEND_STORE_URI"):
        return environ["MLFLOW_BACKEND_STORE_URI"]
    from sqlalchemy.engine import URL

    password = environ.get("MLFLOW_DB_PASSWORD", "")
    if not password:
        sys.exit("perennial-stack: MLFLOW_DB_PASSWORD is not set (see docker/team.env.example)")
    url = URL.create(
        "postgresql",
        username=environ.get("MLFLOW_DB_USER", "mlflow"),
        password=password,
        host=environ.get("MLFLOW_DB_HOST", "postgres"),
        port=int(environ.get("MLFLOW_DB_PORT", "5432")),
        database=environ.get("MLFLOW_DB_NAME", "mlflow"),
    )
    return url.render_as_string(hide_password=False)


def mlflow_server() -> None:
    """Exec `mlflow server`. Artifacts are proxied: clients upload and download through the server, which
    keeps them in MLFLOW_ARTIFACTS_DESTINATION (the shared volume by default; s3://bucket/prefix with
    AWS_* credentials and, for MinIO and other S3-compatible stores, MLFLOW_S3_ENDPOINT_URL)."""
    os.environ["MLFLOW_BACKEND_STORE_URI"] = mlflow_backend_uri(os.environ)
    os.environ.setdefault("MLFLOW_ARTIFACTS_DESTINATION", ARTIFACTS_DESTINATION)
    os.environ.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", MLFLOW_ALLOWED_HOSTS)
    command = ["mlflow", "server", "--host", "0.0.0.0", "--port", str(MLFLOW_PORT), "--serve-artifacts"]
    if os.environ.get("MLFLOW_WORKERS"):
        command += ["--workers", os.environ["MLFLOW_WORKERS"]]
    os.execvp(command[0], command)


def work_pools(prefect_file: Path) -> list[str]:
    """The work pools the deployments in prefect_file name, in order of first use."""
    import yaml

    document = yaml.safe_load(prefect_file.read_text())
    pools: list[str] = []
    for deployment in document.get("deployments", []):
        name = (deployment.get("work_pool") or {}).get("name")
        if name and name not in pools:
            pools.append(name)
    return pools


def ensure_process_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
                logging.info("created process work pool %s", name)
            except ObjectAlreadyExists:  # another worker created it meanwhile
                pass
            return
    if pool.type != "process":
        sys.exit(f"perennial-stack: work pool {name} exists with type {pool.type}, not process")


def worker() -> None:
    """Prepare the workspace, create the work pool(s), deploy, then exec the Prefect worker."""
    from perennial.core.environment import configure
    from perennial.core.settings import Settings

    required("PREFECT_API_URL")
    home = Path(os.environ.get("PERENNIAL_HOME", "/app"))
    prefect_file = home / "deployments" / "prefect.yaml"
    configure(Settings())  # workspace folders, offline and quiet defaults
    pools = work_pools(prefect_file)
    if len(pools) != 1:
        sys.exit(f"perennial-stack: expected one work pool in {prefect_file}, found {pools}")
    ensure_process_pool(pools[0])
    # Idempotent: re-running updates the deployments, their schedules and triggers.
    deploy = ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    subprocess.run(deploy, cwd=home, check=True)
    command = ["prefect", "worker", "start", "--pool", pools[0], "--type", "process"]
    command += ["--with-healthcheck", "--install-policy", "never"]
    os.chdir(home)
    os.execvp(command[0], command)


def health(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 0 if response.status == 200 else 1
    except Exception as error:  # any failure is "unhealthy"; say why in `docker inspect`
        print(f"{url}: {error}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    match argv:
        case ["mlflow"]:
            mlflow_server()
        case ["worker"]:
            worker()
        case ["health", url]:
            return health(url)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
