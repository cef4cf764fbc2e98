"""A moved or copied workspace: stored paths follow it, nothing else changes, and the backup archive
restores anywhere."""

from __future__ import annotations

import sqlite3
import tarfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perennial.core.backup import BackupProblem, backup, restore
from perennial.core.relocation import MARKER, follow_move, rebase_database, rebase_text_file
from perennial.core.settings import Settings

OLD = Path("/data/team ws")
NEW = Path("/srv/copies/ws")
segment = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=12)
relative = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/".join(parts))


def _table(path: Path, values: list[str | None]) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, artifact_uri VARCHAR(200), n INTEGER)")
        db.executemany("INSERT INTO runs (artifact_uri, n) VALUES (?, 7)", [(v,) for v in values])


def _values(path: Path) -> list[str | None]:
    with closing(sqlite3.connect(path)) as db:
        return [v for (v,) in db.execute("SELECT artifact_uri FROM runs ORDER BY id")]


@settings(max_examples=40, deadline=None)
@given(inside=st.lists(relative, max_size=5), outside=st.lists(relative, max_size=5))
def test_values_under_the_old_folder_move_and_no_other_changes(
    tmp_path_factory: pytest.TempPathFactory, inside: list[str], outside: list[str]
) -> None:
    db = tmp_path_factory.mktemp("db") / "store.db"
    values: list[str | None] = [f"{OLD}/{r}" for r in inside] + [f"{OLD.as_uri()}/{r}" for r in inside]
    # Neighbours that share a prefix with the old folder but are not under it, and other places.
    values += [f"{OLD}2/{r}" for r in outside] + [f"/elsewhere/{r}" for r in outside] + [None, str(OLD)]
    _table(db, values)

    changed = rebase_database(db, OLD, NEW)

    expected = [f"{NEW}/{r}" for r in inside] + [f"{NEW.as_uri()}/{r}" for r in inside]
    expected += [f"{OLD}2/{r}" for r in outside] + [f"/elsewhere/{r}" for r in outside] + [None, str(NEW)]
    assert _values(db) == expected
    assert changed == 2 * len(inside) + 1
    assert rebase_database(db, OLD, NEW) == 0  # a second pass (an interrupted move redone) changes nothing


def test_a_move_into_a_subfolder_of_itself_is_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    _table(db, [f"{OLD}/mlartifacts/1"])
    nested = OLD / "moved"
    rebase_database(db, OLD, nested)
    rebase_database(db, OLD, nested)
    assert _values(db) == [f"{nested}/mlartifacts/1"]


