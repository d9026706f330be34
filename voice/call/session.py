"""The call server's public names, where callers have always imported them from.

The call is a pipeline of processors: the runner is :mod:`callvet.voice.call.runner`, the process-wide
server :mod:`callvet.voice.call.server`, the frames :mod:`callvet.voice.call.frames`, the processors
:mod:`callvet.voice.call.processors` (and ``control``, ``audioqueue``, ``asrstage``); docs/calls.md.
"""

from __future__ import annotations

from callvet.voice.call.runner import CallSession, Transport
from callvet.voice.call.server import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_TRY_LATER,
    CallServer,
    default_vad_factory,
)

__all__ = ["CLOSE_INTERNAL", "CLOSE_NORMAL", "CLOSE_TRY_LATER", "CallServer", "CallSession", "Transport",
           "default_vad_factory"]
