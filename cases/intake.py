"""What a case starts from: the ``POST /v1/applications`` intake contract, and the small pure helpers the
case service uses to shape its records (field errors, times, a call's voiceprint verdicts).

Kept apart from :mod:`.service` so the contract can be read (and tested) without the service's
database and pump machinery.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callvet.core.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Intake", "Window", "default_tz", "field_error", "iso", "summarise_verdicts"]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    start_hour: int = Field(default=9, ge=0, le=23)
    end_hour: int = Field(default=21, ge=1, le=24)


class Intake(BaseModel):
    """``POST /v1/applications``: the application plus what its process needs."""

    model_config = ConfigDict(extra="forbid")
    application: dict[str, Any]
    process: str | None = Field(default=None, description="card_issuance (default), limit_adjustment, "
                                "instalment_loan")
    product: str | None = Field(default=None, max_length=100, description="instalment product key")
    amount: float | None = Field(default=None, ge=0, le=10_000_000)
    documents: list[str] = Field(default_factory=list, max_length=20)
    current_limit: float | None = Field(default=None, ge=0, le=10_000_000)
    requested_limit: float | None = Field(default=None, ge=0, le=10_000_000)
    call_window: Window | None = None
    deadline_hours: float = Field(default=48.0, gt=0, le=24 * 30)


def field_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
    return InvalidInput(f"{path}: {err.get('msg', 'invalid')}", code="invalid_field", field=path)


def iso(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    return v


def summarise_verdicts(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """What a call's voiceprint verdicts say, for the decision.

    A ``confirmed`` alarm is an alarm not marked ``review`` (the review tier, issue 18: missing means
    False); a review-tier hit or a spoof flag (``spoof.flag``, issue 12) sends the case to a person."""
    confirmed = any(bool(v.get("alarm")) and not bool(v.get("review")) for v in verdicts)
    review = any(bool(v.get("review")) for v in verdicts)
    spoof = [v.get("spoof") for v in verdicts if isinstance(v.get("spoof"), dict)]
    spoof_flag = any(bool(s.get("flag")) for s in spoof)
    best: dict[str, Any] | None = None
    for v in verdicts:
        for m in v.get("matches") or []:
            if best is None or float(m.get("score") or 0) > float(best.get("score") or 0):
                best = {k: m.get(k) for k in ("identity_id", "score", "label") if k in m}
    last = verdicts[-1] if verdicts else {}
    return {
        "verdicts": len(verdicts), "confirmed_alarm": confirmed, "review_hit": review and not confirmed,
        "spoof_flag": spoof_flag, "spoof": spoof[-1] if spoof else None, "best_match": best,
        "net_speech_s": last.get("net_speech_s"),
    }


def default_tz(application: dict[str, Any]) -> str:
    """Where the applicant most likely is when no ``call_window`` was given."""
    tz = (application.get("applicant") or {}).get("timezone")
    if isinstance(tz, str) and tz:
        return tz
    return "Asia/Shanghai" if str(application.get("language", "")).startswith("zh") else "UTC"
