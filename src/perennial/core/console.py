"""What a command shows on the terminal, and where the full logs go.

By default a command tells its own story: one line per stage of a cycle and per decision, its
results, and every warning and error. The libraries' chatter (Prefect's lines for every task and
flow run, MLflow's database set-up and registration notes, transformers' loading bars, each epoch's
loss) goes only to the workspace's log file, `logs/perennial.log`, and to Prefect's UI for the runs
it belongs to. `-v` shows all of it on the terminal too; `-q` leaves the results, warnings and errors.

Prefect, MLflow and huggingface_hub read their logging settings from the environment when first
imported (and worker processes inherit it), so `set_verbosity` runs before any of them is imported:
the CLI calls it first thing. The log file is attached after Prefect has set logging up, because
Prefect's set-up replaces the root logger's handlers.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from perennial.core.messages import one_line

QUIET, NORMAL, VERBOSE = -1, 0, 1

# The logger of the story lines on the terminal, at the default verbosity only (see `story`).
STORY = "perennial.story"
LOG_FILE = Path("logs") / "perennial.log"  # under the workspace
_LOG_BYTES, _LOG_BACKUPS = 5_000_000, 3

_verbosity = NORMAL
_set_up = False  # whether this process chose its verbosity (the CLI does, first thing)
VERBOSITY_VARIABLE = "PERENNIAL_VERBOSITY"  # not a setting: the CLI's -v/-q, for flow processes


def set_verbosity(level: int) -> None:
    """Choose what the terminal shows, before Prefect, MLflow or transformers are imported. A
    variable the user set wins at the default level; -v and -q decide for themselves."""
    global _verbosity, _set_up
    _verbosity, _set_up = max(QUIET, min(VERBOSE, level)), True
    # Warnings and errors are shown at every level; -q only leaves out the story lines.
    console_level = "INFO" if _verbosity == VERBOSE else "WARNING"
    chosen = os.environ.__setitem__ if _verbosity != NORMAL else os.environ.setdefault
    # Prefect's console handler only: its API handler still sends every run's logs to the UI.
    chosen("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", console_level)
    chosen("MLFLOW_LOGGING_LEVEL", "INFO" if _verbosity == VERBOSE else "WARNING")
    # huggingface_hub's switch, which transformers' bars (loading weights, writing shards) follow.
    chosen("HF_HUB_DISABLE_PROGRESS_BARS", "0" if _verbosity == VERBOSE else "1")
    # perennial's own loggers (each epoch's loss) reach Prefect's UI inside a run; outside
    # one (ingest, predict) there is no run to send them to, which is not worth a warning.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "perennial")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # For flows Prefect runs in processes of their own (`perennial serve`): see `set_up_in_flow`.
    os.environ[VERBOSITY_VARIABLE] = str(_verbosity)
    logging.getLogger("perennial").setLevel(logging.INFO)
    story_logger = logging.getLogger(STORY)
    story_logger.propagate = False  # the run logger carries the same line everywhere else
    story_logger.setLevel(logging.INFO)
    for handler in list(story_logger.handlers):
        if getattr(handler, "_perennial_story", False):
            story_logger.removeHandler(handler)
    if _verbosity == NORMAL:  # with -v the root's console handler shows these lines already
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
        handler._perennial_story = True  # type: ignore[attr-defined]
        story_logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written, not the one there when the handler
    was made (a test harness, or a library, may replace it between the two)."""

    @property
    def stream(self):  # noqa: ANN201 - a text stream, as StreamHandler's
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler's __init__ sets it: nothing to keep
        pass


def service_console() -> logging.Handler:
    """The terminal of a long-running command (`serve`, `watch`): perennial's own lines (a file
    arrived, an event sent) with the time, following -q/-v like every other command: -q leaves
    warnings and errors, the default adds perennial's lines, -v every library's too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_perennial_service", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    handler._perennial_service = True  # type: ignore[attr-defined]
    if _verbosity == QUIET:
        handler.setLevel(logging.WARNING)
    elif _verbosity == NORMAL:
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name.split(".")[0] == "perennial")
    else:
        root.setLevel(logging.INFO)
    logging.getLogger("perennial").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    root.addHandler(handler)
    return handler


def verbosity() -> int:
    return _verbosity


def set_up_in_flow(workspace_root: Path) -> None:
    """At the start of a flow: the same console and log file as the command that started it. A
    flow that `perennial serve` (or a worker) runs in a process of its own has not been through
    the CLI's set-up; this reads its verbosity from the environment (default: the usual)."""
    try:
        level = int(os.environ.get(VERBOSITY_VARIABLE, NORMAL))
    except ValueError:
        level = NORMAL
    if not _set_up:
        set_verbosity(level)
    attach_log_file(workspace_root)


def story(message: str, *args: object) -> None:
    """One line of what a flow is doing: on the terminal at the default verbosity, and in the run's
    logs (Prefect's UI, the log file, the terminal with -v) through the run logger, or through
    `perennial.progress` outside a run."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    text = one_line(message % args if args else message)
    text = "".join(c if c.isprintable() else "?" for c in text)  # no escape sequences from data
    logging.getLogger(STORY).info(text)
    try:
        get_run_logger().info(text)
    except MissingContextError:
        logging.getLogger("perennial.progress").info(text)


def attach_log_file(workspace_root: Path, max_bytes: int = _LOG_BYTES, backups: int = _LOG_BACKUPS) -> Path:
    """Send every log record at INFO and above (perennial, Prefect, MLflow) to the workspace's log
    file, rotated at 5 MB with 3 old files kept; returns its path. Imports Prefect first, whose
    logging set-up would otherwise drop the handler. Attaching again keeps one handler: for the
    workspace asked for last.

    Several processes write the same file (`perennial serve` and the flow runs it starts, a
    `perennial run` in another terminal), so the rotation is concurrent-log-handler's, which rotates
    under a file lock and reopens the file another process rotated: logging's own
    RotatingFileHandler would let each process rotate on its own and write on into a renamed file."""
    import prefect  # noqa: F401 - its import configures logging (dictConfig replaces root handlers)
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    path = Path(workspace_root) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):  # one workspace's file per process: the latest one asked for
        if getattr(handler, "_perennial_log", False):
            if Path(getattr(handler, "baseFilename", "")) == path.resolve():
                return path
            root.removeHandler(handler)
            handler.close()
    handler = ConcurrentRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler._perennial_log = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # The root logger's level gates every propagated record: Prefect sets it to WARNING.
    root.setLevel(logging.INFO)
    for name in ("httpx", "httpcore", "urllib3", "alembic", "aiosqlite", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)  # one line per request or query otherwise
    return path
