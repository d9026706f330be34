"""Domain errors: every error callvet raises on purpose is a :class:`CallvetError`.

Inner modules raise these; only the API maps them to HTTP (:mod:`callvet.api.problems`: by ``code``
first, then by class). ``code`` is a stable machine reason, ``message`` is for people. Classes that
callers used to catch as ``ValueError`` stay ValueErrors too, so old ``except ValueError`` still works.
Part-specific errors are defined beside the code that raises them and listed here::

    CallvetError                                  (500 unless its code is mapped)
    ├── InvalidInput        bad data from a caller (422)
    │   ├── SettingsError   a CALLVET_* setting is malformed         core.settings
    │   ├── AudioError      audio that cannot be decoded or is unusable  voice.audio
    │   ├── ProtocolError   a malformed telephony stream message    voice.call.serializers
    │   ├── SandboxError    a workflow script or expression refused  workflow.sandbox  (+ ValueError)
    ├── NotFound            unknown id (404)
    ├── Conflict            state does not allow it, e.g. completing a task twice (409)
    ├── Forbidden           role may not do this (403)
    ├── Unavailable         a model, artifact or broker the request needs is not there (503)
    │   ├── ArtifactError   a built artifact fails its manifest check  core.artifacts  (+ ValueError)
    │   └── PublishError    the broker did not acknowledge a batch     core.outbox
    ├── IndexLoadError      the persisted blacklist index is torn or stale; the owner rebuilds it
    │                                                                   voice.index
    └── Unsupported         a decision graph outside the vectorised subset; evaluated by zen instead
                                                                        decision.compiler  (+ ValueError)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError", "CallvetError", "Conflict", "Forbidden", "InvalidArgument", "InvalidInput", "NotFound",
    "Unavailable",
]


class CallvetError(Exception):
    """Base of every error callvet raises on purpose; ``code`` is stable, ``message`` is for people."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidInput(CallvetError):
    code = "invalid_input"


class InvalidArgument(InvalidInput, ValueError):
    """A value outside what a function accepts (a vector of the wrong shape, a size out of range).
    Also a ValueError: callers that guard such calls with ``except ValueError`` keep working."""

    code = "invalid_argument"


class NotFound(CallvetError):
    code = "not_found"


class Conflict(CallvetError):
    code = "conflict"


class Forbidden(CallvetError):
    code = "forbidden"


class Unavailable(CallvetError):
    code = "unavailable"


class ArtifactError(Unavailable, ValueError):
    """A built model artifact does not match its manifest (truncated copy, swapped model)."""

    code = "artifact_invalid"
