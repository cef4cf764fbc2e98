"""Rollback and the champion's alias history, end to end: two real promotions with the tiny model
(Prefect, MLflow sqlite registry), then `perennial rollback` through the CLI's `main`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow import MlflowClient

from perennial.cli import main
from perennial.core.settings import Settings
from perennial.data.ledger import PROMOTED, PROMOTION, ROLLBACK, UNRECORDED
from perennial.flows.continual_training import continual_training
from perennial.registry import mlflow_registry as registry
from perennial.registry.champion import actor
from perennial.workspace import ledger_for

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]


def perennial(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--workspace", str(settings.workspace), *args])
    out, err = capsys.readouterr()
    return code, out, err


def history_lines(settings: Settings, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = perennial(settings, capsys, "status", "--history")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "champion history (oldest first):"
    return [" ".join(line.split()) for line in lines[1:]]


def version_files(settings: Settings, version: str) -> Path:
    """The folder on disk holding a registered version's artifacts (MLmodel, model/, components/)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    source = client.get_model_version(settings.registered_model_name, version).source  # models:/m-<id>
    logged = client.get_logged_model(source.rsplit("/", 1)[-1])
    folder = Path(unquote(urlparse(logged.artifact_location).path))
    assert (folder / "MLmodel").is_file(), folder
    return folder


@pytest.fixture
def promoted_twice(settings: Settings, drop: Callable[..., Path]) -> Settings:
    # A gate that promotes any challenger that is evaluated: the test is about what happens after.
    lenient = settings.model_copy(
        update={"min_delta": -1.0, "max_forgetting": 1.0, "require_significant_gain": False}
    )
    for fixture in ("reviews.csv", "films.jsonl"):
        drop(lenient, fixture)
        state = continual_training(lenient, return_state=True)
        assert state.is_completed(), state.message
    batches = ledger_for(lenient).batches()
    assert [(b.source, b.status, b.model_version) for b in batches] == [
        ("reviews.csv", PROMOTED, "1"),
        ("films.jsonl", PROMOTED, "2"),
    ]
    assert registry.champion(lenient).version == "2"
    return lenient


