"""The one place that talks to MLflow: cycle runs, logged models, registry versions and aliases.
(Over 400 lines for that reason: nothing else imports mlflow.)

Design notes:

* MLflow is imported inside functions, so ``import perennial.registry.mlflow_registry`` stays cheap.
* Runs are created with ``MlflowClient.create_run`` and are never made the *active* fluent run:
  every function takes a ``run_id`` instead, so no global run state leaks between Prefect tasks,
  threads or failed cycles. End a run explicitly with :func:`end_run`.
* Functions that take only a ``run_id`` use the tracking URI set by the last :func:`connect` in
  this process (every function taking ``settings`` connects), else ``MLFLOW_TRACKING_URI``.
* Promotion uses registry aliases and tags only; stages are deprecated in MLflow 3.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from perennial.core.files import share_like_new_files
from perennial.core.messages import first_line
from perennial.core.secrets import redact

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from huggingface_hub import ModelCard
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from perennial.core.settings import Settings

EXPERIMENT_NAME = "perennial"
CHAMPION = "champion"
MODEL_ARTIFACT_NAME = "model"
TASK: Final = "text-classification"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
# Packages a serving environment needs besides mlflow itself (which MLflow adds on its own).
# Listed explicitly because MLflow's inference adds torchvision, which is not installed here.
SERVING_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors")
VERIFY_TEXT = "This is a short sentence to check that the model predicts."
# Texts per forward pass when the pyfunc (`mlflow models serve`, the load check) predicts a list;
# the pipeline's own default is 1. Overridable at serve time without re-logging:
# MLFLOW_PYFUNC_INFERENCE_CONFIG='{"batch_size": 8}'.
SERVING_BATCH_SIZE = 32

# Layout of a transformers-flavour model in the artifact store (MLflow 3.17).
_WEIGHTS_SUBDIR = "model"
_TOKENIZER_SUBDIR = Path("components") / "tokenizer"
_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


class RegistryError(RuntimeError):
    """A registry operation failed in a way the pipeline should report, not retry blindly."""


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    run_id: str
    source: str  # the version's source URI, e.g. ``models:/m-<logged model id>``
    tags: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- connection


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the workspace store, make sure the experiment exists and is active."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    uri = settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(
                EXPERIMENT_NAME, artifact_location=_artifact_location(settings)
            )
        except MlflowException as exc:
            # Another process created it between our lookup and create: use theirs.
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment_id = _experiment_id(client)
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    # Active experiment matters: logged models are filed under it, not under the run's experiment.
    mlflow.set_experiment(experiment_id=experiment_id)
    return client


def _artifact_location(settings: Settings) -> str | None:
    """Where a new experiment's artifacts go. A tracking server decides for itself (its
    `--artifacts-destination`: a shared volume or S3, served to every client); a local store keeps
    them in the workspace instead of ./mlruns of whatever folder the process started in."""
    if settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        return None
    settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    return settings.mlflow_artifacts_dir.as_uri()


def _client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient()  # global tracking URI, set by connect() or MLFLOW_TRACKING_URI


def _is_missing(exc: Exception) -> bool:
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    return getattr(exc, "error_code", None) == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


# --------------------------------------------------------------------------- runs


def start_cycle_run(
    settings: Settings, batch_id: str, params: dict[str, Any], run_name: str | None = None
) -> str:
    """Create a run (not made active) named `run_name` (default ``cycle-<batch_id[:12]>``), log
    params and tag batch_id."""
    from mlflow.entities import Param

    client = connect(settings)
    run = client.create_run(
        _experiment_id(client), run_name=run_name or f"cycle-{batch_id[:12]}", tags={"batch_id": batch_id}
    )
    if params:
        client.log_batch(run.info.run_id, params=[Param(str(k), str(v)) for k, v in params.items()])
    return run.info.run_id


def ui_base(settings: Settings) -> str:
    """Where MLflow's UI for this workspace is: the tracking server itself when it is one, else
    `perennial ui` (server_host:mlflow_ui_port)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(settings.mlflow_tracking_uri)
    if parts.scheme in ("http", "https"):
        # Without user, password or query: links are stored in Prefect and shown in its UI.
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"http://{settings.servers.server_host}:{settings.servers.mlflow_ui_port}"


