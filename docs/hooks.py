"""MkDocs hook: the settings and CLI reference pages are written from the code when the site is built
(`mkdocs build`), so they cannot fall behind it. A page asks for a reference with a marker comment.

Settings come from the pydantic model's fields (their descriptions, defaults and environment
variables); the CLI from the command tree that `perennial` itself parses with, command by command.
"""

from __future__ import annotations

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
    from perennial.cli import build_command

    sections = []
    for path, text in _commands(build_command()):
        sections.append(f"## `{path}`\n\n```text\n{text}\n```")
    return "\n\n".join(sections)


def _commands(command: Any, parent: Any = None, name: str = "perennial") -> Iterator[tuple[str, str]]:
    """(`perennial CMD`, the help `perennial CMD --help` prints) for the top level and every command,
    in the order `perennial --help` lists them. `Command.get_help` is click's plain text whatever the
    terminal (only `--help` on a terminal adds colour); a fixed width keeps the page stable."""
    settings = {**command.context_settings, "terminal_width": 100}  # -h beside --help, as when run
    ctx = command.context_class(command, parent=parent, info_name=name, **settings)
    yield ctx.command_path, command.get_help(ctx)
    for sub_name, sub in getattr(command, "commands", {}).items():  # a group's commands
        yield from _commands(sub, ctx, sub_name)
