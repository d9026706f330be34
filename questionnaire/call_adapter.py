"""The questionnaire on a live call: a :class:`~callvet.voice.call.observer.CallObserver` over
:class:`~callvet.questionnaire.service.InterviewService`.

The robot creates the interview (``POST /v1/interviews``) and starts the call with ``interview_id`` in its
custom parameters (or only ``application_id``: the newest unfinished interview of that application is
used). Then:

* on start, the pending question goes to the robot as ``callvet.question`` {question_id, text, language,
  answer_type, choices?};
* the robot reports it asked it (``callvet.question`` in, ignored here but for its id) and sends the
  recogniser's text as ``callvet.transcript`` events; when it sends none, the call server's own
  recogniser (:mod:`callvet.voice.asr`) feeds one marked ``source: asr:pocketsphinx`` (ignored when its
  language is not the question's); the assessment says which (``transcript_source``);
* when both the final transcript(s) and the answer's end (delay, duration, prosody from the call server)
  are in, the answer is scored (in a worker thread: hooks must not block the call's event loop) and the
  robot gets ``callvet.assessment`` and the next ``callvet.question``, or ``callvet.interview_result``;
* a call that stops mid-interview aborts it (``inconclusive``), keeping what was scored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from callvet.core.errors import CallvetError, NotFound
from callvet.questionnaire.service import InterviewService
from callvet.questionnaire.tables import interviews
from callvet.voice.call.observer import (
    AnswerEnd,
    BaseObserver,
    CallInfo,
    ObserverFactory,
    QuestionAsked,
    Transcript,
    register_observer,
)
from sqlalchemy import select

__all__ = [
    "OBSERVER_NAME",
    "InterviewObserver",
    "find_interview",
    "interview_observer_factory",
    "register_interview_observer",
]

log = logging.getLogger(__name__)
OBSERVER_NAME = "questionnaire"


def _question_event(interview_id: str, q: dict[str, Any]) -> dict[str, Any]:
    return {"event": "callvet.question", "interview_id": interview_id, **q}


class InterviewObserver(BaseObserver):
    """One interview on one call; pairs transcripts with the call server's answer timing."""

    wants_transcripts = True

    def __init__(
        self,
        service: InterviewService | Callable[[], InterviewService],
        interview_id: str | None = None,
        *,
        actor: str = "robot:call",
    ) -> None:
        self._service = service
        self.interview_id = interview_id
        self.actor = actor
        self.pending: dict[str, Any] | None = None
        self.finished = False
        self._texts: list[str] = []
        self._sources: list[str] = []
        self._end: AnswerEnd | None = None
        self._heard_empty: str | None = None
        self._lock = asyncio.Lock()

    @property
    def service(self) -> InterviewService:
        if not isinstance(self._service, InterviewService):
            self._service = self._service()
        return self._service

    async def on_start(self, call: CallInfo) -> list[dict[str, Any]] | None:
        # Building the service may load the sentence encoder: never on the call's event loop.
        await asyncio.to_thread(lambda: self.service)
        if self.interview_id is None:
            self.interview_id = await asyncio.to_thread(find_interview, self.service, call)
        if self.interview_id is None:
            self.finished = True
            return None
        view = await asyncio.to_thread(self.service.get, self.interview_id, include_answers=False)
        if view.get("state") != "asking":
            self.finished = True
            return [
                {
                    "event": "callvet.interview_result",
                    "interview_id": self.interview_id,
                    **(view.get("result") or {}),
                }
            ]
        self.pending = view["question"]
        return [_question_event(self.interview_id, view["question"])]

    def on_question(self, call: CallInfo, question: QuestionAsked) -> None:
        if self.pending and question.question_id == self.pending["question_id"]:
            self._texts.clear()
            self._sources.clear()
            self._end = None
            self._heard_empty = None

    async def on_transcript(self, call: CallInfo, transcript: Transcript) -> list[dict[str, Any]] | None:
        if self.finished or self.pending is None or not transcript.final:
            return None
        if transcript.question_id not in (None, self.pending["question_id"]):
            return None
        source = str(transcript.data.get("source") or "robot")
        asr_lang = transcript.data.get("language") if source.startswith("asr:") else None
        if asr_lang and str(self.pending.get("language", asr_lang)).split("-")[0] != asr_lang:
            return None  # the server's recogniser heard another language than the question's
        if transcript.text.strip():
            self._texts.append(transcript.text.strip())
            self._sources.append(source)
        elif asr_lang:
            # The server heard nothing it could write down: scored as an empty answer (the interview
            # asks again) instead of waiting for text that will never come.
            self._heard_empty = source
        return await self._maybe_submit()

    async def on_answer_end(self, call: CallInfo, answer: AnswerEnd) -> list[dict[str, Any]] | None:
        if self.finished or self.pending is None:
            return None
        if answer.question_id not in (None, self.pending["question_id"]):
            return None
        self._end = answer
        return await self._maybe_submit()

    async def on_stop(self, call: CallInfo, reason: str) -> None:
        if self.finished or self.interview_id is None:
            return
        try:
            await asyncio.to_thread(
                self.service.abort, self.interview_id, reason=f"call ended: {reason}", actor=self.actor
            )
        except CallvetError:
            log.info("interview %s could not be aborted at call end", self.interview_id)
        self.finished = True

    async def _maybe_submit(self) -> list[dict[str, Any]] | None:
        async with self._lock:
            if self._end is None or not (self._texts or self._heard_empty) or self.pending is None \
                    or self.finished:
                return None
            end, text, q = self._end, " ".join(self._texts), self.pending
            source = ",".join(dict.fromkeys(self._sources)) or str(self._heard_empty)
            self._texts, self._sources, self._end, self._heard_empty = [], [], None, None
            p = dict(end.prosody)
            timing = {
                "delay_s": end.delay_s if end.delay_s is not None else p.get("delay_s"),
                "duration_s": round(max(0.0, end.end_s - end.start_s), 3),
                "speech_rate": p.get("speech_rate"),
            }
            prosody = {k: v for k, v in p.items() if isinstance(v, int | float) and k != "delay_s"}
            out = await asyncio.to_thread(
                self.service.answer,
                self.interview_id,
                q["question_id"],
                text,
                timing={k: v for k, v in timing.items() if v is not None},
                prosody=prosody,
                actor=self.actor,
            )
            events: list[dict[str, Any]] = [
                {"event": "callvet.assessment", "interview_id": self.interview_id, **out["assessment"],
                 "transcript_source": source}
            ]
            if out.get("state") == "asking":
                self.pending = out["question"]
                events.append(_question_event(self.interview_id, out["question"]))
            else:
                self.pending = None
                self.finished = True
                events.append(
                    {
                        "event": "callvet.interview_result",
                        "interview_id": self.interview_id,
                        **(out.get("result") or {}),
                    }
                )
            return events


