"""Request body limits, enforced at the ASGI level before anything parses the body.

A declared ``Content-Length`` above the limit is refused with 413 before the application runs; a chunked
body is counted as it arrives and cut off with 413 the moment it passes the limit, so nothing larger than
the limit is ever buffered, parsed or stored. Two limits (``Settings``):

- ``max_body_bytes`` (``CALLVET_MAX_BODY_BYTES``, 1 MiB): JSON and XML bodies;
- ``max_upload_bytes`` (``CALLVET_MAX_UPLOAD_BYTES``, 20 MiB) plus multipart framing: multipart uploads
  and the bulk routes in :data:`BULK_PATHS` (a 10,000-item decision batch is ~15 MB).
"""

from __future__ import annotations

from callvet.core.settings import Settings
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BULK_PATHS", "MULTIPART_SLACK", "BodyLimit", "limit_for"]

#: Room for multipart boundaries, headers and the small form fields around the file part.
MULTIPART_SLACK = 64 * 1024
BULK_PATHS = frozenset({"/v1/decisions:batch"})


def limit_for(settings: Settings, path: str, content_type: str) -> int:
    if content_type.startswith("multipart/") or path in BULK_PATHS:
        return settings.max_upload_bytes + MULTIPART_SLACK
    return settings.max_body_bytes


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, detail={"code": "too_large", "max_body_bytes": limit,
                                      "message": f"request body exceeds the limit of {limit} bytes"})


class BodyLimit:
    """ASGI middleware: 413 (a problem, via the app's handler) for a body beyond its limit."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = limit_for(self.settings, scope.get("path", ""), ctype)
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            from callvet.api.problems import problem

            response = problem(413, "too_large", f"request body exceeds the limit of {limit} bytes",
                               max_body_bytes=limit, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, counting, send)

