"""HTTP surface of the workflow engine: /v1/workflow, /v1/tasks and /v1/supervision.

Thin by design: every route authenticates, picks the caller's identity and calls
:class:`callvet.workflow.engine.WorkflowRuntime`; domain errors become HTTP statuses in ``api.app``.
A human task's reviewer identity is the API key's label (or key id), which is also the ``user_id`` of
the person in the workflow users table, so authority and segregation-of-duties checks line up.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from callvet.api.context import AppContext
from callvet.api.deps import IntId, Version, get_ctx, require
from callvet.api.routes.cases import task_context
from callvet.api.schemas import (
    ConfigSet,
    ConfigValue,
    DefinitionList,
    DefinitionOut,
    FindingList,
    InstanceList,
    RuleList,
    TaskList,
    Uploaded,
    UserList,
)
from callvet.core.auth import Principal, Role
from callvet.core.errors import Conflict, InvalidInput
from callvet.core.idempotency import MAX_IDEMPOTENCY_KEY, PATTERN, idempotent_id
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.supervise import KINDS
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

__all__ = ["router", "runtime"]

router = APIRouter(tags=["workflow"])

#: Readers of definitions and instances. Not the robot (issue 9): a key kept on a telephony host only
#: streams calls and posts their results (messages), it reads no one's case.
ALL_STAFF = (Role.ANALYST, Role.AUDITOR, Role.APPROVER, Role.RISK_OFFICER)
MANAGERS = (Role.RISK_OFFICER,)


def runtime(ctx: AppContext) -> WorkflowRuntime:
    """The process-wide runtime (``ctx.workflow``), deciding with the same DecisionEngine instance as
    /v1/decisions."""
    return ctx.workflow


def _rt(ctx: AppContext = Depends(get_ctx)) -> WorkflowRuntime:
    return runtime(ctx)


def _person(p: Principal) -> str:
    return p.label or p.key_id


#: Process data keys starting with "_" are the engine's own (the workflow engine refuses them).
_DATA_KEYS: dict[str, Any] = {"propertyNames": {"pattern": "^[^_]"}}


class StartBody(BaseModel):
    process_key: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_DATA_KEYS)
    version: int | None = Field(default=None, ge=1, le=1_000_000)


class CompleteBody(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_DATA_KEYS)


class MessageBody(BaseModel):
    payload: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_DATA_KEYS)


class UserBody(BaseModel):
    role: Role
    skills: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list,
                                                                               max_length=100)
    name: str = ""
    max_amount: float | None = Field(default=None, ge=0, le=1e15)
    active: bool = True


class RectifyBody(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


# ---- definitions -------------------------------------------------------------------------------------
_BPMN_BODY = {"requestBody": {"required": True, "content": {
    t: {"schema": {"type": "string", "description": "BPMN 2.0 XML"}}
    for t in ("application/xml", "text/xml")}}}


@router.post("/v1/workflow/definitions", status_code=201, response_model=Uploaded, openapi_extra=_BPMN_BODY)
async def upload_definition(
    request: Request, p: Principal = Depends(require(*MANAGERS)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/xml", "text/xml", "application/bpmn+xml"):
        raise InvalidInput(
            "send the BPMN XML with Content-Type application/xml", code="unsupported_media_type"
        )
    body = await request.body()
    if not body.strip():
        raise InvalidInput("empty body: send BPMN 2.0 XML", code="invalid_bpmn")
    d = await run_in_threadpool(rt.definitions.upload, body, actor=p.actor)
    return {"process_key": d.process_key, "version": d.version, "active": d.active}


@router.get("/v1/workflow/definitions", response_model=DefinitionList)
def list_definitions(
    _p: Principal = Depends(require(*ALL_STAFF)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    return {"definitions": [d.to_dict() for d in rt.definitions.list()]}


@router.post("/v1/workflow/definitions/{process_key}/versions/{version}/activate",
             response_model=DefinitionOut)
def activate_definition(
    process_key: str,
    version: Version,
    p: Principal = Depends(require(*MANAGERS)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return rt.definitions.activate(process_key, version, actor=p.actor).to_dict()


# ---- instances -------------------------------------------------------------------------------------------
@router.post("/v1/workflow/instances", status_code=201, responses={404: {"description": "no such process"}})
def start_instance(
    body: StartBody,
    p: Principal = Depends(require(Role.ANALYST, Role.ROBOT, Role.RISK_OFFICER)),
    rt: WorkflowRuntime = Depends(_rt),
    idempotency_key: str | None = Header(
        None, max_length=MAX_IDEMPOTENCY_KEY, pattern=PATTERN,
        description="A retry with the same key (and API key) returns the instance it started, on any "
                    "replica, instead of starting a second one."),
) -> dict[str, Any]:
    if idempotency_key is None:
        return rt.start(body.process_key, body.data, actor=p.actor, version=body.version)
    iid = str(uuid.UUID(idempotent_id(p.key_id, idempotency_key)))
    try:
        return rt.start(body.process_key, body.data, actor=p.actor, version=body.version, instance_id=iid)
    except (IntegrityError, Conflict) as exc:
        if isinstance(exc, Conflict) and exc.code != "instance_exists":
            raise
    # this key's instance exists: the request is a retry
    existing = rt.summary(iid)
    if existing.get("process_key") != body.process_key:
        raise Conflict("this idempotency key started another process", code="idempotency_key_reused")
    return {**existing, "replayed": True}


@router.get("/v1/workflow/instances", response_model=InstanceList)
def list_instances(
    status: str | None = Query(None, pattern="^(running|waiting|completed|failed)$"),
    process_key: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _p: Principal = Depends(require(*ALL_STAFF)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    """Newest first; ``waiting_for`` names the messages a waiting instance expects."""
    return {"instances": rt.list_instances(status=status, process_key=process_key, limit=limit)}


@router.get("/v1/workflow/instances/{instance_id}")
def get_instance(
    instance_id: str, _p: Principal = Depends(require(*ALL_STAFF)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    return rt.summary(instance_id, with_events=True)


class ReasonBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")


@router.post("/v1/workflow/instances/{instance_id}/cancel")
def cancel_instance(
    instance_id: str,
    body: ReasonBody,
    p: Principal = Depends(require(*MANAGERS)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return rt.cancel(instance_id, actor=p.actor, reason=body.reason)


@router.delete("/v1/workflow/instances/{instance_id}")
def erase_instance(
    instance_id: str,
    reason: str = Query(..., min_length=1, max_length=500),
    p: Principal = Depends(require()),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    """Admin only: erase a finished instance's data (the audit log records who and why)."""
    return rt.erase(instance_id, actor=p.actor, reason=reason)


