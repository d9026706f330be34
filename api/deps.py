"""FastAPI dependencies: the context and role checks (``Authorization: Bearer KEY`` or ``?token=``)."""

from __future__ import annotations

from collections.abc import Callable

from callvet.api.context import AppContext
from callvet.core.auth import Principal, Role, authenticate
from fastapi import HTTPException, Request, WebSocket

__all__ = ["get_ctx", "principal_from_token", "require", "token_from"]


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def token_from(conn: Request | WebSocket) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return conn.query_params.get("token")


def principal_from_token(ctx: AppContext, token: str | None) -> Principal | None:
    if not token:
        return None
    return authenticate(ctx.db, token)


def require(*roles: Role) -> Callable[[Request], Principal]:
    """Dependency: a valid key whose role is one of ``roles`` (admin always passes)."""

    def dependency(request: Request) -> Principal:
        ctx = get_ctx(request)
        principal = principal_from_token(ctx, token_from(request))
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail={"code": "unauthenticated", "message": "missing or invalid API key"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.has(*roles):
            raise HTTPException(
                status_code=403,
                detail={
                    "code": "forbidden",
                    "message": f"role {principal.role.value!r} may not do this; needs one of "
                    + ", ".join(r.value for r in roles),
                },
            )
        return principal

    return dependency