def test_rollback_moves_champion_back_and_every_move_is_in_the_history(
    promoted_twice: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = promoted_twice
    me = actor()
    assert "@" in me
    # Both promotions were recorded by the cycle, with the gate's decision as the reason.
    lines = history_lines(settings, capsys)
    assert len(lines) == 2
    assert lines[0].split()[1:5] == ["none", "->", "v1", PROMOTION]
    assert lines[1].split()[1:5] == ["v1", "->", "v2", PROMOTION]
    assert all(f"{PROMOTION} {me} promote: " in line for line in lines)
    assert "no champion yet" in lines[0] and "new slice films" in lines[1]

    statuses = [(b.batch_id, b.status, b.model_version) for b in ledger_for(settings).batches()]
    code, out, err = perennial(settings, capsys, "rollback")
    assert code == 0, err
    assert "champion: v2 -> v1 (manual rollback)" in out

    client = MlflowClient(settings.mlflow_tracking_uri)
    name = settings.registered_model_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    import mlflow

    served = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(["the plot was awful"])
    assert served.iloc[0]["label"] in {"negative", "positive"}
    # Rolling back changes which version serves, not what each cycle decided.
    assert [(b.batch_id, b.status, b.model_version) for b in ledger_for(settings).batches()] == statuses

    lines = history_lines(settings, capsys)
    assert [line.split()[4] for line in lines] == [PROMOTION, PROMOTION, ROLLBACK]
    assert lines[2].split()[1:4] == ["v2", "->", "v1"]
    assert lines[2].endswith(f"{ROLLBACK} {me} manual rollback")
    timestamps = [line.split()[0] for line in lines]
    assert timestamps == sorted(timestamps)

    # Nothing before v1: a default rollback has nowhere to go and says so.
    code, out, err = perennial(settings, capsys, "rollback")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no champion before v1" in err

    # Back to v2 on purpose, with a reason, then corrupt v2's files: a rollback to it is refused.
    code, out, err = perennial(settings, capsys, "rollback", "--to", "v2", "--reason", "films fixed")
    assert code == 0, err
    assert "champion: v1 -> v2 (films fixed)" in out
    code, out, err = perennial(settings, capsys, "rollback", "--reason", "films broken again", "--json")
    assert code == 0, err
    move = json.loads(out)
    assert (move["from_version"], move["to_version"], move["kind"]) == ("2", "1", ROLLBACK)
    assert move["reason"] == "films broken again" and move["actor"] == me
    weights = version_files(settings, "2") / "model" / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    before = history_lines(settings, capsys)

    code, out, err = perennial(settings, capsys, "rollback", "--to", "2")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("rollback refused: v2 failed the load check") and "champion unchanged" in err
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert history_lines(settings, capsys) == before

    # Unknown version and the current champion: refused, nothing moves.
    for to, why in (("9", "unknown version 9"), ("1", "v1 is already the champion")):
        code, out, err = perennial(settings, capsys, "rollback", "--to", to)
        assert code == 1 and why in err and len(err.strip().splitlines()) == 1
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert history_lines(settings, capsys) == before


def test_alias_moved_outside_perennial_shows_as_unrecorded(
    promoted_twice: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = promoted_twice
    client = MlflowClient(settings.mlflow_tracking_uri)
    # As if someone set the alias in the MLflow UI, or a run died between moving it and recording it.
    client.set_registered_model_alias(settings.registered_model_name, "champion", "1")

    code, out, err = perennial(settings, capsys, "status")
    assert code == 0, err
    assert "champion:  v1" in out
    assert "the champion moved with no record" in out
    lines = history_lines(settings, capsys)
    assert [line.split()[4] for line in lines] == [PROMOTION, PROMOTION, UNRECORDED]
    assert lines[2].split()[1:4] == ["v2", "->", "v1"] and " unknown " in lines[2]
    assert len(history_lines(settings, capsys)) == 3  # recorded once, not once per reader

    # The history knows v2 came before: a default rollback goes back to it.
    code, out, err = perennial(settings, capsys, "rollback")
    assert code == 0, err
    assert "champion: v1 -> v2" in out
    assert registry.champion(settings).version == "2"

    code, out, err = perennial(settings, capsys, "report")
    assert code == 0, err
    page = (settings.reports_dir / "index.html").read_text(encoding="utf-8")
    found = re.search(r'<section id="alias-history">.*?</section>', page, re.S)
    assert found, "no Alias history section"
    kinds = re.findall(r'<span class="badge (\w+)">', found.group(0))
    assert kinds == [PROMOTION, PROMOTION, UNRECORDED, ROLLBACK]


def test_rollback_without_a_champion_is_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = perennial(settings, capsys, "rollback", "--to", "1")
    assert code == 1 and out == ""
    # (A fresh workspace: MLflow logs its database creation first.)
    last = err.strip().splitlines()[-1]
    assert last == "rollback refused: no champion yet: nothing to roll back (champion unchanged)"
    code, out, err = perennial(settings, capsys, "status", "--history")
    assert code == 0 and out.strip() == "champion history: no moves yet"


def test_rollback_to_a_version_the_gate_rejected_needs_force(
    settings: Settings, drop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lenient = settings.model_copy(
        update={"min_delta": -1.0, "max_forgetting": 1.0, "require_significant_gain": False}
    )
    drop(lenient, "reviews.csv")
    assert continual_training(lenient, return_state=True).is_completed()
    strict = lenient.model_copy(update={"min_delta": 1.0})  # no challenger gains a full point
    drop(strict, "films.jsonl")
    assert continual_training(strict, return_state=True).is_completed()
    tags = registry.version_tags(settings, "2")
    assert tags["decision"] == "reject" and "min_delta" in tags["reasons"]
    assert registry.champion(settings).version == "1"
    before = history_lines(settings, capsys)

    code, out, err = perennial(settings, capsys, "rollback", "--to", "v2")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("rollback refused: the gate's decision on v2 was reject: ")
    assert "min_delta" in err and "--force" in err and "champion unchanged" in err
    assert registry.champion(settings).version == "1"
    assert history_lines(settings, capsys) == before

    code, out, err = perennial(
        settings, capsys, "rollback", "--to", "v2", "--force", "--reason", "on purpose"
    )
    assert code == 0, err
    assert "champion: v1 -> v2 (on purpose)" in out
    assert registry.champion(settings).version == "2"
    lines = history_lines(settings, capsys)
    assert len(lines) == len(before) + 1 and lines[-1].endswith(f"{ROLLBACK} {actor()} on purpose")
    # Back to v1, which the gate promoted: no --force needed.
    code, out, err = perennial(settings, capsys, "rollback", "--to", "1")
    assert code == 0, err
