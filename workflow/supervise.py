"""Supervision: every completed human approval and every limit change is checked against a rule catalogue.

The catalogue is data (``supervision/*.yaml``): each rule has an id, kind (``issuance`` or
``limit_adjustment``), topic, title, severity, a *violation* expression in the zen-engine expression
language over a flat set of facts, and its own test case (``ok`` and ``bad`` fact overrides applied to
the kind's compliant baseline). Rules are compiled into one JDM graph per kind (input -> one expression
node per topic -> output) and evaluated by zen-engine in a single call per check.

A violation becomes a finding in the rectification queue, due three days after the check; metrics are
coverage (checks / completed supervised actions), share rectified within three days, and overdue count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
import zen
from callvet.core.audit import record
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.workflow.tables import wf_checks, wf_findings, wf_instances, wf_issuances, wf_tasks, wf_users
from sqlalchemy import Connection, func, insert, select, update

__all__ = [
    "KINDS",
    "RECTIFY_DAYS",
    "Catalogue",
    "Rule",
    "Supervisor",
    "baseline_facts",
    "catalogue",
    "load_rules",
]

RULES_DIR = Path(__file__).resolve().parent / "supervision"
KINDS = ("issuance", "limit_adjustment")
SEVERITIES = ("low", "medium", "high", "critical")
RECTIFY_DAYS = 3
UNKNOWN_AGE_DAYS = -999.0


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    topic: str
    title: str
    severity: str
    violation: str
    ok: dict[str, Any]
    bad: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "topic": self.topic,
            "title": self.title,
            "severity": self.severity,
            "violation": self.violation,
        }


def _key(rule_id: str) -> str:
    return rule_id.replace("-", "_")


def load_rules(directory: Path = RULES_DIR) -> list[Rule]:
    """Every rule of every ``*.yaml`` in ``directory``, checked for shape, uniqueness and syntax."""
    rules: list[Rule] = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        kind = doc.get("kind")
        for topic, items in (doc.get("topics") or {}).items():
            for item in items:
                rid = item["id"]
                if rid in seen:
                    raise InvalidInput(f"duplicate supervision rule id {rid} in {path.name}")
                seen.add(rid)
                if kind not in KINDS or item.get("severity") not in SEVERITIES:
                    raise InvalidInput(f"rule {rid}: bad kind or severity")
                expr = item["when"]
                err = zen.validate_expression(expr)
                if err is not None:
                    raise InvalidInput(f"rule {rid}: invalid expression {expr!r}: {err}")
                rules.append(
                    Rule(
                        rid,
                        kind,
                        topic,
                        item["title"],
                        item["severity"],
                        expr,
                        dict(item.get("ok") or {}),
                        dict(item.get("bad") or {}),
                    )
                )
    return rules


def compile_graph(rules: list[Rule]) -> dict[str, Any]:
    """A JDM decision graph: input -> one expression node per topic -> output."""
    nodes: list[dict[str, Any]] = [
        {"id": "input", "type": "inputNode", "name": "facts", "position": {"x": 0, "y": 0}}
    ]
    edges: list[dict[str, Any]] = []
    topics: dict[str, list[Rule]] = {}
    for r in rules:
        topics.setdefault(r.topic, []).append(r)
    for i, (topic, items) in enumerate(sorted(topics.items())):
        nid = f"topic_{topic}"
        nodes.append(
            {
                "id": nid,
                "type": "expressionNode",
                "name": topic,
                "position": {"x": 300, "y": 120 * i},
                "content": {
                    "expressions": [
                        {"id": _key(r.id), "key": _key(r.id), "value": r.violation} for r in items
                    ]
                },
            }
        )
        edges.append({"id": f"in_{nid}", "sourceId": "input", "targetId": nid, "type": "edge"})
        edges.append({"id": f"{nid}_out", "sourceId": nid, "targetId": "output", "type": "edge"})
    nodes.append({"id": "output", "type": "outputNode", "name": "violations", "position": {"x": 600, "y": 0}})
    return {"nodes": nodes, "edges": edges}


class Catalogue:
    """The compiled rules of both kinds, evaluated with zen-engine."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._engine = zen.ZenEngine()
        self._by_kind = {k: [r for r in rules if r.kind == k] for k in KINDS}
        self.graphs = {k: compile_graph(self._by_kind[k]) for k in KINDS}
        self._decisions = {k: self._engine.create_decision(json.dumps(self.graphs[k])) for k in KINDS}

    def rules_of(self, kind: str) -> list[Rule]:
        return self._by_kind[kind]

    def evaluate(self, kind: str, facts: dict[str, Any]) -> list[Rule]:
        """The rules of ``kind`` that ``facts`` violate."""
        try:
            out = self._decisions[kind].evaluate(facts)["result"]
        except RuntimeError:
            return self._evaluate_one_by_one(kind, facts)
        return [r for r in self._by_kind[kind] if out.get(_key(r.id)) is True]

    def _evaluate_one_by_one(self, kind: str, facts: dict[str, Any]) -> list[Rule]:
        """Slow path when some fact has a type a rule cannot handle: that rule counts as violated, so a
        person looks at it, and the other rules still give their own verdicts."""
        violated = []
        for r in self._by_kind[kind]:
            try:
                hit = zen.evaluate_expression(r.violation, facts) is True
            except RuntimeError:
                hit = True
            if hit:
                violated.append(r)
        return violated


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    return Catalogue(load_rules())


