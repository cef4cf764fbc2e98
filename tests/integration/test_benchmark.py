"""The forgetting benchmark's code path (as `--quick` runs it) on the tiny model and real VADER data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from test_cli import perennial  # the CLI runner (tests/integration is on sys.path)

from perennial.benchmarks.forgetting import (
    PREDICTIONS_FILE,
    STRATEGIES,
    format_report,
    goal_check,
    run_benchmark,
)
from perennial.core.settings import Settings
from perennial.data.batch_store import split_path, write_parquet
from perennial.data.ledger import PROMOTED, REJECTED_MODEL, TRAINED, Ledger

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    settings = Settings(
        workspace=out / "ws",
        base_model=str(tiny_model_dir),
        max_length=32,
        epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        replay_memory_size=40,
        ewc_fisher_rows=16,
    )
    result = run_benchmark(
        settings,
        out / "results",
        strategies=STRATEGIES,
        seeds=(0,),
        rows_per_domain=40,
        progress=lambda _: None,
    )
    return result, out / "results"


def test_every_strategy_reports_every_metric(report: tuple[dict, Path]) -> None:
    result, folder = report
    assert set(result["strategies"]) == {"naive", "replay", "naive+lwf", "replay+lwf", "replay+lora", "joint"}
    for name, entry in result["strategies"].items():
        for metric in (
            "avg_acc",
            "bwt",
            "max_forgetting",
            "max_forgetting_any_cycle",
            "train_samples",
            "seconds",
        ):
            assert set(entry[metric]) == {"mean", "std", "sem"}, (name, metric)
            assert math.isfinite(entry[metric]["mean"])
        assert 0.0 <= entry["avg_acc"]["mean"] <= 1.0
        matrix = entry["matrix"]["values"]
        assert len(matrix) == 4 and all(len(row) == 4 for row in matrix)  # every model on every slice
        assert entry["max_forgetting_any_cycle"]["mean"] >= entry["max_forgetting"]["mean"] - 1e-12
        (p_values,) = entry["worst_slice_forgetting_p"]  # one seed
        assert 0.0 <= p_values <= 1.0
    assert result["stream_name"] == "vader" and result["slices"] == ["tweets", "movies", "amazon", "nyt"]
    assert result["label_set"] == "declared upfront" and result["one_test_row_points"] > 0
    on_disk = json.loads((folder / "forgetting.json").read_text())
    assert on_disk["strategies"].keys() == result["strategies"].keys()
    assert on_disk["complete"] is True and on_disk["seeds"] == [0]
    assert (folder / "forgetting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_test_rows_prediction_is_kept_and_adds_up_to_the_matrix(report: tuple[dict, Path]) -> None:
    result, folder = report
    rows = pd.read_parquet(folder / PREDICTIONS_FILE)
    assert set(rows["strategy"]) == set(result["strategies"]) and set(rows["seed"]) == {0}
    tests = dict(zip(result["slices"], result["rows_per_slice"]["test"], strict=True))
    for (strategy, cycle), part in rows.groupby(["strategy", "cycle"]):
        # Every cycle's model scored every test row of every slice, future ones included.
        assert part.groupby("slice").size().to_dict() == tests
        matrix = result["strategies"][strategy]["matrix"]
        for j, name in enumerate(matrix["columns"]):
            on_slice = part[part["slice"] == name]
            accuracy = (on_slice["label"] == on_slice["predicted"]).mean()
            assert accuracy == pytest.approx(matrix["values"][cycle - 1][j])


def test_sample_counts_follow_the_strategies(report: tuple[dict, Path]) -> None:
    strategies = report[0]["strategies"]
    naive = strategies["naive"]["train_samples_per_cycle"]
    replay = strategies["replay"]["train_samples_per_cycle"]
    joint = strategies["joint"]["train_samples_per_cycle"]
    # Cycle 1 has nothing to replay, so replay trains exactly like naive there.
    assert replay[0] == naive[0]
    assert all(r > 0 for r in replay)
    assert sum(joint) > sum(naive)
    # Joint retrains on everything: its last cycle sees each row of the stream, per epoch.
    assert joint[-1] > joint[0]


def test_goal_and_text_report(report: tuple[dict, Path]) -> None:
    result = report[0]
    goal = goal_check(result["strategies"], "replay")
    assert goal is not None and goal["strategy"] == "replay"
    assert len(goal["samples_vs_joint_per_cycle"]) == 4
    assert goal["samples_goal_met"] is None  # 4 slices: too short a stream for the sample budget
    joint_forgetting = result["strategies"]["joint"]["max_forgetting"]["mean"]
    assert goal["joint_max_forgetting_points"] == pytest.approx(100 * joint_forgetting)
    assert goal["samples_vs_joint_per_cycle"][0] == pytest.approx(
        result["strategies"]["replay"]["train_samples_per_cycle"][0]
        / result["strategies"]["joint"]["train_samples_per_cycle"][0]
    )
    text = format_report(result)
    assert "joint" in text and "goal for replay" in text and "needs a stream of 5+ slices" in text
    assert text.startswith("stream: VADER sentiment")
    assert goal_check(result["strategies"], "missing") is None


def test_cli_bench_quick_path(cli_env: dict[str, str], tmp_path: Path) -> None:
    run = perennial(
        "bench", "forgetting", "--quick", "--rows", "40", "--strategies", "naive,joint",
        "--out", str(tmp_path / "results"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "goal for" not in run.stdout  # replay was not run, so there is no goal line
    result = json.loads((tmp_path / "results" / "forgetting.json").read_text())
    assert set(result["strategies"]) == {"naive", "joint"} and result["seeds"] == [0]
    bad = perennial("bench", "forgetting", "--strategies", "naive,bogus", env=cli_env, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown strategy word 'bogus'" in bad.stderr


def _history_file(folder: Path) -> Path:
    """A user's labelled history with a source column: three sources, two labels each."""
    texts = {"good": ["great", "lovely", "superb", "fine"], "bad": ["awful", "poor", "broken", "dull"]}
    rows = [
        (f"the {thing} was {word} #{n}", label, source)
        for source, thing in (("shop", "blender"), ("cinema", "film"), ("hotel", "room"))
        for label, words in texts.items()
        for n, word in enumerate(words * 3)
    ]
    path = folder / "history.csv"
    pd.DataFrame(rows, columns=["text", "label", "source"]).to_csv(path, index=False)
    return path


