"""The `perennial` command. Heavy libraries are imported inside each command, so `--help` is instant.

Over 400 lines: one parser and a thin handler per command (fourteen of them, `bench` with its
own); the handlers call into the stages and hold no logic of their own. (A cli/ package by command
is a known next step.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from perennial import __version__
from perennial.core.messages import first_line
from perennial.core.secrets import redact
from perennial.core.settings import Settings
from perennial.data.ledger import PENDING, QUARANTINED

if TYPE_CHECKING:
    from perennial.benchmarks.forgetting import StreamFactory
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perennial", description="Keep a text classifier current as labelled batches arrive."
    )
    parser.add_argument("--version", action="version", version=f"perennial {__version__}")
    _global_options(parser)
    # Every subcommand takes the global options too (`perennial status -v`); SUPPRESS keeps a value
    # given before the subcommand from being reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(common)
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True), common)

    p = sub.add_parser("run", help="process every pending batch in the inbox, oldest first, one cycle each")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ingest", help="record batch files in the ledger and data store (no training)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument(
        "--no-event", action="store_true", help="do not notify a running server (`perennial serve`)"
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("demo", help="stream four VADER sentiment domains through the pipeline")
    p.add_argument(
        "--rows", type=int, help="rows sampled per domain (default: settings.demo_rows_per_domain)"
    )
    p.add_argument(
        "--stream",
        # demo.DEMO_STREAMS, spelt out: importing the demo (pandas) would slow --help.
        choices=["vader", "trec-classes"],
        default="vader",
        help="vader: four sentiment domains; trec-classes: question types arriving two at a time, the "
        "label set growing with them",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("status", help="champion, its metrics, batches and decisions")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--history", action="store_true", help="only the champion's moves (promotion, rollback), oldest first"
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "rollback", help="move the champion back (default: to the previous champion) after a load check"
    )
    p.add_argument(
        "--to", metavar="VERSION", type=_version, help="the version to make champion (e.g. 3 or v3)"
    )
    p.add_argument("--reason", help="why, for the alias history (default: 'manual rollback')")
    p.add_argument(
        "--force", action="store_true", help="roll back even to a version the gate rejected (it says why)"
    )
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser(
        "report", help="write a static HTML dashboard of versions, decisions, forgetting and drift"
    )
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="HTML file to write (default: reports/index.html)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("settings", help="every setting's effective value and where it comes from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("predict", help="score texts with the champion (or another version)")
    p.add_argument("texts", nargs="*")
    p.add_argument("--file", type=Path, help="one text per line (UTF-8); - reads them from stdin")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=_version, help="a registered version instead of the champion")
    which.add_argument("--alias", help="the version behind this alias (e.g. challenger) instead")
    p.add_argument("--json", action="store_true")
    p.add_argument("--log", action="store_true", help="also log the texts to monitor/ for the drift monitor")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("drift", help="check recent inputs in monitor/ against the champion's data, once")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("server", help="start a local Prefect server (API and UI) on server_host:server_port")
    p.set_defaults(func=cmd_server)

    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 and print the Prefect UI's address")
    p.add_argument("--workers", type=int, default=1, help="MLflow server worker processes (default: 1)")
    p.add_argument("--jobs", action="store_true", help="also run MLflow's background job consumers")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "serve", help="serve the training and drift deployments (schedules, triggers) and watch the inbox"
    )
    p.add_argument("--no-watch", action="store_true", help="do not watch the inbox for new files")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "watch",
        help="only watch the inbox and send perennial.batch.arrived (a Prefect worker runs the flows)",
    )
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "metrics",
        help="the champion, its slice scores, batches, the last cycle and drift as Prometheus metrics",
    )
    p.add_argument(
        "--textfile",
        type=Path,
        metavar="PATH",
        help="write them (atomically) to PATH, e.g. for node_exporter's textfile collector (*.prom)",
    )
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser(
        "push", help="upload a registered version (default: the champion) to a Hugging Face Hub repository"
    )
    p.add_argument(
        "--to-hub", required=True, metavar="REPO", help="the repository, e.g. acme/support-intents"
    )
    p.add_argument("--version", type=_version, help="the version to push (default: the champion)")
    p.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    p.add_argument("--dry-run", action="store_true", help="list the files it would upload; send nothing")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "notify",
        help="post promotions (and other decisions) to a webhook, through a Prefect automation on the "
        "running server",
    )
    p.add_argument("--webhook", required=True, metavar="URL", help="where to POST (Slack, Teams, any JSON)")
    p.add_argument(
        "--on",
        default="promoted",
        help="comma-separated: promoted, rejected, quarantined (default: promoted)",
    )
    p.add_argument(
        "--allow-private",
        action="store_true",
        help="let the server post to a private or local address (Prefect refuses those by default)",
    )
    p.set_defaults(func=cmd_notify)

    p = sub.add_parser(
        "backup",
        help="the whole workspace as one .tar.gz, taken while no cycle runs (restore: perennial restore)",
    )
    p.add_argument("archive", type=Path, help="the archive to write, e.g. perennial-2026-12-08.tar.gz")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore", help="unpack a backup into a new workspace folder (--workspace), ready to run there"
    )
    p.add_argument("archive", type=Path, help="an archive written by perennial backup")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("stream", help="split a labelled file into ordered batch files (default: the inbox)")
    p.add_argument("file", type=Path, help="CSV, JSONL or Parquet with text and label columns")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--by", metavar="COLUMN", help="one batch per value, in order of first appearance")
    how.add_argument("--by-time", metavar="COLUMN", help="one batch per period of this date column")
    p.add_argument("--every", choices=["week", "month", "quarter", "year"], default="month")
    p.add_argument("--out", type=Path, help="output folder (default: the workspace inbox)")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="default: the input's format")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser(
        "bench",
        help="benchmarks that measure and report (see bench/)",
        description="forgetting: every strategy on one stream against the joint bound. The stream is a "
        "shipped development stream (--dataset), your own labelled file split into slices (--stream FILE "
        "--by COLUMN, or --by-time COLUMN --every month), a folder of batch files in name order "
        "(--stream-dir), or this workspace's accepted batches (--from-workspace).",
    )
    p.add_argument("name", choices=["forgetting"], help="forgetting: strategies against the joint bound")
    p.add_argument("--quick", action="store_true", help="subsampled, one seed: minutes, not hours")
    p.add_argument("--seeds", type=int, help="number of seeds (default: 3, or 1 with --quick)")
    p.add_argument(
        "--rows",
        type=int,
        help="rows sampled per slice of a --dataset stream (default: demo_rows_per_domain, 300 with --quick)",
    )
    p.add_argument("--strategies", help="comma-separated specs, e.g. naive,replay+lwf,joint")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        # benchmark_streams.DEV_STREAMS' names, spelt out: importing it (pandas) would slow --help.
        choices=["vader", "trec-classes", "trec-subtypes"],
        default="vader",
        help="a shipped development stream (default: vader, the easy one)",
    )
    source.add_argument("--stream", type=Path, metavar="FILE", help="a labelled CSV, JSONL or Parquet file")
    source.add_argument(
        "--stream-dir", type=Path, metavar="DIR", help="batch files, one slice each, in name order"
    )
    source.add_argument(
        "--from-workspace", action="store_true", help="the workspace's accepted batches, in order"
    )
    p.add_argument(
        "--by", metavar="COLUMN", help="with --stream: one slice per value, in order of first appearance"
    )
    p.add_argument(
        "--by-time", metavar="COLUMN", help="with --stream: one slice per period of this date column"
    )
    p.add_argument("--every", choices=["week", "month", "quarter", "year"], default="month")
    p.add_argument(
        "--labels",
        choices=["upfront", "growing"],
        default="upfront",
        help="upfront: every model knows the whole label set; growing: as the pipeline with no labels "
        "declared, each cycle's model knows the labels seen so far (its head grows)",
    )
    p.add_argument(
        "--split-rows",
        metavar="TRAIN,VAL,TEST",
        help="exact rows per split of every slice (default: the val_fraction and test_fraction settings)",
    )
    p.set_defaults(func=cmd_bench)
    return parser


def _version(text: str) -> str:
    number = text.strip().removeprefix("v")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: give a number such as 3 or v3")
    return number


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", type=Path, help="workspace folder (default: ./workspace or PERENNIAL_WORKSPACE)"
    )
    parser.add_argument("--config", type=Path, help="settings file (TOML or YAML)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="also show Prefect's, MLflow's and the training's own log lines (the workspace's "
        "logs/perennial.log always has them)",
    )
    parser.add_argument(
        "-q", "--quiet", action="count", help="only results, warnings and errors: no progress lines"
    )


class _Subcommands:
    """`add_subparsers`' action, giving every subcommand the global options as a parent."""

    def __init__(self, action: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self._action, self._common = action, common

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self._action.add_parser(name, parents=[self._common], **kwargs)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from perennial.core.console import set_verbosity

    set_verbosity((args.verbose or 0) - (args.quiet or 0))  # before Prefect or MLflow is imported
    from perennial.core.settings_check import SettingsProblem, unknown_variables

    for warning in unknown_variables(os.environ):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        return args.func(args)
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
    code = main()  # argparse's exits (--help, bad arguments) and errors leave the normal way
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
