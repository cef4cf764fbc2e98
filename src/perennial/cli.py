"""The `perennial` command. Heavy libraries are imported inside each command, so `--help` is instant.

Over 1,500 lines: a thin handler per command (`cmd_*`, twenty of them), then the typer command
that parses each one's options, with its description and examples; the handlers call into the
stages and hold no logic of their own. (A cli/ package by command is a known next step.)
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

from perennial import __version__
from perennial.core.messages import first_line
from perennial.core.secrets import redact

if TYPE_CHECKING:
    # Only for annotations: importing the settings (pydantic-settings) would cost `--help` ~0.25 s.
    from perennial.benchmarks.forgetting import StreamFactory
    from perennial.core.settings import Settings
    from perennial.data.ingest import IngestResult


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, or a SettingsProblem (one line per problem, printed by `main`)."""
    from perennial.core.settings_check import load_settings

    if args.config:
        os.environ["PERENNIAL_CONFIG"] = str(args.config)
    return load_settings(**_overrides(args))


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"workspace": args.workspace} if args.workspace else {}


def _existing(settings: Settings) -> Settings:
    """The settings of a workspace that exists: a command that only reads one never creates it (a
    mistyped --workspace would otherwise leave an empty workspace behind and report on it)."""
    from perennial.core.settings_check import SettingsProblem

    if not settings.root.is_dir():
        raise SettingsProblem(
            f"no workspace at {settings.root}: check --workspace or PERENNIAL_WORKSPACE "
            "(`perennial run` or `perennial ingest` creates one)"
        )
    return settings


def _ready(settings: Settings) -> Settings:
    from perennial.core.environment import configure

    configure(settings)
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from perennial.data.ingest import ingest_file
    from perennial.data.ledger import PENDING, QUARANTINED
    from perennial.workspace import ledger_for

    settings = _ready(_settings(args))
    ledger = ledger_for(settings)
    arrived: list[Path] = []
    quarantined: list[IngestResult] = []
    for path in args.files:
        if not Path(path).is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        result = ingest_file(Path(path), settings, ledger)
        print(result.message)
        if result.status == PENDING and not result.duplicate:
            arrived.append(Path(path))
        elif result.status == QUARANTINED and not result.duplicate:
            quarantined.append(result)
    if (arrived or quarantined) and not args.no_event:
        _announce(settings, arrived, quarantined)
    return 0


def _announce(settings: Settings, paths: list[Path], quarantined: list[IngestResult]) -> None:
    """Tell a running Prefect server (`perennial serve`) that batches arrived, so a run starts, and
    which were quarantined, so an automation can tell whoever sent them (as a run's ingestion does)."""
    from perennial.deployments.events import (
        BATCH_ARRIVED,
        BATCH_QUARANTINED,
        NoServer,
        emit,
        emit_batch_arrived,
        server_is_up,
    )
    from perennial.reporting.cycle_report import quarantine_payload

    if not server_is_up(settings):
        if paths:
            print(
                f"no Prefect server at {redact(settings.prefect_api_url)}: run `perennial run` to train now"
            )
        return
    try:
        for path in paths:
            emit_batch_arrived(settings, path)
        for result in quarantined:
            emit(
                settings,
                BATCH_QUARANTINED,
                quarantine_payload(result.batch_id, result.source, result.message),
            )
    except NoServer as error:
        print(f"warning: {error}; run `perennial run` to train now", file=sys.stderr)
        return
    for event, count in ((BATCH_ARRIVED, len(paths)), (BATCH_QUARANTINED, len(quarantined))):
        if count:
            print(f"sent {event} for {count} file(s) to {redact(settings.prefect_api_url)}")


def _use_running_server(settings: Settings) -> Settings:
    """Run flows on the workspace's Prefect server when one answers (its UI shows them, its triggers
    hear their events) rather than on a temporary one sharing its database. Before Prefect's import."""
    if not os.environ.get("PREFECT_API_URL"):
        from perennial.deployments.events import server_is_up

        if server_is_up(settings, timeout=0.5):
            os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    return settings


def _has_work(settings: Settings) -> bool:
    """Files in the inbox or batches still to train: a cheap look, before any heavy import."""
    from perennial.data.inbox import inbox_files
    from perennial.workspace import ledger_for

    return bool(inbox_files(settings)) or bool(ledger_for(settings).pending())


def _overlap_start_up() -> None:
    """Boot Prefect's temporary server (when there is no server) while this process imports what
    a cycle needs: a run pays for the slower of the two instead of both (see perennial.core.startup)."""
    from perennial.core.startup import preload, start_prefect_early

    server = start_prefect_early()
    preload()  # the caller has checked that there is work
    if server is not None:
        try:
            server.wait()
        except RuntimeError as error:  # Prefect then starts its own, and reports its own failure
            print(f"warning: {error}; leaving the start to Prefect", file=sys.stderr)
            server.withdraw()


