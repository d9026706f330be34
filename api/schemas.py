"""Response models for the routes whose services answer with plain dicts (issue 9: typed responses).

Each model names and types the members a client can rely on, so the OpenAPI says what comes back and
FastAPI checks every response against it (schemathesis' ``response_schema_conformance`` then checks the
same contract from outside). The models are *open* (``extra="allow"``): a service may add a member
before the model names it, and nothing a service returns is silently dropped; what the model names, it
guarantees. Blacklist routes have their own models in :mod:`callvet.api.routes.blacklist`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AuditList",
    "CallList",
    "CaseDecision",
    "CaseList",
    "CaseOut",
    "CaseRow",
    "ConfigSet",
    "ConfigValue",
    "DecisionBatchOut",
    "DecisionOut",
    "DecisionReason",
    "DefinitionList",
    "DefinitionOut",
    "Deleted",
    "FindingList",
    "Health",
    "InstanceList",
    "InterviewList",
    "PolicyList",
    "PolicyVersionList",
    "RuleList",
    "TagDimension",
    "TagDimensionList",
    "TagVersionList",
    "TaskList",
    "Uploaded",
    "UserList",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(description="ok")
    version: str


class DecisionReason(_Open):
    code: str = Field(description="stable reason code, e.g. underage")
    policy: str = Field(description="the policy that gave it")
    text: str


class DecisionOut(_Open):
    """One decision; ``portrait`` (the bank's facts) follows when the bank knows the applicant."""

    decision_id: str
    application_id: str
    decision: str = Field(description="approve, decline or refer")
    credit_limit: float | None
    score: float | None = Field(description="the credit model's probability of default, 0..1")
    score_band: str | None
    reasons: list[DecisionReason]
    policy_versions: dict[str, int] = Field(description="each policy's version that decided")
    model_version: str | None


class DecisionBatchOut(BaseModel):
    items: list[DecisionOut]


class Deleted(BaseModel):
    deleted: int = Field(ge=0, description="rows erased")


class PolicyList(BaseModel):
    policies: list[dict[str, Any]]


class PolicyVersionList(BaseModel):
    versions: list[dict[str, Any]]


class CaseDecision(_Open):
    prescreen: str | None
    prescreen_decision_id: str | None
    final: str | None
    final_decision_id: str | None
    credit_limit: float | None


class CaseOut(_Open):
    case_id: str
    application_id: str
    status: str = Field(description="received, awaiting_call, in_call, deciding, review, issued, declined, "
                        "failed")
    process: str
    product: str | None
    instance_id: str | None
    decision: CaseDecision
    interview_id: str | None
    call_ids: list[str]
    evidence: Any = Field(default=None, description="the call's voice evidence, once there was a call")
    created_at: str | None
    updated_at: str | None


class CaseRow(_Open):
    case_id: str
    application_id: str
    status: str
    process: str
    final_decision: str | None
    created_at: str | None


class CaseList(BaseModel):
    cases: list[CaseRow]
    next_cursor: str | None = Field(description="pass as after for the next page; null on the last")


class Uploaded(BaseModel):
    process_key: str
    version: int
    active: bool


class DefinitionOut(_Open):
    id: int
    process_key: str
    version: int
    name: str | None
    active: bool
    created_at: Any
    created_by: str | None


class DefinitionList(BaseModel):
    definitions: list[DefinitionOut]


class InstanceList(BaseModel):
    instances: list[dict[str, Any]]


class InterviewList(BaseModel):
    interviews: list[dict[str, Any]]


class AuditList(BaseModel):
    entries: list[dict[str, Any]] = Field(description="newest first")


class CallList(BaseModel):
    calls: list[dict[str, Any]]


class UserList(BaseModel):
    users: list[dict[str, Any]]


class ConfigValue(BaseModel):
    key: str
    version: int | None = Field(description="null while the built-in default applies")
    value: Any


class ConfigSet(BaseModel):
    key: str
    version: int


class TaskList(BaseModel):
    tasks: list[dict[str, Any]]


class RuleList(BaseModel):
    rules: list[dict[str, Any]]
    count: int


class FindingList(BaseModel):
    findings: list[dict[str, Any]]


class TagDimension(_Open):
    dimension: str
    active_version: int | None
    kind: str | None
    categories: list[str]
    versions: int
    proposed: int


class TagDimensionList(BaseModel):
    dimensions: list[TagDimension]


class TagVersionList(BaseModel):
    versions: list[dict[str, Any]]
