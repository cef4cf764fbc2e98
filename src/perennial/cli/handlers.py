"""What each workspace command does: a thin handler per command (`cmd_*`), called with the options
the parser gathered. Heavy libraries are imported inside each one, so `--help` stays instant; the
handlers call into the stages and hold no logic of their own."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from perennial.core.messages import first_line
from perennial.core.secrets import redact

if TYPE_CHECKING:
    # Only for annotations: importing the settings (pydantic-settings) would cost `--help` ~0.25 s.
    from perennial.benchmarks.forgetting import StreamFactory
    from perennial.core.settings import Settings
    from perennial.data.ingest import IngestResult


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings, or a SettingsProblem (one line per problem, printed by `main`)."""
    from perennial.core.settings_check import load_settings

    if args.config:
        os.environ["PERENNIAL_CONFIG"] = str(args.config)
    return load_settings(**_overrides(args))


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"workspace": args.workspace} if args.workspace else {}


def existing_workspace(settings: Settings) -> Settings:
    """The settings of a workspace that exists: a command that only reads one never creates it (a
    mistyped --workspace would otherwise leave an empty workspace behind and report on it)."""
    from perennial.core.settings_check import SettingsProblem

    if not settings.root.is_dir():
        raise SettingsProblem(
            f"no workspace at {settings.root}: check --workspace or PERENNIAL_WORKSPACE "
            "(`perennial run` or `perennial ingest` creates one)"
        )
    return settings


def ready(settings: Settings) -> Settings:
    from perennial.core.environment import configure

    configure(settings)
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from perennial.data.ingest import ingest_file
    from perennial.data.ledger import PENDING, QUARANTINED
    from perennial.workspace import ledger_for

    settings = ready(settings_from(args))
    ledger = ledger_for(settings)
    arrived: list[Path] = []
    quarantined: list[IngestResult] = []
    for path in args.files:
        if not Path(path).is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        result = ingest_file(Path(path), settings, ledger)
        print(json.dumps(asdict(result)) if args.json else result.message)
        if result.status == PENDING and not result.duplicate:
            arrived.append(Path(path))
        elif result.status == QUARANTINED and not result.duplicate:
            quarantined.append(result)
    if (arrived or quarantined) and not args.no_event:
        # With --json, stdout holds the JSON lines alone: what was sent is said on stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
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
    settings = ready(settings_from(args))
    if not _has_work(settings):  # no Prefect server, flow run or heavy import for nothing
        if args.json:
            print(json.dumps({"outcomes": [], "failed": None}, indent=2))
        else:
            print("nothing to do: the inbox is empty and no batch is pending")
        return 0
    settings = _use_running_server(settings)
    _overlap_start_up()
    from perennial.core.console import attach_log_file
    from perennial.flows.continual_training import continual_training

    attach_log_file(settings.root)
    state = continual_training(settings, return_state=True)
    # A failed run still carries the outcomes of the batches that did complete a cycle.
    data = state.result(raise_on_failure=False)
    outcomes = data if isinstance(data, list) else []
    if args.json:
        failed = None if state.is_completed() else state.message
        print(json.dumps({"outcomes": [asdict(o) for o in outcomes], "failed": failed}, indent=2))
    elif state.is_completed() and not outcomes:
        print("nothing to do: no pending batches")
    else:
        for outcome in outcomes:
            print(outcome.line())
    if state.is_completed():
        return 0
    print(f"run failed: {state.message}", file=sys.stderr)
    print("see `perennial status` for every batch and decision", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from perennial.demo import fresh_workspace, run_demo

    base = settings_from(args)
    workspace = base.root / "demo"
    fresh_workspace(workspace)
    settings = ready(base.model_copy(update={"workspace": workspace}))
    from perennial.core.console import attach_log_file

    attach_log_file(settings.root)
    run_demo(settings, rows_per_domain=args.rows or settings.demo_rows_per_domain, stream=args.stream)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from perennial.reporting.status import format_status, gather_status

    settings = ready(existing_workspace(settings_from(args)))
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

    settings = ready(existing_workspace(settings_from(args)))
    try:
        move = rollback(settings, to=args.to, reason=args.reason, force=args.force)
    except RollbackRefused as error:
        print(f"rollback refused: {error} (champion unchanged)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(move), indent=2))
        return 0
    print(f"champion: v{move.from_version} -> v{move.to_version} ({move.reason})")
    print(f"recorded: {format_move(move)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from perennial.reporting.data_docs import data_docs_dir
    from perennial.reporting.report import build_report

    settings = ready(existing_workspace(settings_from(args)))
    path = build_report(settings, args.out)
    print(f"report: {path}\nopen:   {path.as_uri()}")
    docs = data_docs_dir(settings) / "index.html"
    if docs.is_file():
        print(f"data docs: {docs.as_uri()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from perennial.serving.predict import NoChampion, predict_texts

    settings = ready(existing_workspace(settings_from(args)))
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

    rows = effective_settings(settings_from(args), _overrides(args))
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
        out = args.out or ready(settings_from(args)).inbox
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

    settings = ready(settings_from(args))
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
    settings = _use_running_server(ready(settings_from(args)))
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


def cmd_metrics(args: argparse.Namespace) -> int:
    """The workspace's state in Prometheus' text format: printed, or written for node_exporter."""
    from prometheus_client import write_to_textfile

    from perennial.reporting.prometheus import metrics_registry, metrics_text
    from perennial.reporting.status import gather_status

    status = gather_status(ready(existing_workspace(settings_from(args))))
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


def cmd_backup(args: argparse.Namespace) -> int:
    """The workspace as one .tar.gz, taken while no cycle runs."""
    from perennial.core.backup import BackupProblem, backup
    from perennial.core.locking import WorkspaceBusy

    settings = existing_workspace(settings_from(args))
    try:
        files = backup(settings, args.archive)
    except (BackupProblem, WorkspaceBusy) as problem:
        print(f"error: {first_line(problem)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {args.archive}: {error.strerror or first_line(error)}", file=sys.stderr)
        return 2
    archive = args.archive.expanduser().resolve()
    if args.json:
        print(json.dumps({"archive": str(archive), "files": files, "workspace": str(settings.root)}))
    else:
        print(f"backup: {files} files of {settings.root} in {archive}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """A backup unpacked into a new workspace folder, its stored paths pointed there."""
    from perennial.core.backup import BackupProblem, restore

    settings = settings_from(args)
    try:
        files = restore(args.archive, settings.root)
    except BackupProblem as problem:
        print(f"error: {first_line(problem)}", file=sys.stderr)
        return 2
    ready(settings)  # points MLflow's and the ledger's paths at the new folder
    if args.json:
        print(json.dumps({"archive": str(args.archive), "files": files, "workspace": str(settings.root)}))
    else:
        print(f"restored: {files} files into {settings.root}")
    return 0
