"""The typer application: the top-level options and description, and `cli_command`, which registers
a command with its description, its summary line, its examples and the global options.

typer parses. Each command function gathers its options into the argparse.Namespace that its cmd_*
handler reads, and `main` calls the handler once parsing is over, so a usage error never reaches a
handler."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from perennial import __version__
from perennial.cli.help_layout import Command, Group, examples_text
from perennial.cli.options import (
    GLOBAL_PARAMETERS,
    ConfigOption,
    Gather,
    QuietOption,
    VerboseOption,
    WorkspaceOption,
)

app = typer.Typer(
    name="perennial",
    cls=Group,
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
    epilog=examples_text(
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
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = 0,
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


def cli_command(name: str, summary: str, *examples: tuple[str, str]) -> Callable[[Gather], Gather]:
    """Register `gather` as command `name`: its docstring is the description, `summary` its line in
    `perennial --help`; the global options are added to its own."""

    def register(gather: Gather) -> Gather:
        def command(
            *, workspace: Path | None, config: Path | None, verbose: int, quiet: int, **options: Any
        ) -> argparse.Namespace:
            args = gather(**options)
            args.command = name
            args.workspace, args.config, args.verbose, args.quiet = workspace, config, verbose, quiet
            return args

        own = inspect.signature(gather, eval_str=True)
        command.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[*own.parameters.values(), *GLOBAL_PARAMETERS]
        )
        app.command(
            name,
            cls=Command,
            help=inspect.getdoc(gather),
            short_help=summary,
            epilog=examples_text(*examples),
        )(command)
        return gather

    return register
