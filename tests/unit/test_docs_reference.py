"""The documentation's reference pages are generated from the code (docs/hooks.py, run by
`mkdocs build`), and the README's links lead somewhere: checks that they cover everything."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from perennial.cli import build_parser
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
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) >= {"run", "ingest", "status", "report", "predict", "serve"}
    for command in sub.choices:
        assert f"## `perennial {command}`" in page
    assert "usage: perennial run" in page


def test_the_readme_links_lead_to_files_and_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert "docs/guide.md" in targets
    assert [t for t in targets if not (ROOT / t).exists()] == []
    assert len(readme.splitlines()) <= 200


def test_stream_choices_spelt_out_in_the_cli_match_the_code() -> None:
    """The CLI spells the stream names out (importing them would slow --help): they must agree."""
    from perennial.benchmarks.streams import DEV_STREAMS
    from perennial.demo import DEMO_STREAMS

    sub = next(a for a in build_parser()._actions if a.dest == "command")

    def choices(command: str, option: str) -> list[str]:
        return next(a for a in sub.choices[command]._actions if option in a.option_strings).choices

    assert list(choices("demo", "--stream")) == list(DEMO_STREAMS)
    assert set(choices("bench", "--dataset")) == set(DEV_STREAMS)
