"""``/v1/portrait``: customer portraits with explanations, campaign selection, tag-definition versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import Version, get_ctx, require
from callvet.api.schemas import TagDimensionList, TagVersionList
from callvet.core.auth import Principal, Role
from callvet.portrait import service
from callvet.portrait import store as tag_store
from fastapi import APIRouter, Body, Depends, Query
from fastapi import Path as PathParam

__all__ = ["bank_dir", "router"]

router = APIRouter(tags=["portrait"])

_SELECTORS = (Role.MARKETER,)
_VIEWERS = (Role.MARKETER, Role.ANALYST, Role.RISK_OFFICER, Role.AUDITOR)
_PROPOSERS = (Role.MARKETER, Role.RISK_OFFICER)


def bank_dir(ctx: AppContext) -> Path:
    """The bank the service serves: ``CALLVET_PORTRAIT_BANK_DIR`` or ``data_dir/portrait``."""
    return service.default_bank(ctx.settings)


@router.post("/v1/portrait/segments", status_code=201)
def select_segment(
    req: service.SegmentRequest,
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(*_SELECTORS)),
) -> dict[str, Any]:
    return service.select_segment(ctx.db, bank_dir(ctx), req, actor=p.actor)


@router.get("/v1/portrait/segments/{segment_id}")
def get_segment(
    segment_id: str = PathParam(..., max_length=32),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(Role.MARKETER, Role.AUDITOR)),
) -> dict[str, Any]:
    return service.get_segment(ctx.db, segment_id)


@router.get("/v1/portrait/customers/{customer_id}")
def get_portrait(
    customer_id: int = PathParam(..., ge=1, le=2**62 - 1),
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(*_VIEWERS)),
) -> dict[str, Any]:
    return service.portrait(ctx.db, bank_dir(ctx), customer_id)


@router.get("/v1/portrait/tags", response_model=TagDimensionList)
def list_tags(
    ctx: AppContext = Depends(get_ctx), _p: Principal = Depends(require(*_VIEWERS, Role.APPROVER))
) -> dict[str, Any]:
    return {"dimensions": tag_store.list_dimensions(ctx.db)}


@router.get("/v1/portrait/tags/{dimension}/versions", response_model=TagVersionList)
def list_versions(
    dimension: str,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(*_VIEWERS, Role.APPROVER)),
) -> dict[str, Any]:
    return {"versions": tag_store.list_versions(ctx.db, dimension)}


@router.get("/v1/portrait/tags/{dimension}/versions/{version}")
def get_version(
    dimension: str,
    version: Version,
    ctx: AppContext = Depends(get_ctx),
    _p: Principal = Depends(require(*_VIEWERS, Role.APPROVER)),
) -> dict[str, Any]:
    return tag_store.get_version(ctx.db, dimension, version)


@router.post("/v1/portrait/tags/{dimension}/versions", status_code=201)
def propose(
    dimension: str,
    definition: dict[str, Any] = Body(...),
    note: str = Query("", max_length=2000),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(*_PROPOSERS)),
) -> dict[str, Any]:
    out = tag_store.propose(ctx.db, dimension, definition, actor=p.actor, note=note)
    out.pop("content", None)
    return out


@router.post("/v1/portrait/tags/{dimension}/versions/{version}/activate")
def activate(
    dimension: str,
    version: Version,
    reason: str = Query("", max_length=2000),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.APPROVER)),
) -> dict[str, Any]:
    out = tag_store.activate(ctx.db, dimension, version, actor=p.actor, reason=reason)
    out.pop("content", None)
    return out


@router.post("/v1/portrait/tags/{dimension}/versions/{version}/reject")
def reject(
    dimension: str,
    version: Version,
    reason: str = Query("", max_length=2000),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(Role.APPROVER, Role.RISK_OFFICER)),
) -> dict[str, Any]:
    out = tag_store.reject(ctx.db, dimension, version, actor=p.actor, reason=reason)
    out.pop("content", None)
    return out
