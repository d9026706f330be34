"""The life of one call as an explicit state machine.

A call is ``connected`` when the socket is accepted, ``started`` once the protocol's start metadata is
understood, ``streaming`` from the first audio, and ends ``stopped`` (orderly end or client disconnect
after audio) or ``failed`` (the stream could not go on). Anything else is a bug or a misbehaving client,
so an invalid transition raises instead of being silently absorbed.
"""

from __future__ import annotations

from enum import StrEnum

from callvet.core.errors import Conflict

__all__ = ["TRANSITIONS", "CallState", "InvalidTransition", "StateMachine"]


class CallState(StrEnum):
    CONNECTED = "connected"
    STARTED = "started"
    STREAMING = "streaming"
    STOPPED = "stopped"
    FAILED = "failed"


TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.CONNECTED: frozenset({CallState.STARTED, CallState.STOPPED, CallState.FAILED}),
    CallState.STARTED: frozenset({CallState.STREAMING, CallState.STOPPED, CallState.FAILED}),
    CallState.STREAMING: frozenset({CallState.STOPPED, CallState.FAILED}),
    CallState.STOPPED: frozenset(),
    CallState.FAILED: frozenset(),
}


class InvalidTransition(Conflict):
    code = "invalid_transition"


class StateMachine:
    """Holds the current state; ``to`` moves it or raises :class:`InvalidTransition`."""

    def __init__(self, state: CallState = CallState.CONNECTED) -> None:
        self.state = state

    @property
    def ended(self) -> bool:
        return self.state in (CallState.STOPPED, CallState.FAILED)

    def can(self, target: CallState) -> bool:
        return target in TRANSITIONS[self.state]

    def to(self, target: CallState) -> CallState:
        if target is self.state and target is CallState.STREAMING:
            return target
        if not self.can(target):
            raise InvalidTransition(
                f"call cannot go from {self.state.value} to {target.value}",
                from_state=self.state.value, to_state=target.value,
            )
        self.state = target
        return target
