"""What a user sees on the terminal: a short story by default, everything with -v, the full logs
in the workspace's log file either way (the real entry point, in fresh processes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"
# Lines that are the libraries' chatter, not perennial's story.
CHATTER = (
    "Finished in state",  # Prefect, for every task and flow run
    "Beginning flow run",
    "Creating initial MLflow database tables",
    "Created version",  # MLflow's registration notes
    "Loading weights",  # transformers' loading bar
)


def perennial(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "perennial.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _inbox_with_reviews(tmp_path: Path, workspace: str = "ws") -> None:
    inbox = tmp_path / workspace / "inbox"
    inbox.mkdir(parents=True)
    shutil.copyfile(DATA / "reviews.csv", inbox / "reviews.csv")


def test_a_run_tells_a_short_story_and_logs_everything_to_the_workspace(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    _inbox_with_reviews(tmp_path)

    run = perennial("run", env=cli_env, cwd=tmp_path)

    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    for chatter in CHATTER:
        assert chatter not in console, f"{chatter!r} on the terminal:\n{console[-3000:]}"
    # One line per stage, then the result.
    for stage in ("reviews.csv: valid, ", "reviews.csv: trained from the base model: ", "new slice accuracy"):
        assert stage in run.stderr, run.stderr[-3000:]
    assert "reviews.csv: v1 promoted: champion v1" in run.stderr
    assert "v1 promote" in run.stdout
    assert len(console.splitlines()) < 20, console
    log = (tmp_path / "ws" / "logs" / "perennial.log").read_text(encoding="utf-8")
    assert "Finished in state Completed()" in log and "reviews.csv: valid, " in log
    assert "epoch 1: train loss" in log  # the training's own lines are kept there


def test_verbose_shows_the_libraries_lines_and_quiet_only_the_result(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    _inbox_with_reviews(tmp_path)

    verbose = perennial("run", "-v", env=cli_env, cwd=tmp_path)  # the option after the subcommand

    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Finished in state Completed()" in verbose.stderr
    assert verbose.stderr.count("reviews.csv: valid, ") == 1  # the story once, not twice

    shutil.copyfile(DATA / "films.jsonl", tmp_path / "ws" / "inbox" / "films.jsonl")
    quiet = perennial("-q", "run", env=cli_env, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "valid, " not in quiet.stderr and "Finished in state" not in quiet.stderr
    assert ": v2 " in quiet.stdout, "a cycle ran, and its result is still printed"


def test_version_and_global_options_after_the_subcommand(cli_env: dict[str, str], tmp_path: Path) -> None:
    from perennial import __version__

    version = perennial("--version", env=cli_env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"perennial {__version__}"
    (tmp_path / "other").mkdir()
    before = perennial("--workspace", str(tmp_path / "other"), "status", "--json", env=cli_env, cwd=tmp_path)
    after = perennial("status", "--json", "--workspace", str(tmp_path / "other"), env=cli_env, cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert str(tmp_path / "other") in before.stdout and before.stdout == after.stdout


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (
            ("status",),
            {"PERENNIAL_EPOCHS": "abc"},
            "error: setting 'epochs' = 'abc' (from PERENNIAL_EPOCHS): ",
        ),
        (("--config", "absent.toml", "status"), {}, "error: settings file not found: absent.toml"),
        (("status",), {}, "error: no workspace at "),
        (("predict", "fine", "   "), {}, "error: text(s) 2 are empty"),
        (("predict", "--file", "binary.dat"), {}, "error: cannot read --file binary.dat: a binary file"),
        (("predict", "--file", "absent.txt"), {}, "error: cannot read --file absent.txt: No such file"),
        (("rollback", "--to", "abc"), {}, "'abc' is not a version: give a number such as 3 or v3"),
    ],
)
def test_a_user_mistake_is_one_line_without_a_traceback(
    cli_env: dict[str, str], tmp_path: Path, args: tuple[str, ...], env_extra: dict[str, str], message: str
) -> None:
    if args[0] != "status" or env_extra:
        (tmp_path / "ws").mkdir()  # an existing workspace, so that the mistake is the one meant
    (tmp_path / "binary.dat").write_bytes(b"\x7fELF\x00\x01")

    result = perennial(*args, env={**cli_env, **env_extra}, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith(("error", "perennial"))]) == 1
    if args == ("status",) and not env_extra:
        assert not (tmp_path / "ws").exists()  # a command that reads never creates a workspace


def test_settings_shows_each_value_and_its_source_and_warns_of_a_misspelt_variable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    import json

    (tmp_path / "perennial.toml").write_text("seed = 9\n")
    result = perennial("settings", "--json", env={**cli_env, "PERENNIAL_EPOCH": "5"}, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["seed"] == {"name": "seed", "value": 9, "source": "perennial.toml"}
    assert rows["epochs"] == {"name": "epochs", "value": 3, "source": "PERENNIAL_EPOCHS"}
    assert rows["drift_alpha"]["source"] == "default"
    assert "warning: PERENNIAL_EPOCH is not a setting and is ignored (did you mean PERENNIAL_EPOCHS?)" in (
        result.stderr
    )
