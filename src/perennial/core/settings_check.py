"""Settings as a user meets them: one-line errors that name the fix, and where each value came from.

pydantic's own errors are several lines with a link; a user wants the setting, the source that set
it (a PERENNIAL_* variable, the settings file) and, for a misspelt name, the closest valid one.
pydantic-settings also ignores a PERENNIAL_* variable that names no setting, so a typo such as
PERENNIAL_EPOCH would silently change nothing: `unknown_variables` finds those.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from perennial.core.messages import one_line
from perennial.core.settings import Settings, _settings_file

PREFIX = "PERENNIAL_"
# PERENNIAL_* variables that are not settings: read by other parts (the settings file, fault
# injection in tests, the Docker and Kubernetes examples, the test suite).
OTHER_VARIABLES = frozenset(
    {"CONFIG", "FAULT_AT", "HOME", "IMAGE", "BIND", "BASE_IMAGE", "FUZZ_EXAMPLES", "CHROMIUM", "VERBOSITY"}
)


class SettingsProblem(Exception):
    """Settings that cannot be loaded; each line of the message is one problem."""


def closest(name: str, names: list[str]) -> str | None:
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(suggestion: str | None) -> str:
    return f" (did you mean {suggestion}?)" if suggestion else ""


def file_values(path: Path | None) -> dict[str, Any]:
    """The keys and values of a settings file (TOML or YAML), {} when there is none."""
    if path is None or not path.is_file():
        return {}
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text(encoding="utf-8"))
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def source_of(
    name: str, overrides: Mapping[str, object], environ: Mapping[str, str], path: Path | None
) -> str:
    """Where the value of setting `name` comes from, highest priority first (as Settings reads them)."""
    if name in overrides:
        return "command line"
    variable = PREFIX + name.upper()
    for key in environ:  # pydantic-settings matches variable names whatever their case
        if key.upper() == variable:
            return key
    try:
        if name in file_values(path):
            return str(path)
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return "default"


def load_settings(**overrides: object) -> Settings:
    """Settings(**overrides), or SettingsProblem with one line per problem."""
    path = _settings_file()
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except FileNotFoundError as error:
        raise SettingsProblem(f"{error} (PERENNIAL_CONFIG or --config names it)") from None
    except ValidationError as error:
        raise SettingsProblem(_describe(error, overrides, os.environ, path)) from None
    except (ValueError, OSError, yaml.YAMLError) as error:  # TOML's and YAML's parse errors among them
        raise SettingsProblem(f"settings file {path} cannot be read: {one_line(error)}") from None


def _describe(
    error: ValidationError, overrides: Mapping[str, object], environ: Mapping[str, str], path: Path | None
) -> str:
    names = sorted(Settings.model_fields)
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        message = one_line(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown setting {field!r} in {path}{did_you_mean(closest(field, names))}")
        elif field:
            given = problem.get("input")
            where = source_of(field, overrides, environ, path)
            value = f" = {given!r}" if isinstance(given, str | int | float | bool) else ""
            lines.append(f"setting '{field}'{value} (from {where}): {message}")
        else:
            lines.append(f"settings: {message}")
    return "\n".join(lines)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each PERENNIAL_* variable that names no setting, with the closest one."""
    names = list(Settings.model_fields)
    warnings = []
    for variable in sorted(environ):
        name = variable.upper().removeprefix(PREFIX)
        if not variable.upper().startswith(PREFIX) or name in OTHER_VARIABLES or name.lower() in names:
            continue
        match = closest(name.lower(), names)
        hint = did_you_mean(PREFIX + match.upper() if match else None)
        warnings.append(f"{variable} is not a setting and is ignored{hint}")
    return warnings


def effective_settings(settings: Settings, overrides: Mapping[str, object]) -> list[dict[str, object]]:
    """Every setting's value and its source, in the order they are defined."""
    path = _settings_file()
    dumped = settings.model_dump(mode="json")
    return [
        {"name": name, "value": dumped[name], "source": source_of(name, overrides, os.environ, path)}
        for name in Settings.model_fields
    ]
