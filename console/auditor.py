"""The auditor's page: the audit trail, newest first, filtered by action, target type or target, paged
by id. Read-only: this module registers no state-changing route."""

from __future__ import annotations

from callvet.console.base import console_router, ctx_of, guard, render
from callvet.core import audit
from callvet.core.auth import Role
from fastapi import Query, Request
from fastapi.responses import Response

__all__ = ["router"]

router = console_router()
PAGE = 100


@router.get("/audit")
def audit_page(
    request: Request,
    action: str = Query("", max_length=100),
    target_type: str = Query("", max_length=64),
    target_id: str = Query("", max_length=100),
    before_id: int | None = Query(None, ge=1, le=2**62),
) -> Response:
    session = guard(request, Role.AUDITOR)
    entries = audit.query(ctx_of(request).db, action=action.strip() or None,
                          target_type=target_type.strip() or None, target_id=target_id.strip() or None,
                          limit=PAGE, before_id=before_id)
    older = entries[-1]["id"] if len(entries) == PAGE else None
    return render(request, "audit.html", session, entries=entries, older=older, title_key="nav.audit",
                  filters={"action": action, "target_type": target_type, "target_id": target_id})
