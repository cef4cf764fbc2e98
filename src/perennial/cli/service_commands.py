"""The server commands as the command line offers them: options, description and examples."""

from __future__ import annotations

import argparse
from typing import Annotated

from perennial.cli.app import cli_command
from perennial.cli.options import flag, option, version_option, whole_number
from perennial.cli.service_handlers import cmd_notify, cmd_push, cmd_serve, cmd_server, cmd_ui, cmd_watch


@cli_command(
    "server",
    "start a local Prefect server (API and UI) on server_host:server_port",
    ("terminal 1: the server, its database in the workspace", "perennial server"),
    ("on another port", "PERENNIAL_SERVER_PORT=4300 perennial server"),
)
def _server() -> argparse.Namespace:
    """Start a local Prefect server, API and UI, in the foreground with its database in the workspace;
    Ctrl-C stops it. While it runs, `perennial serve` serves the deployments on it and `perennial run`
    runs its flows there, so its UI shows every run."""
    return argparse.Namespace(func=cmd_server)


@cli_command(
    "ui",
    "start the MLflow UI on 127.0.0.1 and print the Prefect UI's address",
    ("the MLflow UI on 127.0.0.1:5000", "perennial ui"),
    ("on another port, with two workers", "PERENNIAL_MLFLOW_UI_PORT=5050 perennial ui --workers 2"),
)
def _ui(
    workers: Annotated[
        int,
        option(
            "--workers", metavar="N", parser=whole_number, help="MLflow server worker processes (default: 1)"
        ),
    ] = 1,
    jobs: Annotated[bool, flag("--jobs", "also run MLflow's background job consumers")] = False,
) -> argparse.Namespace:
    """Start the MLflow UI on this workspace's registry (runs, versions, aliases) in the foreground and
    print where the Prefect UI and the report are. One server worker and none of MLflow's background
    job consumers unless asked, to stay light; Ctrl-C stops it."""
    return argparse.Namespace(func=cmd_ui, workers=workers, jobs=jobs)


@cli_command(
    "serve",
    "serve the training and drift deployments (schedules, triggers) and watch the inbox",
    ("terminal 2, with `perennial server` in terminal 1", "perennial serve"),
    ("without the watcher (a `perennial watch` elsewhere does it)", "perennial serve --no-watch"),
)
def _serve(
    no_watch: Annotated[bool, flag("--no-watch", "do not watch the inbox for new files")] = False,
) -> argparse.Namespace:
    """Serve the training and drift deployments on the workspace's Prefect server (their schedules,
    the trigger that trains when a batch arrives, the one that acts on drift) and watch the inbox for
    new files, until Ctrl-C. It needs a running server: `perennial server` in another terminal, or
    PREFECT_API_URL; without one it says so and exits 2."""
    return argparse.Namespace(func=cmd_serve, no_watch=no_watch)


@cli_command(
    "watch",
    "only watch the inbox and send perennial.batch.arrived (a Prefect worker runs the flows)",
    (
        "the watcher of a stack whose worker runs the flows",
        "PREFECT_API_URL=http://prefect:4200/api perennial watch",
    ),
)
def _watch() -> argparse.Namespace:
    """Only watch the inbox: send perennial.batch.arrived to the Prefect server for every complete file
    that lands there, until Ctrl-C. For a stack where a Prefect worker, not `perennial serve`, runs the
    flows (the Compose file's inbox-watch service). Without a server it says so and exits 2."""
    return argparse.Namespace(func=cmd_watch)


@cli_command(
    "push",
    "upload a registered version (default: the champion) to a Hugging Face Hub repository",
    ("what would be uploaded, sending nothing", "perennial push --to-hub acme/support-intents --dry-run"),
    (
        "version 3, in a public repository",
        "perennial push --to-hub acme/support-intents --version 3 --public",
    ),
)
def _push(
    to_hub: Annotated[
        str, option("--to-hub", metavar="REPO", help="the repository, e.g. acme/support-intents")
    ],
    version: Annotated[
        str | None,
        version_option("--version", "the version to push (default: the champion)"),
    ] = None,
    public: Annotated[bool, flag("--public", "create the repository public (default: private)")] = False,
    dry_run: Annotated[bool, flag("--dry-run", "list the files it would upload; send nothing")] = False,
) -> argparse.Namespace:
    """Upload a registered version to a Hugging Face Hub repository in one commit: its weights,
    tokenizer and model card, downloaded afresh from the registry. The one command that goes online:
    it uses huggingface_hub's token (HF_TOKEN or `hf auth login`) and refuses while HF_HUB_OFFLINE is
    set."""
    return argparse.Namespace(func=cmd_push, to_hub=to_hub, version=version, public=public, dry_run=dry_run)


@cli_command(
    "notify",
    "post promotions (and other decisions) to a webhook, through a Prefect automation on the running server",
    (
        "post each promotion to a Slack channel",
        "perennial notify --webhook https://hooks.slack.com/services/T0/B0/XYZ",
    ),
    (
        "every decision, to a service on the local network",
        "perennial notify --webhook http://10.0.0.5/hook --on rejected,quarantined --allow-private",
    ),
)
def _notify(
    webhook: Annotated[
        str, option("--webhook", metavar="URL", help="where to POST (Slack, Teams, any JSON)")
    ],
    on: Annotated[
        str,
        option(
            "--on",
            metavar="EVENTS",
            help="comma-separated: promoted, rejected, quarantined (default: promoted)",
        ),
    ] = "promoted",
    allow_private: Annotated[
        bool,
        flag(
            "--allow-private",
            "let the server post to a private or local address (Prefect refuses those by default)",
        ),
    ] = False,
) -> argparse.Namespace:
    """Create an automation on the running Prefect server that posts this workspace's decisions to a
    webhook as JSON: promotions, and with --on rejections and quarantined batches too. It lives on the
    server (its UI lists it under Automations); without a server this says so and exits 2."""
    return argparse.Namespace(func=cmd_notify, webhook=webhook, on=on, allow_private=allow_private)
