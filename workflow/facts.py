"""The flat fact set a supervision check evaluates: the application, the reviewer, the investigation, the
applicant's recent applications and, per kind, the issuance or the limit change.

Facts are plain numbers, strings, booleans and lists of strings so that every rule expression sees one
type per name; missing inputs become neutral values (0, "", -1 for "unknown") that the rules treat as
such. The fact names are listed in docs/workflow.md (Supervision).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from callvet.workflow.tables import wf_instances, wf_users
from sqlalchemy import Connection, func, select

__all__ = ["UNKNOWN_AGE_DAYS", "gather_facts"]

UNKNOWN_AGE_DAYS = -999.0


def _num(v: Any, default: float = 0.0) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _age(birth: Any, today: date) -> float:
    try:
        b = date.fromisoformat(str(birth)[:10])
    except ValueError:
        return -1.0
    return float(today.year - b.year - ((today.month, today.day) < (b.month, b.day)))


def _applied_age_days(applied: Any, now: datetime) -> float:
    try:
        t = datetime.fromisoformat(str(applied))
    except ValueError:
        return UNKNOWN_AGE_DAYS
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return round((now - t).total_seconds() / 86400.0, 3)


def _surname(name: str) -> str:
    """Family name: the first character of a CJK name, else the last word (for relatives checks)."""
    name = name.strip()
    if not name:
        return ""
    if any("\u4e00" <= ch <= "\u9fff" for ch in name):
        return name[0]
    return name.split()[-1].lower()

def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    v = data.get(key)
    return v if isinstance(v, dict) else {}


def _recent_apps(conn: Connection, subject: Any, instance_id: str, now: datetime) -> tuple[int, int]:
    """Other instances of the same applicant (id number) in the last 30 and 7 days."""
    if not subject:
        return 0, 0
    counts = []
    for days in (30, 7):
        n = conn.execute(
            select(func.count())
            .select_from(wf_instances)
            .where(
                wf_instances.c.subject == str(subject)[:64],
                wf_instances.c.id != instance_id,
                wf_instances.c.created_at >= now - timedelta(days=days),
            )
        ).scalar()
        counts.append(int(n or 0))
    return counts[0], counts[1]


def _reviewer_facts(user: Any, reviewer_id: str | None, assignee: str | None) -> dict[str, Any]:
    return {
        "approver": reviewer_id or "",
        "approver_role": user.role if user else "",
        "approver_max": _num(user.max_amount, -1.0) if user else -1.0,
        "approver_known": user is not None,
        "approver_active": bool(user.active) if user else False,
        "approver_name": (user.name if user else "") or "",
        "approver_skills": list(user.skills or []) if user else [],
        "assignee": assignee or "",
    }


def _common_facts(
    data: dict[str, Any], now: datetime, task_created_at: datetime | None, apps: tuple[int, int]
) -> dict[str, Any]:
    app = _obj(data, "application")
    applicant = app.get("applicant") or {}
    emp = app.get("employment") or {}
    credit = app.get("credit_profile") or {}
    prescreen = data.get("final") or data.get("prescreen") or {}
    reasons = (
        [r.get("code") for r in prescreen.get("reasons", []) if isinstance(r, dict)]
        if isinstance(prescreen, dict)
        else []
    )
    return {
        "investigator": str(_obj(data, "investigation").get("investigator") or ""),
        "review_minutes": round((now - task_created_at).total_seconds() / 60.0, 3)
        if task_created_at
        else -1.0,
        "hour": now.hour,
        "weekend": now.weekday() >= 5,
        "review_decision": str(data.get("review_decision") or ""),
        "review_note": str(data.get("review_note") or ""),
        "reviewers": [str(x) for x in data.get("reviewers") or []],
        "decision": str(data.get("decision") or ""),
        "score": _num(data.get("risk_score")),
        "reasons": reasons,
        "income": _num(emp.get("monthly_income")),
        "obligations": _num(credit.get("monthly_obligations")),
        "name": str(applicant.get("name") or ""),
        "id_number": str(applicant.get("id_number") or ""),
        "mobile": str(applicant.get("mobile") or ""),
        "age": _age(applicant.get("birth_date"), now.date()),
        "apps_30d": apps[0],
        "apps_7d": apps[1],
        "declines_90d": int(_num(_obj(data, "history").get("declines_90d"))),
    }


def _applicant_facts(app: dict[str, Any]) -> dict[str, Any]:
    """Employment, credit profile, home and emergency contact (issuance)."""
    emp = app.get("employment") or {}
    home = app.get("home") or {}
    ec = app.get("emergency_contact") or {}
    credit = app.get("credit_profile") or {}
    return {
        "years_employed": _num(emp.get("years_employed")),
        "employer": str(emp.get("employer") or ""),
        "job_title": str(emp.get("job_title") or ""),
        "delinquencies": _num(credit.get("delinquencies_24m")),
        "inquiries": _num(credit.get("inquiries_6m")),
        "history_months": _num(credit.get("credit_history_months")),
        "existing_cards": _num(credit.get("existing_cards")),
        "housing": str(home.get("housing") or ""),
        "home_city": str(home.get("city") or ""),
        "work_city": str(emp.get("work_city") or ""),
        "ec_name": str(ec.get("name") or ""),
        "ec_mobile": str(ec.get("mobile") or ""),
        "ec_relation": str(ec.get("relation") or ""),
    }


def _issuance_facts(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    app = _obj(data, "application")
    inv = _obj(data, "investigation")
    q = _obj(inv, "questionnaire")
    required = [str(x) for x in data.get("documents_required") or []]
    documents = [str(x) for x in data.get("documents") or []]
    amount = _num(
        data.get("approved_amount")
        or (data.get("amount") if data.get("product") else None)
        or data.get("credit_limit")
    )
    return {
        "product": str(data.get("product") or "card"),
        "channel": str(app.get("channel") or ""),
        "amount": amount,
        "requested": _num(data.get("amount") if data.get("product") else app.get("requested_limit")),
        "engine_limit": _num(data.get("credit_limit")),
        "review_levels_required": int(_num(data.get("review_levels"), 1.0)),
        **_applicant_facts(app),
        "documents": documents,
        "documents_required": required,
        "missing_documents": [d for d in required if d not in documents],
        "inv_done": bool(inv),
        "calls_done": int(_num(data.get("calls_done"), 1.0 if inv else 0.0)),
        "calls_required": int(_num(data.get("calls_required"), 1.0 if data.get("call_requests") else 0.0)),
        "voice_alarm": bool(inv.get("voiceprint_alarm")),
        "q_verdict": str(q.get("verdict") or ""),
        "q_risk": _num(q.get("risk_score")),
        "app_age_days": _applied_age_days(app.get("applied_at"), now),
    }


def _limit_facts(data: dict[str, Any], reviewer_id: str | None) -> dict[str, Any]:
    current = _num(data.get("current_limit"))
    new = _num(data.get("approved_amount") or data.get("new_limit") or data.get("requested_limit"))
    account = _obj(data, "account")
    return {
        "current_limit": current,
        "new_limit": new,
        "increase": round(new - current, 2),
        "increase_pct": round((new - current) / current * 100, 2) if current > 0 else 100.0,
        "months_on_book": int(_num(account.get("months_on_book"))),
        "last_change_days": int(_num(account.get("last_change_days"), 9999.0)),
        "utilization": _num(account.get("utilization")),
        "missed_payments_12m": int(_num(account.get("missed_payments_12m"))),
        "days_past_due": int(_num(account.get("days_past_due"))),
        "auto": not reviewer_id,
        "limit_changes_180d": int(_num(account.get("limit_changes_180d"))),
        "income_verified_days": int(_num(account.get("income_verified_days"), 9999.0)),
    }


def gather_facts(
    conn: Connection,
    now: datetime,
    *,
    kind: str,
    instance_id: str,
    data: dict[str, Any],
    reviewer_id: str | None,
    assignee: str | None,
    task_created_at: datetime | None,
) -> dict[str, Any]:
    """The facts of one completed action of ``kind`` (``issuance`` or ``limit_adjustment``)."""
    user = None
    if reviewer_id:
        user = conn.execute(select(wf_users).where(wf_users.c.user_id == reviewer_id)).first()
    subject = (_obj(data, "application").get("applicant") or {}).get("id_number")
    apps = _recent_apps(conn, subject, instance_id, now)
    facts = _reviewer_facts(user, reviewer_id, assignee)
    facts.update(_common_facts(data, now, task_created_at, apps))
    if kind == "issuance":
        facts.update(_issuance_facts(data, now))
    else:
        facts.update(_limit_facts(data, reviewer_id))
    facts["approved"] = facts["review_decision"] == "approve" or (
        kind == "limit_adjustment" and facts["auto"]
    )
    facts["applicant_surname"] = _surname(facts["name"])
    facts["approver_surname"] = _surname(facts["approver_name"])
    with_actor = conn.execute(
        select(wf_instances.c.created_by).where(wf_instances.c.id == instance_id)
    ).scalar()
    facts["initiator"] = str(with_actor or "").split(":", 1)[-1]
    return facts
