"""``GET /v1/audit``: the audit log, for auditors and admins."""

from __future__ import annotations

from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import MAX_ID, get_ctx, require
from callvet.api.schemas import AuditList
from callvet.core import audit
from callvet.core.auth import Principal, Role
from fastapi import APIRouter, Depends, Query

__all__ = ["router"]

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", response_model=AuditList)
def list_audit(
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=MAX_ID, description="entries older than this id"),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.AUDITOR)),
) -> dict[str, Any]:
    entries = audit.query(
        ctx.db, target_type=target_type, target_id=target_id, action=action, limit=limit,
        before_id=before_id,
    )
    return {"entries": entries}
