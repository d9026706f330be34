"""The ``callvet`` command line: one Typer app; each part registers its own commands.

Part modules live in ``callvet._cli`` and expose ``register(app)``; this keeps the CLI an adapter, like
the API, over the parts' Python interfaces.
"""

from __future__ import annotations

from importlib import import_module

import typer
from callvet._cli import (
    blacklist,
    calls,
    db,
    decision,
    keys,
    models,
    portrait,
    questionnaire,
    spoof,
    voiceprint,
    workflow,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="callvet",
    help="callvet: voice-first investigation service for card and instalment-loan approval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _die_with_parent() -> None:
    """In the worker between fork and exec: ask Linux to SIGTERM it when the server process dies,
    however it dies (``kill -9`` included); the worker also watches its parent pid as a fallback."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port to bind"),
    workers: int = typer.Option(1, help="uvicorn worker processes (each loads its own models)"),
    workflow_worker: bool = typer.Option(
        True, "--workflow-worker/--no-workflow-worker",
        help="also run the workflow worker (timers, resumption, reminders, assignment) beside the API",
    ),
    log_level: str = typer.Option("info"),
) -> None:
    """Start the API (REST + WebSocket; OpenAPI at /openapi.json) and the workflow worker."""
    import os
    import subprocess
    import sys

    from callvet._cli.common import open_db

    open_db()
    worker = (
        subprocess.Popen(
            [sys.executable, "-m", "callvet", "workflow", "worker", "--parent-pid", str(os.getpid())],
            preexec_fn=_die_with_parent,
        )
        if workflow_worker
        else None
    )
    try:
        _run_api(host, port, workers, log_level)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()


def _run_api(host: str, port: int, workers: int, log_level: str) -> None:
    from callvet.api.drain import run

    run(host, port, log_level=log_level, log_config=_log_config(log_level), workers=workers)


def _log_config(level: str) -> dict[str, object]:
    """JSON lines with request ids (``CALLVET_LOG_FORMAT=text`` for people), see callvet.core.logs."""
    from callvet.core.logs import logging_config
    from callvet.core.settings import get_settings

    return logging_config(get_settings().log_format, level.upper())


@app.command("init-db")
def init_db() -> None:
    """Create the database schema (done automatically by serve and every command that needs it)."""
    from callvet._cli.common import open_db

    db = open_db()
    typer.echo(f"schema ready at {db.url}")


for _module in (keys, models, voiceprint, blacklist, calls, questionnaire, decision, workflow, portrait, db,
                spoof):
    _module.register(app)
import_module("callvet._cli.forms").register(app)  # issue 15: scanned application forms
import_module("callvet._cli.users").register(app)  # issue 14: console users (people, not keys)
import_module("callvet._cli.audit").register(app)  # issue 11: the audit log from a terminal
import_module("callvet.cluster").register(app)  # issue 17: replicas behind HAProxy on this host


def main() -> None:
    from callvet.core.settings import SettingsError

    try:
        app()
    except SettingsError as exc:
        typer.secho(f"error [{exc.code}]: {exc.message}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None
