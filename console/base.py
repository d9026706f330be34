"""What every console page shares: templates, sessions from the cookie, role guards, CSRF, headers.

Sessions are server-side (:mod:`callvet.console.users`); the browser holds only a random token in an
HttpOnly, SameSite=Strict cookie (``Secure`` and the ``__Host-`` prefix when served over https). Every
state-changing request (POST) must carry the session's CSRF token (synchronizer pattern) in the form
field ``csrf`` or the ``X-CSRF-Token`` header, and, when the browser sends one, an ``Origin`` equal to the
console's own; the sign-in form, which has no session yet, uses a double-submit cookie instead. A request
that fails these checks gets a 403 page and changes nothing.

Pages call the same services as the REST routes (in-process, never HTTP to itself) with the signed-in
:class:`~callvet.console.users.Person` as the principal, so audit rows and maker-checker see the person.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from callvet.api.context import AppContext
from callvet.console.i18n import LANGS, translator
from callvet.console.users import Policy, Session, UserStore
from callvet.core.auth import Role
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "NAV",
    "ConsoleDenied",
    "ConsoleRedirect",
    "check_csrf",
    "console_router",
    "cookie_name",
    "ctx_of",
    "guard",
    "guard_post",
    "login_page",
    "render",
    "store",
]

HERE = Path(__file__).resolve().parent
LOGIN_CSRF_COOKIE = "cv_login_csrf"
LANG_COOKIE = "cv_lang"

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def _safe_json(text: str) -> Markup:
    """JSON text for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped as
    ``\\u`` sequences so no value can close the script element."""
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


_env.filters["safe_json"] = _safe_json

#: Pages in the navigation bar: (path, message key, roles that may open it; admin opens all).
NAV: list[tuple[str, str, tuple[Role, ...]]] = [
    ("/console/blacklist", "nav.blacklist", (Role.ANALYST,)),
    ("/console/alarms", "nav.alarms", (Role.ANALYST,)),
    ("/console/reuse", "nav.reuse", (Role.ANALYST,)),
    ("/console/tasks", "nav.tasks", (Role.APPROVER,)),
    ("/console/findings", "nav.findings", (Role.APPROVER, Role.RISK_OFFICER)),
    ("/console/policies", "nav.policies", (Role.RISK_OFFICER, Role.APPROVER)),
    ("/console/processes", "nav.processes", (Role.RISK_OFFICER,)),
    ("/console/audit", "nav.audit", (Role.AUDITOR,)),
    ("/console/charts", "nav.charts", (Role.RISK_OFFICER, Role.AUDITOR)),
]


class ConsoleRoute(APIRoute):
    """A route that closes the request's parsed form (and its spooled upload files) once the page is
    made: console handlers read ``await request.form()`` themselves, which FastAPI does not close."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def closing(request: Request) -> Response:
            try:
                return await handler(request)
            finally:
                await request.close()

        return closing


def console_router() -> APIRouter:
    """The router every console module uses: under ``/console``, not in the OpenAPI description."""
    return APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


class ConsoleRedirect(Exception):
    """Raised by a guard to send the browser elsewhere (sign-in, password change)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class ConsoleDenied(Exception):
    """The signed-in person may not open this page, or the request failed the CSRF check."""

    def __init__(self, reason: str, session: Session | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session = session


def ctx_of(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def store(request: Request) -> UserStore:
    """The process's user store, with the lock-out and session policy from the settings."""
    ctx = ctx_of(request)

    def build(c: AppContext) -> UserStore:
        s = c.settings
        return UserStore(c.db, Policy(max_failures=s.console_max_failures,
                                      lockout=timedelta(minutes=s.console_lockout_minutes),
                                      idle=timedelta(minutes=s.console_idle_minutes),
                                      lifetime=timedelta(hours=s.console_session_hours)))

    return ctx.service("console_users", build)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    """``__Host-`` cookies must be Secure, so the prefix is used only over https."""
    return "__Host-cv_session" if is_https(request) else "cv_session"


def current_session(request: Request) -> Session | None:
    return store(request).session(request.cookies.get(cookie_name(request)))


def lang_of(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in LANGS else LANGS[0]


def allowed(role: Role, roles: tuple[Role, ...]) -> bool:
    return role is Role.ADMIN or role in roles


def guard(request: Request, *roles: Role, allow_password_change: bool = False) -> Session:
    """The session of a person whose role is one of ``roles``; else a redirect to sign in or a 403."""
    session = current_session(request)
    if session is None:
        raise ConsoleRedirect("/console/login")
    if session.must_change_password and not allow_password_change:
        raise ConsoleRedirect("/console/password")
    if roles and not allowed(session.person.role, roles):
        raise ConsoleDenied(f"role {session.person.role.value} may not open {request.url.path}", session)
    return session


def _same_origin(request: Request) -> bool:
    """An ``Origin`` header, when the browser sends one, must be the console's own scheme and host."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def check_csrf(request: Request, session: Session) -> None:
    """Refuse (403) a state change without the session's CSRF token or from another origin."""
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if not _same_origin(request) or not sent or not hmac.compare_digest(sent, session.csrf_token):
        raise ConsoleDenied("CSRF check failed: the form is stale or came from another site", session)


async def guard_post(request: Request, *roles: Role, allow_password_change: bool = False) -> Session:
    """:func:`guard` plus the CSRF check: every console POST goes through here."""
    session = guard(request, *roles, allow_password_change=allow_password_change)
    await check_csrf(request, session)
    return session


def render(request: Request, template: str, session: Session | None, status: int = 200,
           **values: Any) -> HTMLResponse:
    lang = lang_of(request)
    nav = [] if session is None or session.must_change_password else \
        [(p, k) for p, k, roles in NAV if allowed(session.person.role, roles)]
    html = _env.get_template(template).render(
        t=translator(lang), lang=lang, session=session, nav=nav, path=request.url.path,
        csrf=session.csrf_token if session else "", **values)
    return HTMLResponse(html, status_code=status)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def login_page(request: Request, status: int = 200, error: str = "") -> HTMLResponse:
    """The sign-in form with its double-submit token (the cookie's if it has one, else a new one)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    page = render(request, "login.html", None, status, login_csrf=token, error=error, title_key="auth.title")
    page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=is_https(request),
                    path="/console")
    return page
