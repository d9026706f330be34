"""One error model for the whole API: RFC 9457 problem details (``application/problem+json``).

Every error leaves the service in the same shape, whoever raised it: a domain error
(:class:`~callvet.core.errors.CallvetError`), FastAPI's request validation (422), Starlette's routing
(404, 405) or the body limit (413)::

    {"type": "urn:callvet:problem:invalid_field", "title": "Unprocessable Content", "status": 422,
     "detail": "application.applicant.mobile: ...", "code": "invalid_field",
     "errors": [{"field": "application.applicant.mobile", "in": "body", "type": "...", "message": "..."}]}

``code`` is the stable, machine-readable reason (the same codes as before); ``detail`` is for people.
Validation problems list each bad field by its path and what is wrong with it, but never the value sent:
a misfiled application must not come back with the applicant's name, ID number and mobile in it (nor
land in a proxy's or client's log that way). Domain errors keep their extra members (``field``,
``element``, ``max_upload_bytes`` ...), which name things, not submitted values.

The module also fixes two routing details a client sees: a 405 lists in ``Allow`` the methods of every
route on that path (Starlette lists only the first route's), and a body in a media type the operation
does not take gets 415 instead of a misleading 422.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from callvet.core.errors import CallvetError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "MediaTypeGuard",
    "Problem",
    "api_routes",
    "install",
    "problem",
    "status_for",
]

log = logging.getLogger("callvet.api")

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[CallvetError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (Unavailable, 503),
]

#: Domain codes whose HTTP status is not their class's. ``wrong_question``: the answer is well formed but
#: the interview has moved on to another question, a conflict with its state (as ``concurrent_answer``).
_CODE_STATUS = {"unsupported_media_type": 415, "too_large": 413, "wrong_question": 409}

#: Codes for HTTP statuses raised without one (Starlette's routing, FastAPI's own checks).
_DEFAULT_CODE = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
    415: "unsupported_media_type", 422: "invalid_input", 500: "internal_error", 503: "unavailable",
}

#: Members a problem may never carry over from an error's details (submitted data).
_NEVER = frozenset({"input", "value", "values", "body", "ctx", "url"})


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. application.applicant.mobile")
    location: str = Field(alias="in", description="body, query, path, header or cookie")
    type: str = Field(description="pydantic error type, e.g. missing, string_too_long")
    message: str

    model_config = ConfigDict(populate_by_name=True)


class Problem(BaseModel):
    """RFC 9457 problem details; further members (``field``, ``max_upload_bytes`` ...) may follow."""

    type: str = Field(description="urn:callvet:problem:<code>")
    title: str
    status: int
    detail: str
    code: str = Field(description="stable machine-readable reason")
    errors: list[FieldError] | None = Field(default=None, description="every bad field (validation)")

    model_config = ConfigDict(extra="allow")


def status_for(exc: CallvetError) -> int:
    if exc.code in _CODE_STATUS:
        return _CODE_STATUS[exc.code]
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, code: str, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"urn:callvet:problem:{code}", "title": _title(status),
                            "status": status, "detail": detail, "code": code}
    body.update({k: v for k, v in extra.items() if k not in body and k not in _NEVER})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as paths and reasons, dropping ``input`` and ``ctx`` (the values)."""
    out = []
    for e in list(errors)[:50]:
        loc = [str(p) for p in e.get("loc", ())]
        where = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
        path = loc[1:] if loc and loc[0] == where else loc
        out.append({"field": ".".join(path) or where, "in": where, "type": str(e.get("type", "invalid")),
                    "message": str(e.get("msg", "invalid"))[:300]})
    return out


def _domain_field_errors(errors: Any, code: str) -> list[dict[str, str]]:
    """A domain error's ``errors`` in :class:`FieldError`'s shape (``field``, ``in``, ``type``,
    ``message``), whatever the raiser put there: the documented model holds for every problem."""
    out = []
    for e in list(errors if isinstance(errors, list | tuple) else [errors])[:50]:
        if isinstance(e, dict):
            message = str(e.get("message") or e.get("msg") or code)[:300]
            out.append({"field": str(e.get("field") or e.get("loc") or "body"),
                        "in": str(e.get("in", "body")), "type": str(e.get("type") or code),
                        "message": message})
        else:
            out.append({"field": "body", "in": "body", "type": code, "message": str(e)[:300]})
    return out


