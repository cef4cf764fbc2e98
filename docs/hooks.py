"""MkDocs hook: the settings and CLI reference pages are written from the code when the site is built
(`mkdocs build`), so they cannot fall behind it. A page asks for a reference with a marker comment.

Settings come from the pydantic model's fields (their descriptions, defaults and environment
variables); the CLI from the argparse parser that `perennial` itself runs, command by command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SETTINGS_MARKER = "<!-- perennial:settings -->"
CLI_MARKER = "<!-- perennial:cli -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


def settings_table() -> str:
    from perennial.core.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _default(field.get_default(call_default_factory=True))
        meaning = _cell(field.description or "")
        rows.append(f"| `{name}` | `{prefix}{name.upper()}` | {default} | {meaning} |")
    return "\n".join(rows)


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        value = value.as_posix()
    text = str(value) if not isinstance(value, str) else value
    return f"`{_cell(text)}`" if text != "" else '`""`'


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def cli_reference() -> str:
    from perennial.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: a fixed width, a stable page
    sections = []
    for prog, parser in _commands(build_parser()):
        sections.append(f"## `{prog}`\n\n```text\n{parser.format_help().rstrip()}\n```")
    return "\n\n".join(sections)


def _commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every sub-command's, depth first. argparse keeps sub-parsers on a private
    action class; there is no public accessor, and this is what argparse documentation tools read."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _commands(sub)
