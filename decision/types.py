"""The decision engine's public value types: what goes in besides the application, and what comes out.

``Decision`` is a slotted dataclass rather than a pydantic model because batches build tens of thousands
of them per second; the API converts it with :meth:`Decision.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REASON_TEXT",
    "Decision",
    "Investigation",
    "Outcome",
    "QuestionnaireResult",
    "Reason",
]


class Outcome(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    REFER_INVESTIGATION = "refer_investigation"
    REFER_HUMAN = "refer_human"


class QuestionnaireResult(BaseModel):
    """The questionnaire part's verdict as the decision engine consumes it."""

    model_config = ConfigDict(extra="allow")

    verdict: Literal["pass", "fail", "inconclusive"] | None = None
    risk_score: float | None = Field(default=None, ge=0, le=1)
    reasons: list[str] = Field(default_factory=list)


class Investigation(BaseModel):
    """What the call investigation found; every field optional (an absent part was not run)."""

    model_config = ConfigDict(extra="allow")

    voiceprint_alarm: bool | None = None
    questionnaire: QuestionnaireResult | None = None


REASON_TEXT: dict[str, str] = {
    "underage": "The applicant is under 18.",
    "recent_delinquencies": "Three or more delinquencies in the last 24 months.",
    "high_model_risk": "The credit-risk model estimates a high probability of default.",
    "debt_burden": "Monthly obligations exceed 60% of monthly income.",
    "income_unverified": "No monthly income was stated; a person must verify income.",
    "flagged_application": "Risk flags on the application and a moderate model risk: call investigation.",
    "model_grey_zone": "Model risk is in the grey zone; an underwriter must review.",
    "multiple_risk_flags": "Two or more risk flags on the application: call investigation.",
    "many_recent_inquiries": "Six or more credit inquiries in the last 6 months.",
    "within_risk_appetite": "Model risk and application checks are within the bank's risk appetite.",
    "voiceprint_blacklist_match": "The caller's voice matched the fraudster blacklist.",
    "questionnaire_failed": "The applicant failed the verification questionnaire.",
    "questionnaire_high_risk": "The questionnaire's risk score is high.",
    "instant_decline_stands": "The application-time decline stands; the investigation did not change it.",
    "questionnaire_inconclusive": "The questionnaire was inconclusive; an underwriter must review.",
    "questionnaire_elevated_risk": "The questionnaire's risk score is elevated; an underwriter must review.",
    "investigation_incomplete": "The investigation has not produced a questionnaire result yet.",
    "instant_referral_stands": "The application-time referral to an underwriter stands.",
    "investigation_cleared": "The call investigation cleared the applicant.",
}


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    policy: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "policy": self.policy, "text": self.text}


@dataclass(frozen=True, slots=True)
class Decision:
    """One verdict; ``score`` is the model's probability of default (bad), 0..1."""

    decision_id: str
    application_id: str
    decision: Outcome
    credit_limit: float
    score: float
    score_band: str
    reasons: list[Reason]
    policy_versions: dict[str, int]
    model_version: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "application_id": self.application_id,
            "decision": self.decision.value,
            "credit_limit": self.credit_limit,
            "score": self.score,
            "score_band": self.score_band,
            "reasons": [r.to_dict() for r in self.reasons],
            "policy_versions": dict(self.policy_versions),
            "model_version": self.model_version,
        }