def api_routes(routes: Sequence[Any]) -> list[Any]:
    """Every route, with FastAPI's included routers flattened (they keep their own route lists)."""
    out: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out.extend(api_routes(inner.routes))
        else:
            out.append(route)
    return out


def _allowed_methods(app: Any, scope: Scope) -> list[str]:
    methods: set[str] = set()
    for route in api_routes(getattr(app, "routes", ())):
        route_methods = getattr(route, "methods", None)
        if not route_methods:
            continue
        match, _ = route.matches({**scope, "method": next(iter(route_methods))})
        if match is Match.FULL:
            methods |= set(route_methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def install(app: FastAPI) -> None:
    """Register the problem handlers and the 415 check on ``app`` (call after the routes are added)."""

    @app.exception_handler(CallvetError)
    async def _domain(_request: Request, exc: CallvetError) -> JSONResponse:
        extra = {k: v for k, v in exc.details.items() if k not in ("code", "message", "detail")}
        if "errors" in extra:
            extra["errors"] = _domain_field_errors(extra["errors"], exc.code)
        return problem(status_for(exc), exc.code, exc.message, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return problem(422, "invalid_input", f"{first['field']}: {first['message']}{more}",
                       errors=errors, field=first["field"])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        extra: dict[str, Any] = {}
        if isinstance(exc.detail, dict):
            code = str(exc.detail.get("code") or _DEFAULT_CODE.get(exc.status_code, "error"))
            detail = str(exc.detail.get("message") or _title(exc.status_code))
            extra = {k: v for k, v in exc.detail.items() if k not in ("code", "message")}
        else:
            code = _DEFAULT_CODE.get(exc.status_code, "error")
            detail = str(exc.detail) if exc.detail else _title(exc.status_code)
        if exc.status_code == 405:
            allowed = _allowed_methods(request.app, request.scope)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; allowed: {headers.get('Allow', 'none')}"
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path[:200]}"
        return problem(exc.status_code, code, detail, headers=headers or None, **extra)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "internal_error", "internal server error; the incident is logged")

    app.add_middleware(MediaTypeGuard, app_routes=lambda: app.routes)


def _accepted_media(route: APIRoute) -> tuple[str, ...]:
    from fastapi import params

    assert route.body_field is not None
    declared = tuple((route.openapi_extra or {}).get("requestBody", {}).get("content", {}))
    if isinstance(route.body_field.field_info, params.Form):
        return ("multipart/form-data", "application/x-www-form-urlencoded", *declared)
    return ("application/json", *declared)


class MediaTypeGuard:
    """415 for a body in a media type its operation does not take, before the body is read."""

    def __init__(self, app: ASGIApp, app_routes: Any) -> None:
        self.app = app
        self.app_routes = app_routes
        self._routes: list[tuple[APIRoute, tuple[str, ...]]] | None = None
        self._static: dict[tuple[Any, Any], tuple[str, ...]] = {}

    def _bodied(self) -> list[tuple[APIRoute, tuple[str, ...]]]:
        if self._routes is None:
            self._routes = [(r, _accepted_media(r)) for r in api_routes(self.app_routes())
                            if isinstance(r, APIRoute) and r.body_field is not None]
        return self._routes

    def _accepted(self, scope: Scope) -> tuple[str, ...] | None:
        """The media types of the bodied route ``scope`` goes to (None: no such route), remembered per
        (method, path) for routes without path parameters -- a bounded set; matching every route per
        request cost a tenth of the strict JSON check (issue 17)."""
        key = (scope.get("method"), scope.get("path"))
        hit = self._static.get(key)
        if hit is not None:
            return hit
        for route, accepted in self._bodied():
            if route.matches(scope)[0] is Match.FULL:
                if not route.param_convertors and len(self._static) < 1024:
                    self._static[key] = accepted
                return accepted
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            ctype = ""
            for k, v in scope.get("headers", ()):
                if k == b"content-type":
                    ctype = v.decode("latin-1").split(";")[0].strip().lower()
            accepted = self._accepted(scope) if ctype else None
            if accepted is not None:
                json_like = ctype.endswith("+json") and "application/json" in accepted
                if ctype not in accepted and not json_like:
                    await problem(415, "unsupported_media_type",
                                  f"this operation takes {' or '.join(accepted)}, not {ctype[:100]}",
                                  )(scope, receive, send)
                    return
        await self.app(scope, receive, send)