def run_url(settings: Settings, run_id: str) -> str:
    """The run's page in MLflow's UI."""
    experiment = connect(settings).get_run(run_id).info.experiment_id
    return f"{ui_base(settings)}/#/experiments/{experiment}/runs/{run_id}"


def version_url(settings: Settings, version: str) -> str:
    """The registered version's page in MLflow's UI."""
    return f"{ui_base(settings)}/#/models/{quote(settings.registered_model_name)}/versions/{version}"


# What MLflow allows in a metric key is letters, digits and _ - . space /, at most 250 characters;
# a slash is left out too (MLflow reads keys as paths: "a/../b" is refused), and a slice's part
# stays short enough for "challenger.<name> <batch id>.macro_f1".
_KEY_NAME_CHARS = 150
_NOT_IN_METRIC_KEYS = re.compile(r"[^\w\-. ]")


def metric_slice_keys(names: Mapping[str, str]) -> dict[str, str]:
    """batch id -> its slice's name as a metric key may spell it (`challenger.<name>.accuracy`):
    readable in MLflow's charts, unlike the id. Other characters become `_`; a name that then
    clashes with another takes its batch id's first characters, so no two slices share a key."""
    wanted = {
        batch_id: _NOT_IN_METRIC_KEYS.sub("_", name).strip()[:_KEY_NAME_CHARS].strip() or batch_id
        for batch_id, name in names.items()
    }
    # Names MLflow takes as they are keep them; changed ones give way on a clash.
    order = sorted(names, key=lambda batch_id: wanted[batch_id] != names[batch_id])
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for batch_id in order:
        key = wanted[batch_id]
        if key in taken:
            key = f"{key} {batch_id}"
        keys[batch_id] = key
        taken.add(key)
    return {batch_id: keys[batch_id] for batch_id in names}


def _experiment_id(client: MlflowClient) -> str:
    """perennial's experiment, which `connect` creates (or restores) before any caller gets here."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        raise RuntimeError(f"MLflow has no experiment {EXPERIMENT_NAME!r}: it was deleted during the run")
    return experiment.experiment_id


def close_stale_runs(settings: Settings) -> list[str]:
    """Mark cycle runs still RUNNING as KILLED and return their ids. Call only while holding the
    workspace lock: then no cycle is running, and a RUNNING run is one whose process died."""
    client = connect(settings)
    stale = client.search_runs(
        [_experiment_id(client)], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in stale:
        client.set_tag(run.info.run_id, "interrupted", "the process stopped before the run ended")
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in stale]


class RegistryUnavailable(RegistryError):
    """The tracking server did not answer, even after MLflow's retries."""


def check_reachable(settings: Settings) -> None:
    """Ask the tracking store for one experiment (MLflow retries with backoff as configured by the
    mlflow_retries / mlflow_backoff_seconds settings); raise RegistryUnavailable with one line."""
    started = time.monotonic()
    try:
        connect(settings).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - every failure to answer is the same to the caller
        raise RegistryUnavailable(
            f"MLflow at {redact(settings.mlflow_tracking_uri)} did not answer after "
            f"{settings.mlflow_retries} retries ({time.monotonic() - started:.0f} s): "
            f"{redact(first_line(exc)[:300])}"
        ) from exc


def log_drift_check(
    settings: Settings, version: str, metrics: dict[str, float], files: list[Path], tags: dict[str, str]
) -> str:
    """One finished run `drift-<version>` holding a drift check's metrics and files (report, plot),
    tagged with the champion version it checked; the version gets `drift.*` tags pointing back."""
    client = connect(settings)
    run = client.create_run(
        _experiment_id(client),
        run_name=f"drift-v{version}",
        tags={"perennial.kind": "drift", "model_version": str(version), **tags},
    )
    run_id = run.info.run_id
    log_metrics(run_id, metrics)
    for path in files:
        log_file_artifact(run_id, path, "drift")
    end_run(run_id)
    set_version_tags(
        settings, version, {**{f"drift.{k}": v for k, v in tags.items()}, "drift.run_id": run_id}
    )
    return run_id