@router.post("/v1/workflow/instances/{instance_id}/messages/{name}")
def deliver_message(
    instance_id: str,
    name: str,
    body: MessageBody,
    p: Principal = Depends(require(Role.ROBOT, Role.ANALYST)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return rt.deliver_message(instance_id, name, body.payload, actor=p.actor)


@router.post("/v1/workflow/tick")
def tick(_p: Principal = Depends(require()), rt: WorkflowRuntime = Depends(_rt)) -> dict[str, int]:
    """One scheduler round (the worker runs these continuously); admin only."""
    return rt.tick()


# ---- people and configuration --------------------------------------------------------------------------
@router.get("/v1/workflow/users", response_model=UserList)
def list_users(
    _p: Principal = Depends(require(*MANAGERS)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    return {"users": rt.board.list_users()}


@router.put("/v1/workflow/users/{user_id}")
def put_user(
    user_id: str,
    body: UserBody,
    p: Principal = Depends(require(*MANAGERS)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return rt.board.upsert_user(
        user_id,
        role=body.role.value,
        skills=body.skills,
        name=body.name,
        max_amount=body.max_amount,
        active=body.active,
        actor=p.actor,
    )


@router.get("/v1/workflow/config/{key}", response_model=ConfigValue)
def get_config(
    key: str, _p: Principal = Depends(require(*MANAGERS)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    version, value = rt.config.get_raw(key)
    return {"key": key, "version": version, "value": value}


@router.put("/v1/workflow/config/{key}", response_model=ConfigSet)
def put_config(
    key: str,
    value: dict[str, Any],
    p: Principal = Depends(require(*MANAGERS)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    version = rt.config.set(key, value, actor=p.actor)
    return {"key": key, "version": version}


# ---- human tasks -------------------------------------------------------------------------------------------
@router.get("/v1/tasks", response_model=TaskList)
def list_tasks(
    assignee: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    p: Principal = Depends(require(Role.APPROVER, Role.RISK_OFFICER, Role.ANALYST)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    role = None if p.role is Role.ADMIN else p.role.value
    return {"tasks": rt.board.list_open(role=role, assignee=assignee, limit=limit)}


@router.get("/v1/tasks/{task_id}")
def get_task(
    task_id: str,
    _p: Principal = Depends(require(Role.APPROVER, Role.RISK_OFFICER, Role.ANALYST)),
    rt: WorkflowRuntime = Depends(_rt),
    ctx: AppContext = Depends(get_ctx),
) -> dict[str, Any]:
    task = rt.board.get(task_id)
    return {**task, **task_context(ctx, task)}


@router.post("/v1/tasks/{task_id}/complete")
def complete_task(
    task_id: str,
    body: CompleteBody,
    p: Principal = Depends(require(Role.APPROVER, Role.RISK_OFFICER)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    role = None if p.role is Role.ADMIN else p.role.value
    return rt.complete_task(task_id, body.data, actor=p.actor, role=role, reviewer_id=_person(p))


# ---- supervision ------------------------------------------------------------------------------------------
@router.get("/v1/supervision/rules", response_model=RuleList)
def list_rules(
    kind: str | None = Query(None, pattern="^(issuance|limit_adjustment)$"),
    _p: Principal = Depends(require(Role.AUDITOR, Role.RISK_OFFICER, Role.APPROVER, Role.ANALYST)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    kinds = [kind] if kind else list(KINDS)
    rules = [r.to_dict() for k in kinds for r in rt.supervisor.catalogue.rules_of(k)]
    return {"rules": rules, "count": len(rules)}


@router.get("/v1/supervision/findings", response_model=FindingList)
def list_findings(
    status: str | None = Query(None, pattern="^(open|rectified)$"),
    instance_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _p: Principal = Depends(require(Role.AUDITOR, Role.RISK_OFFICER)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return {"findings": rt.supervisor.findings(status=status, instance_id=instance_id, limit=limit)}


@router.post("/v1/supervision/findings/{finding_id}/rectify")
def rectify(
    finding_id: IntId,
    body: RectifyBody,
    p: Principal = Depends(require(Role.RISK_OFFICER)),
    rt: WorkflowRuntime = Depends(_rt),
) -> dict[str, Any]:
    return rt.supervisor.rectify(finding_id, actor=p.actor, note=body.note)


@router.get("/v1/supervision/metrics")
def metrics(
    _p: Principal = Depends(require(Role.AUDITOR, Role.RISK_OFFICER)), rt: WorkflowRuntime = Depends(_rt)
) -> dict[str, Any]:
    return rt.supervisor.metrics()