def cmd_run(args: argparse.Namespace) -> int:
    # Before Prefect is imported: it reads PREFECT_HOME and PREFECT_API_URL at import.
    settings = _ready(_settings(args))
    if not _has_work(settings):  # no Prefect server, flow run or heavy import for nothing
        print("nothing to do: the inbox is empty and no batch is pending")
        return 0
    settings = _use_running_server(settings)
    _overlap_start_up()
    from perennial.core.console import attach_log_file
    from perennial.flows.continual_training import continual_training

    attach_log_file(settings.root)
    state = continual_training(settings, return_state=True)
    if state.is_completed():
        outcomes = state.result()
        if not outcomes:
            print("nothing to do: no pending batches")
        for outcome in outcomes:
            print(outcome.line())
        return 0
    print(f"run failed: {state.message}", file=sys.stderr)
    print("see `perennial status` for every batch and decision", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from perennial.demo import fresh_workspace, run_demo

    base = _settings(args)
    workspace = base.root / "demo"
    fresh_workspace(workspace)
    settings = _ready(base.model_copy(update={"workspace": workspace}))
    from perennial.core.console import attach_log_file

    attach_log_file(settings.root)
    run_demo(settings, rows_per_domain=args.rows or settings.demo_rows_per_domain, stream=args.stream)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from perennial.reporting.status import format_status, gather_status

    settings = _ready(_existing(_settings(args)))
    if args.history:
        from dataclasses import asdict

        from perennial.registry.champion import alias_history, format_history

        moves = alias_history(settings)
        print(json.dumps([asdict(m) for m in moves], indent=2) if args.json else format_history(moves))
        return 0
    status = gather_status(settings)
    print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from perennial.registry.champion import RollbackRefused, format_move, rollback

    settings = _ready(_existing(_settings(args)))
    try:
        move = rollback(settings, to=args.to, reason=args.reason, force=args.force)
    except RollbackRefused as error:
        print(f"rollback refused: {error} (champion unchanged)", file=sys.stderr)
        return 1
    print(f"champion: v{move.from_version} -> v{move.to_version} ({move.reason})")
    print(f"recorded: {format_move(move)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from perennial.reporting.data_docs import data_docs_dir
    from perennial.reporting.report import build_report

    settings = _ready(_existing(_settings(args)))
    path = build_report(settings, args.out)
    print(f"report: {path}\nopen:   {path.as_uri()}")
    docs = data_docs_dir(settings) / "index.html"
    if docs.is_file():
        print(f"data docs: {docs.as_uri()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from perennial.serving.predict import NoChampion, predict_texts

    settings = _ready(_existing(_settings(args)))
    texts = list(args.texts)
    if args.file:
        try:
            texts += _text_lines(args.file)
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
            print(f"error: cannot read --file {args.file}: {reason}", file=sys.stderr)
            return 2
    if not texts:
        print("give texts as arguments, or --file (one text per line; - reads stdin)", file=sys.stderr)
        return 2
    empty = [str(i) for i, text in enumerate(texts, start=1) if not text.strip()]
    if empty:
        print(f"error: text(s) {_few(empty)} are empty: nothing to classify", file=sys.stderr)
        return 2
    from perennial.registry.mlflow_registry import RegistryError

    try:
        version, rows = predict_texts(settings, texts, version=args.version, alias=args.alias)
    except (NoChampion, RegistryError) as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 1
    if cut := [str(i) for i, row in enumerate(rows, start=1) if row["truncated"]]:
        print(
            f"warning: text(s) {_few(cut)} are longer than max_length ({settings.max_length} tokens): "
            "only their beginning was scored (raise max_length to read more)",
            file=sys.stderr,
        )
    if args.log:
        from perennial.monitoring.drift_check import log_predictions

        path = log_predictions(settings, rows, version)
        print(f"logged {len(rows)} prediction(s) to {path} for the drift monitor", file=sys.stderr)
    for row in rows:
        if args.json:
            print(json.dumps({**row, "model_version": version}))
        else:
            print(f"{row['label']}\t{row['score']:.3f}\t{row['text']}")
    return 0


def _few(items: list[str], shown: int = 10) -> str:
    """A list for a message line: the first `shown` items, then how many more."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _text_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file (or of stdin for `-`), as UTF-8."""
    raw = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    if b"\x00" in raw:
        raise ValueError("a binary file (it holds NUL bytes), not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})") from None
    return [line for line in text.splitlines() if line.strip()]


def cmd_settings(args: argparse.Namespace) -> int:
    from perennial.core.settings_check import effective_settings

    rows = effective_settings(_settings(args), _overrides(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(str(row["name"])) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {json.dumps(row['value'])}  [{row['source']}]")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from perennial.data.stream import default_format, split_file, write_stream

    try:
        fmt = args.format or default_format(args.file)
        parts = split_file(args.file, by=args.by, by_time=args.by_time, every=args.every)
        out = args.out or _ready(_settings(args)).inbox
        paths = write_stream(parts, out, fmt)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for path, (_, part) in zip(paths, parts, strict=True):
        print(f"{path}: {len(part)} rows")
    print(f"wrote {len(paths)} files, {sum(len(part) for _, part in parts)} rows, to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from perennial.benchmarks.forgetting import (
        QUICK_ROWS_PER_DOMAIN,
        STRATEGIES,
        format_report,
        run_benchmark,
    )

    settings = _ready(_settings(args))
    strategies = args.strategies.split(",") if args.strategies else list(STRATEGIES)
    seeds = range(args.seeds if args.seeds else (1 if args.quick else 3))
    own_stream = args.stream or args.stream_dir or args.from_workspace
    # The shipped streams are sampled to a size; a user's own stream runs whole unless --rows says.
    rows = args.rows or (
        None if own_stream else QUICK_ROWS_PER_DOMAIN if args.quick else settings.demo_rows_per_domain
    )
    try:
        make_stream = _bench_stream(args, settings, rows)
        report = run_benchmark(
            settings,
            args.out,
            strategies=strategies,
            seeds=seeds,
            rows_per_domain=rows,
            make_stream=make_stream,
            growing_labels=args.labels == "growing",
        )
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print()
    print(format_report(report))
    print(f"\nresults: {args.out / 'forgetting.json'}\nplot:    {args.out / 'forgetting.png'}")
    print(f"benchmark finished in {report['wall_seconds']:.0f} s")
    return 0


def _bench_stream(args: argparse.Namespace, settings: Settings, rows: int | None) -> StreamFactory:
    """The stream the benchmark runs, as a function of the seed (see benchmark_streams)."""
    from functools import partial

    from perennial.benchmarks import streams

    sizes = streams.SplitSizes.parse(args.split_rows) if args.split_rows else None
    if args.stream is None and (args.by is not None or args.by_time is not None):
        raise ValueError("--by and --by-time split a --stream FILE")
    if args.from_workspace:
        if sizes is not None:
            raise ValueError(
                "--split-rows does not apply to --from-workspace: it uses the pipeline's own splits"
            )
        stream = streams.workspace_stream(settings)
        return lambda seed, s: stream
    if args.stream is not None:
        if (args.by is None) == (args.by_time is None):
            raise ValueError("--stream needs exactly one of --by COLUMN or --by-time COLUMN")
        build = partial(
            streams.file_stream,
            args.stream,
            by=args.by,
            by_time=args.by_time,
            every=args.every,
            sizes=sizes,
            rows=rows,
        )
    elif args.stream_dir is not None:
        build = partial(streams.dir_stream, args.stream_dir, sizes=sizes, rows=rows)
    else:
        return partial(streams.DEV_STREAMS[args.dataset], rows=rows, sizes=sizes)
    # A user's stream is read and split up front, so a bad file fails before any training starts;
    # seed 0 reuses that reading (the stream depends on the seed, not on the seeded settings).
    first = build(0, settings)
    return lambda seed, s: first if seed == 0 else build(seed, s)


def cmd_drift(args: argparse.Namespace) -> int:
    settings = _use_running_server(_ready(_settings(args)))
    from perennial.core.console import attach_log_file
    from perennial.flows.drift_monitor import drift_monitor

    attach_log_file(settings.root)
    state = drift_monitor(settings, return_state=True)
    if not state.is_completed():
        print(f"drift check failed: {state.message}", file=sys.stderr)
        return 1
    summary = state.result()
    from perennial.monitoring.drift_check import format_drift_summary

    print(json.dumps(summary.to_json(), indent=2) if args.json else format_drift_summary(summary))
    return 0


def _foreground(module: str, *args: str) -> int:
    """Run `python -m module args` until it exits or Ctrl-C stops it (which reaches it too)."""
    import subprocess

    try:
        return subprocess.call([sys.executable, "-m", module, *args])
    except KeyboardInterrupt:
        return 0


def cmd_server(args: argparse.Namespace) -> int:
    """A local Prefect server (API and UI) with its database in the workspace, in the foreground."""
    settings = _ready(_settings(args))
    servers = settings.servers
    url = f"http://{servers.server_host}:{servers.server_port}"
    print(f"Prefect server for {settings.root}: UI {url}, API {url}/api (Ctrl-C stops it)", flush=True)
    return _foreground(
        "prefect", "server", "start", "--host", servers.server_host, "--port", str(servers.server_port)
    )


def cmd_ui(args: argparse.Namespace) -> int:
    """The MLflow UI on this workspace's registry (foreground), and where the other pages are."""
    settings = _ready(_settings(args))
    from perennial.deployments.events import server_is_up

    host, port = settings.servers.server_host, settings.servers.mlflow_ui_port
    print(f"MLflow UI:  http://{host}:{port}  (runs, versions, aliases; Ctrl-C stops it)")
    if server_is_up(settings):
        print(f"Prefect UI: {redact(settings.prefect_api_url).removesuffix('/').removesuffix('/api')}")
    else:
        print(
            f"Prefect UI: no server at {redact(settings.prefect_api_url)} (start one with `perennial server`)"
        )
    report = settings.reports_dir / "index.html"
    if report.is_file():
        print(f"report:     {report.as_uri()}")
    print(flush=True)
    # One user at a time: one worker, and none of MLflow's background job consumers (they are for
    # its GenAI features) unless asked: MLflow's defaults start 16 processes and 2.6 GiB here.
    if not args.jobs:
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return _foreground(
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    )


def _reach_server(settings: Settings) -> bool:
    """Point Prefect at the workspace's server (before Prefect is imported) and check that it answers."""
    os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    from perennial.deployments.events import server_is_up

    if not server_is_up(settings, timeout=5):
        print(
            f"error: no Prefect server at {redact(settings.prefect_api_url)}: start one with "
            "`perennial server` in another terminal, or set PREFECT_API_URL",
            file=sys.stderr,
        )
        return False
    from perennial.core.console import attach_log_file, service_console

    attach_log_file(settings.root)
    service_console()
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _ready(_settings(args))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.serve import serve_forever

    serve_forever(settings, watch=not args.no_watch)
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """A Prefect automation posting this workspace's decisions to a webhook."""
    settings = _ready(_existing(_settings(args)))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.notify import create_webhook_automation

    on = [part.strip() for part in args.on.split(",") if part.strip()]
    try:
        automation = create_webhook_automation(
            settings, args.webhook, on, allow_private_urls=args.allow_private
        )
    except ValueError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the server refused or failed: one line, not a traceback
        print(f"error: the Prefect server did not take the automation: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"automation {automation}: {', '.join(on)} of {settings.root} are posted to the webhook")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """The workspace's state in Prometheus' text format: printed, or written for node_exporter."""
    from prometheus_client import write_to_textfile

    from perennial.reporting.prometheus import metrics_registry, metrics_text
    from perennial.reporting.status import gather_status

    status = gather_status(_ready(_existing(_settings(args))))
    if args.textfile is None:
        print(metrics_text(status), end="")
        return 0
    try:
        write_to_textfile(str(args.textfile), metrics_registry(status))  # atomic: a temp file renamed
    except OSError as error:
        print(f"error: cannot write {args.textfile}: {error.strerror or first_line(error)}", file=sys.stderr)
        return 2
    print(f"metrics: {args.textfile}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """A registered version (default: the champion) to a Hugging Face Hub repository."""
    # The one command that goes online: unless the user exported HF_HUB_OFFLINE, it is lifted here
    # (before huggingface_hub reads it at import), where configure() would set it.
    if not args.dry_run:
        os.environ.setdefault("HF_HUB_OFFLINE", "0")
    settings = _ready(_existing(_settings(args)))
    from perennial.registry.hub_push import push_plan, push_to_hub

    try:
        with push_plan(settings, args.to_hub, args.version) as plan:
            if args.dry_run:
                print(f"would upload {settings.registered_model_name} v{plan.version} to {args.to_hub}:")
                print("\n".join(f"  {line}" for line in plan.lines()))
                return 0
            if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", ""):
                print("error: HF_HUB_OFFLINE is set: unset it to push to the Hub", file=sys.stderr)
                return 2
            url = push_to_hub(plan, settings.registered_model_name, private=not args.public)
    except LookupError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the network, the token, the Hub: one line each
        print(f"error: the push to {args.to_hub} failed: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"pushed {settings.registered_model_name} v{plan.version} to {args.to_hub}: {url}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """The workspace as one .tar.gz, taken while no cycle runs."""
    from perennial.core.backup import BackupProblem, backup
    from perennial.core.locking import WorkspaceBusy

    settings = _existing(_settings(args))
    try:
        files = backup(settings, args.archive)
    except (BackupProblem, WorkspaceBusy) as problem:
        print(f"error: {first_line(problem)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {args.archive}: {error.strerror or first_line(error)}", file=sys.stderr)
        return 2
    print(f"backup: {files} files of {settings.root} in {args.archive.resolve()}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """A backup unpacked into a new workspace folder, its stored paths pointed there."""
    from perennial.core.backup import BackupProblem, restore

    settings = _settings(args)
    try:
        files = restore(args.archive, settings.root)
    except BackupProblem as problem:
        print(f"error: {first_line(problem)}", file=sys.stderr)
        return 2
    _ready(settings)  # points MLflow's and the ledger's paths at the new folder
    print(f"restored: {files} files into {settings.root}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Only the inbox watcher: for a stack where a Prefect worker, not `perennial serve`, runs the flows."""
    import contextlib
    import threading

    settings = _ready(_settings(args))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.serve import watch_inbox

    with contextlib.suppress(KeyboardInterrupt):
        watch_inbox(settings, threading.Event())
    return 0


# --------------------------------------------------------------------------- the command line
#
# typer parses. Each command function below gathers its options into the argparse.Namespace that its
# cmd_* handler reads (the handlers are older than typer) and `main` calls the handler once parsing
# is over, so a usage error never reaches a handler. Help keeps click's plain layout everywhere
# (pipes, files, the docs site, which is built from it); on a terminal rich colours it.

Handler = Callable[[argparse.Namespace], int]
_Gather = Callable[..., argparse.Namespace]

# Choices spelt out: importing demo.DEMO_STREAMS or benchmark_streams.DEV_STREAMS (pandas) would slow
# --help. tests/unit/test_docs_reference.py checks that they agree.
DemoStream = Literal["vader", "trec-classes"]
DevStream = Literal["vader", "trec-classes", "trec-subtypes"]
Period = Literal["week", "month", "quarter", "year"]


class UsageProblem(Exception):
    """A combination of options the parser cannot express (say, two that exclude each other)."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(message)
        self.command = command


def _option(*names: str, help: str, **kwargs: Any) -> Any:
    """typer.Option, showing the default only where the help text does not say it already."""
    return typer.Option(*names, help=help, show_default="(default" not in help, **kwargs)


def _flag(name: str, help: str) -> Any:
    """An on/off option: `--name` alone (typer would add `--no-name` too)."""
    return typer.Option(name, help=help, show_default=False)


def _version(text: str) -> str:
    number = text.strip().removeprefix("v")
    if not number.isdigit():
        raise typer.BadParameter(f"{text!r} is not a version: give a number such as 3 or v3")
    return number


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number") from None


_Workspace = Annotated[
    Path | None,
    _option(
        "--workspace", metavar="DIR", help="workspace folder (default: ./workspace or PERENNIAL_WORKSPACE)"
    ),
]
_Config = Annotated[Path | None, _option("--config", metavar="FILE", help="settings file (TOML or YAML)")]
_Verbose = Annotated[
    int,
    typer.Option(
        "-v",
        "--verbose",
        count=True,
        show_default=False,
        help="also show Prefect's, MLflow's and the training's own log lines (the workspace's "
        "logs/perennial.log always has them)",
    ),
]
_Quiet = Annotated[
    int,
    typer.Option(
        "-q",
        "--quiet",
        count=True,
        show_default=False,
        help="only results, warnings and errors: no progress lines",
    ),
]
# Every command takes the global options too, after its own (`perennial status -v`), as the
# top-level does before the command; `_global_options` merges the two.
_GLOBAL_NAMES = ("workspace", "config", "verbose", "quiet")
_GLOBAL_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("workspace", _Workspace, None),
        ("config", _Config, None),
        ("verbose", _Verbose, 0),
        ("quiet", _Quiet, 0),
    )
]


class _Context(typer.Context):
    def get_help(self) -> str:
        """The help that --help prints: coloured on a terminal (the docs take `Command.get_help`)."""
        text = super().get_help()
        return _coloured(text) if sys.stdout.isatty() else text


def _coloured(text: str) -> str:
    """Help text with rich's highlighting; rich leaves the colour out under NO_COLOR or TERM=dumb."""
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    class HelpHighlighter(RegexHighlighter):
        base_style = "help."
        highlights = [
            r"(?m)^(?P<heading>[A-Z][A-Za-z ]*:)",
            # an option, and the value it takes (`--to VERSION`, `--every <week|month>`)
            r"(?P<option>(?<![\w-])--?[a-z][\w-]*)( (?P<metavar>[A-Z][A-Z_,]*[A-Z]|<[^>\n]+>)(?![\w-]))?",
            r"(?m)^\s*(?P<comment>#.*)$",
        ]

    theme = Theme(
        {"help.heading": "bold", "help.option": "cyan", "help.metavar": "yellow", "help.comment": "dim"}
    )
    console = Console(highlighter=HelpHighlighter(), theme=theme)
    with console.capture() as captured:
        console.print(text, markup=False, soft_wrap=True)
    return captured.get().rstrip("\n")


def _format_parameters(command: TyperCommand | TyperGroup, ctx: Any, formatter: Any) -> None:
    """click's layout, but an argument is named as in the usage line (not with typer's type, such as
    `<list[Path]>`), and a command's global options come last, under their own heading."""
    sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": [], "Global options": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if param.param_type_name == "argument":
            sections["Arguments"].append((_usage_name(param), record[1]))
        elif isinstance(command, TyperCommand) and param.name in _GLOBAL_NAMES:
            sections["Global options"].append(record)
        else:
            sections["Options"].append(record)
    for heading, records in sections.items():
        if records:
            with formatter.section(heading):
                formatter.write_dl(records)


def _usage_name(param: Any) -> str:
    """FILE, FILE... or [TEXT]..., as argparse and click write them (typer: {FILE}...)."""
    name = str(param.metavar or param.name).upper()
    many = "..." if param.nargs != 1 else ""
    return f"{name}{many}" if param.required else f"[{name}]{many}"


def _format_examples(command: TyperCommand | TyperGroup, formatter: Any) -> None:
    """The epilog holds a command's examples: a section of their own, lines kept as written."""
    if command.epilog:
        with formatter.section("Examples"):
            for line in command.epilog.splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


class _Command(TyperCommand):
    context_class = _Context

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        arguments = [_usage_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [*([self.options_metavar] if self.options_metavar else []), *arguments]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _format_examples(self, formatter)


class _Group(TyperGroup):
    context_class = _Context

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _format_examples(self, formatter)


def _examples(*pairs: tuple[str, str]) -> str:
    """(what it does, the command line) pairs, as the lines of an Examples section."""
    return "\n".join(f"# {why}\n{line}" for why, line in pairs)


app = typer.Typer(
    name="perennial",
    cls=_Group,
    rich_markup_mode=None,  # click's plain layout: the same text on a terminal, in a pipe and in the docs
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"perennial {__version__}")
        raise typer.Exit()


def _global_options(
    args: argparse.Namespace, workspace: Path | None, config: Path | None, verbose: int, quiet: int
) -> argparse.Namespace:
    """The command's Namespace with the global options given before it: given after it too, the later
    --workspace or --config wins and the -v and -q counts add up."""
    args.workspace = args.workspace or workspace
    args.config = args.config or config
    args.verbose += verbose
    args.quiet += quiet
    return args


@app.callback(
    result_callback=_global_options,
    epilog=_examples(
        ("try it: four sentiment domains through the pipeline, one cycle each", "perennial demo"),
        ("train on what the inbox holds, then see what was decided", "perennial run && perennial status"),
        (
            "any command on another workspace, with the libraries' log lines",
            "perennial -v --workspace /srv/perennial run",
        ),
        ("a command's options and examples", "perennial predict --help"),
    ),
)
def _perennial(
    workspace: _Workspace = None,
    config: _Config = None,
    verbose: _Verbose = 0,
    quiet: _Quiet = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=False,
            show_default=False,
            help="print the version and exit",
        ),
    ] = False,
) -> None:
    """Keep a text classifier current as labelled batches arrive.

    Batch files (CSV, JSONL or Parquet with text and label columns) land in the workspace's inbox;
    each cycle trains a candidate on one, evaluates it on the new slice and every earlier one, and
    promotes it only if it learnt the new data without forgetting the old. Everything lives in the
    workspace folder. The global options (--workspace, --config, -v, -q) go before or after the
    command.
    """


def _command(name: str, summary: str, *examples: tuple[str, str]) -> Callable[[_Gather], _Gather]:
    """Register `gather` as command `name`: its docstring is the description, `summary` its line in
    `perennial --help`; the global options are added to its own."""

    def register(gather: _Gather) -> _Gather:
        def command(
            *, workspace: Path | None, config: Path | None, verbose: int, quiet: int, **options: Any
        ) -> argparse.Namespace:
            args = gather(**options)
            args.command = name
            args.workspace, args.config, args.verbose, args.quiet = workspace, config, verbose, quiet
            return args

        own = inspect.signature(gather, eval_str=True)
        command.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[*own.parameters.values(), *_GLOBAL_PARAMETERS]
        )
        app.command(
            name, cls=_Command, help=inspect.getdoc(gather), short_help=summary, epilog=_examples(*examples)
        )(command)
        return gather

    return register


@_command(
    "run",
    "process every pending batch in the inbox, oldest first, one cycle each",
    ("every batch waiting in the inbox, one cycle each", "perennial run"),
    ("the libraries' own log lines on the terminal too", "perennial run -v"),
    ("only the results, e.g. from cron", "perennial run -q --workspace /srv/perennial"),
)
def _run() -> argparse.Namespace:
    """Process every batch waiting in the workspace's inbox, and any ingested but not yet trained,
    oldest first, one cycle each: validate it, train a candidate, evaluate it on the new slice and
    every earlier one, then promote it or reject it with the reason. The flows run on the workspace's
    Prefect server when one answers (`perennial server`), else on a temporary one. Exits 0 when every
    batch completed a cycle (promoted or rejected), 1 when some batch failed (quarantined or crashed);
    with nothing to do it says so and starts nothing."""
    return argparse.Namespace(func=cmd_run)


@_command(
    "ingest",
    "record batch files in the ledger and data store (no training)",
    ("record a batch; a later `perennial run` trains it", "perennial ingest path/to/batch.jsonl"),
    ("several files, without telling a running server", "perennial ingest --no-event a.csv b.parquet"),
)
def _ingest(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="batch files: CSV, JSONL or Parquet", show_default=False),
    ],
    no_event: Annotated[
        bool, _flag("--no-event", "do not notify a running server (`perennial serve`)")
    ] = False,
) -> argparse.Namespace:
    """Validate batch files and record them in the ledger and data store without training; a later
    `perennial run` trains them. A file whose content was seen before is skipped and says so; a bad
    one is quarantined with the reason. When a Prefect server is up (`perennial serve`), it is told
    which batches arrived, so that a run starts by itself, and which were quarantined."""
    return argparse.Namespace(func=cmd_ingest, files=list(files), no_event=no_event)


@_command(
    "demo",
    "stream four VADER sentiment domains through the pipeline",
    ("four sentiment domains, one cycle each", "perennial demo"),
    ("a quicker run: 200 rows per domain", "perennial demo --rows 200"),
    ("question types two at a time, the label set growing", "perennial demo --stream trec-classes"),
)
def _demo(
    rows: Annotated[
        int | None,
        _option(
            "--rows",
            metavar="N",
            parser=_whole_number,
            help="rows sampled per domain (default: settings.demo_rows_per_domain)",
        ),
    ] = None,
    stream: Annotated[
        DemoStream,
        _option(
            "--stream",
            help="vader: four sentiment domains; trec-classes: question types arriving two at a time, the "
            "label set growing with them",
        ),
    ] = "vader",
) -> argparse.Namespace:
    """Stream real labelled data through the pipeline, one batch per cycle, in a workspace of its own:
    the demo/ folder inside the workspace, emptied first on every run so that runs compare. Point
    --workspace at that folder to look at it afterwards (`perennial --workspace workspace/demo
    report`, with the default workspace)."""
    return argparse.Namespace(func=cmd_demo, rows=rows, stream=stream)


@_command(
    "status",
    "champion, its metrics, batches and decisions",
    ("the champion, its scores per slice, every batch and decision", "perennial status"),
    ("the same as JSON, for a script", "perennial status --json"),
    ("every promotion and rollback, oldest first", "perennial status --history"),
)
def _status(
    as_json: Annotated[bool, _flag("--json", "print it as JSON")] = False,
    history: Annotated[
        bool, _flag("--history", "only the champion's moves (promotion, rollback), oldest first")
    ] = False,
) -> argparse.Namespace:
    """Show the champion and its metrics on every slice, each batch with its decision and the reason,
    and the last drift check. --history shows the champion's moves instead: promotions, rollbacks and
    any move made outside perennial. Only reads: a workspace that does not exist is an error, never
    created."""
    return argparse.Namespace(func=cmd_status, json=as_json, history=history)


@_command(
    "rollback",
    "move the champion back (default: to the previous champion) after a load check",
    ("back to the previous champion, saying why", 'perennial rollback --reason "v4 misreads sarcasm"'),
    ("to a given version", "perennial rollback --to 3"),
    ("even to a version the gate rejected", 'perennial rollback --to v2 --force --reason "hotfix"'),
)
def _rollback(
    to: Annotated[
        str | None,
        _option(
            "--to", metavar="VERSION", parser=_version, help="the version to make champion (e.g. 3 or v3)"
        ),
    ] = None,
    reason: Annotated[
        str | None,
        _option("--reason", metavar="TEXT", help="why, for the alias history (default: 'manual rollback')"),
    ] = None,
    force: Annotated[
        bool, _flag("--force", "roll back even to a version the gate rejected (it says why)")
    ] = False,
) -> argparse.Namespace:
    """Move the champion alias back to the champion before it, or to --to VERSION, once that version
    has passed a load check; the move and its reason join the alias history (`perennial status
    --history`). A refused rollback (no version to go back to, files that no longer load, a version
    the gate rejected without --force) leaves the champion as it was and exits 1."""
    return argparse.Namespace(func=cmd_rollback, to=to, reason=reason, force=force)


@_command(
    "report",
    "write a static HTML dashboard of versions, decisions, forgetting and drift",
    ("write reports/index.html in the workspace and print its link", "perennial report"),
    ("somewhere a web server serves", "perennial report --out /var/www/perennial/index.html"),
)
def _report(
    out: Annotated[
        Path | None,
        _option("--out", metavar="FILE", help="HTML file to write (default: reports/index.html)"),
    ] = None,
) -> argparse.Namespace:
    """Write a static HTML page: every version with its aliases, the decisions and their reasons, the
    accuracy of each version on each slice (forgetting made visible) and drift; the data docs are
    refreshed with it. Prints the file's path and a link to open it. A workspace that does not exist
    is an error, never created."""
    return argparse.Namespace(func=cmd_report, out=out)


@_command(
    "settings",
    "every setting's effective value and where it comes from",
    ("every value and its source", "perennial settings"),
    ("with a settings file, as JSON", "perennial settings --config team.toml --json"),
    ("what an environment variable changes", "PERENNIAL_EPOCHS=5 perennial settings"),
)
def _settings_command(
    as_json: Annotated[bool, _flag("--json", "print a JSON list of {name, value, source}")] = False,
) -> argparse.Namespace:
    """List every setting with its effective value and where that came from: the default, the
    settings file (perennial.toml in the current folder, or --config), a PERENNIAL_* environment
    variable or a command-line option. A PERENNIAL_* variable that names no setting is warned about,
    with the setting it probably meant."""
    return argparse.Namespace(func=cmd_settings, json=as_json)


@_command(
    "predict",
    "score texts with the champion (or another version)",
    ("score two texts with the champion", 'perennial predict "great phone" "never again"'),
    ("a file of texts, one per line, as JSON lines", "perennial predict --file texts.txt --json"),
    ("texts from stdin", "cut -f2 tickets.tsv | perennial predict --file -"),
    (
        "with the challenger, logged for the drift monitor",
        'perennial predict --alias challenger --log "new input"',
    ),
)
def _predict(
    texts: Annotated[
        list[str] | None, typer.Argument(metavar="TEXT", help="texts to score", show_default=False)
    ] = None,
    file: Annotated[
        Path | None,
        _option("--file", metavar="FILE", help="one text per line (UTF-8); - reads them from stdin"),
    ] = None,
    version: Annotated[
        str | None,
        _option(
            "--version",
            metavar="VERSION",
            parser=_version,
            help="a registered version instead of the champion",
        ),
    ] = None,
    alias: Annotated[
        str | None,
        _option("--alias", metavar="ALIAS", help="the version behind this alias (e.g. challenger) instead"),
    ] = None,
    as_json: Annotated[
        bool, _flag("--json", "one JSON object per text, with the model version and whether it was cut")
    ] = False,
    log: Annotated[bool, _flag("--log", "also log the texts to monitor/ for the drift monitor")] = False,
) -> argparse.Namespace:
    """Score texts with the champion, or with another registered version (--version, --alias): one
    line per text with the label, its score and the text, tab-separated. Texts come as arguments or
    from --file; a text longer than max_length tokens is scored on its beginning, with a warning.
    Exits 1 when there is no such model, 2 for an unreadable file or an empty text."""
    if version is not None and alias is not None:
        raise UsageProblem("predict", "--alias cannot be used with --version: give one of them")
    return argparse.Namespace(
        func=cmd_predict,
        texts=list(texts or []),
        file=file,
        version=version,
        alias=alias,
        json=as_json,
        log=log,
    )


@_command(
    "drift",
    "check recent inputs in monitor/ against the champion's data, once",
    ("one check now", "perennial drift"),
    ("the tests' figures as JSON", "perennial drift --json"),
)
def _drift(
    as_json: Annotated[bool, _flag("--json", "print the check as JSON, the tests' report included")] = False,
) -> argparse.Namespace:
    """Run one drift check: the texts logged in monitor/ (by `perennial predict --log` or a service
    that writes there) against held-out data the champion was trained on, and what to do about it.
    `perennial serve` runs the same check on a schedule; too few monitored texts to test is said, not
    an error."""
    return argparse.Namespace(func=cmd_drift, json=as_json)


@_command(
    "server",
    "start a local Prefect server (API and UI) on server_host:server_port",
    ("terminal 1: the server, its database in the workspace", "perennial server"),
    ("on another port", "PERENNIAL_SERVER_PORT=4300 perennial server"),
)
def _server() -> argparse.Namespace:
    """Start a local Prefect server, API and UI, in the foreground with its database in the workspace;
    Ctrl-C stops it. While it runs, `perennial serve` serves the deployments on it and `perennial run`
    runs its flows there, so its UI shows every run."""
    return argparse.Namespace(func=cmd_server)


@_command(
    "ui",
    "start the MLflow UI on 127.0.0.1 and print the Prefect UI's address",
    ("the MLflow UI on 127.0.0.1:5000", "perennial ui"),
    ("on another port, with two workers", "PERENNIAL_MLFLOW_UI_PORT=5050 perennial ui --workers 2"),
)
def _ui(
    workers: Annotated[
        int,
        _option(
            "--workers", metavar="N", parser=_whole_number, help="MLflow server worker processes (default: 1)"
        ),
    ] = 1,
    jobs: Annotated[bool, _flag("--jobs", "also run MLflow's background job consumers")] = False,
) -> argparse.Namespace:
    """Start the MLflow UI on this workspace's registry (runs, versions, aliases) in the foreground and
    print where the Prefect UI and the report are. One server worker and none of MLflow's background
    job consumers unless asked, to stay light; Ctrl-C stops it."""
    return argparse.Namespace(func=cmd_ui, workers=workers, jobs=jobs)


@_command(
    "serve",
    "serve the training and drift deployments (schedules, triggers) and watch the inbox",
    ("terminal 2, with `perennial server` in terminal 1", "perennial serve"),
    ("without the watcher (a `perennial watch` elsewhere does it)", "perennial serve --no-watch"),
)
def _serve(
    no_watch: Annotated[bool, _flag("--no-watch", "do not watch the inbox for new files")] = False,
) -> argparse.Namespace:
    """Serve the training and drift deployments on the workspace's Prefect server (their schedules,
    the trigger that trains when a batch arrives, the one that acts on drift) and watch the inbox for
    new files, until Ctrl-C. It needs a running server: `perennial server` in another terminal, or
    PREFECT_API_URL; without one it says so and exits 2."""
    return argparse.Namespace(func=cmd_serve, no_watch=no_watch)


@_command(
    "watch",
    "only watch the inbox and send perennial.batch.arrived (a Prefect worker runs the flows)",
    (
        "the watcher of a stack whose worker runs the flows",
        "PREFECT_API_URL=http://prefect:4200/api perennial watch",
    ),
)
def _watch() -> argparse.Namespace:
    """Only watch the inbox: send perennial.batch.arrived to the Prefect server for every complete file
    that lands there, until Ctrl-C. For a stack where a Prefect worker, not `perennial serve`, runs the
    flows (the Compose file's inbox-watch service). Without a server it says so and exits 2."""
    return argparse.Namespace(func=cmd_watch)


@_command(
    "metrics",
    "the champion, its slice scores, batches, the last cycle and drift as Prometheus metrics",
    ("print them", "perennial metrics"),
    (
        "for node_exporter's textfile collector, e.g. from cron",
        "perennial metrics --textfile /var/lib/node_exporter/perennial.prom",
    ),
)
def _metrics(
    textfile: Annotated[
        Path | None,
        _option(
            "--textfile",
            metavar="PATH",
            help="write them (atomically) to PATH, e.g. for node_exporter's textfile collector (*.prom)",
        ),
    ] = None,
) -> argparse.Namespace:
    """Print the workspace's state in Prometheus' text format: the champion's version, its score on
    each slice, batches by status, the last cycle and the last drift check. With --textfile they are
    written to a file instead, replaced in one step so a scrape never reads half of it."""
    return argparse.Namespace(func=cmd_metrics, textfile=textfile)


@_command(
    "push",
    "upload a registered version (default: the champion) to a Hugging Face Hub repository",
    ("what would be uploaded, sending nothing", "perennial push --to-hub acme/support-intents --dry-run"),
    (
        "version 3, in a public repository",
        "perennial push --to-hub acme/support-intents --version 3 --public",
    ),
)
def _push(
    to_hub: Annotated[
        str, _option("--to-hub", metavar="REPO", help="the repository, e.g. acme/support-intents")
    ],
    version: Annotated[
        str | None,
        _option(
            "--version",
            metavar="VERSION",
            parser=_version,
            help="the version to push (default: the champion)",
        ),
    ] = None,
    public: Annotated[bool, _flag("--public", "create the repository public (default: private)")] = False,
    dry_run: Annotated[bool, _flag("--dry-run", "list the files it would upload; send nothing")] = False,
) -> argparse.Namespace:
    """Upload a registered version to a Hugging Face Hub repository in one commit: its weights,
    tokenizer and model card, downloaded afresh from the registry. The one command that goes online:
    it uses huggingface_hub's token (HF_TOKEN or `hf auth login`) and refuses while HF_HUB_OFFLINE is
    set."""
    return argparse.Namespace(func=cmd_push, to_hub=to_hub, version=version, public=public, dry_run=dry_run)


@_command(
    "notify",
    "post promotions (and other decisions) to a webhook, through a Prefect automation on the running server",
    (
        "post each promotion to a Slack channel",
        "perennial notify --webhook https://hooks.slack.com/services/T0/B0/XYZ",
    ),
    (
        "every decision, to a service on the local network",
        "perennial notify --webhook http://10.0.0.5/hook --on rejected,quarantined --allow-private",
    ),
)
def _notify(
    webhook: Annotated[
        str, _option("--webhook", metavar="URL", help="where to POST (Slack, Teams, any JSON)")
    ],
    on: Annotated[
        str,
        _option(
            "--on",
            metavar="EVENTS",
            help="comma-separated: promoted, rejected, quarantined (default: promoted)",
        ),
    ] = "promoted",
    allow_private: Annotated[
        bool,
        _flag(
            "--allow-private",
            "let the server post to a private or local address (Prefect refuses those by default)",
        ),
    ] = False,
) -> argparse.Namespace:
    """Create an automation on the running Prefect server that posts this workspace's decisions to a
    webhook as JSON: promotions, and with --on rejections and quarantined batches too. It lives on the
    server (its UI lists it under Automations); without a server this says so and exits 2."""
    return argparse.Namespace(func=cmd_notify, webhook=webhook, on=on, allow_private=allow_private)


@_command(
    "backup",
    "the whole workspace as one .tar.gz, taken while no cycle runs (restore: perennial restore)",
    ("a dated archive of the workspace", 'perennial backup "/backups/perennial-$(date +%F).tar.gz"'),
    ("another workspace", "perennial backup ws.tar.gz --workspace /srv/perennial"),
)
def _backup(
    archive: Annotated[
        Path, typer.Argument(metavar="ARCHIVE", help="the archive to write, e.g. perennial-2026-12-08.tar.gz")
    ],
) -> argparse.Namespace:
    """Write the whole workspace to one .tar.gz archive. It holds the workspace lock meanwhile, so no
    cycle or rollback runs during the copy (a running one is waited for, up to the lock_wait_seconds
    setting), and copies each SQLite database through SQLite's own backup, so the archive is
    consistent. `perennial restore` unpacks it."""
    return argparse.Namespace(func=cmd_backup, archive=archive)


@_command(
    "restore",
    "unpack a backup into a new workspace folder (--workspace), ready to run there",
    (
        "into a new folder, then carry on there",
        "perennial restore backup.tar.gz --workspace /srv/perennial-2",
    ),
)
def _restore(
    archive: Annotated[
        Path, typer.Argument(metavar="ARCHIVE", help="an archive written by perennial backup")
    ],
) -> argparse.Namespace:
    """Unpack an archive written by `perennial backup` into a new workspace folder (--workspace; one
    that is empty or does not exist yet) and point its stored paths there, so that every command works
    on it at once."""
    return argparse.Namespace(func=cmd_restore, archive=archive)


@_command(
    "stream",
    "split a labelled file into ordered batch files (default: the inbox)",
    ("one batch per domain, into the inbox", "perennial stream reviews.csv --by domain"),
    (
        "one batch per quarter, as JSONL files in a folder",
        "perennial stream tickets.parquet --by-time created_at --every quarter --out batches/ --format jsonl",
    ),
)
def _stream(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV, JSONL or Parquet with text and label columns")
    ],
    by: Annotated[
        str | None,
        _option("--by", metavar="COLUMN", help="one batch per value, in order of first appearance"),
    ] = None,
    by_time: Annotated[
        str | None, _option("--by-time", metavar="COLUMN", help="one batch per period of this date column")
    ] = None,
    every: Annotated[Period, _option("--every", help="the period of --by-time")] = "month",
    out: Annotated[
        Path | None, _option("--out", metavar="DIR", help="output folder (default: the workspace inbox)")
    ] = None,
    fmt: Annotated[
        Literal["csv", "jsonl", "parquet"] | None, _option("--format", help="default: the input's format")
    ] = None,
) -> argparse.Namespace:
    """Split one labelled file into numbered batch files, in order: one per value of a column (--by)
    or one per period of a date column (--by-time, --every). They are written to the workspace inbox
    unless --out says otherwise, in the input's format unless --format does; `perennial run` then
    trains them one cycle each, as if they had arrived over time."""
    if (by is None) == (by_time is None):
        raise UsageProblem("stream", "give one of --by COLUMN or --by-time COLUMN")
    return argparse.Namespace(
        func=cmd_stream, file=file, by=by, by_time=by_time, every=every, out=out, format=fmt
    )


@_command(
    "bench",
    "benchmarks that measure and report (see bench/)",
    ("minutes, not hours: subsampled, one seed", "perennial bench forgetting --quick"),
    ("a stream where naive fine-tuning forgets", "perennial bench forgetting --dataset trec-classes --quick"),
    (
        "your own history, one slice per quarter",
        "perennial bench forgetting --stream history.csv --by-time created_at --every quarter",
    ),
    (
        "this workspace's batches, three strategies",
        "perennial bench forgetting --from-workspace --strategies naive,replay+lwf,joint",
    ),
)
def _bench(
    name: Annotated[
        Literal["forgetting"],
        typer.Argument(
            metavar="NAME", help="forgetting: strategies against the joint bound", show_default=False
        ),
    ],
    quick: Annotated[bool, _flag("--quick", "subsampled, one seed: minutes, not hours")] = False,
    seeds: Annotated[
        int | None,
        _option(
            "--seeds",
            metavar="N",
            parser=_whole_number,
            help="number of seeds (default: 3, or 1 with --quick)",
        ),
    ] = None,
    rows: Annotated[
        int | None,
        _option(
            "--rows",
            metavar="N",
            parser=_whole_number,
            help="rows sampled per slice of a --dataset stream (default: demo_rows_per_domain, 300 with "
            "--quick)",
        ),
    ] = None,
    strategies: Annotated[
        str | None,
        _option("--strategies", metavar="SPECS", help="comma-separated specs, e.g. naive,replay+lwf,joint"),
    ] = None,
    out: Annotated[Path, _option("--out", metavar="DIR", help="output folder (default: results/)")] = Path(
        "results"
    ),
    dataset: Annotated[
        DevStream | None,
        _option("--dataset", help="a shipped development stream (default: vader, the easy one)"),
    ] = None,
    stream: Annotated[
        Path | None, _option("--stream", metavar="FILE", help="a labelled CSV, JSONL or Parquet file")
    ] = None,
    stream_dir: Annotated[
        Path | None, _option("--stream-dir", metavar="DIR", help="batch files, one slice each, in name order")
    ] = None,
    from_workspace: Annotated[
        bool, _flag("--from-workspace", "the workspace's accepted batches, in order")
    ] = False,
    by: Annotated[
        str | None,
        _option(
            "--by", metavar="COLUMN", help="with --stream: one slice per value, in order of first appearance"
        ),
    ] = None,
    by_time: Annotated[
        str | None,
        _option(
            "--by-time", metavar="COLUMN", help="with --stream: one slice per period of this date column"
        ),
    ] = None,
    every: Annotated[Period, _option("--every", help="the period of --by-time")] = "month",
    labels: Annotated[
        Literal["upfront", "growing"],
        _option(
            "--labels",
            help="upfront: every model knows the whole label set; growing: as the pipeline with no labels "
            "declared, each cycle's model knows the labels seen so far (its head grows)",
        ),
    ] = "upfront",
    split_rows: Annotated[
        str | None,
        _option(
            "--split-rows",
            metavar="TRAIN,VAL,TEST",
            help="exact rows per split of every slice (default: the val_fraction and test_fraction settings)",
        ),
    ] = None,
) -> argparse.Namespace:
    """forgetting: every strategy on one stream against the joint bound. The stream is a shipped
    development stream (--dataset), your own labelled file split into slices (--stream FILE --by
    COLUMN, or --by-time COLUMN --every month), a folder of batch files in name order (--stream-dir),
    or this workspace's accepted batches (--from-workspace)."""
    sources = [
        option
        for option, given in (
            ("--dataset", dataset is not None),
            ("--stream", stream is not None),
            ("--stream-dir", stream_dir is not None),
            ("--from-workspace", from_workspace),
        )
        if given
    ]
    if len(sources) > 1:
        raise UsageProblem("bench", f"{' and '.join(sources)} exclude each other: give one stream")
    return argparse.Namespace(
        func=cmd_bench,
        name=name,
        quick=quick,
        seeds=seeds,
        rows=rows,
        strategies=strategies,
        out=out,
        dataset=dataset or "vader",
        stream=stream,
        stream_dir=stream_dir,
        from_workspace=from_workspace,
        by=by,
        by_time=by_time,
        every=every,
        labels=labels,
        split_rows=split_rows,
    )


def build_command() -> TyperGroup:
    """The click command tree typer builds from `app` (the docs' CLI page walks it too)."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    return command


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace | int:
    """The command line as the Namespace its handler reads; or, when there is nothing to run, the exit
    status: 0 after --help, --version or a completion script, 2 after a usage error (said in one
    line on stderr, with where to look for the fix)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = build_command().main(args, prog_name="perennial", standalone_mode=False)
    except UsageProblem as problem:
        print(f"error: {problem} (try perennial {problem.command} --help)", file=sys.stderr)
        return 2
    except typer.TyperException as error:  # click's usage errors (exit status 2) and kin
        print(f"error: {_one_line(error, args)}", file=sys.stderr)
        return int(getattr(error, "exit_code", 2))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except SystemExit as done:  # typer's completion options and shell completion end this way
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    if isinstance(parsed, argparse.Namespace):
        return parsed
    return parsed if isinstance(parsed, int) else 0  # typer.Exit's status: --help, --version


def _one_line(error: typer.TyperException, argv: Sequence[str]) -> str:
    """click's message as one line that ends with the help to read, not click's usage block."""
    message = error.format_message()
    possibilities = getattr(error, "possibilities", None)
    if possibilities:  # "no such option: --jsn": say what was probably meant
        message = f"{error.message}; did you mean {' or '.join(sorted(possibilities))}"
    # pydantic's prefix on a bad choice; a list of choices on lines of its own
    message = " ".join(message.replace("Value error, ", "").split()).rstrip(".")
    return f"{message[:1].lower()}{message[1:]} (try {_command_path(error, argv)} --help)"


def _command_path(error: typer.TyperException, argv: Sequence[str]) -> str:
    """`perennial CMD` for an error in a command's options, else `perennial`."""
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        return str(ctx.command_path)
    names = [arg for arg in argv if arg in _command_names()]
    return f"perennial {names[0]}" if names else "perennial"


def _command_names() -> list[str]:
    """The commands' names, in the order `perennial --help` lists them."""
    return [str(info.name) for info in app.registered_commands]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if isinstance(args, int):  # --help, --version, or a usage error already said
        return args
    from perennial.core.console import set_verbosity

    set_verbosity(args.verbose - args.quiet)  # before Prefect or MLflow is imported
    from perennial.core.settings_check import SettingsProblem, unknown_variables

    for warning in unknown_variables(os.environ):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        handler: Handler = args.func
        return handler(args)
    except SettingsProblem as problem:
        for line in str(problem).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script: `main`, then a quick exit.

    After torch, transformers, MLflow, GX and evaluate are loaded, the interpreter's own teardown
    (freeing every module) takes ~3 s on 2 cores and does nothing a finished command needs. So once
    the command has returned, do what a normal exit does that matters (wait for non-daemon threads,
    run the atexit handlers: log flushing, stopping Prefect's temporary server, then flush stdio)
    and leave without the teardown."""
    code = main()  # --help and usage errors return their status too; an exception leaves the normal way
    _exit_now(code)


def _exit_now(code: int) -> None:
    import atexit
    import logging
    import threading

    _stop_idle_executors()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    # Flush Prefect's log shipping while its temporary server still runs: left to the atexit
    # order, the server stops first and the flush waits ~5 s on it before giving up.
    logging.shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_idle_executors() -> None:
    """Tell every ThreadPoolExecutor's workers to finish (MLflow's artifact uploads leave some idle).

    Their threads are not daemons and end only when told: a normal exit tells them in
    `threading._shutdown`, which the quick exit skips, so joining them would wait forever. This is the
    function the interpreter registers for that (private, hence guarded): queued work still runs."""
    try:
        from concurrent.futures.thread import _python_exit
    except ImportError:  # a Python without it: its workers are then joined as they are
        return
    _python_exit()


if __name__ == "__main__":
    entry()
