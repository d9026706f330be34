"""Call records, written as the call goes so a call cut off mid-way keeps everything received so far.

Each write is its own short transaction; the call server runs them on one dedicated thread so the event
loop never waits on the database and a call's writes land in order.
"""

from __future__ import annotations

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

__all__ = ["CallStore"]


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


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
                params=start.params,
            ))
            actor = conn.execute(select(calls.c.actor).where(calls.c.id == call_id)).scalar_one()
            record(conn, actor, "call.start", "call", call_id, details={
                "protocol": start.protocol, "stream_id": start.stream_id,
                "application_id": start.application_id,
            })

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
            audio_s: float, net_speech_s: float, stats: dict[str, Any]) -> None:
        with self.db.begin() as conn:
            conn.execute(update(calls).where(calls.c.id == call_id).values(
                state=state.value, ended_at=utcnow(), end_reason=reason[:500], close_code=close_code,
                audio_s=round(audio_s, 3), net_speech_s=round(net_speech_s, 3), stats=stats,
            ))
            row = conn.execute(select(calls.c.application_id, calls.c.alarm_ever, calls.c.verdicts)
                               .where(calls.c.id == call_id)).first()
            final = stats.get("final_verdict") or {}
            outbox.add(conn, [outbox.event("call", "ended", call_id, {
                "call_id": call_id, "application_id": row.application_id if row else None,
                "state": state.value, "end_reason": reason[:200], "audio_s": round(audio_s, 3),
                "net_speech_s": round(net_speech_s, 3), "alarm_ever": bool(row.alarm_ever) if row else False,
                "verdicts": int(row.verdicts) if row else 0, "final_alarm": final.get("alarm"),
                "final_review": final.get("review"),
            })])

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
