"""The command line's parsing layer (typer): help with a description and examples for every command,
global options on either side of the command, `--version`, one-line usage errors, no colour codes
off a terminal, shell completion, and a `--help` that imports nothing heavy. In-process through
`main`/`parse` where no workspace is needed; in a fresh process where the terminal or the imports
matter."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from perennial import __version__
from perennial.cli import build_command, main, parse

COMMANDS = list(build_command().commands)
# Box-drawing characters: the frame rich draws around a typer error by default.
BOX = re.compile("[\u2500-\u257f]")
ESCAPE = "\x1b["


def perennial(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = _without_colour_settings()
    command = [sys.executable, "-m", "perennial.cli", *args]
    return subprocess.run(command, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def _without_colour_settings() -> dict[str, str]:
    """The environment without the variables that force colour on or off (rich reads them)."""
    forcing = ("FORCE_COLOR", "PY_COLORS", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    return {k: v for k, v in os.environ.items() if k not in forcing}


def sections(help_text: str) -> dict[str, list[str]]:
    """A help page's sections by heading (`Options:` ...), each its indented lines; "" the text
    between the usage line and the first heading (the description)."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in help_text.splitlines()[1:]:
        if re.fullmatch(r"[A-Z][A-Za-z ]*:", line):
            current = line[:-1]
            found[current] = []
        elif line.strip():
            found[current].append(line.strip())
    return found


def test_there_are_the_commands_argparse_had() -> None:
    # In `perennial --help`: the workspace's commands first, then the ones that start or reach servers.
    assert COMMANDS == [
        "run", "ingest", "demo", "status", "rollback", "report", "settings", "predict", "drift", "metrics",
        "backup", "restore", "stream", "bench", "server", "ui", "serve", "watch", "push", "notify",
    ]  # fmt: skip


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_command_has_a_description_and_examples_that_parse(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--help"] if command else ["--help"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: perennial {command}".rstrip() + " [OPTIONS]"), out[:200]
    found = sections(out)
    description = " ".join(found[""])
    assert len(description) > 120 and description.endswith("."), description  # a paragraph, not a line
    examples = found.get("Examples", [])
    comments = [line for line in examples if line.startswith("# ")]
    lines = [line for line in examples if not line.startswith("# ")]
    assert lines and len(comments) == len(lines), examples  # each example says what it does
    for example in lines:
        runs = _perennial_commands(example)
        assert runs, f"{example!r} runs no perennial command"
        for args in runs:
            assert not command or command in args, f"{example!r} is not an example of {command}"
            parsed = parse(args)
            if "--help" in args:
                assert parsed == 0, example
            else:
                assert isinstance(parsed, argparse.Namespace), f"{example!r} does not parse"


def _perennial_commands(example: str) -> list[list[str]]:
    """The argument lists of the `perennial` invocations in an example's shell line (pipes, `&&` and
    leading VAR=value assignments aside)."""
    runs = []
    for part in re.split(r"\s*(?:&&|\|)\s*", example):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words and words[0] == "perennial":
            runs.append(words[1:])
    return runs


def test_each_help_names_its_options_arguments_and_the_global_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["bench", "--help"])
    found = sections(capsys.readouterr().out)
    options = " ".join(found["Options"])
    for option in (
        "--quick",
        "--dataset <vader|trec-classes|trec-subtypes>",
        "--stream FILE",
        "--split-rows",
    ):
        assert option in options
    assert "--every <week|month|quarter|year>" in options and "[default: month]" in options
    assert found["Arguments"][0].startswith("NAME ")
    assert [line.split()[0] for line in found["Global options"] if line.startswith("-")] == [
        "--workspace", "--config", "-v,", "-q,"
    ]  # fmt: skip
    main(["ingest", "-h"])  # -h as argparse had it
    assert capsys.readouterr().out.startswith("Usage: perennial ingest [OPTIONS] FILE...")


def test_global_options_go_before_or_after_the_command() -> None:
    before = parse(["--workspace", "/w", "--config", "c.toml", "-v", "status", "--json"])
    after = parse(["status", "--json", "--workspace", "/w", "--config", "c.toml", "--verbose"])
    assert isinstance(before, argparse.Namespace) and isinstance(after, argparse.Namespace)
    assert vars(before) == vars(after)
    assert (before.workspace, before.config, before.verbose, before.quiet) == (
        Path("/w"),
        Path("c.toml"),
        1,
        0,
    )
    # Both sides: the counts add up, the later --workspace wins.
    both = parse(["-v", "--workspace", "/a", "-q", "run", "-vv", "--workspace", "/b"])
    assert isinstance(both, argparse.Namespace)
    assert (both.workspace, both.verbose, both.quiet) == (Path("/b"), 3, 1)


