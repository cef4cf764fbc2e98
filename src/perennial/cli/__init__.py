"""The `perennial` command: typer parses, a thin handler per command runs.

- `options`, `help_layout`, `app`: the parts every command is built from and how its help reads.
- `commands`, `service_commands`: each command's options, description and examples.
- `handlers`, `service_handlers`: what each command does (heavy libraries imported inside, so
  `--help` stays instant).
- `parsing`: from the command line to a handler's exit status, and the console script.
"""

from __future__ import annotations

from perennial.cli.parsing import build_command, entry, main, parse

__all__ = ["build_command", "entry", "main", "parse"]
