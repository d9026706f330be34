"""Supervision findings to rectify: what the supervision rules found wrong in completed human approvals
(``workflow/supervise.py``), open ones first by due date (rectify within 3 days), each with a form to
record what was done.

Approvers rectify on the console as the issue asks (they fix the cases they approved) and so do risk
officers (as over REST); the note is required and the rectification is audited under the person.
"""

from __future__ import annotations

from typing import Any

from callvet.api.routes.workflow import runtime
from callvet.console.base import console_router, ctx_of, guard, guard_post, render, see_other
from callvet.core.auth import Role
from callvet.core.errors import CallvetError
from fastapi import Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

__all__ = ["router"]

router = console_router()
RECTIFIERS = (Role.APPROVER, Role.RISK_OFFICER)


def _page(request: Request, session: Any, status_filter: str, code: int = 200, **extra: Any) -> Response:
    sup = runtime(ctx_of(request)).supervisor
    rows = sup.findings(status=status_filter or None, limit=500)
    return render(request, "findings.html", session, code, findings=rows, status_filter=status_filter,
                  metrics=sup.metrics(), title_key="nav.findings", **extra)


@router.get("/findings")
def findings_page(request: Request, status: str = Query("open", pattern="^(open|rectified|)$"),
                  done: int | None = None) -> Response:
    session = guard(request, *RECTIFIERS)
    return _page(request, session, status, notice=f"#{done} ✓" if done else "")


@router.post("/findings/{finding_id}/rectify")
async def rectify(request: Request, finding_id: int) -> Response:
    session = await guard_post(request, *RECTIFIERS)
    note = str((await request.form()).get("note") or "").strip()[:2000]
    sup = runtime(ctx_of(request)).supervisor
    try:
        await run_in_threadpool(sup.rectify, finding_id, actor=session.person.actor, note=note)
    except CallvetError as exc:
        code = 404 if exc.code == "not_found" else 409 if exc.code == "finding_closed" else 422
        return await run_in_threadpool(_page, request, session, "open", code, error=exc.message)
    return see_other(f"/console/findings?done={finding_id}")
