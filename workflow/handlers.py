"""Named service-task handlers: the only code a BPMN definition can reach.

A service task names a handler (``callvet:handler="decision.prescreen"``); uploads naming an unknown one
are rejected. A handler receives a :class:`HandlerCall` and returns a dict merged into the task data.
What a handler may use besides the task data is ``call.deps`` (:class:`~callvet.workflow.deps.WorkflowDeps`:
the decider, the interview store, the supervisor), given to the runtime at construction.

Idempotency: every call carries ``effect_key`` (instance id + element + occurrence). The runtime stores
the handler's result under that key in the same transaction as the instance's next state, and replays
the stored result instead of calling again. A handler that writes to callvet's own tables does so on
``call.conn`` -- the same transaction -- so its write commits exactly once with the state; the
issuance handlers below are written that way (``wf_issuances.effect_key`` is unique).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callvet.core.application import Application
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, Unavailable
from callvet.workflow.deps import Decider, LazyDecider, WorkflowDeps, engine_decider
from callvet.workflow.tables import wf_issuances
from pydantic import ValidationError
from sqlalchemy import Connection, insert, select

__all__ = [
    "Decider",
    "HandlerCall",
    "HandlerRegistry",
    "decisions_in_transaction",
    "default_registry",
    "engine_decider",
    "real_decider",
    "validate_application",
]


@dataclass
class HandlerCall:
    """One service-task execution: ``conn`` is the runtime's open transaction for a transactional
    handler (None otherwise); ``deps`` are the collaborators the runtime was built with."""

    instance_id: str
    process_key: str
    element: str
    effect_key: str
    data: dict[str, Any]
    conn: Connection | None
    actor: str
    deps: WorkflowDeps


Handler = Callable[[HandlerCall], dict[str, Any]]


class HandlerRegistry:
    """Handlers by name. ``transactional`` ones get ``call.conn`` (the runtime's open transaction);
    the others (e.g. the decision engine, which commits its own records) run before it opens, with
    ``call.conn`` None, so SQLite never sees two writers in one thread."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._transactional: set[str] = set()

    def register(self, name: str, fn: Handler, *, transactional: bool = True) -> None:
        self._handlers[name] = fn
        if transactional:
            self._transactional.add(name)
        else:
            self._transactional.discard(name)

    def transactional(self, name: str) -> bool:
        return name in self._transactional

    def names(self) -> set[str]:
        return set(self._handlers)

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise Unavailable(f"no handler {name!r} registered", code="handler_missing") from None

    def copy(self) -> HandlerRegistry:
        r = HandlerRegistry()
        r._handlers = dict(self._handlers)
        r._transactional = set(self._transactional)
        return r


def _application(call: HandlerCall) -> dict[str, Any]:
    app = call.data.get("application")
    if not isinstance(app, dict):
        raise InvalidInput("instance data has no 'application' object", code="no_application")
    return app


def _decision_fields(d: dict[str, Any], stage: str) -> dict[str, Any]:
    return {
        stage: d,
        "decision": d["decision"],
        "credit_limit": float(d.get("credit_limit") or 0.0),
        "risk_score": float(d.get("score") or 0.0),
        "decision_id": d.get("decision_id"),
    }


def _decide(call: HandlerCall, inv: dict[str, Any] | None) -> dict[str, Any]:
    if call.conn is not None:
        return call.deps.decide(_application(call), inv, call.actor, conn=call.conn)  # type: ignore[call-arg]
    return call.deps.decide(_application(call), inv, call.actor)


def _prescreen(call: HandlerCall) -> dict[str, Any]:
    return _decision_fields(_decide(call, None), "prescreen")


def _final(call: HandlerCall) -> dict[str, Any]:
    inv = call.data.get("investigation")
    if not isinstance(inv, dict):
        inv = {}
    d = _decide(call, inv)
    flags = [str(f) for f in inv.get("review_flags") or []]
    blacklisted = any(r.get("code") == "voiceprint_blacklist_match" for r in d.get("reasons") or [])
    if flags and not blacklisted and d.get("decision") in ("approve", "decline"):
        # Issue 11: a review-tier voice hit, a spoof flag or a failed interview alone is evidence for a
        # person to weigh, never an automatic card or decline; the engine's verdict stays on record.
        d = {**d, "engine_decision": d["decision"], "decision": "refer_human",
             "reasons": [*(d.get("reasons") or []),
                         *({"code": f, "policy": "case_review", "text": f"{f.replace('_', ' ')}: a person "
                            "must review"} for f in flags)]}
    return _decision_fields(d, "final")


def _request_call(call: HandlerCall) -> dict[str, Any]:
    """Asks for an investigation call: the call robot polls for waiting instances via the API."""
    n = int(call.data.get("call_requests") or 0) + 1
    return {"call_requests": n, "call_requested_at": utcnow().isoformat(), "awaiting": "investigation_result"}


_AMOUNT_FIELD = {
    "card_issued": "credit_limit",
    "loan_disbursed": "amount",
    "limit_changed": "requested_limit",
}
"""What was granted when the reviewer set no ``approved_amount``: the engine's card limit, the loan
amount applied for, the limit the customer asked for."""


def _issue(kind: str) -> Handler:
    def run(call: HandlerCall) -> dict[str, Any]:
        app = call.data.get("application") or {}
        amount = call.data.get("approved_amount") or call.data.get(_AMOUNT_FIELD[kind])
        conn = call.conn
        assert conn is not None, "issuance handlers are transactional"
        existing = conn.execute(
            select(wf_issuances.c.id).where(wf_issuances.c.effect_key == call.effect_key)
        ).first()
        if existing is None:
            existing_id = conn.execute(
                insert(wf_issuances).values(
                    effect_key=call.effect_key,
                    instance_id=call.instance_id,
                    application_id=app.get("application_id"),
                    product=call.data.get("product") or app.get("card_product"),
                    kind=kind,
                    amount=float(amount) if amount is not None else None,
                    at=utcnow(),
                )
            ).inserted_primary_key[0]
        else:
            existing_id = existing.id
        if kind == "limit_changed" and not call.data.get("reviewers"):
            call.deps.supervisor.check(
                conn,
                kind="limit_adjustment",
                instance_id=call.instance_id,
                task_id=f"auto:{call.element}",
                data=call.data,
                actor=call.actor,
                reviewer_id=None,
                assignee=None,
                task_created_at=None,
            )
        return {"outcome": kind, "issuance_id": int(existing_id)}

    return run


def _collect_questionnaire(call: HandlerCall) -> dict[str, Any]:
    """Fill ``investigation.questionnaire`` from the stored interview the call robot ran.

    The robot's ``investigation_result`` message may name the interview (``interview_id``) instead of
    copying its verdict; the verdict is then read from the questionnaire part's own records, so what the
    decision engine sees is what the interview stored. An unfinished interview counts as inconclusive.
    """
    inv = dict(call.data.get("investigation") or {})
    interview_id = inv.get("interview_id")
    if not interview_id or inv.get("questionnaire"):
        return {}
    got = call.deps.interviews.get(str(interview_id), include_answers=False)
    app_id = (call.data.get("application") or {}).get("application_id")
    if got.get("application_id") != app_id:
        raise InvalidInput(
            f"interview {interview_id} belongs to another application", code="interview_mismatch"
        )
    result = got.get("result") or {}
    if got.get("state") != "finished" or not result.get("verdict"):
        inv["questionnaire"] = {"verdict": "inconclusive", "reasons": ["interview_not_finished"]}
    else:
        inv["questionnaire"] = {
            "verdict": result["verdict"],
            "risk_score": result.get("risk_score"),
            "reasons": list(result.get("reasons") or []),
        }
    return {"investigation": inv}


def _decline(call: HandlerCall) -> dict[str, Any]:
    return {"outcome": "declined"}


def default_registry(configure: Handler) -> HandlerRegistry:
    """The built-in handlers; ``configure`` applies product configuration (see :mod:`.products`)."""
    r = HandlerRegistry()
    r.register("product.configure", configure)
    r.register("decision.prescreen", _prescreen, transactional=False)
    r.register("decision.final", _final, transactional=False)
    r.register("investigation.request", _request_call)
    r.register("questionnaire.collect", _collect_questionnaire)
    r.register("issuance.issue_card", _issue("card_issued"))
    r.register("issuance.disburse_loan", _issue("loan_disbursed"))
    r.register("issuance.apply_limit", _issue("limit_changed"))
    r.register("notify.decline", _decline)
    return r


def decisions_in_transaction(registry: HandlerRegistry, decide: Any) -> HandlerRegistry:
    """The registry with the default decision handlers transactional when ``decide`` can store on the
    step's connection (``in_transaction``); unchanged for other deciders or replaced handlers."""
    if not getattr(decide, "in_transaction", False):
        return registry
    names = [n for n, fn in (("decision.prescreen", _prescreen), ("decision.final", _final))
             if n in registry.names() and registry.get(n) is fn and not registry.transactional(n)]
    if not names:
        return registry
    out = registry.copy()
    for n in names:
        out.register(n, registry.get(n), transactional=True)
    return out


def validate_application(data: dict[str, Any]) -> None:
    """The shipped processes' start hook: ``data.application`` must be the shared card contract."""
    app = data.get("application")
    if not isinstance(app, dict):
        raise InvalidInput(
            "data.application (the card application contract) is required", code="no_application"
        )
    try:
        Application.model_validate(app)
    except ValidationError as exc:
        errs = [f"application.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        raise InvalidInput(
            "invalid application: " + "; ".join(errs), code="invalid_application", errors=errs
        ) from None


def real_decider(db: Database, settings: Any) -> Decider:
    """Bind :class:`callvet.decision.DecisionEngine` now; 503 if it cannot be built (e.g. model missing).
    Kept for callers of the old API; the runtime itself binds it lazily (:class:`~.deps.LazyDecider`)."""
    return LazyDecider(db, settings).bind()
