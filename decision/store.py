"""Versioned rule policies in the database: seed, propose, activate (maker-checker), list.

A policy is a JDM graph. Each name has numbered versions with an explicit status; exactly one is active.
Versions are never edited: a change is a new proposed version, which a *different* person with the
approver role activates (the proposer cannot, :class:`Forbidden`). Every step writes the audit log in the
same transaction. The shipped graphs in ``decision/policies/*.json`` become version 1 at first start.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from importlib import resources
from typing import Any

from callvet.core import audit
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from callvet.decision.tables import policy_versions
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = [
    "POLICY_NAMES",
    "PolicyStatus",
    "activate",
    "active_versions",
    "check_proposal",
    "get_version",
    "list_policies",
    "list_versions",
    "propose",
    "reject",
    "seed",
    "shipped_graph",
    "validate_graph",
]

POLICY_NAMES = ("prescreen", "investigation", "credit_limit")
SEED_ACTOR = "system:seed"


class PolicyStatus(StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"

    def can_become(self, new: PolicyStatus) -> bool:
        return new in _TRANSITIONS[self]


_TRANSITIONS: dict[PolicyStatus, frozenset[PolicyStatus]] = {
    PolicyStatus.PROPOSED: frozenset({PolicyStatus.ACTIVE, PolicyStatus.REJECTED}),
    PolicyStatus.ACTIVE: frozenset({PolicyStatus.RETIRED}),
    PolicyStatus.RETIRED: frozenset(),
    PolicyStatus.REJECTED: frozenset(),
}


def shipped_graph(name: str) -> dict[str, Any]:
    return json.loads(resources.files("callvet.decision").joinpath("policies", f"{name}.json").read_text(
        encoding="utf-8"))


def _sha(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check_name(name: str) -> None:
    if name not in POLICY_NAMES:
        raise NotFound(f"no policy named {name!r}; policies: {', '.join(POLICY_NAMES)}",
                       code="policy_not_found")


_PROBE_APPLICANT = {"age": 40.0, "has_income": 1.0, "monthly_income": 10000.0, "monthly_obligations": 1000.0,
                    "delinquencies_24m": 0.0, "inquiries_6m": 1.0, "risk_reason_count": 0.0,
                    "requested_limit": 20000.0, "card_product": "gold", "score": 0.1}
PROBES: dict[str, list[dict[str, Any]]] = {
    "prescreen": [_PROBE_APPLICANT, {**_PROBE_APPLICANT, "score": 0.9, "risk_reason_count": 2.0}],
    "investigation": [
        {"voiceprint_alarm": flag, "questionnaire_verdict": verdict, "questionnaire_risk": 0.1,
         "instant_outcome": instant}
        for flag in (False, True) for verdict in ("pass", "none")
        for instant in ("approve", "refer_investigation")
    ],
    "credit_limit": [_PROBE_APPLICANT, {**_PROBE_APPLICANT, "score": 0.9}],
}
REQUIRED_OUTPUTS = {
    "prescreen": ("outcome", "reason"),
    "investigation": ("outcome", "reason"),
    "credit_limit": ("credit_limit", "band", "income_multiple", "product_cap"),
}
_OUTCOMES = {"approve", "decline", "refer_investigation", "refer_human"}


def _probe(name: str, content: dict[str, Any]) -> None:
    """Evaluate a proposed graph on probe inputs: it must produce the outputs the engine reads."""
    import zen

    decision = zen.ZenEngine().create_decision(json.dumps(content))
    for ctx in PROBES[name]:
        try:
            result = decision.evaluate(ctx)["result"]
        except Exception as exc:
            raise InvalidInput(f"the graph fails on a probe input: {str(exc).splitlines()[0][:300]}",
                               code="invalid_policy") from None
        missing = [k for k in REQUIRED_OUTPUTS[name] if k not in result]
        if missing:
            raise InvalidInput(f"a {name} graph must output {', '.join(REQUIRED_OUTPUTS[name])}; "
                               f"missing {', '.join(missing)} for input {ctx}", code="invalid_policy")
        if "outcome" in REQUIRED_OUTPUTS[name] and result["outcome"] not in _OUTCOMES:
            raise InvalidInput(f"outcome {result['outcome']!r} is not one of {sorted(_OUTCOMES)}",
                               code="invalid_policy")


def validate_graph(content: Any) -> None:
    """Reject a graph zen-engine cannot load, with a message naming what is wrong."""
    import zen

    if not isinstance(content, dict) or not isinstance(content.get("nodes"), list) \
            or not isinstance(content.get("edges"), list):
        raise InvalidInput("a policy must be a JDM graph: an object with 'nodes' and 'edges' lists",
                           code="invalid_policy")
    kinds = {n.get("type") for n in content["nodes"] if isinstance(n, dict)}
    if "inputNode" not in kinds or "outputNode" not in kinds:
        raise InvalidInput("a policy graph needs an inputNode and an outputNode", code="invalid_policy")
    try:
        zen.ZenEngine().create_decision(json.dumps(content)).validate()
    except Exception as exc:
        raise InvalidInput(f"zen-engine rejected the graph: {str(exc).splitlines()[0][:300]}",
                           code="invalid_policy") from None


def check_proposal(name: str, content: Any) -> None:
    """What :func:`propose` checks before storing (loadable graph, required outputs on probe inputs), for
    a draft that is replayed before it is proposed."""
    _check_name(name)
    validate_graph(content)
    _probe(name, content)


def _row(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in ("created_at", "activated_at"):
        if d.get(k) is not None:
            d[k] = d[k].isoformat()
    return d


def seed(db: Database) -> list[str]:
    """Load each shipped graph as version 1 (active) for any policy that has no versions yet."""
    seeded: list[str] = []
    try:
        _seed(db, seeded)
    except IntegrityError:
        return []
    return seeded


def _seed(db: Database, seeded: list[str]) -> None:
    """Another process seeding at the same moment makes this transaction fail on the unique version
    constraint; :func:`seed` then treats the policies as seeded."""
    with db.begin() as conn:
        existing = set(conn.execute(select(policy_versions.c.name).distinct()).scalars())
        for name in POLICY_NAMES:
            if name in existing:
                continue
            content = shipped_graph(name)
            now = utcnow()
            conn.execute(insert(policy_versions).values(
                name=name, version=1, status=PolicyStatus.ACTIVE.value, content=content, sha256=_sha(content),
                note="shipped default", created_by=SEED_ACTOR, created_at=now, activated_by=SEED_ACTOR,
                activated_at=now,
            ))
            audit.record(conn, SEED_ACTOR, "policy.activate", "policy", f"{name}@1",
                         reason="shipped default loaded at first start")
            seeded.append(name)


def active_versions(db: Database) -> dict[str, tuple[int, dict[str, Any]]]:
    with db.connect() as conn:
        rows = conn.execute(select(policy_versions.c.name, policy_versions.c.version,
                                   policy_versions.c.content)
                            .where(policy_versions.c.status == PolicyStatus.ACTIVE.value)).all()
    return {r.name: (r.version, r.content) for r in rows}


def list_policies(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        counts = dict(conn.execute(select(policy_versions.c.name, func.count())
                                   .group_by(policy_versions.c.name)).all())
        active = dict(conn.execute(select(policy_versions.c.name, policy_versions.c.version)
                                   .where(policy_versions.c.status == PolicyStatus.ACTIVE.value)).all())
        proposed = dict(conn.execute(select(policy_versions.c.name, func.count())
                                     .where(policy_versions.c.status == PolicyStatus.PROPOSED.value)
                                     .group_by(policy_versions.c.name)).all())
    return [{"name": n, "active_version": active.get(n), "versions": counts.get(n, 0),
             "proposed": proposed.get(n, 0)} for n in POLICY_NAMES]


def list_versions(db: Database, name: str) -> list[dict[str, Any]]:
    _check_name(name)
    cols = [c for c in policy_versions.c if c.name != "content"]
    with db.connect() as conn:
        rows = conn.execute(select(*cols).where(policy_versions.c.name == name)
                            .order_by(policy_versions.c.version)).all()
    return [_row(r) for r in rows]


def get_version(db: Database, name: str, version: int) -> dict[str, Any]:
    _check_name(name)
    with db.connect() as conn:
        r = conn.execute(select(policy_versions).where(policy_versions.c.name == name,
                                                       policy_versions.c.version == version)).first()
    if r is None:
        raise NotFound(f"policy {name!r} has no version {version}", code="policy_version_not_found")
    return _row(r)


def propose(db: Database, name: str, content: Any, *, actor: str, note: str = "",
            expected_effect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a new version with status proposed; it changes nothing until someone else activates it."""
    check_proposal(name, content)
    try:
        with db.begin() as conn:
            last = conn.execute(select(func.max(policy_versions.c.version))
                                .where(policy_versions.c.name == name)).scalar() or 0
            version = int(last) + 1
            conn.execute(insert(policy_versions).values(
                name=name, version=version, status=PolicyStatus.PROPOSED.value, content=content,
                sha256=_sha(content), note=note, expected_effect=expected_effect, created_by=actor,
                created_at=utcnow(),
            ))
            audit.record(conn, actor, "policy.propose", "policy", f"{name}@{version}", reason=note,
                         details={"expected_effect": expected_effect, "sha256": _sha(content)})
    except IntegrityError:
        raise Conflict(f"another version of {name!r} was proposed at the same moment; retry",
                       code="concurrent_proposal") from None
    return get_version(db, name, version)


