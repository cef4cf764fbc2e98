"""deployments/kubernetes/: the Kubernetes work pool example stays runnable and in step with the process
pool's deployments/prefect.yaml and with the image (docker/Dockerfile)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deployments" / "kubernetes"
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
POOL = "perennial-k8s"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|AUTH_STRING", re.IGNORECASE)


@pytest.fixture(scope="module")
def k8s_prefect() -> dict[str, Any]:
    return yaml.safe_load((K8S / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all((K8S / "worker.yaml").read_text()) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    assert len(by_kind) == len(documents), "duplicate kind/name in worker.yaml"
    return by_kind


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads((K8S / "base-job-template.json").read_text())


def image_env() -> dict[str, str]:
    text = (ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


def test_deployments_are_those_of_the_process_pool_but_for_the_pool(k8s_prefect: dict[str, Any]) -> None:
    process = yaml.safe_load(PREFECT_YAML.read_text())
    assert k8s_prefect["name"] == process["name"]
    assert k8s_prefect["prefect-version"] == process["prefect-version"]
    assert len(k8s_prefect["deployments"]) == len(process["deployments"])
    for ours, theirs in zip(k8s_prefect["deployments"], process["deployments"], strict=True):
        assert {k: v for k, v in ours.items() if k != "work_pool"} == {
            k: v for k, v in theirs.items() if k != "work_pool"
        }
        assert ours["work_pool"]["name"] == POOL
        entrypoint = Path(ours["entrypoint"].split(":")[0])
        assert (ROOT / entrypoint).is_file(), entrypoint


def test_pull_step_names_the_image_folder_literally(k8s_prefect: dict[str, Any]) -> None:
    """`{{ $VAR }}` resolves where `prefect deploy` runs, not in the pod: the folder is spelled out."""
    (step,) = k8s_prefect["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == image_env()["PERENNIAL_HOME"] == "/app"


def test_job_variables_point_flow_runs_at_the_servers_and_the_workspace(k8s_prefect: dict[str, Any]) -> None:
    variables = [d["work_pool"]["job_variables"] for d in k8s_prefect["deployments"]]
    assert all(v == variables[0] for v in variables)  # one YAML anchor, the same for both
    env = variables[0]["env"]
    assert set(env) == {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PERENNIAL_WORKSPACE"}
    assert env["PERENNIAL_WORKSPACE"] == image_env()["PERENNIAL_WORKSPACE"] == "/workspace"
    assert env["PREFECT_API_URL"].endswith("/api")
    assert variables[0]["image"] == "{{ $PERENNIAL_IMAGE }}"


def test_base_job_template_is_a_kubernetes_job_with_every_placeholder_declared(
    template: dict[str, Any],
) -> None:
    from prefect.utilities.templating import find_placeholders

    manifest = template["job_configuration"]["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert {"workspace_claim", "settings_config_map", "secret_name", "image", "env"} <= used


def test_job_variables_are_template_variables(k8s_prefect: dict[str, Any], template: dict[str, Any]) -> None:
    declared = set(template["variables"]["properties"])
    for deployment in k8s_prefect["deployments"]:
        unknown = set(deployment["work_pool"]["job_variables"]) - declared
        assert not unknown, f"job variables the pool does not declare: {sorted(unknown)}"


def rendered_pod(k8s_prefect: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The Job's pod spec as the worker would fill it in (defaults, then the deployment's job variables)."""
    from prefect.utilities.templating import apply_values

    defaults = {
        name: spec["default"]
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    }
    values = {**defaults, **k8s_prefect["deployments"][0]["work_pool"]["job_variables"]}
    values["image"] = "registry.example.com/perennial:test"
    job = apply_values(template["job_configuration"], values)
    return job["job_manifest"]["spec"]["template"]["spec"]


def test_flow_run_pods_mount_the_claim_and_read_the_settings_of_worker_yaml(
    k8s_prefect: dict[str, Any], template: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]
) -> None:
    pod = rendered_pod(k8s_prefect, template)
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/perennial:test"
    (volume,) = pod["volumes"]
    assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in manifests
    (mount,) = container["volumeMounts"]
    assert (mount["name"], mount["mountPath"]) == (volume["name"], "/workspace")
    config_map, secret = container["envFrom"]
    assert ("ConfigMap", config_map["configMapRef"]["name"]) in manifests
    assert secret["secretRef"]["optional"] is True  # no Secret ships; pods start without one
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "{{" not in json.dumps(pod)


def test_worker_polls_the_pool_as_a_kubernetes_worker(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = manifests[("Deployment", "perennial-worker")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:3] == ["prefect", "worker", "start"]
    assert args[args.index("--pool") + 1] == POOL
    assert args[args.index("--type") + 1] == "kubernetes"
    assert "--with-healthcheck" in args and container["livenessProbe"]["httpGet"]["path"] == "/health"
    template_path = Path(args[args.index("--base-job-template") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = volumes[mounts[str(template_path.parent)]]["configMap"]["name"]
    readme = (K8S / "README.md").read_text()
    assert f"create configmap {config_map}" in readme  # how that ConfigMap comes to exist
    assert f"--from-file={template_path.name}=deployments/kubernetes/base-job-template.json" in readme
    assert pod["serviceAccountName"] == "perennial-worker"
    binding = manifests[("RoleBinding", "perennial-worker")]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    rules = manifests[("Role", binding["roleRef"]["name"])]["rules"]
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in rules)


def test_manifests_hold_no_secret_values(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert not [key for key in manifests if key[0] == "Secret"]
    namespaces = {m["metadata"].get("namespace") for m in manifests.values() if m["kind"] != "Namespace"}
    assert namespaces == {"perennial"}
    for (kind, name), manifest in manifests.items():
        if kind == "ConfigMap":
            leaked = [key for key in manifest["data"] if SECRET_NAME.search(key)]
            assert not leaked, f"ConfigMap {name} holds {leaked}"
    for secret_ref in re.findall(r"secretRef:\s*\n\s*name: (\S+)", (K8S / "worker.yaml").read_text()):
        assert secret_ref == "perennial-secrets"


def test_worker_and_flow_runs_agree_on_the_servers(
    k8s_prefect: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]
) -> None:
    settings = manifests[("ConfigMap", "perennial-settings")]["data"]
    env = k8s_prefect["deployments"][0]["work_pool"]["job_variables"]["env"]
    for key, value in env.items():
        assert settings[key] == value, key
