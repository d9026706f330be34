"""Replay stored applications through a draft policy and the active one, before the draft is proposed.

A risk officer changing a rule table wants to know what it would do to real cases, not only that it
compiles. :func:`replay` takes the most recent stored decisions (their application and investigation
as they were decided, portrait fields included), decides each twice in memory -- once with the active
policies, once with the draft in place of the active version of its name -- and counts the verdicts and
limits that change. Nothing is stored and nothing is audited per row: both runs use the same model
score, the same date and the same snapshot of active versions, so every difference is the draft's.

The count is bounded (:data:`MAX_REPLAY`) so a simulation stays an interactive request.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from callvet.core.application import Application
from callvet.core.errors import InvalidInput
from callvet.decision import store
from callvet.decision.engine import DecisionEngine, load_policy
from callvet.decision.tables import decision_records
from callvet.decision.types import Investigation
from pydantic import ValidationError
from sqlalchemy import select

__all__ = ["DEFAULT_REPLAY", "MAX_EXAMPLES", "MAX_REPLAY", "replay"]

DEFAULT_REPLAY = 500
MAX_REPLAY = 5000
MAX_EXAMPLES = 20
_LIMIT_EPS = 0.5


def _recent(engine: DecisionEngine, limit: int) -> tuple[list[Any], int]:
    """The ``limit`` newest stored decisions as (row, application, investigation); rows whose stored
    inputs no longer validate are skipped and counted, never fatal."""
    with engine.db.connect() as conn:
        rows = conn.execute(
            select(decision_records.c.decision_id, decision_records.c.application_id,
                   decision_records.c.decision, decision_records.c.application,
                   decision_records.c.investigation)
            .order_by(decision_records.c.created_at.desc(), decision_records.c.decision_id)
            .limit(limit)).all()
    out, skipped = [], 0
    for r in rows:
        try:
            app = Application.model_validate(r.application)
            inv = Investigation.model_validate(r.investigation) if r.investigation else None
        except ValidationError:
            skipped += 1
            continue
        out.append((r, app, inv))
    return out, skipped


def _mix(decisions: list[Any]) -> dict[str, int]:
    return dict(Counter(d.decision.value for d in decisions))


def replay(engine: DecisionEngine, name: str, draft: Any, *, limit: int = DEFAULT_REPLAY,
           actor: str = "simulation") -> dict[str, Any]:
    """Decide up to ``limit`` recent stored applications with the active policies and with ``draft`` as
    policy ``name``; what changes. Raises :class:`InvalidInput` for a draft :func:`store.propose` would
    refuse, with the same message."""
    if not 1 <= int(limit) <= MAX_REPLAY:
        raise InvalidInput(f"replay between 1 and {MAX_REPLAY} stored applications", code="invalid_limit")
    store.check_proposal(name, draft)
    active = engine.policies()
    base_policy = active[name]
    candidate = load_policy(name, 0, draft)
    rows, skipped = _recent(engine, int(limit))
    summary: dict[str, Any] = {
        "policy": name, "active_version": base_policy.version, "limit": int(limit), "replayed": len(rows),
        "skipped": skipped, "changed": 0, "changed_limits": 0, "transitions": [], "active_mix": {},
        "draft_mix": {}, "examples": [],
    }
    if not rows:
        return summary
    apps = [a for _, a, _ in rows]
    invs = [v for _, _, v in rows]
    before = engine.decide_batch(apps, invs, actor=actor, store=False, policies=active)
    after = engine.decide_batch(apps, invs, actor=actor, store=False, policies={**active, name: candidate})
    moves: Counter[tuple[str, str]] = Counter()
    examples: list[dict[str, Any]] = []
    for (row, _, _), b, a in zip(rows, before, after, strict=True):
        if abs(b.credit_limit - a.credit_limit) > _LIMIT_EPS:
            summary["changed_limits"] += 1
        if b.decision == a.decision:
            continue
        moves[(b.decision.value, a.decision.value)] += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append({"decision_id": row.decision_id, "application_id": row.application_id,
                             "from": b.decision.value, "to": a.decision.value,
                             "reasons_from": [r.code for r in b.reasons],
                             "reasons_to": [r.code for r in a.reasons]})
    summary.update(
        changed=sum(moves.values()), active_mix=_mix(before), draft_mix=_mix(after), examples=examples,
        transitions=[{"from": f, "to": t, "count": n} for (f, t), n in moves.most_common()],
    )
    return summary
