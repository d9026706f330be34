"""FastAPI dependencies: the context, role checks and the bounded parameter types routes share.

REST routes take the key only as ``Authorization: Bearer KEY``: a key in a URL ends up in access logs,
proxies and browser history. Only the streaming WebSockets also take ``?token=`` (a robot's media stream
cannot always set headers; see :mod:`callvet.api.streamauth`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from callvet.api import strictjson
from callvet.api.context import AppContext
from callvet.core.auth import MISS, Principal, Role, authenticate, authenticate_cached
from fastapi import HTTPException, Path, Query, Request, Security, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

__all__ = [
    "MAX_ID",
    "Closed",
    "IntId",
    "Offset",
    "Version",
    "bearer",
    "get_ctx",
    "principal_from_token",
    "require",
    "token_from",
    "ws_token_from",
]

#: Largest integer id or offset the API takes: beyond it SQLite (64-bit) and PostgreSQL BIGINT fail.
MAX_ID = 2**62

IntId = Annotated[int, Path(ge=1, le=MAX_ID, description="numeric id")]
Version = Annotated[int, Path(ge=1, le=1_000_000, description="version number")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip")]

#: OpenAPI ``bearer`` security scheme: ``Authorization: Bearer cv_<key_id>_<secret>``.
bearer = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="An API key from `callvet keys create` (shown once).")


class Closed(BaseModel):
    """A request body whose contract is closed: unknown fields are refused (422), not stored."""

    model_config = ConfigDict(extra="forbid")


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _header_token(conn: Request | WebSocket) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def token_from(conn: Request | WebSocket) -> str | None:
    """The key of a REST request: the bearer header only (a ``?token=`` is ignored)."""
    return _header_token(conn)


def ws_token_from(ws: WebSocket) -> str | None:
    """The key of a WebSocket: the bearer header, else ``?token=``."""
    return _header_token(ws) or ws.query_params.get("token") or None


def principal_from_token(ctx: AppContext, token: str | None) -> Principal | None:
    if not token or len(token) > 200:
        return None
    return authenticate(ctx.db, token)


async def _principal(ctx: AppContext, token: str | None) -> Principal | None:
    """As :func:`principal_from_token`, on the event loop: a cached key costs no thread hop (issue 17's
    hot path), a miss reads the database in a worker thread."""
    if not token or len(token) > 200:
        return None
    found = authenticate_cached(ctx.db, token)
    if found is MISS:
        return await run_in_threadpool(authenticate, ctx.db, token)
    return found  # type: ignore[return-value]


def require(*roles: Role) -> Callable[..., Any]:
    """Dependency: a valid key whose role is one of ``roles`` (admin always passes)."""

    async def dependency(
        request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        ctx = get_ctx(request)
        principal = await _principal(ctx, token_from(request))
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail={"code": "unauthenticated",
                        "message": "missing or invalid API key (send Authorization: Bearer KEY)"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.has(*roles):
            _forbid(principal, roles)
        strictjson.raise_found(request.scope)  # a body's wrong JSON types, now that the caller may know
        return principal

    dependency.roles = (Role.ADMIN, *roles)  # type: ignore[attr-defined]
    return dependency


def _forbid(principal: Principal, roles: tuple[Role, ...]) -> None:
    raise HTTPException(
        status_code=403,
        detail={
            "code": "forbidden",
            "message": f"role {principal.role.value!r} may not do this; needs one of "
            + ", ".join(r.value for r in (Role.ADMIN, *roles)),
        },
    )
