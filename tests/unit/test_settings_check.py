"""Settings problems in one line with the fix, and where each effective value came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perennial.core.settings import Settings
from perennial.core.settings_check import (
    OTHER_VARIABLES,
    SettingsProblem,
    effective_settings,
    load_settings,
    unknown_variables,
)


@pytest.fixture(autouse=True)
def _clean(no_outside_settings: None) -> None:
    """No PERENNIAL_* variable or settings file of the caller's leaks in (tests/conftest.py)."""


def test_a_value_of_the_wrong_type_names_the_setting_and_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERENNIAL_EPOCHS", "three")
    with pytest.raises(SettingsProblem) as problem:
        load_settings()
    (line,) = str(problem.value).splitlines()
    assert line.startswith("setting 'epochs' = 'three' (from PERENNIAL_EPOCHS): ")
    assert "integer" in line and "pydantic.dev" not in line


def test_an_unknown_key_in_a_settings_file_gets_the_closest_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "perennial.toml"
    path.write_text("learning_rte = 0.001\nepochs = 'x'\n")
    monkeypatch.setenv("PERENNIAL_CONFIG", str(path))
    with pytest.raises(SettingsProblem) as problem:
        load_settings()
    lines = sorted(str(problem.value).splitlines())
    assert lines == [
        f"setting 'epochs' = 'x' (from {path}): Input should be a valid integer, unable to parse string "
        "as an integer",
        f"unknown setting 'learning_rte' in {path} (did you mean learning_rate?)",
    ]


def test_a_missing_or_unreadable_settings_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsProblem, match=r"^settings file not found: .*absent\.toml \(PERENNIAL_CONFIG"):
        load_settings()
    for name, text in (("broken.toml", "epochs = \n"), ("broken.yaml", "epochs: [3\nseed: 1\n")):
        broken = tmp_path / name
        broken.write_text(text)
        monkeypatch.setenv("PERENNIAL_CONFIG", str(broken))
        with pytest.raises(SettingsProblem, match=rf"^settings file .*{name} cannot be read: [^\n]*$"):
            load_settings()


def test_a_rule_across_settings_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERENNIAL_VAL_FRACTION", "0.4")
    monkeypatch.setenv("PERENNIAL_TEST_FRACTION", "0.4")
    with pytest.raises(SettingsProblem, match=r"^settings: val_fraction \+ test_fraction must leave"):
        load_settings()


def test_a_misspelt_variable_is_named_with_the_closest_setting() -> None:
    warnings = unknown_variables(
        {"PERENNIAL_EPOCH": "3", "PERENNIAL_LEARNINGRATE": "1", "PERENNIAL_HOME": "/app", "PATH": "/bin"}
    )
    assert warnings == [
        "PERENNIAL_EPOCH is not a setting and is ignored (did you mean PERENNIAL_EPOCHS?)",
        "PERENNIAL_LEARNINGRATE is not a setting and is ignored (did you mean PERENNIAL_LEARNING_RATE?)",
    ]


@given(st.sampled_from(sorted(Settings.model_fields)))
def test_every_setting_and_other_known_variable_passes(name: str) -> None:
    environ = {f"PERENNIAL_{name.upper()}": "1", **{f"PERENNIAL_{n}": "x" for n in OTHER_VARIABLES}}
    assert unknown_variables(environ) == []


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=30))
def test_any_other_variable_is_warned_about_once(name: str) -> None:
    variable = f"PERENNIAL_{name}"
    known = {f"PERENNIAL_{n.upper()}" for n in Settings.model_fields} | {
        f"PERENNIAL_{n}" for n in OTHER_VARIABLES
    }
    warnings = unknown_variables({variable: "1"})
    assert len(warnings) == (0 if variable in known else 1)
    assert all(w.startswith(f"{variable} is not a setting") and "\n" not in w for w in warnings)


def test_effective_settings_say_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "perennial.yaml"
    path.write_text("epochs: 4\nseed: 1\n")
    monkeypatch.setenv("PERENNIAL_CONFIG", str(path))
    monkeypatch.setenv("PERENNIAL_SEED", "7")
    settings = load_settings(workspace=tmp_path / "ws")

    rows = {row["name"]: row for row in effective_settings(settings, {"workspace": tmp_path / "ws"})}

    assert list(rows) == list(Settings.model_fields)
    assert rows["epochs"] == {"name": "epochs", "value": 4, "source": str(path)}
    assert rows["seed"] == {"name": "seed", "value": 7, "source": "PERENNIAL_SEED"}  # the variable wins
    assert rows["workspace"]["source"] == "command line"
    assert rows["batch_size"] == {"name": "batch_size", "value": 32, "source": "default"}


def test_a_variable_in_lower_case_is_read_and_said_as_it_is_spelt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("perennial_epochs", "5")
    settings = load_settings()
    assert settings.epochs == 5  # pydantic-settings matches names whatever their case
    rows = {row["name"]: row for row in effective_settings(settings, {})}
    assert rows["epochs"]["source"] == "perennial_epochs"
    assert unknown_variables({"perennial_epochs": "5"}) == []
