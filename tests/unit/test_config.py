"""Settings: defaults, environment variables and settings files, in that order of precedence."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Literal

import pytest
from pydantic import ValidationError

from perennial.core.settings import Settings


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("PERENNIAL_CONFIG", "PERENNIAL_EPOCHS", "PERENNIAL_LABELS", "PERENNIAL_WORKSPACE"):
        monkeypatch.delenv(key, raising=False)


def test_toml_file_in_current_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / "perennial.toml").write_text('epochs = 7\nlabels = ["a", "b"]\nworkspace = "ws"\n')
    settings = Settings()
    assert settings.epochs == 7
    assert settings.labels == ["a", "b"]
    assert settings.inbox == (tmp_path / "ws" / "inbox").resolve()


def test_environment_overrides_file_and_arguments_override_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text("epochs: 7\nbatch_size: 8\n")
    monkeypatch.setenv("PERENNIAL_CONFIG", str(config))
    monkeypatch.setenv("PERENNIAL_EPOCHS", "5")
    assert (Settings().epochs, Settings().batch_size) == (5, 8)
    assert Settings(epochs=2).epochs == 2


def test_missing_settings_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERENNIAL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        Settings()


def test_unknown_and_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(epochs=0)
    with pytest.raises(ValidationError):
        Settings(not_a_setting=1)
    with pytest.raises(ValidationError, match="at least 20%"):
        Settings(val_fraction=0.45, test_fraction=0.45)


def test_default_base_model_is_the_shipped_minilm() -> None:
    path = Path(Settings().base_model_path())
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_too_few_drift_permutations_for_the_level_are_refused(no_outside_settings: None) -> None:
    with pytest.raises(ValueError, match="drift_permutations must be at least 5/drift_alpha = 500"):
        Settings(drift_alpha=0.01, drift_permutations=499)
    assert Settings(drift_alpha=0.05, drift_permutations=100).drift_permutations == 100


SECTIONS = (
    "data", "continual", "gate", "validation", "optimizer", "lora", "regularizers", "finishing",
    "training", "inference", "drift", "retention", "servers",
)  # fmt: skip


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_reads_the_flat_keys_from_every_source(
    section: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section is a view of flat settings: a file key, a variable and an argument all reach it."""
    fields = dataclasses.fields(getattr(Settings(), section))
    assert fields and all(f.name in Settings.model_fields for f in fields)
    changed = {f.name: _another_value(f.name) for f in fields}
    first, *rest = changed.items()
    # JSON scalars are TOML scalars.
    (tmp_path / "perennial.toml").write_text(f"{first[0]} = {json.dumps(first[1])}\n")
    for name, value in rest[:1]:
        monkeypatch.setenv(f"PERENNIAL_{name.upper()}", str(value))
    arguments = dict(rest[1:])
    values = dataclasses.asdict(getattr(Settings(**arguments), section))
    assert values == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(getattr(Settings(), section), first[0], first[1])


def _another_value(name: str) -> object:
    """A valid value other than the default for a section's field."""
    field = Settings.model_fields[name]
    default = field.default
    choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else ()
    if choices:
        return next(choice for choice in choices if choice != default)
    if default is None:  # an optional list (labels) or count (torch_threads)
        return ["spam", "ham"] if "list" in str(field.annotation) else 2
    if isinstance(default, bool):
        return not default
    if isinstance(default, str):
        return f"{default}-changed"
    if isinstance(default, int):
        return default + 1
    assert isinstance(default, float), name
    return default / 2 if default > 0 else default + 0.5


def test_the_training_section_hands_on_the_same_optimizer_lora_and_inference_sections() -> None:
    settings = Settings(learning_rate=1e-3, lora_rank=4, eval_batch_size=7)
    training = settings.training
    assert training.optimizer == settings.optimizer
    assert training.lora == settings.lora
    assert training.inference == settings.inference
