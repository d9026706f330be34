"""Approver pages: the task inbox (highest priority first, with deadlines), a task with its case's
evidence and its form, and completing it through the workflow runtime the REST API uses.

The form is drawn from the task's form definition (``workflow/processes/forms.json``) and the runtime
validates the completion against the same definition, naming the field that is wrong.
"""

from __future__ import annotations

from typing import Any

from callvet.api.routes.cases import task_context
from callvet.api.routes.workflow import runtime
from callvet.console.base import (
    allowed,
    console_router,
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
from callvet.console.live import poll_stream
from callvet.core.auth import Role
from callvet.core.errors import CallvetError, InvalidInput
from fastapi import Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

__all__ = ["completion_data", "router"]

router = console_router()
APPROVER = (Role.APPROVER,)


def _role_filter(role: Role) -> str | None:
    return None if role is Role.ADMIN else role.value


@router.get("/tasks")
def tasks_page(request: Request, done: str = "") -> Response:
    session = guard(request, *APPROVER)
    tasks = runtime(ctx_of(request)).board.list_open(role=_role_filter(session.person.role), limit=200)
    t = translator(lang_of(request))
    return render(request, "tasks.html", session, tasks=tasks, title_key="nav.tasks",
                  notice=t("done.completed", task=done[:64]) if done else "")


def _task_page(request: Request, session: Any, task_id: str, status: int = 200, **extra: Any) -> Response:
    ctx = ctx_of(request)
    task = runtime(ctx).board.get(task_id)
    context = task_context(ctx, task)
    return render(request, "task.html", session, status, task=task, form=context.get("form"),
                  evidence=context.get("evidence") or {}, title_key="nav.tasks", **extra)


TASK_FIELDS = ("task_id", "instance_id", "name", "priority", "amount", "risk_score", "due_at", "assignee")


@router.get("/tasks/stream")
async def task_stream(request: Request) -> Response:
    """Server-Sent Events: the open tasks of the person's role whenever they change (polled from the
    database every few seconds, since tasks are made by whichever process runs the workflow)."""
    session = await run_in_threadpool(current_session, request)
    if session is None:
        return PlainTextResponse("sign in first", status_code=401)
    if session.must_change_password or not allowed(session.person.role, APPROVER):
        return PlainTextResponse("forbidden", status_code=403)
    ctx, users, token = ctx_of(request), store(request), request.cookies.get(cookie_name(request))
    role = _role_filter(session.person.role)

    async def fetch() -> dict[str, Any]:
        tasks = await run_in_threadpool(runtime(ctx).board.list_open, role=role, limit=200)
        return {"tasks": [{k: t.get(k) for k in TASK_FIELDS} for t in tasks]}

    async def still_signed_in() -> bool:
        return await run_in_threadpool(users.session, token, touch=False) is not None

    return StreamingResponse(poll_stream(fetch, still_signed_in), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/tasks/{task_id}")
def task_page(request: Request, task_id: str) -> Response:
    session = guard(request, *APPROVER)
    try:
        return _task_page(request, session, task_id[:64])
    except CallvetError as exc:
        return render(request, "tasks.html", session, 404, tasks=[], error=exc.message, title_key="nav.tasks")


def completion_data(form: dict[str, Any] | None, values: Any) -> dict[str, Any]:
    """The completion data from posted form values, typed by the task's form definition (numbers as
    numbers, lists from comma-separated text, empty optional fields left out)."""
    if not form:
        return {}
    out: dict[str, Any] = {}
    for name, spec in (form.get("fields") or {}).items():
        raw = str(values.get(name) or "").strip()
        if raw == "":
            continue
        kind = spec.get("type")
        if kind == "number":
            try:
                out[name] = float(raw)
            except ValueError:
                raise InvalidInput(f"{name}: a number is needed", code="invalid_field", field=name) from None
        elif kind == "integer":
            try:
                out[name] = int(raw)
            except ValueError:
                raise InvalidInput(f"{name}: a whole number is needed", code="invalid_field",
                                   field=name) from None
        elif kind == "array":
            out[name] = [p.strip() for p in raw.split(",") if p.strip()]
        elif kind == "boolean":
            out[name] = raw in ("on", "true", "1", "yes")
        else:
            out[name] = raw
    return out


@router.post("/tasks/{task_id}/complete")
async def complete_task(request: Request, task_id: str) -> Response:
    session = await guard_post(request, *APPROVER)
    values = await request.form()
    ctx = ctx_of(request)
    task_id = task_id[:64]
    p = session.person

    def complete() -> dict[str, Any]:
        rt = runtime(ctx)
        context = task_context(ctx, rt.board.get(task_id))
        data = completion_data(context.get("form"), values)
        return rt.complete_task(task_id, data, actor=p.actor, role=_role_filter(p.role),
                                reviewer_id=p.username)

    try:
        await run_in_threadpool(complete)
    except CallvetError as exc:
        return await run_in_threadpool(_task_page, request, session, task_id, 422, error=exc.message,
                                       bad_field=exc.details.get("field"))
    return see_other(f"/console/tasks?done={task_id}")
