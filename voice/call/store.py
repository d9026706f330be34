"""Call records, written as the call goes so a call cut off mid-way keeps everything received so far.

Each write is its own short transaction; the call server runs them on one dedicated thread so the event
loop never waits on the database and a call's writes land in order.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from typing import Any

from callvet.core import outbox
from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound
from callvet.voice.call.frames import StartFrame
from callvet.voice.call.state import CallState
from callvet.voice.call.tables import call_events, calls
from sqlalchemy import func, insert, select, update

__all__ = ["CallStore", "Resumable", "replica_name", "resume_key"]

_TRUE = ("1", "true", "yes", "on")


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def resume_key(start: StartFrame) -> str:
    """The robot's own id of the phone call, constant across its reconnections: Twilio's ``callSid``,
    else mod_audio_fork's ``uuid`` (the stream id of its metadata)."""
    return (start.call_sid or start.stream_id)[:100]


def replica_name() -> str:
    """Which process holds a call, for operators and tests that must find it (a replica to drain, the
    one a SIGKILL took): ``CALLVET_REPLICA`` (``callvet cluster`` sets its replica names), else
    host:pid. Recorded in the audit of ``call.start`` and ``call.resume`` and the ``resumed`` event."""
    return (os.environ.get("CALLVET_REPLICA") or f"{socket.gethostname()}:{os.getpid()}")[:100]


class Resumable:
    """An open call record a reconnecting stream may take over (see :meth:`CallStore.find_resumable`)."""

    def __init__(self, row: Any) -> None:
        self.call_id: str = row.id
        self.epoch: int = int(row.epoch or 0)
        self.checkpoint: dict[str, Any] | None = json.loads(row.checkpoint) if row.checkpoint else None
        self.audio_s: float = float(row.audio_s or 0.0)


class CallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, call_id: str, protocol: str, actor: str) -> None:
        with self.db.begin() as conn:
            conn.execute(insert(calls).values(
                id=call_id, protocol=protocol, actor=actor, state=CallState.CONNECTED.value,
                created_at=utcnow(), stream_id="", call_sid="", audio_s=0.0, net_speech_s=0.0, alarm=False,
                alarm_ever=False, verdicts=0, errors=0,
            ))

    def start(self, call_id: str, start: StartFrame) -> None:
        with self.db.begin() as conn:
            conn.execute(update(calls).where(calls.c.id == call_id).values(
                state=CallState.STARTED.value, started_at=utcnow(), stream_id=start.stream_id,
                call_sid=start.call_sid, application_id=start.application_id, language=start.language,
                params=start.params, resume_key=resume_key(start) or None,
            ))
            actor = conn.execute(select(calls.c.actor).where(calls.c.id == call_id)).scalar_one()
            record(conn, actor, "call.start", "call", call_id, details={
                "protocol": start.protocol, "stream_id": start.stream_id,
                "application_id": start.application_id, "replica": replica_name(),
            })

    # -- issue 17: resuming a call on another replica (docs/calls.md, Resuming a call) ----------------
    def find_resumable(self, start: StartFrame, actor: str) -> Resumable | None:
        """The open record this start asks to continue, or None for a new call.

        A stream resumes only when it says so: customParameters ``resume_call_id`` (the ``call_id`` of
        ``callvet.started``), or ``resume`` = true for the open call with the same callSid / fork uuid.
        The record must be open (not ended) and started by the same robot identity, so a stream can
        neither pick up a finished call nor someone else's."""
        explicit = str(start.params.get("resume_call_id") or "")[:32]
        wanted = str(start.params.get("resume") or "").lower() in _TRUE
        if not explicit and not wanted:
            return None
        stmt = select(calls).where(calls.c.ended_at.is_(None), calls.c.actor == actor)
        if explicit:
            stmt = stmt.where(calls.c.id == explicit)
        else:
            key = resume_key(start)
            if not key:
                return None
            stmt = stmt.where(calls.c.resume_key == key).order_by(calls.c.created_at.desc()).limit(1)
        with self.db.connect() as conn:
            row = conn.execute(stmt).first()
        return Resumable(row) if row is not None else None

    def take_over(self, found: Resumable, start: StartFrame) -> int | None:
        """Make this session the call's owner: the epoch goes up by one, so the previous owner's end
        and checkpoints no longer apply. None when another session took it first."""
        epoch = found.epoch + 1
        with self.db.begin() as conn:
            res = conn.execute(update(calls).where(
                calls.c.id == found.call_id, calls.c.epoch == found.epoch, calls.c.ended_at.is_(None),
            ).values(epoch=epoch, state=CallState.STARTED.value, stream_id=start.stream_id))
            if res.rowcount != 1:
                return None
            actor = conn.execute(select(calls.c.actor).where(calls.c.id == found.call_id)).scalar_one()
            net = (found.checkpoint or {}).get("voice") or {}
            record(conn, actor, "call.resume", "call", found.call_id, details={
                "epoch": epoch, "stream_id": start.stream_id, "protocol": start.protocol,
                "replica": replica_name()})
            conn.execute(insert(call_events).values(
                call_id=found.call_id, at=utcnow(), t_s=(found.checkpoint or {}).get("audio_t_s"),
                kind="resumed", data={"epoch": epoch, "stream_id": start.stream_id,
                                      "net_speech_s": net.get("net_speech_s", 0.0),
                                      "replica": replica_name()}))
        return epoch

    def checkpoint(self, call_id: str, epoch: int, state: dict[str, Any]) -> bool:
        """Store the analysis state while this session owns the call; False once it does not."""
        with self.db.begin() as conn:
            res = conn.execute(update(calls).where(calls.c.id == call_id, calls.c.epoch == epoch,
                                                   calls.c.ended_at.is_(None))
                               .values(checkpoint=json.dumps(state, separators=(",", ":"), default=float)))
        return bool(res.rowcount == 1)

    @staticmethod
    def owns_call(conn: Any, call_id: str, epoch: int, dialect: str) -> bool:
        """In the caller's transaction: is ``epoch`` still the call's owner (row locked on PostgreSQL,
        so a take-over waits for this transaction)."""
        stmt = select(calls.c.epoch).where(calls.c.id == call_id)
        if dialect == "postgresql":
            stmt = stmt.with_for_update()
        got = conn.execute(stmt).scalar()
        return got is None or int(got) == epoch

    def set_state(self, call_id: str, state: CallState) -> None:
        with self.db.begin() as conn:
            conn.execute(update(calls).where(calls.c.id == call_id).values(state=state.value))

    def add_event(self, call_id: str, kind: str, data: dict[str, Any], *, t_s: float | None = None) -> None:
        """One timeline entry; verdicts and errors also update the call's summary columns."""
        values: dict[str, Any] = {}
        if kind == "verdict":
            values = {"verdicts": calls.c.verdicts + 1, "alarm": bool(data.get("alarm")),
                      "net_speech_s": float(data.get("net_speech_s") or 0.0)}
            if data.get("alarm"):
                values["alarm_ever"] = True
        elif kind == "error":
            values = {"errors": calls.c.errors + 1}
        with self.db.begin() as conn:
            conn.execute(insert(call_events).values(call_id=call_id, at=utcnow(), t_s=t_s, kind=kind,
                                                    data=data))
            if values:
                conn.execute(update(calls).where(calls.c.id == call_id).values(**values))
            if kind == "verdict" and (data.get("alarm") or data.get("review")):
                outbox.add(conn, [self._alarm_event(conn, call_id, data, t_s)])

    @staticmethod
    def _alarm_event(conn: Any, call_id: str, data: dict[str, Any], t_s: float | None) -> outbox.Event:
        """``callvet.voiceprint.alarm`` (or ``.review``): a live call's voice matched the blacklist."""
        app_id = conn.execute(select(calls.c.application_id).where(calls.c.id == call_id)).scalar()
        top = (data.get("matches") or [None])[0]
        return outbox.event("voiceprint", "alarm" if data.get("alarm") else "review", call_id, {
            "call_id": call_id, "application_id": app_id, "t_s": t_s,
            "net_speech_s": data.get("net_speech_s"), "threshold": data.get("threshold"),
            "identity_id": top.get("identity_id") if top else None,
            "score": top.get("score") if top else None,
            "spoof_flag": (data.get("spoof") or {}).get("flag"), "voice_reuse": bool(data.get("voice_reuse")),
        })

    def end(self, call_id: str, state: CallState, *, reason: str, close_code: int | None,
            audio_s: float, net_speech_s: float, stats: dict[str, Any], epoch: int = 0) -> bool:
        """The call's end, written only by its owner (``epoch``); False when another session owns it."""
        with self.db.begin() as conn:
            res = conn.execute(update(calls).where(calls.c.id == call_id, calls.c.epoch == epoch).values(
                state=state.value, ended_at=utcnow(), end_reason=reason[:500], close_code=close_code,
                audio_s=round(audio_s, 3), net_speech_s=round(net_speech_s, 3), stats=stats,
            ))
            if res.rowcount != 1:
                return False
            row = conn.execute(select(calls.c.application_id, calls.c.alarm_ever, calls.c.verdicts)
                               .where(calls.c.id == call_id)).first()
            final = stats.get("final_verdict") or {}
            outbox.add(conn, [outbox.event("call", "ended", call_id, {
                "call_id": call_id, "application_id": row.application_id if row else None,
                "state": state.value, "end_reason": reason[:200], "audio_s": round(audio_s, 3),
                "net_speech_s": round(net_speech_s, 3), "alarm_ever": bool(row.alarm_ever) if row else False,
                "verdicts": int(row.verdicts) if row else 0, "final_alarm": final.get("alarm"),
                "final_review": final.get("review"), "epoch": epoch,
            })])
        return True

    def get(self, call_id: str, *, events: bool = True) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.id == call_id)).first()
            if row is None:
                raise NotFound(f"no call {call_id!r}", code="call_not_found")
            out = {k: _iso(v) for k, v in row._mapping.items()}
            if events:
                rows = conn.execute(select(call_events).where(call_events.c.call_id == call_id)
                                    .order_by(call_events.c.id)).all()
                out["events"] = [
                    {"at": _iso(r.at), "t_s": r.t_s, "kind": r.kind, "data": r.data} for r in rows
                ]
        return out

    def list(self, *, alarm: bool | None = None, application_id: str | None = None, limit: int = 100,
             offset: int = 0) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be 1..1000 and offset >= 0", code="bad_paging")
        stmt = select(calls).order_by(calls.c.created_at.desc(), calls.c.id).limit(limit).offset(offset)
        if alarm is not None:
            stmt = stmt.where(calls.c.alarm_ever.is_(alarm))
        if application_id:
            stmt = stmt.where(calls.c.application_id == application_id)
        with self.db.connect() as conn:
            return [{k: _iso(v) for k, v in r._mapping.items()} for r in conn.execute(stmt).all()]

    def count(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(calls)).scalar_one())

    def delete(self, call_id: str, actor: str, reason: str) -> None:
        """Erase a call and its timeline (verdict scores are biometric-derived); the audit row stays."""
        if not reason.strip():
            raise InvalidInput("a reason is required to delete a call record", code="reason_required")
        with self.db.begin() as conn:
            found = conn.execute(select(calls.c.id).where(calls.c.id == call_id)).first()
            if found is None:
                raise NotFound(f"no call {call_id!r}", code="call_not_found")
            conn.execute(call_events.delete().where(call_events.c.call_id == call_id))
            conn.execute(calls.delete().where(calls.c.id == call_id))
            record(conn, actor, "call.delete", "call", call_id, reason=reason)
