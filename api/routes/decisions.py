"""``/v1/decisions`` (decide, batch, read back) and ``/v1/policies`` (versions, propose, activate)."""

from __future__ import annotations

import asyncio
from typing import Any

from callvet.api.context import AppContext
from callvet.api.deps import Version, get_ctx, require
from callvet.api.fastpath import FastRoute
from callvet.api.problems import api_routes
from callvet.api.schemas import DecisionBatchOut, DecisionOut, Deleted, PolicyList, PolicyVersionList
from callvet.core.application import Application
from callvet.core.auth import Principal, Role
from callvet.core.idempotency import MAX_IDEMPOTENCY_KEY, PATTERN, idempotent_id
from callvet.decision import DecisionEngine, Investigation
from callvet.decision import simulate as policy_simulation
from callvet.decision import store as policy_store
from callvet.portrait.links import enrich
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

__all__ = ["DecisionRequest", "engine", "fast_route", "router"]

router = APIRouter(tags=["decisions"])

_DECIDERS = (Role.ROBOT, Role.ANALYST, Role.APPROVER)
_require_decider = require(*_DECIDERS)
#: Not the robot (issue 9): it posts an investigation's result and gets that decision back, nothing more.
_READERS = (Role.ANALYST, Role.APPROVER, Role.AUDITOR, Role.RISK_OFFICER)


class DecisionRequest(BaseModel):
    application: Application
    investigation: Investigation | None = None


class BatchRequest(BaseModel):
    items: list[DecisionRequest] = Field(min_length=1, max_length=10_000)


def engine(ctx: AppContext) -> DecisionEngine:
    """The process's engine (model session and compiled policies built once)."""
    return ctx.decision


@router.post("/v1/decisions", response_model=DecisionOut)
async def decide(req: DecisionRequest, request: Request,
                 p: Principal = Depends(_require_decider),
                 idempotency_key: str | None = Header(
                     None, max_length=MAX_IDEMPOTENCY_KEY, pattern=PATTERN,
                     description="A retry with the same key (and API key) returns the stored decision "
                                 "instead of deciding again, on any replica.")) -> dict[str, Any]:
    """Decide one application; the answer comes once the decision is stored (group commit).

    The hot path of issue 17 runs on the event loop: deciding takes a fraction of a millisecond, and the
    thread hops of a sync route cost more than that. What can block goes to a thread: building the
    engine (first request), the portrait lookup (applicants the bank knows) and a retry's read-back.
    Requests that pass are usually answered by :func:`fast_route` with the same code; this route is the
    documented one and answers every other request (and its errors).
    """
    return await _decide(get_ctx(request), req, p, idempotency_key)


async def _decide(ctx: AppContext, req: DecisionRequest, p: Principal,
                  idempotency_key: str | None) -> dict[str, Any]:
    eng = ctx.peek("decision") or await run_in_threadpool(engine, ctx)
    application = req.application
    known: list[dict[str, Any] | None] = [None]
    if application.bank_relationship is not None and application.bank_relationship.customer_id is not None:
        apps, known = await run_in_threadpool(enrich, ctx.portrait_bank, [application])
        application = apps[0]
    decision_id = None if idempotency_key is None else idempotent_id(p.key_id, idempotency_key)
    decision, stored = eng.decide_submit(application, req.investigation, actor=p.actor,
                                         decision_id=decision_id)
    try:
        await asyncio.wrap_future(stored)
        out = decision.to_dict()
    except Exception as exc:
        if decision_id is None or not eng.recorder.is_duplicate(exc):
            raise
        out = await run_in_threadpool(eng.recorder.stored_answer, decision_id, decision.application_id)
    if known[0] is not None:
        out["portrait"] = known[0]
    return out


def fast_route(app_router: Any) -> FastRoute:
    """``POST /v1/decisions`` without FastAPI's per-request machinery (:mod:`callvet.api.fastpath`);
    requests it does not take go to ``app_router`` and so to :func:`decide`."""
    documented = next(r for r in api_routes(app_router.routes)
                      if isinstance(r, APIRoute) and r.path == "/v1/decisions" and "POST" in r.methods)

    async def check(request: Request) -> Principal:
        return await _require_decider(request, None)  # type: ignore[no-any-return]

    async def handler(request: Request, body: Any, headers: dict[str, str | None],
                      principal: Principal) -> dict[str, Any]:
        return await _decide(get_ctx(request), body, principal, headers["idempotency-key"])

    return FastRoute("POST", "/v1/decisions", body_model=DecisionRequest, response_model=DecisionOut,
                     check=check, handler=handler, router=app_router, documented=documented,
                     headers={"idempotency-key": (MAX_IDEMPOTENCY_KEY, PATTERN)})