_BASE_COMMON: dict[str, Any] = {
    "approver": "u-appr-1",
    "approver_role": "approver",
    "approver_max": 200000.0,
    "approver_known": True,
    "approver_active": True,
    "approver_name": "Alice Reviewer",
    "approver_skills": ["card", "instalment", "limit"],
    "assignee": "u-appr-1",
    "investigator": "",
    "review_minutes": 25.0,
    "hour": 10,
    "weekend": False,
    "review_decision": "approve",
    "review_note": "Income verified against payslips; references checked.",
    "reviewers": ["u-appr-1"],
    "decision": "refer_human",
    "score": 0.12,
    "reasons": ["model_grey_zone"],
    "income": 15000.0,
    "obligations": 2000.0,
    "name": "Wang Lei",
    "id_number": "110101199001011234",
    "mobile": "+86 138 0013 8000",
    "age": 36,
    "apps_30d": 0,
    "apps_7d": 0,
    "declines_90d": 0,
    "approved": True,
    "applicant_surname": "Wang",
    "approver_surname": "Reviewer",
    "initiator": "analyst-1",
    "review_level": 1,
}

_BASE: dict[str, dict[str, Any]] = {
    "issuance": {
        **_BASE_COMMON,
        "product": "card",
        "channel": "branch",
        "amount": 30000.0,
        "requested": 30000.0,
        "engine_limit": 30000.0,
        "review_levels_required": 1,
        "years_employed": 4.0,
        "employer": "Acme Trading Co",
        "job_title": "Accountant",
        "delinquencies": 0,
        "inquiries": 1,
        "history_months": 60,
        "existing_cards": 1,
        "housing": "owned",
        "home_city": "Shanghai",
        "work_city": "Shanghai",
        "ec_name": "Wang Fang",
        "ec_mobile": "+86 139 0013 9000",
        "ec_relation": "spouse",
        "documents": ["id_card", "income_proof"],
        "documents_required": ["id_card", "income_proof"],
        "missing_documents": [],
        "inv_done": True,
        "calls_done": 1,
        "calls_required": 1,
        "voice_alarm": False,
        "q_verdict": "pass",
        "q_risk": 0.1,
        "investigator": "robot-7",
        "app_age_days": 2.0,
    },
    "limit_adjustment": {
        **_BASE_COMMON,
        "approver_role": "risk_officer",
        "current_limit": 20000.0,
        "new_limit": 30000.0,
        "increase": 10000.0,
        "increase_pct": 50.0,
        "months_on_book": 24,
        "last_change_days": 365,
        "utilization": 0.45,
        "missed_payments_12m": 0,
        "days_past_due": 0,
        "decision": "approve",
        "reasons": ["within_risk_appetite"],
        "review_decision": "approve",
        "auto": False,
        "limit_changes_180d": 0,
        "income_verified_days": 90,
    },
}


def baseline_facts(kind: str) -> dict[str, Any]:
    """A compliant fact set of ``kind``: violates no rule (each rule's test case overrides it)."""
    return json.loads(json.dumps(_BASE[kind]))


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


