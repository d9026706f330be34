"""Risk pages: decision policies (edit a rule table, propose the new version, a second person with the
approver role activates or rejects it) and BPMN processes (upload, see why a broken one is refused,
activate).

Maker-checker is the decision store's own rule (the proposer cannot activate), so it holds for people as
it does for API keys: the signed-in person is the actor on both sides. Activation goes through the
process's decision engine, as ``POST /v1/policies/.../activate`` does, so its compiled rules are reloaded.
"""

from __future__ import annotations

import json
from typing import Any

from callvet.api.routes.decisions import engine
from callvet.api.routes.workflow import runtime
from callvet.console.base import (
    allowed,
    console_router,
    ctx_of,
    guard,
    guard_post,
    lang_of,
    render,
    see_other,
)
from callvet.console.i18n import translator
from callvet.core.auth import Role
from callvet.core.errors import CallvetError, InvalidInput, NotFound
from callvet.decision import simulate as policy_simulation
from callvet.decision import store as policy_store
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

__all__ = ["EDITORS", "MAX_BPMN", "policies_page_with", "processes_page_with", "router", "table_editor_page",
           "version_to_edit"]

router = console_router()
READERS = (Role.RISK_OFFICER, Role.APPROVER)
EDITORS = (Role.RISK_OFFICER,)
ACTIVATORS = (Role.APPROVER,)
REJECTERS = (Role.APPROVER, Role.RISK_OFFICER)
MAX_BPMN = 1 << 20


def policies_page_with(request: Request, session: Any, status: int = 200, **extra: Any) -> Response:
    db = ctx_of(request).db
    policy_store.seed(db)
    policies = [{**p, "all": policy_store.list_versions(db, p["name"])}
                for p in policy_store.list_policies(db)]
    role = session.person.role
    return render(request, "policies.html", session, status, policies=policies, title_key="nav.policies",
                  can_edit=allowed(role, EDITORS), can_activate=allowed(role, ACTIVATORS),
                  can_reject=allowed(role, REJECTERS), **extra)


@router.get("/policies")
def policies_page(request: Request, done: str = "") -> Response:
    session = guard(request, *READERS)
    t = translator(lang_of(request))
    return policies_page_with(request, session, notice=t(f"done.{done}") if done in ("proposed", "activated",
                                                                                 "rejected") else "")


def _editor(request: Request, session: Any, name: str, graph: dict[str, Any], base: int, status: int = 200,
            **extra: Any) -> Response:
    t = translator(lang_of(request))
    text = {k: t(f"ed.{k}") for k in ("changed", "added", "removed", "invalid", "hitPolicy", "addRule")}
    return render(request, "policy_edit.html", session, status, name=name, base=base,
                  title_key="nav.policies", graph_json=json.dumps(graph, ensure_ascii=False),
                  editor_text=json.dumps(text, ensure_ascii=False), **extra)


def version_to_edit(db: Any, name: str, version: int | None) -> dict[str, Any]:
    """The stored version an editor starts from: ``version``, else the active one."""
    policy_store.seed(db)
    if version is None:
        version = next((p["active_version"] for p in policy_store.list_policies(db) if p["name"] == name),
                       None)
        if version is None:
            raise NotFound(f"no policy {name!r}", code="policy_not_found")
    return policy_store.get_version(db, name, int(version))


def table_editor_page(request: Request, name: str, version: int | None, notice: str = "") -> Response:
    """The console's own rule-table editor (no build step): the fallback when the JDM bundle is absent."""
    session = guard(request, *EDITORS)
    try:
        row = version_to_edit(ctx_of(request).db, name, version)
    except CallvetError as exc:
        return policies_page_with(request, session, 404, error=exc.message)
    return _editor(request, session, name, row["content"], int(row["version"]), notice=notice)


@router.get("/policies/{name}/tables")
def edit_tables(request: Request, name: str, version: int | None = None) -> Response:
    return table_editor_page(request, name, version)


def _propose_with_effect(request: Request, name: str, graph: Any, actor: str, note: str) -> dict[str, Any]:
    """Propose with the draft's replay against recent stored applications as its expected effect, so
    the approver sees what activating it would change (the examples stay out: they name applications)."""
    ctx = ctx_of(request)
    effect: dict[str, Any] | None = None
    if isinstance(graph, dict):
        try:
            effect = policy_simulation.replay(ctx.decision, name, graph, actor=actor)
            effect.pop("examples", None)
        except CallvetError:
            effect = None
    return policy_store.propose(ctx.db, name, graph, actor=actor, note=note, expected_effect=effect)


