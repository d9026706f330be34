"""A scripted decision policy and application generator for simulations, benchmarks and crash tests.

Not the bank's decision engine (that is :mod:`callvet.decision`, which the runtime uses by default).
This exists so that the workflow's own proofs -- a day of 100,000 applications, SIGKILL of a worker
mid-run -- are deterministic and independent of the credit model: the same application always gets the
same outcome, and the outcomes exercise every path of the shipped processes.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["application", "scripted_decider"]


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def scripted_decider(
    application: dict[str, Any], investigation: dict[str, Any] | None, actor: str
) -> dict[str, Any]:
    """``Decision.to_dict()``-shaped verdict from simple, documented rules over the application."""
    app_id = str(application.get("application_id", ""))
    emp = application.get("employment") or {}
    credit = application.get("credit_profile") or {}
    income = float(emp.get("monthly_income") or 0)
    requested = float(application.get("requested_limit") or 0)
    score = round(0.5 * _unit(app_id), 4)
    limit = round(min(requested, income * 3) if income else 0.0, 2)
    reasons: list[dict[str, str]] = []
    if investigation is None:
        if (credit.get("delinquencies_24m") or 0) >= 3:
            outcome, code = "decline", "recent_delinquencies"
        elif application.get("risk_reasons"):
            outcome, code = "refer_investigation", "flagged_application"
        elif not income:
            outcome, code = "refer_human", "income_unverified"
        else:
            outcome, code = "approve", "within_risk_appetite"
    else:
        q = investigation.get("questionnaire") or {}
        if investigation.get("voiceprint_alarm"):
            outcome, code = "decline", "voiceprint_blacklist_match"
        elif q.get("verdict") == "fail":
            outcome, code = "decline", "questionnaire_failed"
        elif q.get("verdict") == "inconclusive" or not income:
            outcome, code = "refer_human", "questionnaire_inconclusive"
        else:
            outcome, code = "approve", "investigation_cleared"
    reasons.append({"code": code, "policy": "simulation", "text": code.replace("_", " ")})
    stage = "final" if investigation is not None else "pre"
    return {
        "decision_id": f"sim-{stage}-{app_id}",
        "application_id": app_id,
        "decision": outcome,
        "credit_limit": limit if outcome == "approve" or outcome.startswith("refer") else 0.0,
        "score": score,
        "score_band": "A" if score < 0.2 else "B",
        "reasons": reasons,
        "policy_versions": {},
        "model_version": "simulation",
    }


def application(
    i: int,
    *,
    flagged: bool | None = None,
    income: float | None = None,
    requested: float | None = None,
    delinquencies: int | None = None,
) -> dict[str, Any]:
    """A contract-shaped application, varied deterministically by ``i``."""
    u = _unit(f"app-{i}")
    return {
        "application_id": f"SIM-{i:07d}",
        "language": "en",
        "applicant": {
            "name": f"Applicant {i}",
            "id_number": f"ID{i:010d}",
            "birth_date": "1988-05-17",
            "mobile": f"+86 139 {i % 10000:04d} {(i * 7) % 10000:04d}",
        },
        "employment": {
            "employer": "Acme Trading Co",
            "job_title": "Clerk",
            "monthly_income": income if income is not None else round(6000 + 20000 * u, 0),
            "years_employed": 3,
            "work_city": "Shanghai",
        },
        "home": {"city": "Shanghai", "housing": "rented"},
        "card_product": "platinum",
        "channel": "mobile_app",
        "requested_limit": requested if requested is not None else float(10000 * (1 + int(u * 8))),
        "emergency_contact": {"name": f"Contact {i}", "relation": "sibling", "mobile": "+86 138 0000 0000"},
        "credit_profile": {
            "monthly_obligations": 1500,
            "existing_cards": 1,
            "delinquencies_24m": delinquencies if delinquencies is not None else (3 if u > 0.93 else 0),
            "credit_history_months": 48,
            "inquiries_6m": 1,
        },
        "risk_reasons": (["new_device"] if flagged else [])
        if flagged is not None
        else (["new_device"] if 0.55 < u < 0.8 else []),
    }
