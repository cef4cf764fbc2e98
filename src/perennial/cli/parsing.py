"""From the command line to a handler's exit status: parsing (usage errors in one line), the
verbosity and settings checks every command shares, and the console script's quick exit."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import typer
from typer.core import TyperGroup

from perennial.cli import commands, service_commands  # noqa: F401 - importing them registers the commands
from perennial.cli.app import app
from perennial.cli.options import Handler, UsageProblem


def build_command() -> TyperGroup:
    """The click command tree typer builds from `app` (the docs' CLI page walks it too)."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    return command


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace | int:
    """The command line as the Namespace its handler reads; or, when there is nothing to run, the exit
    status: 0 after --help, --version or a completion script, 2 after a usage error (said in one
    line on stderr, with where to look for the fix)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = build_command().main(args, prog_name="perennial", standalone_mode=False)
    except UsageProblem as problem:
        print(f"error: {problem} (try perennial {problem.command} --help)", file=sys.stderr)
        return 2
    except typer.TyperException as error:  # click's usage errors (exit status 2) and kin
        print(f"error: {_one_line(error, args)}", file=sys.stderr)
        return int(getattr(error, "exit_code", 2))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except SystemExit as done:  # typer's completion options and shell completion end this way
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    if isinstance(parsed, argparse.Namespace):
        return parsed
    return parsed if isinstance(parsed, int) else 0  # typer.Exit's status: --help, --version


def _one_line(error: typer.TyperException, argv: Sequence[str]) -> str:
    """click's message as one line that ends with the help to read, not click's usage block."""
    message = error.format_message()
    possibilities = getattr(error, "possibilities", None)
    if possibilities:  # "no such option: --jsn": say what was probably meant
        message = f"{error.message}; did you mean {' or '.join(sorted(possibilities))}"
    # pydantic's prefix on a bad choice; a list of choices on lines of its own
    message = " ".join(message.replace("Value error, ", "").split()).rstrip(".")
    return f"{message[:1].lower()}{message[1:]} (try {_command_path(error, argv)} --help)"


def _command_path(error: typer.TyperException, argv: Sequence[str]) -> str:
    """`perennial CMD` for an error in a command's options, else `perennial`."""
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        return str(ctx.command_path)
    names = [arg for arg in argv if arg in _command_names()]
    return f"perennial {names[0]}" if names else "perennial"


def _command_names() -> list[str]:
    """The commands' names, in the order `perennial --help` lists them."""
    return [str(info.name) for info in app.registered_commands]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if isinstance(args, int):  # --help, --version, or a usage error already said
        return args
    from perennial.core.console import set_verbosity

    set_verbosity(args.verbose - args.quiet)  # before Prefect or MLflow is imported
    from perennial.core.settings_check import SettingsProblem, unknown_variables

    for warning in unknown_variables(os.environ):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        handler: Handler = args.func
        return handler(args)
    except SettingsProblem as problem:
        for line in str(problem).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script: `main`, then a quick exit.

    After torch, transformers, MLflow, GX and evaluate are loaded, the interpreter's own teardown
    (freeing every module) takes ~3 s on 2 cores and does nothing a finished command needs. So once
    the command has returned, do what a normal exit does that matters (wait for non-daemon threads,
    run the atexit handlers: log flushing, stopping Prefect's temporary server, then flush stdio)
    and leave without the teardown."""
    code = main()  # --help and usage errors return their status too; an exception leaves the normal way
    _exit_now(code)


def _exit_now(code: int) -> None:
    import atexit
    import logging
    import threading

    _stop_idle_executors()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    # Flush Prefect's log shipping while its temporary server still runs: left to the atexit
    # order, the server stops first and the flush waits ~5 s on it before giving up.
    logging.shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_idle_executors() -> None:
    """Tell every ThreadPoolExecutor's workers to finish (MLflow's artifact uploads leave some idle).

    Their threads are not daemons and end only when told: a normal exit tells them in
    `threading._shutdown`, which the quick exit skips, so joining them would wait forever. This is the
    function the interpreter registers for that (private, hence guarded): queued work still runs."""
    try:
        from concurrent.futures.thread import _python_exit
    except ImportError:  # a Python without it: its workers are then joined as they are
        return
    _python_exit()
