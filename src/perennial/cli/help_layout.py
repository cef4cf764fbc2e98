"""How `--help` reads: click's plain layout (the same text on a terminal, in a pipe and on the docs
site, which is built from it), arguments named as in the usage line, global options under their own
heading, an Examples section, and colour from rich on a terminal only."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from perennial.cli.options import GLOBAL_NAMES


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
        elif isinstance(command, TyperCommand) and param.name in GLOBAL_NAMES:
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


class Command(TyperCommand):
    context_class = _Context

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        arguments = [_usage_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [*([self.options_metavar] if self.options_metavar else []), *arguments]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _format_examples(self, formatter)


class Group(TyperGroup):
    context_class = _Context

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _format_examples(self, formatter)


def examples_text(*pairs: tuple[str, str]) -> str:
    """(what it does, the command line) pairs, as the lines of an Examples section."""
    return "\n".join(f"# {why}\n{line}" for why, line in pairs)
