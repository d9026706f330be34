"""The supervision rule book: the catalogue of rules (``supervision/*.yaml``), compiled per kind into one
zen-engine JDM graph, and each kind's compliant baseline that every rule's own test case overrides.

The catalogue is data: each rule has an id, kind (``issuance`` or ``limit_adjustment``), topic, title,
severity, a *violation* expression in the zen-engine expression language over a flat set of facts
(:mod:`.facts`), and its own test case (``ok`` and ``bad`` fact overrides applied to the baseline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
import zen
from callvet.core.errors import InvalidInput

__all__ = [
    "KINDS",
    "RULES_DIR",
    "SEVERITIES",
    "Catalogue",
    "Rule",
    "baseline_facts",
    "catalogue",
    "compile_graph",
    "load_rules",
]

RULES_DIR = Path(__file__).resolve().parent / "supervision"
KINDS = ("issuance", "limit_adjustment")
SEVERITIES = ("low", "medium", "high", "critical")


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

