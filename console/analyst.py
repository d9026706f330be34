"""Analyst pages: the blacklist (identities, enrol a sample by upload or from a past call, delete with a
reason), the alarm queue with alarms arriving live, and a call's timeline.

Every action calls the blacklist and call services the REST routes use (``callvet.api.routes``), in this
process, with the signed-in person as the actor; enrolment keeps the REST rules (spoof-flagged recordings
are refused unless overridden with a reason, only prints and SHA-256s are stored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callvet.api.context import AppContext
from callvet.api.routes.blacklist import blacklist_service, spoof_detector
from callvet.api.routes.calls import call_server, callprint_store
from callvet.console.base import (
    ConsoleRoute,
    allowed,
    cookie_name,
    ctx_of,
    current_session,
    guard,
    guard_post,
    lang_of,
    render,
    see_other,
    store,
)
from callvet.console.i18n import translator
from callvet.console.live import OBSERVER_NAME, AlarmHub, AlarmObserver, sse_stream
from callvet.core.auth import Role
from callvet.core.errors import CallvetError, InvalidInput
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

__all__ = ["alarm_hub", "router"]


def alarm_hub(ctx: AppContext) -> AlarmHub:
    return ctx.service("console_alarms", lambda c: AlarmHub())


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Subscribe to every call the app's call server runs (an observer given to the composition root
    before the call server is built)."""
    ctx = app.state.ctx
    hub = alarm_hub(ctx)
    ctx.add_call_observer(OBSERVER_NAME, lambda _info: AlarmObserver(hub))
    yield


router = APIRouter(prefix="/console", include_in_schema=False, lifespan=_lifespan, route_class=ConsoleRoute)
ANALYST = (Role.ANALYST,)


def _identities_page(request: Request, session: Any, status: int = 200, **extra: Any) -> Response:
    identities = blacklist_service(ctx_of(request)).list_identities()
    return render(request, "blacklist.html", session, status, identities=identities,
                  title_key="nav.blacklist", **extra)


@router.get("/blacklist")
def blacklist_page(request: Request) -> Response:
    return _identities_page(request, guard(request, *ANALYST))


@router.post("/blacklist/identities")
async def create_identity(request: Request) -> Response:
    session = await guard_post(request, *ANALYST)
    form = await request.form()
    label, notes = str(form.get("label") or "").strip(), str(form.get("notes") or "").strip()
    try:
        if not 1 <= len(label) <= 200 or len(notes) > 10_000:
            raise InvalidInput("label: 1-200 characters; notes: at most 10000", code="invalid_identity")
        ident = await run_in_threadpool(blacklist_service(ctx_of(request)).create_identity, label, notes,
                                        session.person.actor)
    except CallvetError as exc:
        return await run_in_threadpool(_identities_page, request, session, 422, error=exc.message)
    return see_other(f"/console/blacklist/{int(ident['id'])}")


def _identity_page(request: Request, session: Any, identity_id: int, status: int = 200,
                   **extra: Any) -> Response:
    ident = blacklist_service(ctx_of(request)).get_identity(identity_id)
    return render(request, "identity.html", session, status, ident=ident, title_key="nav.blacklist", **extra)


@router.get("/blacklist/{identity_id}")
def identity_page(request: Request, identity_id: int, done: str = "") -> Response:
    session = guard(request, *ANALYST)
    t = translator(lang_of(request))
    try:
        return _identity_page(request, session, identity_id, notice=t(f"done.{done}") if done else "")
    except CallvetError as exc:
        return _identities_page(request, session, 404, error=exc.message)


def _enrol(ctx: AppContext, identity_id: int, form: Any, actor: str) -> dict[str, Any]:
    """Upload (multipart ``audio``) or a past call's stored print (``call_id``), as REST does."""
    call_id = str(form.get("call_id") or "").strip()
    bl = blacklist_service(ctx)
    if call_id:
        if len(call_id) > 100:
            raise InvalidInput("call id: at most 100 characters", code="invalid_call_id")
        vp = callprint_store(ctx).voiceprint(call_id)
        return bl.add_print(identity_id, vp, actor, call_id=call_id)  # type: ignore[no-any-return]
    audio = form.get("audio")
    if not isinstance(audio, UploadFile) or not audio.filename:
        raise InvalidInput("choose a recording to upload, or give a call id", code="audio_required")
    limit = ctx.settings.max_upload_bytes
    data = audio.file.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"the recording exceeds the upload limit of {limit} bytes", code="too_large")
    override = form.get("override_spoof") == "on"
    return bl.add_sample(identity_id, data, actor, spoof=lambda: spoof_detector(ctx),  # type: ignore[no-any-return]
                         override_spoof=override, override_reason=str(form.get("override_reason") or ""))


@router.post("/blacklist/{identity_id}/samples")
async def add_sample(request: Request, identity_id: int) -> Response:
    session = await guard_post(request, *ANALYST)
    form = await request.form()
    ctx = ctx_of(request)
    try:
        sample = await run_in_threadpool(_enrol, ctx, identity_id, form, session.person.actor)
    except CallvetError as exc:
        return await run_in_threadpool(_identity_page, request, session, identity_id, 422, error=exc.message,
                                       error_code=exc.code)
    return await run_in_threadpool(_identity_page, request, session, identity_id, 201, sample=sample,
                                   notice=translator(lang_of(request))("done.enrolled"))


@router.post("/blacklist/{identity_id}/delete")
async def delete_identity(request: Request, identity_id: int) -> Response:
    session = await guard_post(request, *ANALYST)
    reason = str((await request.form()).get("reason") or "").strip()
    try:
        if not 1 <= len(reason) <= 2000:
            raise InvalidInput("a reason (1-2000 characters) is required to delete", code="reason_required")
        await run_in_threadpool(blacklist_service(ctx_of(request)).delete_identity, identity_id,
                                session.person.actor, reason)
    except CallvetError as exc:
        return await run_in_threadpool(_identity_page, request, session, identity_id, 422, error=exc.message)
    return see_other("/console/blacklist?done=deleted")


@router.get("/alarms")
def alarms_page(request: Request) -> Response:
    session = guard(request, *ANALYST)
    calls = call_server(ctx_of(request)).store.list(alarm=True, limit=50)
    return render(request, "alarms.html", session, calls=calls, title_key="nav.alarms")


@router.get("/alarms/stream")
async def alarm_stream(request: Request) -> Response:
    """Server-Sent Events for the alarm page; 401/403 as plain text (EventSource cannot follow a
    redirect to a sign-in page usefully)."""
    session = await run_in_threadpool(current_session, request)
    if session is None:
        return PlainTextResponse("sign in first", status_code=401)
    if session.must_change_password or not allowed(session.person.role, ANALYST):
        return PlainTextResponse("forbidden", status_code=403)
    users = store(request)
    token = request.cookies.get(cookie_name(request))

    async def still_signed_in() -> bool:
        return await run_in_threadpool(users.session, token, touch=False) is not None

    return StreamingResponse(sse_stream(alarm_hub(ctx_of(request)), still_signed_in),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/calls/{call_id}")
def call_page(request: Request, call_id: str) -> Response:
    session = guard(request, *ANALYST)
    try:
        call = call_server(ctx_of(request)).store.get(call_id[:100])
    except CallvetError as exc:
        return render(request, "call.html", session, 404, call=None, error=exc.message)
    verdicts = [e for e in call.get("events") or [] if e.get("kind") == "verdict"]
    return render(request, "call.html", session, call=call, verdicts=verdicts, title_key="nav.alarms")

