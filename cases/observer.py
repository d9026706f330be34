"""The call server's view of a case: a call observer that collects the call's voiceprint verdicts and,
when the call stops, records the durable ``call_ended`` entry the pump delivers
(:meth:`callvet.cases.service.CaseService.record_call_end`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from callvet.cases.tables import call_queue
from callvet.voice.call.observer import BaseObserver, CallInfo, ObserverFactory
from callvet.voice.call.tables import call_events
from sqlalchemy import select

__all__ = ["OBSERVER_NAME", "CaseObserver", "case_observer_factory"]

log = logging.getLogger("callvet.cases")
OBSERVER_NAME = "cases"
MAX_VERDICTS = 500


class CaseObserver(BaseObserver):
    def __init__(self, service: Any) -> None:
        self.service = service
        self.case_id: str | None = None
        self.verdicts: list[dict[str, Any]] = []

    async def on_start(self, call: CallInfo) -> None:
        self.case_id = await asyncio.to_thread(self._case_of, call.call_id)
        if self.case_id is not None and call.resumed:
            self.verdicts = await asyncio.to_thread(self._recorded_verdicts, call.call_id)

    def _case_of(self, call_id: str) -> str | None:
        with self.service.db.connect() as conn:
            return conn.execute(select(call_queue.c.case_id).where(call_queue.c.call_id == call_id)).scalar()

    def _recorded_verdicts(self, call_id: str) -> list[dict[str, Any]]:
        """A resumed call (issue 17): the verdicts the earlier sessions recorded count too."""
        with self.service.db.connect() as conn:
            rows = conn.execute(select(call_events.c.data).where(
                call_events.c.call_id == call_id, call_events.c.kind == "verdict")
                .order_by(call_events.c.id).limit(MAX_VERDICTS)).scalars().all()
        return [dict(r) for r in rows if isinstance(r, dict)]

    def on_verdict(self, call: CallInfo, verdict: dict[str, Any]) -> None:
        if self.case_id is not None and len(self.verdicts) < MAX_VERDICTS:
            self.verdicts.append(dict(verdict))

    async def on_stop(self, call: CallInfo, reason: str) -> None:
        if self.case_id is None:
            return
        await asyncio.to_thread(self.service.record_call_end, self.case_id, call.call_id, reason=reason,
                                verdicts=self.verdicts, epoch=call.epoch)


def case_observer_factory(service: Any | Callable[[], Any]) -> ObserverFactory:
    """Observe calls that name a case (admission has already checked their token)."""

    def factory(call: CallInfo) -> CaseObserver | None:
        if not call.params.get("case_id"):
            return None
        return CaseObserver(service() if callable(service) else service)

    return factory