@router.post("/v1/decisions:batch", response_model=DecisionBatchOut)
def decide_batch(req: BatchRequest, ctx: AppContext = Depends(get_ctx),
                 p: Principal = Depends(require(*_DECIDERS))) -> dict[str, Any]:
    apps, known = enrich(ctx.portrait_bank, [i.application for i in req.items])
    out = engine(ctx).decide_batch(apps, [i.investigation for i in req.items], actor=p.actor)
    items = [d.to_dict() for d in out]
    for item, k in zip(items, known, strict=True):
        if k is not None:
            item["portrait"] = k
    return {"items": items}


@router.get("/v1/decisions/{decision_id}")
def get_decision(decision_id: str, ctx: AppContext = Depends(get_ctx),
                 _p: Principal = Depends(require(*_READERS))) -> dict[str, Any]:
    return engine(ctx).get(decision_id)


@router.delete("/v1/decisions/{decision_id}", response_model=Deleted)
def delete_decision(decision_id: str, reason: str = Query(..., min_length=1, max_length=2000),
                    ctx: AppContext = Depends(get_ctx), p: Principal = Depends(require())) -> dict[str, Any]:
    """Erase one stored decision and its inputs (admin only; audited with the reason)."""
    return {"deleted": engine(ctx).delete(actor=p.actor, reason=reason, decision_id=decision_id)}


@router.delete("/v1/decisions", response_model=Deleted,
               responses={404: {"description": "no stored decision matches"}})
def delete_application_decisions(application_id: str = Query(..., min_length=1, max_length=64),
                                 reason: str = Query(..., min_length=1, max_length=2000),
                                 ctx: AppContext = Depends(get_ctx),
                                 p: Principal = Depends(require())) -> dict[str, Any]:
    """Erase every stored decision of an application (admin only; audited with the reason)."""
    return {"deleted": engine(ctx).delete(actor=p.actor, reason=reason, application_id=application_id)}


@router.get("/v1/policies", tags=["policies"], response_model=PolicyList)
def list_policies(ctx: AppContext = Depends(get_ctx),
                  _p: Principal = Depends(require(*_READERS))) -> dict[str, Any]:
    policy_store.seed(ctx.db)
    return {"policies": policy_store.list_policies(ctx.db)}


@router.get("/v1/policies/{name}/versions", tags=["policies"], response_model=PolicyVersionList)
def list_versions(name: str, ctx: AppContext = Depends(get_ctx),
                  _p: Principal = Depends(require(*_READERS))) -> dict[str, Any]:
    policy_store.seed(ctx.db)
    return {"versions": policy_store.list_versions(ctx.db, name)}


@router.get("/v1/policies/{name}/versions/{version}", tags=["policies"])
def get_version(name: str, version: Version, ctx: AppContext = Depends(get_ctx),
                _p: Principal = Depends(require(*_READERS))) -> dict[str, Any]:
    return policy_store.get_version(ctx.db, name, version)


@router.post("/v1/policies/{name}/versions", status_code=201, tags=["policies"])
def propose(name: str, graph: dict[str, Any] = Body(..., description="the JDM decision graph"),
            note: str = Query("", max_length=2000), ctx: AppContext = Depends(get_ctx),
            p: Principal = Depends(require(Role.RISK_OFFICER))) -> dict[str, Any]:
    policy_store.seed(ctx.db)
    out = policy_store.propose(ctx.db, name, graph, actor=p.actor, note=note)
    out.pop("content", None)
    return out


@router.post("/v1/policies/{name}/simulate", tags=["policies"])
def simulate(name: str, graph: dict[str, Any] = Body(..., description="the draft JDM decision graph"),
             limit: int = Query(policy_simulation.DEFAULT_REPLAY, ge=1, le=policy_simulation.MAX_REPLAY,
                                description="how many of the most recent stored applications to replay"),
             ctx: AppContext = Depends(get_ctx),
             p: Principal = Depends(require(Role.RISK_OFFICER))) -> dict[str, Any]:
    """Replay recent stored applications through the draft and the active policy (nothing stored):
    verdict mix of each, how many verdicts and limits change, the transitions and a few examples."""
    policy_store.seed(ctx.db)
    return policy_simulation.replay(engine(ctx), name, graph, limit=limit, actor=p.actor)


@router.post("/v1/policies/{name}/versions/{version}/activate", tags=["policies"])
def activate(name: str, version: Version, reason: str = Query("", max_length=2000),
             ctx: AppContext = Depends(get_ctx),
             p: Principal = Depends(require(Role.APPROVER))) -> dict[str, Any]:
    out = engine(ctx).activate(name, version, actor=p.actor, reason=reason)
    out.pop("content", None)
    return out


@router.post("/v1/policies/{name}/versions/{version}/reject", tags=["policies"])
def reject(name: str, version: Version, reason: str = Query("", max_length=2000),
           ctx: AppContext = Depends(get_ctx),
           p: Principal = Depends(require(Role.APPROVER, Role.RISK_OFFICER))) -> dict[str, Any]:
    out = policy_store.reject(ctx.db, name, version, actor=p.actor, reason=reason)
    out.pop("content", None)
    return out