def _transition(db: Database, name: str, version: int, new: PolicyStatus, *, actor: str,
                reason: str) -> dict[str, Any]:
    _check_name(name)
    with db.begin() as conn:
        row = conn.execute(select(policy_versions).where(policy_versions.c.name == name,
                                                         policy_versions.c.version == version)
                           .with_for_update()).first()
        if row is None:
            raise NotFound(f"policy {name!r} has no version {version}", code="policy_version_not_found")
        status = PolicyStatus(row.status)
        if not status.can_become(new):
            raise Conflict(f"{name}@{version} is {status.value}; it cannot become {new.value}",
                           code="invalid_transition")
        if new is PolicyStatus.ACTIVE and row.created_by == actor:
            raise Forbidden(f"{actor} proposed {name}@{version} and cannot activate it: a second person "
                            "must (maker-checker)", code="maker_checker")
        values: dict[str, Any] = {"status": new.value}
        if new is PolicyStatus.ACTIVE:
            values.update(activated_by=actor, activated_at=utcnow())
            conn.execute(update(policy_versions)
                         .where(policy_versions.c.name == name,
                                policy_versions.c.status == PolicyStatus.ACTIVE.value)
                         .values(status=PolicyStatus.RETIRED.value))
        conn.execute(update(policy_versions).where(policy_versions.c.id == row.id).values(**values))
        audit.record(conn, actor, f"policy.{'activate' if new is PolicyStatus.ACTIVE else 'reject'}",
                     "policy", f"{name}@{version}", reason=reason,
                     details={"proposed_by": row.created_by, "previous_status": status.value})
    return get_version(db, name, version)


def activate(db: Database, name: str, version: int, *, actor: str, reason: str = "") -> dict[str, Any]:
    """Make a proposed version active (retiring the current one); the proposer may not."""
    return _transition(db, name, version, PolicyStatus.ACTIVE, actor=actor, reason=reason)


def reject(db: Database, name: str, version: int, *, actor: str, reason: str = "") -> dict[str, Any]:
    return _transition(db, name, version, PolicyStatus.REJECTED, actor=actor, reason=reason)
