"""``callvet workflow``: process definitions, instances, the durable worker, tasks, people, configuration
and supervision."""

from __future__ import annotations

import importlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError, InvalidInput

__all__ = ["register"]

wf = typer.Typer(
    help="Approval workflows (BPMN): definitions, instances, worker, tasks, supervision.",
    no_args_is_help=True,
)


def _runtime(decider: str | None = None) -> Any:
    """The worker's and commands' runtime, from the composition root; ``--decider module:function``
    swaps the decision engine for another decider (a simulator in development)."""
    if not decider:
        return services().workflow
    module, _, attr = decider.partition(":")
    if not attr:
        raise InvalidInput("--decider must be module:function", code="invalid_option")
    return services().workflow_runtime(getattr(importlib.import_module(module), attr))


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@wf.command("definitions")
def definitions() -> None:
    """List every stored version of every process."""
    for d in _runtime().definitions.list():
        typer.echo(f"{d.process_key}\tv{d.version}\t{'active' if d.active else '-'}\t{d.name}")


@wf.command("upload")
def upload(path: Path, activate: bool = typer.Option(False, help="make the new version active")) -> None:
    """Validate and store a BPMN file as a new version."""
    try:
        d = _runtime().definitions.upload(path.read_bytes(), actor="cli", activate=activate or None)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"{d.process_key} v{d.version} {'active' if d.active else 'stored'}")


@wf.command("activate")
def activate(process_key: str, version: int) -> None:
    """Make a stored version the one new instances start on."""
    try:
        _runtime().definitions.activate(process_key, version, actor="cli")
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"{process_key} v{version} active")


@wf.command("start")
def start(
    process_key: str,
    data: Path = typer.Option(..., help="JSON file with the instance data"),
    no_run: bool = typer.Option(False, help="only enqueue; the worker runs it"),
) -> None:
    """Start an instance."""
    try:
        _echo(_runtime().start(process_key, json.loads(data.read_text()), actor="cli", run=not no_run))
    except CallvetError as exc:
        raise fail(exc) from None


@wf.command("show")
def show(instance_id: str) -> None:
    """An instance with its data, events and tasks."""
    try:
        _echo(_runtime().summary(instance_id, with_events=True))
    except CallvetError as exc:
        raise fail(exc) from None


@wf.command("worker")
def worker(
    interval: float = typer.Option(1.0, help="seconds between scheduler rounds"),
    once: bool = typer.Option(False, help="one round, then exit"),
    decider: str = typer.Option(
        "", help="module:function deciding instead of the decision engine (simulations and benchmarks only)"
    ),
    shard: str = typer.Option("", help="k/n: this worker takes 1/n of the instances (n = 2, 4, 8 or 16)"),
    housekeeping_every: float = typer.Option(
        15.0, help="seconds between rounds of priorities, reminders, escalations and assignment"
    ),
    parent_pid: int = typer.Option(0, min=0, max=2**22, help="exit when this process (the server) is gone"),
) -> None:
    """Resume interrupted instances, fire due timers, remind, escalate and assign -- until SIGTERM."""
    rt = _runtime(decider or None)
    part: tuple[int, int] | None = None
    if shard:
        k, _, n = shard.partition("/")
        part = (int(k), int(n))
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    last_housekeeping = 0.0
    while not stop["now"]:
        if parent_pid and os.getppid() != parent_pid:
            return
        try:
            advanced = rt.run_due(shard=part)
        except CallvetError as exc:
            raise fail(exc) from None
        if once or time.monotonic() - last_housekeeping >= housekeeping_every:
            stats = rt.board.housekeeping() if part is None or part[0] == 0 else {}
            last_housekeeping = time.monotonic()
            if once:
                _echo({**stats, "advanced": advanced})
                return
        if advanced == 0:
            time.sleep(interval)


@wf.command("tasks")
def tasks(role: str = typer.Option("", help="only this role's tasks"), limit: int = 50) -> None:
    """Open human tasks, highest priority first."""
    for t in _runtime().board.list_open(role=role or None, limit=limit):
        typer.echo(
            f"{t['priority']:8.2f}  {t['task_id']}  {t['role']:<12} {t['assignee'] or '-':<12} {t['name']}"
        )


@wf.command("complete")
def complete(
    task_id: str,
    as_user: str = typer.Option(..., "--as", help="the reviewer's user id"),
    data: str = typer.Option("{}", help="JSON object merged into the task data"),
) -> None:
    """Complete a human task as a person (admin path; the API checks the caller's role)."""
    try:
        _echo(
            _runtime().complete_task(
                task_id, json.loads(data), actor=f"cli:{as_user}", role=None, reviewer_id=as_user
            )
        )
    except CallvetError as exc:
        raise fail(exc) from None


@wf.command("user")
def user(
    user_id: str,
    role: str = typer.Option(...),
    skills: str = typer.Option("", help="comma-separated"),
    name: str = "",
    max_amount: float = typer.Option(-1.0, help="approval authority; -1 = no limit"),
    inactive: bool = False,
) -> None:
    """Add or change a person who can be assigned tasks."""
    try:
        _echo(
            _runtime().board.upsert_user(
                user_id,
                role=role,
                skills=[s.strip() for s in skills.split(",") if s.strip()],
                name=name,
                max_amount=None if max_amount < 0 else max_amount,
                active=not inactive,
                actor="cli",
            )
        )
    except CallvetError as exc:
        raise fail(exc) from None


@wf.command("users")
def users() -> None:
    """People, their skills and current load."""
    _echo(_runtime().board.list_users())


@wf.command("config")
def config(key: str, set_from: Path = typer.Option(None, "--set", help="YAML or JSON file to store")) -> None:
    """Show (or with --set, replace) a configuration document: products, priority."""
    import yaml

    rt = _runtime()
    try:
        if set_from is not None:
            version = rt.config.set(key, yaml.safe_load(set_from.read_text()), actor="cli")
            typer.echo(f"{key} now version {version}")
            return
        version, value = rt.config.get_raw(key)
        _echo({"key": key, "version": version, "value": value})
    except CallvetError as exc:
        raise fail(exc) from None


@wf.command("build-processes")
def build_processes() -> None:
    """Rewrite the shipped BPMN files (with diagram coordinates) from callvet.workflow.bpmn_build."""
    from callvet.workflow.bpmn_build import write_all

    for p in write_all():
        typer.echo(str(p))


@wf.command("rules")
def rules(kind: str = typer.Option("", help="issuance | limit_adjustment")) -> None:
    """The supervision catalogue."""
    from callvet.workflow.supervise import catalogue

    for r in catalogue().rules:
        if not kind or r.kind == kind:
            typer.echo(f"{r.id}\t{r.kind}\t{r.severity}\t{r.topic}\t{r.title}")


@wf.command("supervision")
def supervision() -> None:
    """Supervision metrics: coverage, rectified within 3 days, overdue."""
    _echo(_runtime().supervisor.metrics())


def register(app: typer.Typer) -> None:
    app.add_typer(wf, name="workflow")