@dataclass(frozen=True)
class DatasetUse:
    """One table a cycle used, as MLflow's Datasets panel shows it."""

    name: str  # e.g. "reviews/train"
    frame: Any  # a pandas DataFrame with text and label
    source: str  # where it is kept, relative to the workspace (the workspace can move)
    context: str  # training, validation or evaluation


def log_datasets(run_id: str, uses: Sequence[DatasetUse]) -> None:
    """Log each table as an input of the run (name, source, digest, schema, row count). Best effort:
    a run without its dataset inputs is still a complete record (its params and artifacts say it)."""
    try:
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": it is a local path
            warnings.simplefilter("ignore", UserWarning)
            inputs = [
                DatasetInput(
                    # Private, but what mlflow.log_input does: the public call needs an active run, and
                    # perennial never makes its runs active (see the top of this module).
                    from_pandas(
                        use.frame[["text", "label"]], source=use.source, targets="label", name=use.name
                    )._to_mlflow_entity(),
                    tags=[InputTag(key="mlflow.data.context", value=use.context)],
                )
                for use in uses
                # An empty table was no input (the first cycle's replay); MLflow cannot infer the
                # schema of an empty string column either ("eq not implemented for <class 'type'>").
                if len(use.frame)
            ]
        _client().log_inputs(run_id, datasets=inputs)
    except Exception as error:  # noqa: BLE001 - see the docstring
        log.warning("dataset inputs not logged to run %s: %s", run_id, first_line(error))


