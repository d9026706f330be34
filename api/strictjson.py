"""JSON bodies are held to the types the OpenAPI documents: ``false`` is not a number, ``0`` not a
boolean, ``"12"`` not an integer.

FastAPI validates a JSON body in pydantic's lax Python mode, which coerces across JSON types (``true`` to
``1.0`` for a risk score, ``0`` to ``False`` for ``active``, ``"5"`` to ``5``). A client that sends the
wrong type has a bug, and a lenient server hides it until the value means something else in production;
schemathesis' ``negative_data_rejection`` check found exactly these. The models cannot simply be made
strict: the same models validate Python dicts inside the service (forms, simulators, stored state),
where lax parsing is wanted, and strict *Python* mode would refuse ISO date strings.

So this middleware re-validates the raw bytes of a JSON body with the route's own body type in pydantic's
strict *JSON* mode (dates and enums from their JSON strings, integers as floats, nothing else coerced)
and leaves what it found in the request scope; the key check (:func:`callvet.api.deps.require`) raises
it as the usual 422 problem once the caller is authenticated and authorised, so 401 and 403 still come
first and an anonymous caller learns nothing about a body's shape. One normalisation first: a
number with a zero fraction (``761.0``) is an integer in JSON Schema, as in pydantic's lax mode, so it is
read as one; malformed JSON is left to FastAPI (400 or 422 as before). The body is already bounded
(:mod:`callvet.api.limits`) and is replayed to the route unchanged. Multipart and XML bodies are not
touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from callvet.api.problems import api_routes, problem
from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SCOPE_KEY", "VALUE_KEY", "StrictJson", "install", "raise_found", "read_body", "replaying"]

#: Where the middleware leaves a body's strict-mode errors for :func:`raise_found`.
SCOPE_KEY = "callvet.strict_json_errors"
#: Where it leaves the body it validated when strict mode accepted it: what the lax validation of the same
#: JSON gives (strict accepts a subset and converts alike), so :mod:`callvet.api.fastpath` need not
#: parse and validate the body a second time.
VALUE_KEY = "callvet.strict_json_value"


def _json_routes(routes: Any) -> list[tuple[APIRoute, TypeAdapter[Any]]]:
    out = []
    for route in api_routes(routes):
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        if isinstance(route.body_field.field_info, params.Form):
            continue
        annotation = route.body_field.field_info.annotation
        if annotation is None:
            continue
        out.append((route, TypeAdapter(annotation)))
    return out


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def _normalised(raw: bytes) -> bytes | None:
    """``raw`` with integral floats written as integers; None when it is not JSON at all."""
    try:
        return json.dumps(json.loads(raw, parse_float=_number), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return None


def _strict(adapter: TypeAdapter[Any], raw: bytes) -> tuple[list[dict[str, Any]], Any]:
    """What strict JSON mode refuses in ``raw`` after the normalisation above, and the value when it
    refuses nothing (None when ``raw`` is not JSON at all). The raw bytes are tried first: normalising
    only turns integral floats into integers, which strict mode refuses nowhere it accepted the float, so
    a body that passes as sent passes normalised, and the parse and re-encode (a tenth of a decision's
    CPU, issue 17) is paid only by a body that fails as sent."""
    try:
        return [], adapter.validate_json(raw, strict=True)
    except ValidationError:
        pass
    normalised = _normalised(raw) if raw.strip() else None
    if normalised is None:
        return [], None
    try:
        return [], adapter.validate_json(normalised, strict=True)
    except ValidationError as exc:
        return [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()], None


def _is_json(scope: Scope) -> bool:
    for k, v in scope.get("headers", ()):
        if k == b"content-type":
            ctype = v.decode("latin-1").split(";")[0].strip().lower()
            return ctype == "application/json" or ctype.endswith("+json")
    return False


def raise_found(scope: Scope) -> None:
    """Raise the strict-mode errors the middleware found in this request's body, if any."""
    errors = scope.get(SCOPE_KEY)
    if errors:
        raise RequestValidationError(errors)


async def read_body(receive: Receive) -> bytes:
    """The whole request body from ``receive`` (what the app would read), up to a disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(raw: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read (``raw``) once, then the connection's own
    messages (a disconnect): middleware that must read a body before routing gives it back this way."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


class StrictJson:
    """ASGI middleware: finds what in a JSON body only lax coercion would accept (see the module)."""

    def __init__(self, app: ASGIApp, app_routes: Callable[[], Any]) -> None:
        self.app = app
        self.app_routes = app_routes
        self._routes: list[tuple[APIRoute, TypeAdapter[Any]]] | None = None
        self._static: dict[tuple[Any, Any], TypeAdapter[Any]] = {}

    def _match(self, scope: Scope) -> TypeAdapter[Any] | None:
        """The body adapter of the route ``scope`` goes to; remembered per (method, path) for routes
        without path parameters, a bounded set (matching every route cost more than a decision)."""
        if self._routes is None:
            self._routes = _json_routes(self.app_routes())
        key = (scope.get("method"), scope.get("path"))
        hit = self._static.get(key)
        if hit is not None:
            return hit
        for route, adapter in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                if not route.param_convertors and len(self._static) < 1024:
                    self._static[key] = adapter
                return adapter
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH") \
                or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        adapter = self._match(scope)
        if adapter is None:
            await self.app(scope, receive, send)
            return
        try:
            raw = await read_body(receive)
        except HTTPException as exc:  # the body limit, raised while counting
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            await problem(exc.status_code, str(detail.get("code", "too_large")),
                          str(detail.get("message", "request body too large")),
                          **{k: v for k, v in detail.items() if k not in ("code", "message")},
                          )(scope, receive, send)
            return
        errors, value = _strict(adapter, raw)
        if errors:
            scope[SCOPE_KEY] = errors
        elif value is not None:
            scope[VALUE_KEY] = value
        await self.app(scope, replaying(raw, receive), send)


def install(app: Any) -> None:
    """Add the strict JSON check (call before :func:`callvet.api.problems.install`, so it runs after
    the 415 check and inside the body limit)."""
    app.add_middleware(StrictJson, app_routes=lambda: app.routes)
