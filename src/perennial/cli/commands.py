"""The workspace commands as the command line offers them: options, description and examples."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

import typer

from perennial.cli.app import cli_command
from perennial.cli.handlers import (
    cmd_backup,
    cmd_bench,
    cmd_demo,
    cmd_drift,
    cmd_ingest,
    cmd_metrics,
    cmd_predict,
    cmd_report,
    cmd_restore,
    cmd_rollback,
    cmd_run,
    cmd_settings,
    cmd_status,
    cmd_stream,
)
from perennial.cli.options import (
    DemoStream,
    DevStream,
    Period,
    UsageProblem,
    flag,
    option,
    version_option,
    whole_number,
)


@cli_command(
    "run",
    "process every pending batch in the inbox, oldest first, one cycle each",
    ("every batch waiting in the inbox, one cycle each", "perennial run"),
    ("the libraries' own log lines on the terminal too", "perennial run -v"),
    ("only the results, e.g. from cron", "perennial run -q --workspace /srv/perennial"),
)
def _run(
    as_json: Annotated[
        bool, flag("--json", "print the outcomes as JSON (each batch's version and decision)")
    ] = False,
) -> argparse.Namespace:
    """Process every batch waiting in the workspace's inbox, and any ingested but not yet trained,
    oldest first, one cycle each: validate it, train a candidate, evaluate it on the new slice and
    every earlier one, then promote it or reject it with the reason. The flows run on the workspace's
    Prefect server when one answers (`perennial server`), else on a temporary one. Exits 0 when every
    batch completed a cycle (promoted or rejected), 1 when some batch failed (quarantined or crashed);
    with nothing to do it says so and starts nothing."""
    return argparse.Namespace(func=cmd_run, json=as_json)


@cli_command(
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
        bool, flag("--no-event", "do not notify a running server (`perennial serve`)")
    ] = False,
    as_json: Annotated[bool, flag("--json", "one JSON line per file: batch id, status, message")] = False,
) -> argparse.Namespace:
    """Validate batch files and record them in the ledger and data store without training; a later
    `perennial run` trains them. A file whose content was seen before is skipped and says so; a bad
    one is quarantined with the reason. When a Prefect server is up (`perennial serve`), it is told
    which batches arrived, so that a run starts by itself, and which were quarantined."""
    return argparse.Namespace(func=cmd_ingest, files=list(files), no_event=no_event, json=as_json)


@cli_command(
    "demo",
    "stream four VADER sentiment domains through the pipeline",
    ("four sentiment domains, one cycle each", "perennial demo"),
    ("a quicker run: 200 rows per domain", "perennial demo --rows 200"),
    ("question types two at a time, the label set growing", "perennial demo --stream trec-classes"),
)
def _demo(
    rows: Annotated[
        int | None,
        option(
            "--rows",
            metavar="N",
            parser=whole_number,
            help="rows sampled per domain (default: settings.demo_rows_per_domain)",
        ),
    ] = None,
    stream: Annotated[
        DemoStream,
        option(
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


@cli_command(
    "status",
    "champion, its metrics, batches and decisions",
    ("the champion, its scores per slice, every batch and decision", "perennial status"),
    ("the same as JSON, for a script", "perennial status --json"),
    ("every promotion and rollback, oldest first", "perennial status --history"),
)
def _status(
    as_json: Annotated[bool, flag("--json", "print it as JSON")] = False,
    history: Annotated[
        bool, flag("--history", "only the champion's moves (promotion, rollback), oldest first")
    ] = False,
) -> argparse.Namespace:
    """Show the champion and its metrics on every slice, each batch with its decision and the reason,
    and the last drift check. --history shows the champion's moves instead: promotions, rollbacks and
    any move made outside perennial. Only reads: a workspace that does not exist is an error, never
    created."""
    return argparse.Namespace(func=cmd_status, json=as_json, history=history)


@cli_command(
    "rollback",
    "move the champion back (default: to the previous champion) after a load check",
    ("back to the previous champion, saying why", 'perennial rollback --reason "v4 misreads sarcasm"'),
    ("to a given version", "perennial rollback --to 3"),
    ("even to a version the gate rejected", 'perennial rollback --to v2 --force --reason "hotfix"'),
)
def _rollback(
    to: Annotated[
        str | None,
        version_option("--to", "the version to make champion (e.g. 3 or v3)"),
    ] = None,
    reason: Annotated[
        str | None,
        option("--reason", metavar="TEXT", help="why, for the alias history (default: 'manual rollback')"),
    ] = None,
    force: Annotated[
        bool, flag("--force", "roll back even to a version the gate rejected (it says why)")
    ] = False,
    as_json: Annotated[bool, flag("--json", "print the recorded move as JSON")] = False,
) -> argparse.Namespace:
    """Move the champion alias back to the champion before it, or to --to VERSION, once that version
    has passed a load check; the move and its reason join the alias history (`perennial status
    --history`). A refused rollback (no version to go back to, files that no longer load, a version
    the gate rejected without --force) leaves the champion as it was and exits 1."""
    return argparse.Namespace(func=cmd_rollback, to=to, reason=reason, force=force, json=as_json)


@cli_command(
    "report",
    "write a static HTML dashboard of versions, decisions, forgetting and drift",
    ("write reports/index.html in the workspace and print its link", "perennial report"),
    ("somewhere a web server serves", "perennial report --out /var/www/perennial/index.html"),
)
def _report(
    out: Annotated[
        Path | None,
        option("--out", metavar="FILE", help="HTML file to write (default: reports/index.html)"),
    ] = None,
) -> argparse.Namespace:
    """Write a static HTML page: every version with its aliases, the decisions and their reasons, the
    accuracy of each version on each slice (forgetting made visible) and drift; the data docs are
    refreshed with it. Prints the file's path and a link to open it. A workspace that does not exist
    is an error, never created."""
    return argparse.Namespace(func=cmd_report, out=out)


@cli_command(
    "settings",
    "every setting's effective value and where it comes from",
    ("every value and its source", "perennial settings"),
    ("with a settings file, as JSON", "perennial settings --config team.toml --json"),
    ("what an environment variable changes", "PERENNIAL_EPOCHS=5 perennial settings"),
)
def _settings_command(
    as_json: Annotated[bool, flag("--json", "print a JSON list of {name, value, source}")] = False,
) -> argparse.Namespace:
    """List every setting with its effective value and where that came from: the default, the
    settings file (perennial.toml in the current folder, or --config), a PERENNIAL_* environment
    variable or a command-line option. A PERENNIAL_* variable that names no setting is warned about,
    with the setting it probably meant."""
    return argparse.Namespace(func=cmd_settings, json=as_json)


@cli_command(
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
        option("--file", metavar="FILE", help="one text per line (UTF-8); - reads them from stdin"),
    ] = None,
    version: Annotated[
        str | None,
        version_option("--version", "a registered version instead of the champion"),
    ] = None,
    alias: Annotated[
        str | None,
        option("--alias", metavar="ALIAS", help="the version behind this alias (e.g. challenger) instead"),
    ] = None,
    as_json: Annotated[
        bool, flag("--json", "one JSON object per text, with the model version and whether it was cut")
    ] = False,
    log: Annotated[bool, flag("--log", "also log the texts to monitor/ for the drift monitor")] = False,
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


@cli_command(
    "drift",
    "check recent inputs in monitor/ against the champion's data, once",
    ("one check now", "perennial drift"),
    ("the tests' figures as JSON", "perennial drift --json"),
)
def _drift(
    as_json: Annotated[bool, flag("--json", "print the check as JSON, the tests' report included")] = False,
) -> argparse.Namespace:
    """Run one drift check: the texts logged in monitor/ (by `perennial predict --log` or a service
    that writes there) against held-out data the champion was trained on, and what to do about it.
    `perennial serve` runs the same check on a schedule; too few monitored texts to test is said, not
    an error."""
    return argparse.Namespace(func=cmd_drift, json=as_json)


@cli_command(
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
        option(
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


@cli_command(
    "backup",
    "the whole workspace as one .tar.gz, taken while no cycle runs (restore: perennial restore)",
    ("a dated archive of the workspace", 'perennial backup "/backups/perennial-$(date +%F).tar.gz"'),
    ("another workspace", "perennial backup ws.tar.gz --workspace /srv/perennial"),
)
def _backup(
    archive: Annotated[
        Path, typer.Argument(metavar="ARCHIVE", help="the archive to write, e.g. perennial-2026-12-08.tar.gz")
    ],
    as_json: Annotated[bool, flag("--json", "print the archive, file count and workspace as JSON")] = False,
) -> argparse.Namespace:
    """Write the whole workspace to one .tar.gz archive. It holds the workspace lock meanwhile, so no
    cycle or rollback runs during the copy (a running one is waited for, up to the lock_wait_seconds
    setting), and copies each SQLite database through SQLite's own backup, so the archive is
    consistent. `perennial restore` unpacks it."""
    return argparse.Namespace(func=cmd_backup, archive=archive, json=as_json)


@cli_command(
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
    as_json: Annotated[bool, flag("--json", "print the archive, file count and workspace as JSON")] = False,
) -> argparse.Namespace:
    """Unpack an archive written by `perennial backup` into a new workspace folder (--workspace; one
    that is empty or does not exist yet) and point its stored paths there, so that every command works
    on it at once."""
    return argparse.Namespace(func=cmd_restore, archive=archive, json=as_json)


@cli_command(
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
        option("--by", metavar="COLUMN", help="one batch per value, in order of first appearance"),
    ] = None,
    by_time: Annotated[
        str | None, option("--by-time", metavar="COLUMN", help="one batch per period of this date column")
    ] = None,
    every: Annotated[Period, option("--every", help="the period of --by-time")] = "month",
    out: Annotated[
        Path | None, option("--out", metavar="DIR", help="output folder (default: the workspace inbox)")
    ] = None,
    fmt: Annotated[
        Literal["csv", "jsonl", "parquet"] | None, option("--format", help="default: the input's format")
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


@cli_command(
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
    quick: Annotated[bool, flag("--quick", "subsampled, one seed: minutes, not hours")] = False,
    seeds: Annotated[
        int | None,
        option(
            "--seeds",
            metavar="N",
            parser=whole_number,
            help="number of seeds (default: 3, or 1 with --quick)",
        ),
    ] = None,
    rows: Annotated[
        int | None,
        option(
            "--rows",
            metavar="N",
            parser=whole_number,
            help="rows sampled per slice of a --dataset stream (default: demo_rows_per_domain, 300 with "
            "--quick)",
        ),
    ] = None,
    strategies: Annotated[
        str | None,
        option("--strategies", metavar="SPECS", help="comma-separated specs, e.g. naive,replay+lwf,joint"),
    ] = None,
    out: Annotated[Path, option("--out", metavar="DIR", help="output folder (default: results/)")] = Path(
        "results"
    ),
    dataset: Annotated[
        DevStream | None,
        option("--dataset", help="a shipped development stream (default: vader, the easy one)"),
    ] = None,
    stream: Annotated[
        Path | None, option("--stream", metavar="FILE", help="a labelled CSV, JSONL or Parquet file")
    ] = None,
    stream_dir: Annotated[
        Path | None, option("--stream-dir", metavar="DIR", help="batch files, one slice each, in name order")
    ] = None,
    from_workspace: Annotated[
        bool, flag("--from-workspace", "the workspace's accepted batches, in order")
    ] = False,
    by: Annotated[
        str | None,
        option(
            "--by", metavar="COLUMN", help="with --stream: one slice per value, in order of first appearance"
        ),
    ] = None,
    by_time: Annotated[
        str | None,
        option("--by-time", metavar="COLUMN", help="with --stream: one slice per period of this date column"),
    ] = None,
    every: Annotated[Period, option("--every", help="the period of --by-time")] = "month",
    labels: Annotated[
        Literal["upfront", "growing"],
        option(
            "--labels",
            help="upfront: every model knows the whole label set; growing: as the pipeline with no labels "
            "declared, each cycle's model knows the labels seen so far (its head grows)",
        ),
    ] = "upfront",
    split_rows: Annotated[
        str | None,
        option(
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
