"""The commands that start or talk to servers: Prefect's server and the deployments it serves, the
MLflow UI, the inbox watcher, webhook automations, and a push to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from perennial.core.messages import first_line
from perennial.core.secrets import redact

if TYPE_CHECKING:
    # Only for annotations: importing the settings (pydantic-settings) would cost `--help` ~0.25 s.
    from perennial.core.settings import Settings
from perennial.cli.handlers import existing_workspace, ready, settings_from


def _foreground(module: str, *args: str) -> int:
    """Run `python -m module args` until it exits or Ctrl-C stops it (which reaches it too)."""
    import subprocess

    try:
        return subprocess.call([sys.executable, "-m", module, *args])
    except KeyboardInterrupt:
        return 0


def cmd_server(args: argparse.Namespace) -> int:
    """A local Prefect server (API and UI) with its database in the workspace, in the foreground."""
    settings = ready(settings_from(args))
    servers = settings.servers
    url = f"http://{servers.server_host}:{servers.server_port}"
    print(f"Prefect server for {settings.root}: UI {url}, API {url}/api (Ctrl-C stops it)", flush=True)
    return _foreground(
        "prefect", "server", "start", "--host", servers.server_host, "--port", str(servers.server_port)
    )


def cmd_ui(args: argparse.Namespace) -> int:
    """The MLflow UI on this workspace's registry (foreground), and where the other pages are."""
    settings = ready(settings_from(args))
    from perennial.deployments.events import server_is_up

    host, port = settings.servers.server_host, settings.servers.mlflow_ui_port
    print(f"MLflow UI:  http://{host}:{port}  (runs, versions, aliases; Ctrl-C stops it)")
    if server_is_up(settings):
        print(f"Prefect UI: {redact(settings.prefect_api_url).removesuffix('/').removesuffix('/api')}")
    else:
        print(
            f"Prefect UI: no server at {redact(settings.prefect_api_url)} (start one with `perennial server`)"
        )
    report = settings.reports_dir / "index.html"
    if report.is_file():
        print(f"report:     {report.as_uri()}")
    print(flush=True)
    # One user at a time: one worker, and none of MLflow's background job consumers (they are for
    # its GenAI features) unless asked: MLflow's defaults start 16 processes and 2.6 GiB here.
    if not args.jobs:
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return _foreground(
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    )


def _reach_server(settings: Settings) -> bool:
    """Point Prefect at the workspace's server (before Prefect is imported) and check that it answers."""
    os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    from perennial.deployments.events import server_is_up

    if not server_is_up(settings, timeout=5):
        print(
            f"error: no Prefect server at {redact(settings.prefect_api_url)}: start one with "
            "`perennial server` in another terminal, or set PREFECT_API_URL",
            file=sys.stderr,
        )
        return False
    from perennial.core.console import attach_log_file, service_console

    attach_log_file(settings.root)
    service_console()
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = ready(settings_from(args))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.serve import serve_forever

    serve_forever(settings, watch=not args.no_watch)
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """A Prefect automation posting this workspace's decisions to a webhook."""
    settings = ready(existing_workspace(settings_from(args)))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.notify import create_webhook_automation

    on = [part.strip() for part in args.on.split(",") if part.strip()]
    try:
        automation = create_webhook_automation(
            settings, args.webhook, on, allow_private_urls=args.allow_private
        )
    except ValueError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the server refused or failed: one line, not a traceback
        print(f"error: the Prefect server did not take the automation: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"automation {automation}: {', '.join(on)} of {settings.root} are posted to the webhook")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """A registered version (default: the champion) to a Hugging Face Hub repository."""
    # The one command that goes online: unless the user exported HF_HUB_OFFLINE, it is lifted here
    # (before huggingface_hub reads it at import), where configure() would set it.
    if not args.dry_run:
        os.environ.setdefault("HF_HUB_OFFLINE", "0")
    settings = ready(existing_workspace(settings_from(args)))
    from perennial.registry.hub_push import push_plan, push_to_hub

    try:
        with push_plan(settings, args.to_hub, args.version) as plan:
            if args.dry_run:
                print(f"would upload {settings.registered_model_name} v{plan.version} to {args.to_hub}:")
                print("\n".join(f"  {line}" for line in plan.lines()))
                return 0
            if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", ""):
                print("error: HF_HUB_OFFLINE is set: unset it to push to the Hub", file=sys.stderr)
                return 2
            url = push_to_hub(plan, settings.registered_model_name, private=not args.public)
    except LookupError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the network, the token, the Hub: one line each
        print(f"error: the push to {args.to_hub} failed: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"pushed {settings.registered_model_name} v{plan.version} to {args.to_hub}: {url}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Only the inbox watcher: for a stack where a Prefect worker, not `perennial serve`, runs the flows."""
    import contextlib
    import threading

    settings = ready(settings_from(args))
    if not _reach_server(settings):
        return 2
    from perennial.deployments.serve import watch_inbox

    with contextlib.suppress(KeyboardInterrupt):
        watch_inbox(settings, threading.Event())
    return 0