def log_metrics(run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    from mlflow.entities import Metric

    now = int(datetime.now(UTC).timestamp() * 1000)
    batch = [Metric(str(k), float(v), now, step or 0) for k, v in metrics.items()]
    if batch:
        _client().log_batch(run_id, metrics=batch)


def log_dict_artifact(run_id: str, data: dict[str, Any], artifact_file: str) -> None:
    """Store ``data`` as JSON or YAML (by ``artifact_file``'s suffix) in the run's artifacts."""
    _client().log_dict(run_id, data, artifact_file)


def log_file_artifact(run_id: str, path: Path, artifact_path: str | None = None) -> None:
    """Upload a file (or a folder's contents) under ``artifact_path`` in the run's artifacts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact to log does not exist: {path}")
    if path.is_dir():
        _client().log_artifacts(run_id, str(path), artifact_path)
    else:
        _client().log_artifact(run_id, str(path), artifact_path)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    if tags:
        _client().log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])


def end_run(run_id: str, status: str = "FINISHED") -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
    _client().set_terminated(run_id, status)


# --------------------------------------------------------------------------- registering


def _pip_requirements() -> list[str]:
    """Pins from the installed packages; the local part (``+cpu``) is dropped so pip can resolve it."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={Version(version(package)).public}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _share_local_artifacts(model_id: str) -> None:
    """The flavour re-saves the weights through a temporary file (owner-only, 0600); in a local
    artifact store (the workspace's mlartifacts/) give them a new file's mode. A remote store's
    modes are its server's business."""
    from urllib.parse import unquote, urlparse

    location = _client().get_logged_model(model_id).artifact_location
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        share_like_new_files(Path(unquote(parsed.path)))


def _replace_licence_note(model_id: str, base_model: str) -> None:
    """MLflow's transformers flavour writes a LICENSE.txt that takes the model's folder for a Hub
    repository ("visit https://huggingface.co//path/to/folder"). Replace it with what is true."""
    text = (
        f"perennial fine-tuned this model from the base model '{base_model}'. Its licence is the base "
        "model's: see that model's card or licence file (the default base model, all-MiniLM-L6-v2, is "
        "released under the Apache License 2.0). The terms of the data it was trained on apply too.\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        note = Path(folder) / "LICENSE.txt"
        note.write_text(text, encoding="utf-8")
        note.chmod(0o644)
        _client().log_model_artifact(model_id, str(note))


def _check_safetensors(folder: Path) -> None:
    if not any((folder / name).is_file() for name in _SAFETENSORS):
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "missing folder"
        raise RegistryError(f"no safetensors weights in {folder} (found: {found})")


def register_model(
    settings: Settings,
    run_id: str,
    model_dir: Path,
    tags: dict[str, str],
    card: ModelCard | None = None,
    examples: Sequence[str] = (),
) -> str:
    """Log ``model_dir`` (save_pretrained model + tokenizer) in the run and register it.

    Returns the new version number. The model is loaded and re-saved by MLflow's transformers
    flavour (task text-classification), so the artifact is servable with
    ``mlflow models serve -m models:/<name>@champion``.
    """
    import mlflow
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    _check_safetensors(model_dir)
    share_like_new_files(model_dir)  # the registry's copy keeps these modes: readable, not 0600
    try:
        # Local files only, never remote code: the folder comes from our own trainer.
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    except Exception as exc:
        raise RegistryError(f"cannot load the model to register from {model_dir}: {exc}") from exc

    client = connect(settings)
    run = client.get_run(run_id)
    # Logged models are filed under the active experiment: make it the run's.
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    labels = ", ".join(str(v) for _, v in sorted(model.config.id2label.items()))
    # Our own card (`card`, else a short one): otherwise MLflow tries to fetch one from the Hub for
    # the local path and warns. MLflow keeps it as model_card.md and model_card_data.yaml.
    card = card or ModelCard(
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n---\n"
        f"# {settings.registered_model_name}\n\nText classifier fine-tuned by perennial "
        f"(cycle run {run_id}).\n\nLabels: {labels}\n"
    )
    info = mlflow.transformers.log_model(
        {"model": model, "tokenizer": tokenizer},
        name=MODEL_ARTIFACT_NAME,
        task=TASK,
        run_id=run_id,
        model_card=card,
        # Explicit: inference would add torchvision, which is not installed and fails the log.
        pip_requirements=_pip_requirements(),
        # Given to the pipeline call by the pyfunc: batched forward passes, not one per text. Served
        # MiniLM, 2 cores, requests of 100 short texts (bench/serve.py): 31 -> 61-68 texts/s on a
        # quiet machine, 4-5 -> 20-28 with the cores shared; 8-32 alike, 64 slower (more padding).
        model_config={"batch_size": SERVING_BATCH_SIZE},
        # A few of the batch's own texts: MLflow's UI shows them, and `mlflow models serve` users
        # get a request body that works (serving_input_example.json).
        input_example=list(examples) or None,
    )
    _replace_licence_note(info.model_id, settings.base_model)
    _share_local_artifacts(info.model_id)
    # MLflow prints its registration notes to stderr ("Created version ..."): kept in the log instead.
    notes = io.StringIO()
    try:
        with contextlib.redirect_stderr(notes):
            version = mlflow.register_model(
                info.model_uri,
                settings.registered_model_name,
                tags={str(k): str(v) for k, v in tags.items()},
            )
    finally:  # whatever happened, what was written is logged, warnings as warnings
        for note in filter(None, (line.strip() for line in notes.getvalue().splitlines())):
            serious = any(word in note for word in ("WARNING", "ERROR", "Traceback"))
            log.log(logging.WARNING if serious else logging.INFO, "mlflow: %s", note)
    return str(version.version)


# --------------------------------------------------------------------------- downloading


def _download_raw(settings: Settings, version: str, dest: Path) -> Path:
    """The version's artifacts in MLflow's layout (MLmodel, model/, components/tokenizer/)."""
    import mlflow

    client = connect(settings)
    _get_version(client, settings, version)  # clear error for unknown versions
    dest.mkdir(parents=True, exist_ok=True)
    uri = f"models:/{settings.registered_model_name}/{version}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))


def _flatten(raw: Path, dest: Path) -> Path:
    """One Hugging Face folder: the weights folder plus the tokenizer files copied into it."""
    weights = raw / _WEIGHTS_SUBDIR
    tokenizer = raw / _TOKENIZER_SUBDIR
    if not (weights / "config.json").is_file():
        raise RegistryError(f"downloaded artifact has no {_WEIGHTS_SUBDIR}/config.json under {raw}")
    _check_safetensors(weights)
    if not tokenizer.is_dir():
        raise RegistryError(f"downloaded artifact has no {_TOKENIZER_SUBDIR} folder under {raw}")
    shutil.copytree(weights, dest)
    for item in tokenizer.iterdir():
        if item.is_file() and not (dest / item.name).exists():
            shutil.copy2(item, dest / item.name)
    _write_readme(raw, dest)
    return dest


def _write_readme(raw: Path, dest: Path) -> None:
    """The model card as Hugging Face folders carry it, README.md with its YAML metadata, put back
    together from the two files MLflow keeps it in."""
    text, data = raw / "model_card.md", raw / "model_card_data.yaml"
    if not (text.is_file() and data.is_file()):
        return  # a version registered before cards were kept: nothing to put together
    metadata = data.read_text(encoding="utf-8").strip()
    body = text.read_text(encoding="utf-8")
    if body.startswith("---"):  # the text already holds its metadata block
        (dest / "README.md").write_text(body, encoding="utf-8")
        return
    (dest / "README.md").write_text(f"---\n{metadata}\n---\n\n{body.lstrip()}", encoding="utf-8")


def download_model(settings: Settings, version: str, dest: Path) -> Path:
    """Download a registered version into ``dest`` as one ``from_pretrained``-loadable folder.

    ``dest`` must not exist or be empty. It is assembled in a sibling temp folder and renamed
    into place, so an interrupted download never leaves a half-filled ``dest``.
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise RegistryError(f"download destination is not empty: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as tmp:
        raw = _download_raw(settings, version, Path(tmp) / "raw")
        staged = _flatten(raw, Path(tmp) / "model")
        if dest.exists():
            dest.rmdir()  # empty, checked above
        staged.rename(dest)
    return dest


def verify_loadable(settings: Settings, version: str) -> None:
    """Download, load and run one prediction, both as a plain HF folder and as MLflow pyfunc.

    Raises :class:`RegistryError` on any failure. Call before moving the champion alias.
    """
    import mlflow
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    name = settings.registered_model_name
    with tempfile.TemporaryDirectory(prefix="perennial-verify-") as tmp:
        try:
            raw = _download_raw(settings, version, Path(tmp) / "raw")
            folder = _flatten(raw, Path(tmp) / "model")
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, use_safetensors=True, trust_remote_code=False
            )
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
            classify = pipeline(TASK, model=model, tokenizer=tokenizer, device="cpu")
            result = classify(VERIFY_TEXT)[0]
            _check_prediction(result, set(model.config.id2label.values()))
            # The path `mlflow models serve` takes: the pyfunc wrapper around the same files.
            served = mlflow.pyfunc.load_model(str(raw)).predict([VERIFY_TEXT])
            _check_prediction(served.iloc[0].to_dict(), set(model.config.id2label.values()))
        except RegistryError as exc:
            raise RegistryError(f"{name} version {version} is not loadable: {exc}") from exc
        except Exception as exc:
            raise RegistryError(
                f"{name} version {version} is not loadable: {type(exc).__name__}: {exc}"
            ) from exc


def _check_prediction(result: dict[str, Any], labels: set[str]) -> None:
    label, score = result.get("label"), result.get("score")
    if label not in labels:
        raise RegistryError(f"prediction label {label!r} is not one of {sorted(labels)}")
    if score is None or not math.isfinite(float(score)) or not 0.0 <= float(score) <= 1.0:
        raise RegistryError(f"prediction score {score!r} is not a probability")


def delete_model_files(settings: Settings, version: str) -> str:
    """Delete a version's model files from the artifact store (local folder, S3, or a tracking
    server's proxied store); the registry record, its tags and its run stay. Returns the location."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = connect(settings)
    _get_version(client, settings, version)
    location = client.get_model_version_download_uri(settings.registered_model_name, str(version))
    get_artifact_repository(location, tracking_uri=settings.mlflow_tracking_uri).delete_artifacts()
    return location


# --------------------------------------------------------------------------- aliases and tags


def _get_version(client: MlflowClient, settings: Settings, version: str) -> ModelVersion:
    name = settings.registered_model_name
    try:
        return client.get_model_version(name, str(version))
    except Exception as exc:
        if _is_missing(exc):
            raise RegistryError(f"{name} has no version {version}") from exc
        raise


def _aliases(client: MlflowClient, settings: Settings) -> dict[str, str]:
    """alias -> version; empty when the registered model does not exist yet."""
    try:
        model = client.get_registered_model(settings.registered_model_name)
    except Exception as exc:
        if _is_missing(exc):
            return {}
        raise
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}


def champion(settings: Settings) -> ChampionInfo | None:
    """The version behind the ``champion`` alias, or None before the first promotion."""
    client = connect(settings)
    version = _aliases(client, settings).get(CHAMPION)
    if version is None:
        return None
    mv = _get_version(client, settings, version)
    return ChampionInfo(
        version=str(mv.version), run_id=mv.run_id or "", source=mv.source or "", tags=dict(mv.tags)
    )


def resolve_version(settings: Settings, version: str | None = None, alias: str | None = None) -> str:
    """The version a user named: a version number, or the version behind an alias (RegistryError
    naming the versions or aliases there are, when it is neither)."""
    client = connect(settings)
    if alias is not None:
        aliases = _aliases(client, settings)
        if alias not in aliases:
            there = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none yet"
            raise RegistryError(f"{settings.registered_model_name} has no alias {alias!r}; aliases: {there}")
        return aliases[alias]
    if version is None:
        raise ValueError("name a version or an alias")
    return str(_get_version(client, settings, version).version)


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client = connect(settings)
    _get_version(client, settings, version)  # RegistryError instead of an MLflow 404
    client.set_registered_model_alias(settings.registered_model_name, alias, str(version))


def delete_alias(settings: Settings, alias: str) -> None:
    """Remove an alias; a missing alias or registered model is not an error."""
    client = connect(settings)
    if alias in _aliases(client, settings):
        client.delete_registered_model_alias(settings.registered_model_name, alias)


def set_version_tags(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = connect(settings)
    _get_version(client, settings, version)
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_model_name, str(version), str(key), str(value))


DESCRIPTION_LIMIT = 5000  # characters: MLflow's registry stores a description as String(5000)


def fitted_description(text: str, elsewhere: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """`text` as a version description: whole when it fits, else cut at a line end with a last line
    saying where the rest is (`elsewhere`)."""
    if len(text) <= limit:
        return text
    note = f"\n\n(cut to fit MLflow's {limit} characters: the whole text is {elsewhere})"
    room = limit - len(note)
    cut = text.rfind("\n", 0, room)
    return text[: cut if cut > 0 else room].rstrip() + note


def set_version_description(settings: Settings, version: str, text: str, elsewhere: str) -> None:
    """Show `text` (markdown) as the version's description in MLflow's UI."""
    client = connect(settings)
    _get_version(client, settings, version)
    client.update_model_version(
        settings.registered_model_name, str(version), description=fitted_description(text, elsewhere)
    )


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    return dict(_get_version(connect(settings), settings, version).tags)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version with run_id, aliases, tags and ISO creation time, oldest first."""
    client = connect(settings)
    # search_model_versions does not fill in aliases (sqlite store), so take them from the model.
    by_version: dict[str, list[str]] = {}
    for alias, version in _aliases(client, settings).items():
        by_version.setdefault(version, []).append(alias)
    versions: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"name='{settings.registered_model_name}'", page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            break
    rows = [
        {
            "version": str(mv.version),
            "run_id": mv.run_id,
            "aliases": sorted(by_version.get(str(mv.version), [])),
            "tags": dict(mv.tags),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
        }
        for mv in versions
    ]
    return sorted(rows, key=lambda row: int(row["version"]))
