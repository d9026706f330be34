"""The decision engine: credit model (ONNX) + versioned GoRules JDM policies + investigation results.

Use :class:`DecisionEngine` (``DecisionEngine.from_settings(settings, db)``), then
``decide(application, investigation, actor=...)`` or ``decide_batch(...)``; both return
:class:`Decision` values (decision, credit_limit, score, reasons, policy_versions, model_version,
decision_id).
"""

from __future__ import annotations

from callvet.decision.engine import DecisionEngine
from callvet.decision.store import POLICY_NAMES, PolicyStatus
from callvet.decision.types import Decision, Investigation, Outcome, QuestionnaireResult, Reason

__all__ = [
    "POLICY_NAMES",
    "Decision",
    "DecisionEngine",
    "Investigation",
    "Outcome",
    "PolicyStatus",
    "QuestionnaireResult",
    "Reason",
]
