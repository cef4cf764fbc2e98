"""The team stack's services as real processes for tests: PostgreSQL from Debian's packages (a throwaway
cluster on 127.0.0.1), an MLflow tracking server and a Prefect server on it."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from processes import answers, free_port, stop_group, wait_for

USER, PASSWORD = "perennial", "team-stack-test"


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server programs (newest version), or those on PATH; None when not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class Postgres:
    port: int

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg2

        with contextlib.closing(psycopg2.connect(self.url(database))) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def postgres(databases: tuple[str, ...]) -> Iterator[Postgres]:
    """A fresh cluster in a temporary folder, password-protected, listening on 127.0.0.1 only.

    PostgreSQL refuses to run as root, so as root the server runs as Debian's `postgres` user."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "PostgreSQL is not installed (make test installs it with apt)"
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="perennial-pg-"))  # not under pytest's root-only tmp
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o644)
    data = folder / "data"
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
           "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C")  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        server = Postgres(port)
        for name in databases:
            server.query("postgres", f"CREATE DATABASE {name}")
        yield server
    finally:
        if data.exists():
            with contextlib.suppress(subprocess.SubprocessError):
                pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}, **extra)
    return env


@contextlib.contextmanager
def mlflow_server(db: Postgres, artifacts: Path, port: int, log: Path) -> Iterator[str]:
    """`mlflow server` with its registry in PostgreSQL and artifacts proxied to a shared folder."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", db.url("mlflow"), "--artifacts-destination", str(artifacts),
               "--workers", "1"]  # fmt: skip
    with _serving(command, _quiet_env(), log, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def prefect_server(db: Postgres, home: Path, port: int, log: Path) -> Iterator[str]:
    """`prefect server start` with its database in PostgreSQL (asyncpg)."""
    env = _quiet_env(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=db.url("prefect", driver="postgresql+asyncpg"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with _serving(command, env, log, f"http://127.0.0.1:{port}/api/health"):
        yield f"http://127.0.0.1:{port}/api"


@contextlib.contextmanager
def _serving(command: list[str], env: dict[str, str], log: Path, health: str) -> Iterator[None]:
    """Start a server (output appended to `log`, never a pipe nobody reads), wait until `health`
    answers, and stop it with all its workers afterwards."""
    with log.open("a") as out:
        process = subprocess.Popen(command, env=env, start_new_session=True, stdout=out, stderr=out)
    try:
        wait_for(lambda: process.poll() is not None or answers(health), 180, f"{command[2]} at {health}")
        assert process.poll() is None, f"{command[2]} exited:\n{log.read_text()[-3000:]}"
        yield
    finally:
        stop_group(process)
