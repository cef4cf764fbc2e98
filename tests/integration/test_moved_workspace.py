"""A workspace copied elsewhere works on its own: its cycles, registry and predictions stay in the
copy, and the original is not touched. The same for a backup restored into a new folder."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from test_cli import DATA, perennial  # tests/integration is on sys.path

from processes import tiny_cli_env  # tests/ is on sys.path

pytestmark = pytest.mark.integration


def _tree(root: Path) -> dict[str, str]:
    """Every file's digest: what a process writing into the workspace would change."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _mentions(db: Path, folder: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return sum(folder.as_posix() + "/" in line for line in conn.iterdump())


def test_a_copied_workspace_runs_on_its_own_and_a_backup_restores(
    tmp_path: Path, pretrained_tiny_model_dir: Path
) -> None:
    original = tmp_path / "original"
    env_original = tiny_cli_env(original, pretrained_tiny_model_dir)
    (original / "inbox").mkdir(parents=True)
    shutil.copyfile(DATA / "reviews.csv", original / "inbox" / "reviews.csv")
    first = perennial("run", env=env_original, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    untouched = _tree(original)

    env_copy = tiny_cli_env(copy, pretrained_tiny_model_dir)
    shutil.copyfile(DATA / "films.jsonl", copy / "inbox" / "films.jsonl")
    second = perennial("run", env=env_copy, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "workspace moved from" in second.stderr
    predict = perennial("predict", "--json", "the battery was great", env=env_copy, cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert json.loads(predict.stdout)["model_version"] == "2"

    assert _tree(original) == untouched  # no run, artifact or model of the copy's landed there
    for db in ("mlflow.db", "ledger.sqlite"):
        assert _mentions(copy / db, original) == 0, db
        assert _mentions(copy / db, copy) > 0, db

    archive = tmp_path / "copy.tar.gz"
    backup = perennial("backup", str(archive), "--json", env=env_copy, cwd=tmp_path)
    assert backup.returncode == 0, backup.stderr[-3000:]
    said = json.loads(backup.stdout)
    assert said["workspace"] == str(copy) and said["archive"] == str(archive) and said["files"] > 20
    restored = tmp_path / "restored"
    env_restored = tiny_cli_env(restored, pretrained_tiny_model_dir)
    unpack = perennial("restore", str(archive), env=env_restored, cwd=tmp_path)
    assert unpack.returncode == 0, unpack.stderr[-3000:]
    status = perennial("status", "--json", env=env_restored, cwd=tmp_path)
    assert status.returncode == 0, status.stderr[-3000:]
    report = json.loads(status.stdout)
    assert report["champion"]["version"] == "2"
    assert [b["status"] for b in report["batches"]] == ["promoted", "promoted"]
    predict = perennial("predict", "--json", "the plot was awful", env=env_restored, cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert _mentions(restored / "mlflow.db", copy) == 0

    again = perennial("restore", str(archive), env=env_restored, cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