def test_the_namespace_is_what_the_handlers_read() -> None:
    from perennial.cli import handlers as cli

    args = parse(["predict", "--version", "v3", "--json", "one", "two"])
    assert isinstance(args, argparse.Namespace)
    assert args.func is cli.cmd_predict and args.command == "predict"
    assert (args.texts, args.version, args.alias, args.json, args.log, args.file) == (
        ["one", "two"], "3", None, True, False, None
    )  # fmt: skip
    args = parse(["bench", "forgetting", "--quick"])
    assert isinstance(args, argparse.Namespace)
    assert (args.dataset, args.out, args.every, args.labels, args.seeds) == (
        "vader", Path("results"), "month", "upfront", None
    )  # fmt: skip


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"perennial {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "--foo"], "error: no such option: --foo (try perennial run --help)"),
        (["status", "--jsn"], "did you mean --json"),
        (["frobnicate"], "no such command 'frobnicate'"),
        ([], "missing command (try perennial --help)"),
        (
            ["demo", "--stream", "imdb"],
            "'imdb' is not one of 'vader', 'trec-classes' (try perennial demo --help)",
        ),
        (["demo", "--rows", "many"], "'many' is not a whole number"),
        (["rollback", "--to", "abc"], "'abc' is not a version: give a number such as 3 or v3"),
        (["rollback", "--to"], "option '--to' requires an argument (try perennial rollback --help)"),
        (["push", "--dry-run"], "missing option '--to-hub'"),
        (["ingest"], "missing argument 'FILE'"),
        (["bench"], "missing argument 'NAME'. Choose from: forgetting"),
        (
            ["predict", "--version", "2", "--alias", "challenger", "x"],
            "--alias cannot be used with --version",
        ),
        (
            ["stream", "reviews.csv"],
            "give one of --by COLUMN or --by-time COLUMN (try perennial stream --help)",
        ),
        (["bench", "forgetting", "--dataset", "vader", "--from-workspace"], "exclude each other"),
    ],
)
def test_a_usage_error_is_one_plain_line_and_exit_status_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and said in err, err
    assert "Traceback" not in err and not BOX.search(err) and ESCAPE not in err


def test_the_real_entry_point_exits_2_on_a_usage_error_in_one_line() -> None:
    result = perennial("status", "--frobnicate")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: no such option: --frobnicate (try perennial status --help)"]
    assert result.stdout == ""


def test_help_in_a_pipe_has_no_escape_codes_and_on_a_terminal_has_colour() -> None:
    piped = perennial("rollback", "--help")
    assert piped.returncode == 0 and "--to VERSION" in piped.stdout
    assert ESCAPE not in piped.stdout and not BOX.search(piped.stdout)
    assert "\x1b[36m--to" in _on_a_terminal("rollback", "--help")
    assert ESCAPE not in _on_a_terminal("rollback", "--help", env={"TERM": "dumb"})
    assert not re.search(r"\x1b\[3\dm", _on_a_terminal("rollback", "--help", env={"NO_COLOR": "1"}))


def _on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """What `perennial ARGS` writes to a terminal (a pseudo-terminal as its stdout), read as it comes
    so that a full terminal buffer never blocks the command."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "perennial.cli", *args],
        stdout=follower,
        env={**_without_colour_settings(), "TERM": "xterm-256color", **(env or {})},
    )
    os.close(follower)  # the child holds its own copy: reading ends when the child is done
    chunks = []
    try:
        while chunk := _read(leader):
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # Linux: EIO once the other end of the terminal is closed
        return b""


def test_shell_completion() -> None:
    # The script `perennial --show-completion` prints for the shell it runs in (here bash; `exit` keeps
    # bash from handing its process over, so that it is the one found).
    shown = subprocess.run(
        ["bash", "-c", f"{shlex.quote(sys.executable)} -m perennial.cli --show-completion; exit $?"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _perennial_completion perennial" in shown.stdout
    assert "_PERENNIAL_COMPLETE=complete_bash" in shown.stdout
    # What that script asks for when Tab is pressed: commands, then a command's options and choices.
    for words, expected in (
        ("perennial st", ["status", "stream"]),
        ("perennial status --", ["--json", "--history", "--workspace", "--config", "--verbose", "--quiet"]),
        ("perennial demo --stream ", ["vader", "trec-classes"]),
    ):
        env = {
            "_PERENNIAL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (not words.endswith(" "))),
        }
        result = perennial(env=env)
        assert result.returncode == 0, result.stderr
        assert [line for line in result.stdout.splitlines() if line in expected] == expected, result.stdout


def test_help_imports_neither_the_settings_nor_the_heavy_libraries() -> None:
    """`--help` stays quick: no pydantic-settings (~0.25 s), no torch, Prefect, MLflow or pandas, and
    off a terminal not even rich. typer coerces the top level's option values with pydantic, so a
    command's help loads pydantic itself (~0.1 s); the top level's help does not get that far."""
    heavy = ("pydantic_settings", "torch", "transformers", "prefect", "mlflow", "pandas", "rich")
    code = (
        "import sys\n"
        "from perennial.cli import main\n"
        "heavy = set(sys.argv[1:])\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
        "assert main(['--help']) == 0\n"
        "print('loaded:', loaded() + (['pydantic'] if 'pydantic' in sys.modules else []))\n"
        "assert main(['bench', '--help']) == 0 and main(['predict', '-h']) == 0\n"
        "print('loaded:', loaded())\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *heavy], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("loaded:")] == ["loaded: []"] * 2
