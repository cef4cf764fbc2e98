"""The pieces every command's options are made of: the global options, option and flag helpers,
value parsers that fail in one line, and the choices spelt out (importing them would slow --help)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

Handler = Callable[[argparse.Namespace], int]

Gather = Callable[..., argparse.Namespace]

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


def option(*names: str, help: str, **kwargs: Any) -> Any:
    """typer.Option, showing the default only where the help text does not say it already."""
    return typer.Option(*names, help=help, show_default="(default" not in help, **kwargs)


def flag(name: str, help: str) -> Any:
    """An on/off option: `--name` alone (typer would add `--no-name` too)."""
    return typer.Option(name, help=help, show_default=False)


def version_number(text: str) -> str:
    number = text.strip().removeprefix("v")
    if not number.isdigit():
        raise typer.BadParameter(f"{text!r} is not a version: give a number such as 3 or v3")
    return number


def version_option(name: str, help: str) -> Any:
    """An option that names a registered version: 3 or v3."""
    return option(name, metavar="VERSION", parser=version_number, help=help)


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number") from None


WorkspaceOption = Annotated[
    Path | None,
    option(
        "--workspace", metavar="DIR", help="workspace folder (default: ./workspace or PERENNIAL_WORKSPACE)"
    ),
]

ConfigOption = Annotated[Path | None, option("--config", metavar="FILE", help="settings file (TOML or YAML)")]

VerboseOption = Annotated[
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

QuietOption = Annotated[
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
GLOBAL_NAMES = ("workspace", "config", "verbose", "quiet")

GLOBAL_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("workspace", WorkspaceOption, None),
        ("config", ConfigOption, None),
        ("verbose", VerboseOption, 0),
        ("quiet", QuietOption, 0),
    )
]
