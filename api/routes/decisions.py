"""Routes for this part; filled in by the part that owns them."""

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
