"""The card application every part shares (questionnaire, decision engine, workflow).

One definition, in the shape of ``docs/contracts/application.example.json``. Only ``application_id``,
``applicant.name`` and ``language`` are required; other fields are optional but, when present, must be
well-formed: a malformed one fails validation naming the field (the API turns that into a 422). Extra
fields are kept, since upstream systems may send more than this contract names.
"""

from __future__ import annotations

import datetime as _dt
import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Applicant",
    "Application",
    "BankRelationship",
    "CreditProfile",
    "EmergencyContact",
    "Employment",
    "Home",
    "RecentTransaction",
]

_MOBILE = re.compile(r"^\+?[0-9][0-9 \-]{5,19}$")


#: What the validators below check, stated in the OpenAPI too (issue 9: the schema a client reads is the
#: one the service enforces). Birth years 1900-2025 in the schema; the validator's bound is "today".
_MOBILE_SCHEMA: dict[str, Any] = {"pattern": _MOBILE.pattern}
_BIRTH_YEARS: dict[str, Any] = {"pattern": r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-"}
_TXN_YEARS: dict[str, Any] = {"pattern": r"^(20[01][0-9]|202[0-5])-"}
#: Required strings are stripped first (``str_strip_whitespace``, Unicode White_Space): at least one
#: character that is not stripped. ECMA's ``\s`` lacks U+0085 (stripped) and has U+FEFF (not stripped).
_NOT_BLANK: dict[str, Any] = {"pattern": r"[^\s\u0085]|\ufeff"}


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


def _check_mobile(v: str | None) -> str | None:
    if v is not None and not _MOBILE.match(v):
        raise ValueError("mobile must be 6-20 digits, optionally with a leading + and spaces or dashes")
    return v


class Applicant(_Part):
    name: str = Field(min_length=1, max_length=100, json_schema_extra=_NOT_BLANK)
    id_number: str | None = Field(default=None, max_length=40)
    birth_date: date | None = Field(default=None, json_schema_extra=_BIRTH_YEARS)
    mobile: str | None = Field(default=None, json_schema_extra=_MOBILE_SCHEMA)

    _m = field_validator("mobile")(_check_mobile)

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth(cls, v: date | None) -> date | None:
        if v is not None and not (date(1900, 1, 1) <= v <= date.today()):
            raise ValueError("birth_date must lie between 1900-01-01 and today")
        return v


class Employment(_Part):
    employer: str | None = Field(default=None, max_length=200)
    job_title: str | None = Field(default=None, max_length=100)
    monthly_income: float | None = Field(default=None, ge=0)
    years_employed: float | None = Field(default=None, ge=0, le=80)
    work_city: str | None = Field(default=None, max_length=100)
    work_district: str | None = Field(default=None, max_length=100)


class Home(_Part):
    city: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=100)
    housing: Literal["owned", "rented", "mortgaged", "family", "company", "other"] | None = None


class EmergencyContact(_Part):
    name: str | None = Field(default=None, max_length=100)
    relation: str | None = Field(default=None, max_length=50)
    mobile: str | None = Field(default=None, json_schema_extra=_MOBILE_SCHEMA)

    _m = field_validator("mobile")(_check_mobile)


class CreditProfile(_Part):
    monthly_obligations: float | None = Field(default=None, ge=0)
    existing_cards: int | None = Field(default=None, ge=0)
    delinquencies_24m: int | None = Field(default=None, ge=0)
    credit_history_months: int | None = Field(default=None, ge=0)
    inquiries_6m: int | None = Field(default=None, ge=0)


class RecentTransaction(_Part):
    """One recent card or account transaction the bank booked (issue 13: a fact the form never held)."""

    merchant: str = Field(min_length=1, max_length=100, json_schema_extra=_NOT_BLANK)
    amount: float = Field(ge=0, le=10_000_000)
    date: _dt.date = Field(json_schema_extra=_TXN_YEARS)

    @field_validator("date")
    @classmethod
    def _not_future(cls, v: _dt.date) -> _dt.date:
        if not (_dt.date(2000, 1, 1) <= v <= _dt.date.today() + _dt.timedelta(days=1)):
            raise ValueError("date must lie between 2000-01-01 and today")
        return v


class BankRelationship(_Part):
    """What the bank knows from its own books about an existing customer, independent of the form.
    ``customer_id`` names the customer in the bank's books (the portrait fills empty facts from it)."""

    customer_id: int | None = Field(default=None, ge=1, le=2**53)
    cards_held: int | None = Field(default=None, ge=0, le=50)
    salary_account: bool | None = None
    last_repayment_amount: float | None = Field(default=None, ge=0, le=10_000_000)
    recent_transaction: RecentTransaction | None = None


class Application(_Part):
    application_id: str = Field(min_length=1, max_length=64, json_schema_extra=_NOT_BLANK)
    language: Literal["zh-CN", "en", "en-US", "en-GB"]
    applicant: Applicant
    employment: Employment | None = None
    home: Home | None = None
    card_product: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=50)
    applied_at: datetime | None = None
    requested_limit: float | None = Field(default=None, ge=0)
    emergency_contact: EmergencyContact | None = None
    credit_profile: CreditProfile | None = None
    bank_relationship: BankRelationship | None = None
    risk_reasons: list[str] = Field(default_factory=list)

    @property
    def lang(self) -> Literal["zh", "en"]:
        """The questionnaire's language family: Chinese or English."""
        return "zh" if self.language.startswith("zh") else "en"

    def get_path(self, dotted: str) -> object:
        """Value at a dotted path such as ``employment.employer`` (None when absent)."""
        node: object = self
        for part in dotted.split("."):
            if node is None:
                return None
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        return node
