"""``callvet call simulate|list|show``: stream a recording as a call robot would, and read call records."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, open_db, services
from callvet.core.errors import CallvetError

__all__ = ["register"]

call = typer.Typer(help="Live calls: simulate a call robot, list and show call records.",
                   no_args_is_help=True)


def _params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param expects key=value, got {item!r}")
        out[key] = value
    return out


@call.command("simulate")
def simulate(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="WAV (or raw with --encoding)"),
    url: str = typer.Option("ws://127.0.0.1:8000/v1/calls/stream", help="call server WebSocket URL"),
    protocol: str = typer.Option("twilio", help="twilio (mu-law 8 kHz JSON) | fork (PCM binary)"),
    realtime: bool = typer.Option(False, "--realtime", help="pace 20 ms frames at real time"),
    param: list[str] = typer.Option([], "--param", help="customParameters entry key=value (repeatable)"),
    token: str | None = typer.Option(None, help="robot API key (default: $CALLVET_TOKEN)"),
    encoding: str = typer.Option("auto", help="auto (WAV) | wav | pcm16 | mulaw"),
    sample_rate: int | None = typer.Option(None, help="sample rate of raw input"),
) -> None:
    """Stream FILE as one call in 20 ms frames and print every event the server sends (JSON lines)."""
    from callvet.sim.calls import stream_call
    from callvet.voice.audio import decode, resample

    if protocol not in ("twilio", "fork"):
        raise typer.BadParameter("--protocol must be twilio or fork")
    try:
        audio = decode(file.read_bytes(), encoding=encoding, sample_rate=sample_rate)  # type: ignore[arg-type]
    except CallvetError as exc:
        raise fail(exc) from exc
    x, sr = audio.samples, audio.sample_rate
    target = 8000 if protocol == "twilio" else (sr if sr in (8000, 16000) else 16000)
    if sr != target:
        x, sr = resample(x, sr, target), target

    def show(ev: dict[str, Any]) -> None:
        typer.echo(json.dumps(ev))

    res = asyncio.run(stream_call(url, x, sr, protocol=protocol, realtime=realtime, params=_params(param),
                                  token=token or os.environ.get("CALLVET_TOKEN"), on_event=show))
    summary: dict[str, Any] = {"call_id": res.call_id, "close_code": res.close_code,
                               "close_reason": res.close_reason, "audio_s": round(len(x) / sr, 3)}
    if realtime:
        summary["verdict_latency_ms"] = [round(v * 1000, 1) for v in res.latencies()]
    typer.secho(json.dumps(summary), err=True, fg=typer.colors.CYAN)
    if res.close_code not in (1000, None):
        raise typer.Exit(code=1)


@call.command("list")
def list_calls(
    alarm: bool | None = typer.Option(None, "--alarm/--no-alarm", help="only calls that did / did not alarm"),
    application_id: str | None = typer.Option(None, help="only this application's calls"),
    limit: int = typer.Option(50, min=1, max=1000),
) -> None:
    """Call records, newest first (one JSON object per line)."""
    from callvet.voice.call.store import CallStore

    try:
        rows = CallStore(open_db()).list(alarm=alarm, application_id=application_id, limit=limit)
    except CallvetError as exc:
        raise fail(exc) from exc
    for r in rows:
        typer.echo(json.dumps({k: r[k] for k in ("id", "protocol", "application_id", "state", "created_at",
                                                 "audio_s", "net_speech_s", "alarm_ever", "end_reason")}))


@call.command("show")
def show_call(call_id: str) -> None:
    """One call record with its timeline (verdicts, answers, errors, lag)."""
    from callvet.voice.call.store import CallStore

    try:
        typer.echo(json.dumps(CallStore(open_db()).get(call_id), indent=2))
    except CallvetError as exc:
        raise fail(exc) from exc


@call.command("purge-prints")
def purge_prints() -> None:
    """Delete call voiceprints older than CALLVET_CALLPRINT_RETENTION_DAYS (default 90), audited; run it
    daily from cron or a systemd timer (the call server also purges at most once an hour)."""
    try:
        typer.echo(json.dumps(services().callprint_records.purge(actor="cli:purge-prints")))
    except CallvetError as exc:
        raise fail(exc) from exc


@call.command("delete-print")
def delete_print(call_id: str, reason: str = typer.Option(..., help="why (kept in the audit log)")) -> None:
    """Erase one call's stored voiceprint (the call record stays), audited."""
    try:
        typer.echo(json.dumps(services().callprint_records.delete(call_id, "cli", reason)))
    except CallvetError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    app.add_typer(call, name="call")