class Supervisor:
    def __init__(self, db: Database, clock: Any) -> None:
        self.db = db
        self.clock = clock

    @property
    def catalogue(self) -> Catalogue:
        return catalogue()

    def facts(
        self,
        conn: Connection,
        *,
        kind: str,
        instance_id: str,
        data: dict[str, Any],
        reviewer_id: str | None,
        assignee: str | None,
        task_created_at: datetime | None,
    ) -> dict[str, Any]:
        now = self.clock()
        app = data.get("application") if isinstance(data.get("application"), dict) else {}
        applicant = app.get("applicant") or {}
        emp = app.get("employment") or {}
        home = app.get("home") or {}
        ec = app.get("emergency_contact") or {}
        credit = app.get("credit_profile") or {}
        inv = data.get("investigation") if isinstance(data.get("investigation"), dict) else {}
        q = inv.get("questionnaire") if isinstance(inv.get("questionnaire"), dict) else {}
        user = None
        if reviewer_id:
            user = conn.execute(select(wf_users).where(wf_users.c.user_id == reviewer_id)).first()
        subject = applicant.get("id_number")
        apps_30d = apps_7d = 0
        if subject:
            for days in (30, 7):
                n = (
                    conn.execute(
                        select(func.count())
                        .select_from(wf_instances)
                        .where(
                            wf_instances.c.subject == str(subject)[:64],
                            wf_instances.c.id != instance_id,
                            wf_instances.c.created_at >= now - timedelta(days=days),
                        )
                    ).scalar()
                    or 0
                )
                if days == 30:
                    apps_30d = int(n)
                else:
                    apps_7d = int(n)
        history = data.get("history") if isinstance(data.get("history"), dict) else {}
        prescreen = data.get("final") or data.get("prescreen") or {}
        reasons = (
            [r.get("code") for r in prescreen.get("reasons", []) if isinstance(r, dict)]
            if isinstance(prescreen, dict)
            else []
        )
        required = [str(x) for x in data.get("documents_required") or []]
        documents = [str(x) for x in data.get("documents") or []]
        facts: dict[str, Any] = {
            "approver": reviewer_id or "",
            "approver_role": user.role if user else "",
            "approver_max": _num(user.max_amount, -1.0) if user else -1.0,
            "approver_known": user is not None,
            "approver_active": bool(user.active) if user else False,
            "approver_name": (user.name if user else "") or "",
            "approver_skills": list(user.skills or []) if user else [],
            "assignee": assignee or "",
            "investigator": str(inv.get("investigator") or ""),
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
            "id_number": str(subject or ""),
            "mobile": str(applicant.get("mobile") or ""),
            "age": _age(applicant.get("birth_date"), now.date()),
            "apps_30d": apps_30d,
            "apps_7d": apps_7d,
            "declines_90d": int(_num(history.get("declines_90d"))),
        }
        if kind == "issuance":
            amount = _num(
                data.get("approved_amount")
                or (data.get("amount") if data.get("product") else None)
                or data.get("credit_limit")
            )
            facts.update(
                {
                    "product": str(data.get("product") or "card"),
                    "channel": str(app.get("channel") or ""),
                    "amount": amount,
                    "requested": _num(
                        data.get("amount") if data.get("product") else app.get("requested_limit")
                    ),
                    "engine_limit": _num(data.get("credit_limit")),
                    "review_levels_required": int(_num(data.get("review_levels"), 1.0)),
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
                    "documents": documents,
                    "documents_required": required,
                    "missing_documents": [d for d in required if d not in documents],
                    "inv_done": bool(inv),
                    "calls_done": int(_num(data.get("calls_done"), 1.0 if inv else 0.0)),
                    "calls_required": int(
                        _num(data.get("calls_required"), 1.0 if data.get("call_requests") else 0.0)
                    ),
                    "voice_alarm": bool(inv.get("voiceprint_alarm")),
                    "q_verdict": str(q.get("verdict") or ""),
                    "q_risk": _num(q.get("risk_score")),
                    "app_age_days": _applied_age_days(app.get("applied_at"), now),
                }
            )
        else:
            current = _num(data.get("current_limit"))
            new = _num(data.get("approved_amount") or data.get("new_limit") or data.get("requested_limit"))
            account = data.get("account") if isinstance(data.get("account"), dict) else {}
            facts.update(
                {
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
            )
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

    def check(
        self,
        conn: Connection,
        *,
        kind: str,
        instance_id: str,
        task_id: str,
        data: dict[str, Any],
        actor: str,
        reviewer_id: str | None,
        assignee: str | None,
        task_created_at: datetime | None,
        review_level: int = 1,
    ) -> list[Rule]:
        """Check one completed action; idempotent per (instance, task): a replay records nothing twice.

        ``review_level`` is the user task's ``callvet:level`` (1 = first review); rules about the number
        of reviewers apply once the last required level is reached."""
        check_key = f"{instance_id}:{task_id}"
        if conn.execute(select(wf_checks.c.id).where(wf_checks.c.check_key == check_key)).first() is not None:
            return []
        facts = self.facts(
            conn,
            kind=kind,
            instance_id=instance_id,
            data=data,
            reviewer_id=reviewer_id,
            assignee=assignee,
            task_created_at=task_created_at,
        )
        facts["review_level"] = review_level
        cat = self.catalogue
        violated = cat.evaluate(kind, facts)
        now = self.clock()
        conn.execute(
            insert(wf_checks).values(
                check_key=check_key,
                instance_id=instance_id,
                kind=kind,
                at=now,
                rules_checked=len(cat.rules_of(kind)),
                violations=len(violated),
            )
        )
        if violated:
            conn.execute(
                insert(wf_findings),
                [
                    {
                        "check_key": check_key,
                        "instance_id": instance_id,
                        "rule_id": r.id,
                        "kind": kind,
                        "severity": r.severity,
                        "title": r.title,
                        "created_at": now,
                        "due_at": now + timedelta(days=RECTIFY_DAYS),
                        "status": "open",
                    }
                    for r in violated
                ],
            )
        return violated

    def findings(
        self, *, status: str | None = None, instance_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        stmt = (
            select(wf_findings)
            .order_by(wf_findings.c.due_at, wf_findings.c.id)
            .limit(max(1, min(limit, 1000)))
        )
        if status:
            stmt = stmt.where(wf_findings.c.status == status)
        if instance_id:
            stmt = stmt.where(wf_findings.c.instance_id == instance_id)
        now = self.clock()
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for r in rows:
            due = r.due_at if r.due_at.tzinfo else r.due_at.replace(tzinfo=UTC)
            out.append(
                {
                    "id": r.id,
                    "instance_id": r.instance_id,
                    "rule_id": r.rule_id,
                    "kind": r.kind,
                    "severity": r.severity,
                    "title": r.title,
                    "status": r.status,
                    "due_at": due.isoformat(),
                    "overdue": r.status == "open" and due < now,
                    "note": r.note,
                    "rectified_by": r.rectified_by,
                }
            )
        return out

    def rectify(self, finding_id: int, *, actor: str, note: str) -> dict[str, Any]:
        if not note or not note.strip():
            raise InvalidInput("a rectification needs a note saying what was done", code="note_required")
        with self.db.begin() as conn:
            row = conn.execute(select(wf_findings.c.status).where(wf_findings.c.id == finding_id)).first()
            if row is None:
                raise NotFound(f"no finding {finding_id}")
            if row.status != "open":
                raise Conflict(f"finding {finding_id} is already {row.status}", code="finding_closed")
            conn.execute(
                update(wf_findings)
                .where(wf_findings.c.id == finding_id)
                .values(
                    status="rectified",
                    rectified_at=self.clock(),
                    rectified_by=actor,
                    note=note.strip()[:2000],
                )
            )
            record(conn, actor, "supervision.rectify", "wf_finding", finding_id, reason=note.strip()[:500])
        return {"id": finding_id, "status": "rectified"}

    def metrics(self) -> dict[str, Any]:
        now = self.clock()
        with self.db.connect() as conn:
            human = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_tasks)
                    .where(wf_tasks.c.status == "completed", wf_tasks.c.supervise.is_not(None))
                ).scalar()
                or 0
            )
            reviewed = select(wf_tasks.c.instance_id).where(
                wf_tasks.c.status == "completed", wf_tasks.c.supervise.is_not(None)
            )
            auto = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_issuances)
                    .where(
                        wf_issuances.c.kind == "limit_changed", wf_issuances.c.instance_id.not_in(reviewed)
                    )
                ).scalar()
                or 0
            )
            checked = conn.execute(select(func.count()).select_from(wf_checks)).scalar() or 0
            with_findings = (
                conn.execute(
                    select(func.count()).select_from(wf_checks).where(wf_checks.c.violations > 0)
                ).scalar()
                or 0
            )
            total = conn.execute(select(func.count()).select_from(wf_findings)).scalar() or 0
            open_ = (
                conn.execute(
                    select(func.count()).select_from(wf_findings).where(wf_findings.c.status == "open")
                ).scalar()
                or 0
            )
            overdue = (
                conn.execute(
                    select(func.count())
                    .select_from(wf_findings)
                    .where(wf_findings.c.status == "open", wf_findings.c.due_at < now)
                ).scalar()
                or 0
            )
            rectified = conn.execute(
                select(wf_findings.c.created_at, wf_findings.c.rectified_at).where(
                    wf_findings.c.status == "rectified"
                )
            ).all()
        in_time = sum(1 for r in rectified if r.rectified_at - r.created_at <= timedelta(days=RECTIFY_DAYS))
        completed = int(human) + int(auto)
        return {
            "completed_actions": completed,
            "checked": int(checked),
            "coverage": round(min(checked / completed, 1.0), 4) if completed else None,
            "checks_with_findings": int(with_findings),
            "findings": int(total),
            "open": int(open_),
            "overdue": int(overdue),
            "rectified": len(rectified),
            "rectified_within_3_days": in_time,
            "rectified_within_3_days_rate": round(in_time / len(rectified), 4) if rectified else None,
            "rules": {k: len(self.catalogue.rules_of(k)) for k in KINDS},
        }
