"""``callvet outbox``: relay the transactional outbox to the broker, and what is still pending."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError
from callvet.core.outbox import Relay

__all__ = ["register"]

outbox_app = typer.Typer(help="Events for the rest of the bank: the outbox relay (docs/events.md).",
                         no_args_is_help=True)


@outbox_app.command("relay")
def relay(
    drain: bool = typer.Option(False, "--drain", help="publish what is pending, then exit"),
) -> None:
    """Publish pending outbox events to CALLVET_OUTBOX_BROKER until stopped (SIGTERM/SIGINT).

    Several relays may run (one per replica): on PostgreSQL each claims rows with SKIP LOCKED."""
    ctx = services()
    try:
        rel = ctx.outbox_relay
    except CallvetError as exc:
        raise fail(exc) from None
    try:
        if drain:
            try:
                n = asyncio.run(_drain(rel))
            except CallvetError as exc:
                raise fail(exc) from None
            typer.echo(f"published {n} events")
            return
        signal.signal(signal.SIGTERM, lambda *_: rel.stop())
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(rel.run())
        typer.echo(f"published {rel.published} events", err=True)
    finally:
        ctx.close()


async def _drain(rel: Relay) -> int:
    await rel.publisher.connect()
    try:
        return await rel.drain()
    finally:
        await rel.publisher.close()


@outbox_app.command("status")
def status() -> None:
    """How many events wait to be published."""
    from callvet.core.outbox import pending_count

    ctx = services()
    try:
        typer.echo(f"pending: {pending_count(ctx.db)}")
    finally:
        ctx.close()


def register(app: typer.Typer) -> None:
    app.add_typer(outbox_app, name="outbox")