def test_cli_bench_on_a_users_file_folder_and_a_shipped_stream(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    history = _history_file(tmp_path)
    run = perennial(
        "bench", "forgetting", "--stream", str(history), "--by", "source", "--seeds", "1",
        "--split-rows", "14,4,6", "--strategies", "naive,joint", "--out", str(tmp_path / "file"),
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "file" / "forgetting.json").read_text())
    assert result["slices"] == ["shop", "cinema", "hotel"] and result["labels"] == ["bad", "good"]
    assert result["rows_per_slice"] == {"train": [14] * 3, "val": [4] * 3, "test": [6] * 3}
    assert "history.csv by source" in run.stdout

    folder = tmp_path / "batches"
    folder.mkdir()
    frame = pd.read_csv(history)
    for n, (source, part) in enumerate(frame.groupby("source", sort=False), 1):
        part.drop(columns="source").to_csv(folder / f"{n:03d}-{source}.csv", index=False)
    run = perennial(
        "bench", "forgetting", "--stream-dir", str(folder), "--seeds", "1", "--strategies", "naive",
        "--out", str(tmp_path / "dir"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "dir" / "forgetting.json").read_text())
    assert result["slices"] == ["001-shop", "002-cinema", "003-hotel"]

    run = perennial(
        "bench", "forgetting", "--dataset", "trec-classes", "--rows", "60", "--seeds", "1",
        "--strategies", "naive", "--out", str(tmp_path / "trec"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "trec" / "forgetting.json").read_text())
    assert result["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert "Li and D. Roth" in result["source"]

    # Labels not declared: each cycle's model knows only the classes so far, its head growing.
    run = perennial(
        "bench", "forgetting", "--dataset", "trec-classes", "--rows", "60", "--seeds", "1", "--labels",
        "growing", "--strategies", "naive", "--out", str(tmp_path / "grow"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "grow" / "forgetting.json").read_text())
    assert result["label_set"] == "growing slice by slice"
    assert result["labels"] == ["DESC", "ENTY", "HUM", "LOC", "ABBR", "NUM"]  # in arrival order
    first_model = result["strategies"]["naive"]["matrix"]["values"][0]
    assert first_model[1:] == [0.0, 0.0]  # it cannot know the classes of later slices


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--stream", "missing.csv", "--by", "source"), "missing.csv: no such file"),
        (("--stream", "history.csv"), "exactly one of --by COLUMN or --by-time COLUMN"),
        (("--stream", "history.csv", "--by", "shop"), "no column 'shop'"),
        (("--by", "source"), "--by and --by-time split a --stream FILE"),
        (("--stream", "history.csv", "--by", "source", "--split-rows", "100,1,1"), "fewer than the 102"),
        (("--stream-dir", "nowhere"), "nowhere: no such folder"),
        (("--from-workspace",), "the workspace has 0 accepted batches"),
    ],
)
def test_cli_bench_stream_errors_are_one_line(
    cli_env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    _history_file(tmp_path)
    run = perennial("bench", "forgetting", *args, "--strategies", "naive", env=cli_env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_cli_bench_from_workspace_replays_the_accepted_batches(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    settings.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.ledger_path)
    frame = pd.read_csv(_history_file(tmp_path))
    for n, (source, part) in enumerate(frame.groupby("source", sort=False)):
        batch_id = f"{n:x}" * 16
        ledger.add_batch(batch_id, batch_id * 4, f"{source}.csv", tmp_path / f"{source}.csv")
        ledger.transition(batch_id, TRAINED)
        ledger.transition(batch_id, PROMOTED if n != 1 else REJECTED_MODEL)
        rows = part.drop(columns="source").assign(batch_id=batch_id).reset_index(drop=True)
        for split, piece in (("train", rows.iloc[:14]), ("val", rows.iloc[14:18]), ("test", rows.iloc[18:])):
            write_parquet(piece, split_path(settings, batch_id, split))
    ledger.fix_label_set(["bad", "good"])
    run = perennial(
        "bench", "forgetting", "--from-workspace", "--seeds", "1", "--strategies", "naive",
        "--out", str(tmp_path / "out"), env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "forgetting.json").read_text())
    assert result["slices"] == ["001-shop", "002-cinema", "003-hotel"]
    assert result["rows_per_slice"] == {"train": [14] * 3, "val": [4] * 3, "test": [6] * 3}
