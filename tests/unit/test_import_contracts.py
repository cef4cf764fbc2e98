"""Library code never imports the Prefect layer (flows/, tasks/, deployments/): only the entry points
(the CLI and the demo) start flows. import-linter checks every other contract (pyproject.toml), but
its graph covers src/perennial alone, and these three folders install as perennial.* from outside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import perennial

PREFECT_LAYER = ("perennial.flows", "perennial.tasks", "perennial.deployments")
ENTRY_POINTS = ("cli/", "demo.py")  # the modules that may start flows
SOURCE = Path(perennial.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def prefect_layer_imports(path: Path) -> list[str]:
    return sorted(n for n in imported_modules(path) if n.startswith(PREFECT_LAYER))


def test_library_code_never_imports_flows_tasks_or_deployments() -> None:
    modules = SOURCE.rglob("*.py")
    library = [p for p in modules if not p.relative_to(SOURCE).as_posix().startswith(ENTRY_POINTS)]
    assert len(library) > 40  # the whole package was read, not an empty folder
    offenders = {str(p.relative_to(SOURCE)): prefect_layer_imports(p) for p in library}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_an_import_of_the_prefect_layer(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from perennial.flows.continual_training import continual_training\n"
        "import perennial.deployments.events\nfrom perennial import workspace\n"
    )
    assert prefect_layer_imports(module) == [
        "perennial.deployments.events",
        "perennial.flows.continual_training",
        "perennial.flows.continual_training.continual_training",
    ]
    # The entry points do start flows: the exemption is needed, not decorative.
    assert any(prefect_layer_imports(p) for p in (SOURCE / "cli").glob("*.py"))