def test_a_move_to_the_parent_folder_is_applied(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    inner = OLD / "inner"
    _table(db, [f"{inner}/mlartifacts/1", inner.as_uri() + "/mlartifacts/2"])
    assert rebase_database(db, inner, OLD) == 2
    assert _values(db) == [f"{OLD}/mlartifacts/1", OLD.as_uri() + "/mlartifacts/2"]


def test_text_files_follow_a_move_once_even_into_a_subfolder(tmp_path: Path) -> None:
    mlmodel = tmp_path / "MLmodel"
    mlmodel.write_text(f"artifact_path: {OLD.as_uri()}/mlartifacts/m-1\nsource: {OLD}/models/c\n")
    nested = OLD / "moved"
    assert rebase_text_file(mlmodel, OLD, nested) == 1
    assert rebase_text_file(mlmodel, OLD, nested) == 0  # an interrupted move redone
    assert (
        mlmodel.read_text()
        == f"artifact_path: {nested.as_uri()}/mlartifacts/m-1\nsource: {nested}/models/c\n"
    )


def test_a_store_that_cannot_be_rewritten_is_a_warning_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = _workspace(tmp_path, "copy")
    (copy.root / "store").mkdir(parents=True)
    (copy.root / MARKER).write_text(str(tmp_path / "elsewhere"))
    (copy.root / "ledger.sqlite").write_text("not a database")
    assert follow_move(copy) is None
    assert "stored paths not updated" in caplog.text
    assert (copy.root / MARKER).read_text() == str(tmp_path / "elsewhere")  # tried again next time


def _workspace(tmp_path: Path, name: str) -> Settings:
    return Settings(workspace=tmp_path / name)


def test_follow_move_records_a_new_workspace_and_then_rebases_its_copy(tmp_path: Path) -> None:
    original = _workspace(tmp_path, "a")
    original.root.mkdir()
    assert follow_move(original) is None
    assert (original.root / MARKER).read_text() == str(original.root)
    _table(original.root / "ledger.sqlite", [f"{original.root}/store/raw/1.csv"])

    copy = _workspace(tmp_path, "b")
    copy.root.mkdir()
    for name in ("ledger.sqlite", str(MARKER)):
        (copy.root / name).parent.mkdir(parents=True, exist_ok=True)
        (copy.root / name).write_bytes((original.root / name).read_bytes())

    assert follow_move(copy) == original.root
    assert _values(copy.root / "ledger.sqlite") == [f"{copy.root}/store/raw/1.csv"]
    assert _values(original.root / "ledger.sqlite") == [f"{original.root}/store/raw/1.csv"]
    assert follow_move(copy) is None  # once


def test_a_workspace_without_a_marker_is_placed_by_its_mlflow_store(tmp_path: Path) -> None:
    """A workspace from before the marker, copied: its MLflow experiment says where it was."""
    copy = _workspace(tmp_path, "copy")
    copy.root.mkdir()
    before = tmp_path / "before"
    with closing(sqlite3.connect(copy.root / "mlflow.db")) as db, db:
        db.execute("CREATE TABLE experiments (name VARCHAR(256), artifact_location VARCHAR(256))")
        db.execute("INSERT INTO experiments VALUES ('perennial', ?)", ((before / "mlartifacts").as_uri(),))
    assert follow_move(copy) == before
    with closing(sqlite3.connect(copy.root / "mlflow.db")) as db:
        assert (
            db.execute("SELECT artifact_location FROM experiments").fetchone()[0]
            == (copy.root / "mlartifacts").as_uri()
        )


def _fill(root: Path) -> None:
    (root / "store" / "raw").mkdir(parents=True)
    (root / "store" / "raw" / "1.csv").write_text("text,label\nok,a\n")
    _table(root / "ledger.sqlite", [f"{root}/store/raw/1.csv"])
    (root / ".perennial.lock").write_text("")


def test_backup_and_restore_round_trip(tmp_path: Path) -> None:
    source = _workspace(tmp_path, "ws")
    _fill(source.root)
    archive = tmp_path / "out" / "ws.tar.gz"

    assert backup(source, archive) == 2  # the raw file and the ledger; not the lock
    target = tmp_path / "restored"
    assert restore(archive, target) == 2
    assert (target / "store" / "raw" / "1.csv").read_text() == "text,label\nok,a\n"
    assert _values(target / "ledger.sqlite") == [f"{source.root}/store/raw/1.csv"]  # until first use
    assert not (target / ".perennial.lock").exists()


def test_backup_and_restore_refuse_what_would_lose_or_overwrite(tmp_path: Path) -> None:
    source = _workspace(tmp_path, "ws")
    _fill(source.root)
    with pytest.raises(BackupProblem, match="inside the workspace"):
        backup(source, source.root / "ws.tar.gz")
    archive = tmp_path / "ws.tar.gz"
    backup(source, archive)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(BackupProblem, match="not empty"):
        restore(archive, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    with pytest.raises(BackupProblem, match="no archive"):
        restore(tmp_path / "missing.tar.gz", tmp_path / "new1")
    (tmp_path / "text.tar.gz").write_text("not an archive")
    with pytest.raises(BackupProblem, match=r"not a \.tar\.gz"):
        restore(tmp_path / "text.tar.gz", tmp_path / "new2")
    assert not (tmp_path / "new1").exists() and not (tmp_path / "new2").exists()


def test_restore_writes_nothing_outside_its_folder(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="ledger.sqlite")
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(BackupProblem, match="cannot be restored"):
        restore(evil, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_backup_keeps_links_inside_the_workspace_and_leaves_the_others(tmp_path: Path) -> None:
    """Hugging Face's cache (hf/) is links into its own blobs: a restored base model must still load."""
    source = _workspace(tmp_path, "ws")
    _fill(source.root)
    blobs, snapshot = source.root / "hf" / "blobs", source.root / "hf" / "snapshots"
    blobs.mkdir(parents=True)
    snapshot.mkdir()
    (blobs / "abc").write_text("weights")
    (snapshot / "model.bin").symlink_to("../blobs/abc")
    outside = tmp_path / "secret.txt"
    outside.write_text("not ours")
    (source.root / "link-out").symlink_to(outside)
    archive = tmp_path / "ws.tar.gz"

    assert backup(source, archive) == 4  # raw file, ledger, blob, the link inside
    restore(archive, tmp_path / "restored")
    restored = tmp_path / "restored" / "hf" / "snapshots" / "model.bin"
    assert restored.is_symlink() and restored.read_text() == "weights"
    assert not (tmp_path / "restored" / "link-out").exists()
