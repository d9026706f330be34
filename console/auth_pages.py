"""Sign in, sign out, password change, the landing page and the language switch."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from callvet.console.base import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    console_router,
    cookie_name,
    current_session,
    guard,
    guard_post,
    is_https,
    lang_of,
    login_page,
    render,
    see_other,
    store,
)
from callvet.console.i18n import LANGS, translator
from callvet.console.users import SignInError
from callvet.core.errors import CallvetError
from fastapi import Form, Request
from fastapi.responses import Response

__all__ = ["router"]

router = console_router()


@router.get("/")
def home(request: Request) -> Response:
    session = guard(request)
    return render(request, "home.html", session)


@router.get("/login")
def sign_in_page(request: Request) -> Response:
    if current_session(request) is not None:
        return see_other("/console/")
    return login_page(request)


@router.post("/login")
def login(request: Request, username: str = Form("", max_length=200),
          password: str = Form("", max_length=4096), csrf: str = Form("", max_length=200)) -> Response:
    """Double-submit CSRF (cookie == field) on the sign-in form; then the user store decides."""
    t = translator(lang_of(request))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not csrf or not hmac.compare_digest(cookie, csrf):
        return login_page(request, 403, t("auth.csrf"))
    ip = request.client.host if request.client else ""
    try:
        token, session = store(request).sign_in(username.strip().lower(), password, ip=ip)
    except SignInError:
        return login_page(request, 401, t("auth.failed"))
    response = see_other("/console/password" if session.must_change_password else "/console/")
    response.set_cookie(cookie_name(request), token, httponly=True, samesite="strict",
                        secure=is_https(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await guard_post(request, allow_password_change=True)
    store(request).sign_out(session)
    response = see_other("/console/login")
    response.delete_cookie(cookie_name(request), path="/")
    return response


@router.get("/password")
def password_page(request: Request) -> Response:
    session = guard(request, allow_password_change=True)
    return render(request, "password.html", session, title_key="auth.change_title")


@router.post("/password")
async def change_password(request: Request) -> Response:
    session = await guard_post(request, allow_password_change=True)
    form = await request.form()
    current, new, repeat = (str(form.get(k) or "") for k in ("current", "new", "repeat"))
    t = translator(lang_of(request))
    if new != repeat:
        return render(request, "password.html", session, 422, error=t("auth.mismatch"))
    try:
        store(request).change_password(session, current, new)
    except CallvetError as exc:
        return render(request, "password.html", session, 422, error=exc.message)
    return see_other("/console/")


@router.get("/lang")
def switch_language(request: Request, to: str = "zh-CN", back: str = "/console/") -> Response:
    """A UI preference only (no state on the server), so a GET; ``back`` must stay in the console."""
    parts = urlsplit(back)
    target = back if not parts.scheme and not parts.netloc and back.startswith("/console") else "/console/"
    response = see_other(target)
    if to in LANGS:
        response.set_cookie(LANG_COOKIE, to, samesite="strict", secure=is_https(request), path="/console",
                            max_age=365 * 86400)
    return response
