"""What `perennial serve` and `perennial watch` print while they run, at each verbosity."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from perennial.core import console


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.WARNING)
    monkeypatch.setattr(root, "handlers", [])  # other tests' handlers (Prefect's, a log file) stay out
    monkeypatch.setattr(logging.getLogger("perennial"), "level", logging.getLogger("perennial").level)
    added: list[logging.Handler] = []

    def shown(verbosity: int) -> list[str]:
        monkeypatch.setattr(console, "_verbosity", verbosity)
        added.append(console.service_console())
        logging.getLogger("perennial.deployments.serve").info("reviews.csv arrived: event 1")
        # Libraries' loggers as the root sees them (Prefect's and MLflow's own have handlers of their own).
        logging.getLogger("a_library.runs").info("Finished in state Completed()")
        logging.getLogger("a_library.store").warning("tracking store is slow")
        return [
            line.split(" ", 3)[-1] for line in capsys.readouterr().err.splitlines()
        ]  # after date, time, name

    yield shown
    for handler in added:
        root.removeHandler(handler)


def test_default_shows_perennials_lines_and_every_warning(lines) -> None:
    assert lines(console.NORMAL) == ["reviews.csv arrived: event 1", "tracking store is slow"]


def test_quiet_shows_only_warnings(lines) -> None:
    assert lines(console.QUIET) == ["tracking store is slow"]


def test_verbose_shows_the_libraries_too_and_one_handler_only(lines) -> None:
    lines(console.VERBOSE)
    assert lines(console.VERBOSE) == [
        "reviews.csv arrived: event 1",
        "Finished in state Completed()",
        "tracking store is slow",
    ]