@router.post("/policies/{name}/propose")
async def propose(request: Request, name: str) -> Response:
    session = await guard_post(request, *EDITORS)
    form = await request.form()
    raw, note = str(form.get("graph") or ""), str(form.get("note") or "").strip()[:2000]
    base = int(str(form.get("base") or "0")) if str(form.get("base") or "0").isdigit() else 0
    try:
        graph = json.loads(raw)
    except ValueError:
        return _editor(request, session, name, {}, base, 422, error="the edited graph is not JSON")
    try:
        if not note:
            raise InvalidInput("say why (the note is kept in the audit log)", code="note_required")
        out = await run_in_threadpool(_propose_with_effect, request, name, graph, session.person.actor, note)
    except CallvetError as exc:
        if str(form.get("editor") or "") == "jdm" and isinstance(graph, dict):
            from callvet.console.editors import jdm_page

            return jdm_page(request, session, name, graph, base, 422, error=exc.message)
        return _editor(request, session, name, graph if isinstance(graph, dict) else {}, base, 422,
                       error=exc.message)
    return see_other(f"/console/policies?done=proposed#v-{name}-{out['version']}")


@router.post("/policies/{name}/versions/{version}/{action}")
async def decide_version(request: Request, name: str, version: int, action: str) -> Response:
    """``activate`` (approver; never the proposer) or ``reject`` (approver or risk officer)."""
    roles = ACTIVATORS if action == "activate" else REJECTERS
    session = await guard_post(request, *roles)
    reason = str((await request.form()).get("reason") or "").strip()[:2000]
    actor = session.person.actor
    try:
        if action == "activate":
            await run_in_threadpool(engine(ctx_of(request)).activate, name, version, actor=actor,
                                    reason=reason)
        elif action == "reject":
            await run_in_threadpool(policy_store.reject, ctx_of(request).db, name, version, actor=actor,
                                    reason=reason)
        else:
            raise InvalidInput(f"unknown action {action!r}", code="unknown_action")
    except CallvetError as exc:
        status = 403 if exc.code == "maker_checker" else 409 if exc.code == "invalid_transition" else 422
        return await run_in_threadpool(policies_page_with, request, session, status, error=exc.message)
    return see_other(f"/console/policies?done={action}d")


def processes_page_with(request: Request, session: Any, status: int = 200, **extra: Any) -> Response:
    defs = [d.to_dict() for d in runtime(ctx_of(request)).definitions.list()]
    return render(request, "processes.html", session, status, definitions=defs, title_key="nav.processes",
                  **extra)


@router.get("/processes")
def processes_page(request: Request, done: str = "") -> Response:
    session = guard(request, *EDITORS)
    t = translator(lang_of(request))
    return processes_page_with(request, session, notice=t("done.uploaded", what=done[:200]) if done else "")


@router.post("/processes/upload")
async def upload_process(request: Request) -> Response:
    session = await guard_post(request, *EDITORS)
    upload = (await request.form()).get("bpmn")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInput("choose a BPMN file", code="invalid_bpmn", element="")
        body = await upload.read(MAX_BPMN + 1)
        if len(body) > MAX_BPMN:
            raise InvalidInput(f"a BPMN file may have at most {MAX_BPMN} bytes", code="too_large", element="")
        if not body.strip():
            raise InvalidInput("empty file: upload BPMN 2.0 XML", code="invalid_bpmn", element="")
        d = await run_in_threadpool(runtime(ctx_of(request)).definitions.upload, body,
                                    actor=session.person.actor)
    except CallvetError as exc:
        return await run_in_threadpool(processes_page_with, request, session, 422, bpmn_error=exc.message,
                                       bad_element=exc.details.get("element") or "", error_code=exc.code)
    return see_other(f"/console/processes?done={d.process_key}@{d.version}")


@router.post("/processes/{process_key}/versions/{version}/activate")
async def activate_process(request: Request, process_key: str, version: int) -> Response:
    session = await guard_post(request, *EDITORS)
    try:
        await run_in_threadpool(runtime(ctx_of(request)).definitions.activate, process_key[:100], version,
                                actor=session.person.actor)
    except CallvetError as exc:
        return await run_in_threadpool(processes_page_with, request, session, 422, error=exc.message)
    return see_other("/console/processes")
