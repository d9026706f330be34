"""A direct route for the hot path that hands everything it does not expect to the regular FastAPI route.

Issue 17's profile of a stored ``POST /v1/decisions`` (in-process ASGI, CPU clock): about a third of the
event loop's CPU went to FastAPI's per-request machinery around the handler rather than to deciding --
walking the included routers (``_get_routes_version`` and ``_match`` per request), resolving the
dependency graph (``solve_dependencies``: body, header, ``require`` and its ``Security(bearer)``), its
telemetry and exit stacks, and validating the answer through the response model.

:class:`FastRoute` sits first in the application's routes and takes exactly one method and path. On the
happy path -- a JSON body that parses and validates as the request model (the value the strict JSON
check already validated, :data:`callvet.api.strictjson.VALUE_KEY`), and well-formed optional headers --
it runs the same key check (:func:`callvet.api.deps.require`, so 401, 403 and the strict-JSON
422 come from the same code in the same order), the same handler and the same response model, and
answers. Anything else (malformed JSON, a body or header FastAPI would refuse) goes, with the body
replayed, through the regular router to the documented FastAPI route, so every error is the one that
route gives: the fast path adds no behaviour of its own, only skips work on requests that would pass.
Exceptions raised here reach the application's exception handlers as from any route (problem+json).
The OpenAPI document still comes from the FastAPI route; this route is not in the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from callvet.api.strictjson import VALUE_KEY, read_body, replaying
from fastapi.exceptions import ResponseValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FALLBACK_KEY", "FastRoute"]

#: Set in the scope of a request handed back to the regular router, so this route does not take it again.
FALLBACK_KEY = "callvet.fastpath.fallback"

Handler = Callable[[Request, BaseModel, dict[str, str | None], Any], Awaitable[dict[str, Any]]]
Check = Callable[[Request], Awaitable[Any]]


def _is_json(scope: Scope) -> bool:
    for k, v in scope.get("headers", ()):
        if k == b"content-type":
            ctype = v.decode("latin-1").split(";")[0].strip().lower()
            return ctype == "application/json" or ctype.endswith("+json")
    return False


class FastRoute(BaseRoute):
    """``method path`` with ``body_model`` and optional ``headers`` (name -> (max length, pattern));
    ``check(request)`` authorises (raises) and returns the caller, ``handler(request, body, headers,
    caller)`` answers a dict that is validated as ``response_model``. ``router`` is where a request it
    does not take goes instead."""

    def __init__(self, method: str, path: str, *, body_model: type[BaseModel], response_model: type[Any],
                 check: Check, handler: Handler, router: ASGIApp, documented: Any,
                 headers: dict[str, tuple[int, str]] | None = None) -> None:
        self.method = method
        self.path = path
        self.body_model = body_model
        self.response = TypeAdapter(response_model)
        self.check = check
        self.handler = handler
        self.router = router
        self.documented = documented
        self.headers = {name.lower().encode("latin-1"): (limit, re.compile(pattern))
                        for name, (limit, pattern) in (headers or {}).items()}
        self.path_format = path
        self.taken = 0  # requests answered here
        self.handed_back = 0  # requests sent on to the documented route
        self.include_in_schema = False
        self.name = f"fast:{path}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (scope["type"] == "http" and scope.get("path") == self.path and scope.get("method") == self.method
                and not scope.get(FALLBACK_KEY)):
            return Match.FULL, {"endpoint": self.handler, "path_params": {}}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        from starlette.routing import NoMatchFound

        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        parsed = self._parse(scope, raw)
        if parsed is None:
            await self._fall_back(scope, raw, receive, send)
            return
        body, headers = parsed
        self.taken += 1
        scope["route"] = self.documented  # metrics and logs name the documented route
        request = Request(scope, receive, send)
        caller = await self.check(request)
        out = await self.handler(request, body, headers, caller)
        try:
            value = self.response.validate_python(out)
        except ValidationError as exc:
            raise ResponseValidationError(exc.errors(include_url=False), body=out) from exc
        data = self.response.dump_json(value, by_alias=True)  # as FastAPI serialises a response model
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode("latin-1"))]})
        await send({"type": "http.response.body", "body": data})

    def _parse(self, scope: Scope, raw: bytes) -> tuple[BaseModel, dict[str, str | None]] | None:
        """The body and headers when they are what the documented route accepts, else None."""
        if not raw or not _is_json(scope):
            return None
        headers: dict[str, str | None] = {name.decode("latin-1"): None for name in self.headers}
        for k, v in scope.get("headers", ()):
            spec = self.headers.get(k)
            if spec is not None:
                text = v.decode("latin-1")
                if len(text) > spec[0] or not spec[1].search(text):
                    return None
                name = k.decode("latin-1")
                if headers[name] is None:  # the first of a repeated header, as Starlette's headers.get
                    headers[name] = text
        checked = scope.get(VALUE_KEY)
        if isinstance(checked, self.body_model):  # validated in strict JSON mode on the way in
            return checked, headers
        try:
            # as FastAPI reads a JSON body: the standard parser, then the model in lax Python mode
            return self.body_model.model_validate(json.loads(raw)), headers
        except (ValueError, ValidationError, RecursionError):
            return None

    async def _fall_back(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        self.handed_back += 1
        scope[FALLBACK_KEY] = True
        await self.router(scope, replaying(raw, receive), send)
