"""The web console (issue 14): server-rendered pages for analysts, approvers, risk officers and
auditors, served by the API app itself under ``/console`` (same origin, no CORS).

:func:`mount` is all the API app calls. People sign in with their own accounts (``callvet users create``);
pages call the parts' services in-process with the person as the actor. See docs/console.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["mount"]

#: Headers on every console response: no framing, no sniffing, scripts and styles from this origin only
#: (the pages have no inline script), nothing cached (pages show personal and case data).
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
     b"data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src "
     b"'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class _Headers:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to responses under ``/console``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/console"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in SECURITY_HEADERS if k not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount(app: Any) -> None:
    """Add the console's pages, static files, its two exception types and its response headers."""
    from callvet.console import analyst, approver, auditor, auth_pages, charts, editors, findings, reuse, risk
    from callvet.console.base import HERE, ConsoleDenied, ConsoleRedirect, render, see_other
    from fastapi import Request
    from fastapi.responses import Response
    from starlette.staticfiles import StaticFiles

    for module in (auth_pages, analyst, approver, findings, risk, editors, auditor, charts, reuse):
        app.include_router(module.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.mount("/console/build", editors.BuildFiles(), name="console-build")

    @app.get("/console", include_in_schema=False)
    def console_root() -> Response:
        return see_other("/console/")

    async def redirect(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRedirect)
        return see_other(exc.url)

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleDenied)
        return render(request, "denied.html", exc.session, 403, reason=exc.reason, title_key="denied.title")

    app.add_exception_handler(ConsoleRedirect, redirect)
    app.add_exception_handler(ConsoleDenied, denied)
    app.add_middleware(_Headers)
