from __future__ import annotations

import pytest
from callvet.voice.call.state import CallState, InvalidTransition, StateMachine


def test_happy_path() -> None:
    sm = StateMachine()
    assert sm.state is CallState.CONNECTED
    for s in (CallState.STARTED, CallState.STREAMING, CallState.STREAMING, CallState.STOPPED):
        sm.to(s)
    assert sm.ended


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], CallState.STREAMING),
        ([CallState.STARTED], CallState.STARTED),
        ([CallState.STARTED, CallState.STREAMING], CallState.STARTED),
        ([CallState.STOPPED], CallState.STARTED),
        ([CallState.FAILED], CallState.STOPPED),
    ],
)
def test_invalid_transitions_raise(path: list[CallState], bad: CallState) -> None:
    sm = StateMachine()
    for s in path:
        sm.to(s)
    with pytest.raises(InvalidTransition) as e:
        sm.to(bad)
    assert e.value.code == "invalid_transition"
    assert e.value.details["to_state"] == bad.value