def find_interview(service: InterviewService, call: CallInfo) -> str | None:
    """The interview a call is for: its ``interview_id`` parameter, else the newest unfinished one of its
    application."""
    iid = call.params.get("interview_id")
    if iid:
        try:
            service.get(str(iid), include_answers=False)
        except NotFound:
            return None
        return str(iid)
    if not call.application_id:
        return None
    with service.db.connect() as conn:
        row = conn.execute(
            select(interviews.c.id)
            .where(interviews.c.application_id == call.application_id, interviews.c.state == "asking")
            .order_by(interviews.c.attempt.desc())
            .limit(1)
        ).first()
    return row.id if row else None


def interview_observer_factory(service: InterviewService | Callable[[], InterviewService]) -> ObserverFactory:
    """A factory for the call server: an :class:`InterviewObserver` for calls that name an interview or an
    application; the interview is looked up in ``on_start`` (off the event loop), none found: inert."""

    def factory(call: CallInfo) -> InterviewObserver | None:
        if not (call.params.get("interview_id") or call.application_id):
            return None
        return InterviewObserver(service)

    return factory


def register_interview_observer(service: InterviewService | Callable[[], InterviewService]) -> None:
    """Hook the questionnaire into every call started from now on (process-wide registry)."""
    register_observer(OBSERVER_NAME, interview_observer_factory(service))
