"""The seam where other parts (the questionnaire first) watch a live call and talk back to the robot.

An observer is built per call by a factory registered with :func:`register_observer`. It hears the
call's start, the questions the robot reports it asked (``callvet.question`` in), transcripts the robot's
speech recogniser sends (``callvet.transcript`` in), each answer's start and end (with timing and
prosody), every voiceprint verdict, and the stop. Each hook may return events: dicts with an ``event``
name starting ``callvet.`` (e.g. the next ``callvet.question`` to ask); the call server sends them to the
robot as JSON text frames and writes them to the call's timeline.

Hooks run on the call server's event loop: they must be quick (no model inference, no blocking I/O; a
hook may be ``async`` and await). A hook that raises is reported as ``callvet.error`` with code
``observer_failed``, the observer is dropped for that call, and the call goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from callvet.voice.call.frames import AnswerEnded, AnswerStarted, QuestionAsked, Transcript

__all__ = [
    "AnswerEnd",
    "AnswerStart",
    "BaseObserver",
    "CallInfo",
    "CallObserver",
    "ObserverFactory",
    "ObserverResult",
    "QuestionAsked",
    "Transcript",
    "observer_factories",
    "register_observer",
    "unregister_observer",
]

ObserverResult = list[dict[str, Any]] | None | Awaitable[list[dict[str, Any]] | None]


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    protocol: str
    stream_id: str
    call_sid: str
    application_id: str | None
    language: str | None
    sample_rate: int
    params: dict[str, Any] = field(default_factory=dict)
    #: Issue 17: the session's ownership epoch of the call (0 unless resumed) and whether this session
    #: continues a call another replica started (observers then pick up its durable state).
    epoch: int = 0
    resumed: bool = False


#: The answer has one shape (:mod:`callvet.voice.call.frames`); these are its names on this seam.
AnswerStart = AnswerStarted
AnswerEnd = AnswerEnded


@runtime_checkable
class CallObserver(Protocol):
    def on_start(self, call: CallInfo) -> ObserverResult: ...
    def on_question(self, call: CallInfo, question: QuestionAsked) -> ObserverResult: ...
    def on_transcript(self, call: CallInfo, transcript: Transcript) -> ObserverResult: ...
    def on_answer_start(self, call: CallInfo, answer: AnswerStart) -> ObserverResult: ...
    def on_answer_end(self, call: CallInfo, answer: AnswerEnd) -> ObserverResult: ...
    def on_verdict(self, call: CallInfo, verdict: dict[str, Any]) -> ObserverResult: ...
    def on_stop(self, call: CallInfo, reason: str) -> ObserverResult: ...


class BaseObserver:
    """No-op hooks; subclass and override the ones you need. ``wants_transcripts = True`` asks the call
    server to recognise answers itself when the robot sends no transcript (:mod:`callvet.voice.asr`)."""

    wants_transcripts: bool = False

    def on_start(self, call: CallInfo) -> ObserverResult:
        return None

    def on_question(self, call: CallInfo, question: QuestionAsked) -> ObserverResult:
        return None

    def on_transcript(self, call: CallInfo, transcript: Transcript) -> ObserverResult:
        return None

    def on_answer_start(self, call: CallInfo, answer: AnswerStart) -> ObserverResult:
        return None

    def on_answer_end(self, call: CallInfo, answer: AnswerEnd) -> ObserverResult:
        return None

    def on_verdict(self, call: CallInfo, verdict: dict[str, Any]) -> ObserverResult:
        return None

    def on_stop(self, call: CallInfo, reason: str) -> ObserverResult:
        return None


ObserverFactory = Callable[[CallInfo], CallObserver | None]

_lock = threading.Lock()
_factories: dict[str, ObserverFactory] = {}


def register_observer(name: str, factory: ObserverFactory) -> None:
    """Build an observer for every call started from now on (``factory`` may return None to skip)."""
    with _lock:
        _factories[name] = factory


def unregister_observer(name: str) -> None:
    with _lock:
        _factories.pop(name, None)


def observer_factories() -> list[tuple[str, ObserverFactory]]:
    with _lock:
        return list(_factories.items())
