"""``callvet users``: people who sign in to the web console (create, list, unlock, disable).

A password never goes on the command line (it would sit in shell history and ``ps``): it is read from
standard input with ``--password-stdin``, typed at a hidden prompt, or, with ``--one-time``, generated,
printed once and marked to be changed at first sign-in.
"""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING

import typer
from callvet._cli.common import fail, open_db
from callvet.core.errors import CallvetError

if TYPE_CHECKING:
    from callvet.console.users import UserStore

__all__ = ["register"]

users = typer.Typer(help="Console users: people who sign in to /console (not API keys).",
                    no_args_is_help=True)

ROLES = "analyst|approver|risk_officer|auditor|admin"


def _store() -> UserStore:
    from callvet.console.users import UserStore

    return UserStore(open_db())


def _password(password_stdin: bool, one_time: bool) -> tuple[str, bool]:
    if password_stdin and one_time:
        raise typer.BadParameter("choose one of --password-stdin and --one-time")
    if one_time:
        return secrets.token_urlsafe(15), True
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n"), False
    pw = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return str(pw), False


@users.command("create")
def create(
    name: str | None = typer.Argument(None, help="username (or --username)"),
    username: str | None = typer.Option(None, "--username", help="username: 2-64 of a-z 0-9 . _ -"),
    role: str = typer.Option(..., "--role", help=ROLES),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
    one_time: bool = typer.Option(False, "--one-time",
                                  help="print a generated one-time password to be changed at first sign-in"),
    full_name: str = typer.Option("", "--name", help="full name (supervision's relatives checks read it)"),
    skills: str | None = typer.Option(None, "--skills",
                                      help="comma-separated: card,instalment,limit (default all)"),
    max_amount: float | None = typer.Option(None, "--max-amount", help="largest amount they may approve"),
) -> None:
    """Create a console user (password from stdin, a hidden prompt, or a printed one-time password).

    Analysts, approvers and risk officers also go into the staff register supervision checks."""
    user = username or name
    if not user:
        raise typer.BadParameter("give the username (NAME or --username)")
    password, must_change = _password(password_stdin, one_time)
    staff = {"name": full_name, "max_amount": max_amount,
             "skills": [s.strip() for s in skills.split(",") if s.strip()] if skills is not None else None}
    try:
        out = _store().create(user, role, password, must_change=must_change, staff=staff)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"created {out['username']} ({out['role']})"
               + (", in the staff register" if out["staff_register"] else ""))
    if must_change:
        typer.echo(f"one-time password (shown once, must be changed at first sign-in): {password}")


@users.command("list")
def list_() -> None:
    """List console users (never password hashes)."""
    for u in _store().list():
        state = "disabled" if u["disabled_at"] else "locked" if u["locked_until"] else "active"
        typer.echo(f"{u['username']}\t{u['role']}\t{state}\tlast sign-in {u['last_login_at'] or '-'}")


@users.command("unlock")
def unlock(name: str) -> None:
    """Clear a user's failed sign-ins and lock-out."""
    try:
        _store().unlock(name)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"unlocked {name}")


@users.command("disable")
def disable(name: str,
            reason: str = typer.Option(..., "--reason", help="why (kept in the audit log)")) -> None:
    """Disable a user, end their sessions and mark them inactive in the staff register."""
    try:
        _store().disable(name, reason=reason)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"disabled {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(users, name="users")
