"""The documentation's reference pages are generated from the code (docs/hooks.py, run by
`mkdocs build`), and the README's links lead somewhere: checks that they cover everything."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from perennial.cli import build_command, parse
from perennial.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_says_what_it_is_for() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_the_settings_page_has_a_row_per_setting(hooks) -> None:
    table = hooks.settings_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    for name in Settings.model_fields:
        assert f"| `{name}` | `PERENNIAL_{name.upper()}` |" in table
    assert "| `max_forgetting` | `PERENNIAL_MAX_FORGETTING` | `0.03` |" in table


def test_a_pipe_in_a_description_does_not_break_the_table(hooks) -> None:
    assert hooks._cell("a | b\nc") == "a \\| b c"
    assert hooks._default(None) == "unset" and hooks._default("") == '`""`'


def test_the_cli_page_has_every_command(hooks) -> None:
    page = hooks.cli_reference()
    commands = build_command().commands
    assert set(commands) >= {"run", "ingest", "status", "report", "predict", "serve"}
    for command in commands:
        assert f"## `perennial {command}`" in page
    assert "Usage: perennial run [OPTIONS]" in page
    # The help that `--help` prints, whatever the terminal: options, examples and no colour codes.
    assert "  --to VERSION " in page and "# back to the previous champion" in page
    assert "\x1b[" not in page


def test_the_readme_links_lead_to_files_and_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert "docs/guide.md" in targets
    assert [t for t in targets if not (ROOT / t).exists()] == []
    assert len(readme.splitlines()) <= 200


def test_stream_choices_spelt_out_in_the_cli_match_the_code() -> None:
    """The CLI spells the stream names out (importing them would slow --help): they must agree."""
    import argparse
    from typing import get_args

    from perennial.benchmarks.streams import DEV_STREAMS
    from perennial.cli import options as cli
    from perennial.demo import DEMO_STREAMS

    assert list(get_args(cli.DemoStream)) == list(DEMO_STREAMS)
    assert set(get_args(cli.DevStream)) == set(DEV_STREAMS)
    # ...and they are what the parser takes.
    for name in DEMO_STREAMS:
        args = parse(["demo", "--stream", name])
        assert isinstance(args, argparse.Namespace) and args.stream == name
    for name in DEV_STREAMS:
        args = parse(["bench", "forgetting", "--dataset", name])
        assert isinstance(args, argparse.Namespace) and args.dataset == name
