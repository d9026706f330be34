"""Domain errors; see the tree in :mod:`callvet.core`."""

from __future__ import annotations

from typing import Any

__all__ = ["CallvetError", "Conflict", "Forbidden", "InvalidInput", "NotFound", "Unavailable"]


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


class NotFound(CallvetError):
    code = "not_found"


class Conflict(CallvetError):
    code = "conflict"


class Forbidden(CallvetError):
    code = "forbidden"


class Unavailable(CallvetError):
    code = "unavailable"
