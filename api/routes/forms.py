"""``POST /v1/forms/extract``: one scanned page in (multipart ``image``), the application read from it out."""

from __future__ import annotations

from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import get_ctx, require
from callvet.core import audit
from callvet.core.auth import Principal, Role
from callvet.core.errors import InvalidInput
from callvet.forms.service import MAX_BYTES, FormReader
from fastapi import APIRouter, Depends, File, Form, UploadFile

__all__ = ["reader", "router"]

router = APIRouter(tags=["forms"])

_READERS = (Role.ROBOT, Role.ANALYST, Role.APPROVER)


def reader(ctx: AppContext) -> FormReader:
    """The process's form reader (OCR models and templates loaded once)."""
    return ctx.forms


@router.post("/v1/forms/extract")
def extract(
    image: UploadFile = File(..., description="one page: PNG, JPEG, TIFF or PDF (first page)"),
    template: str | None = Form(None, max_length=64, description="force a template instead of detecting it"),
    ctx: AppContext = Depends(get_ctx),
    p: Principal = Depends(require(*_READERS)),
) -> dict[str, Any]:
    data = image.file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"the upload is larger than {MAX_BYTES} bytes", code="image_too_large")
    result = reader(ctx).read_bytes(data, template=template)
    app_id = (result.application or {}).get("application_id") or ""
    with ctx.db.begin() as conn:
        audit.record(
            conn,
            p.actor,
            "forms.extract",
            "application",
            app_id or "-",
            details={"template": result.template, "needs_review": len(result.needs_review)},
        )
    return result.to_dict()
