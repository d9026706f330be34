"""The risk-expert editors: the GoRules JDM editor for decision policies and the bpmn-js modeler for
processes, bundled by vite from npm packages into ``console/web/dist`` (``./dev install`` runs
``npm ci`` and ``npm run build``; the bundle is not committed).

The pages find the bundle through vite's manifest, so its hashed file names never appear in code; when
it was not built, the policy page falls back to the console's own rule-table editor and says why, and
the modeler page says how to build it. Both editors talk to JSON endpoints here that take the session's
CSRF token in ``X-CSRF-Token``: a draft policy is simulated against stored applications before it is
proposed (:mod:`callvet.decision.simulate`), a diagram is validated or uploaded and a refusal names the
BPMN element the modeler marks.

Editor pages carry a wider CSP than the rest of the console: the JDM editor compiles zen-engine to
WebAssembly (``'wasm-unsafe-eval'``), runs Monaco's workers from this origin, and antd, CodeMirror and
Monaco insert ``<style>`` elements at run time (``style-src 'unsafe-inline'``). Scripts still come from
this origin only and no page has an inline script.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from callvet.api.routes.workflow import runtime
from callvet.console import risk
from callvet.console.base import HERE, console_router, ctx_of, guard, guard_post, lang_of, render
from callvet.console.i18n import translator
from callvet.core.errors import CallvetError
from callvet.decision import simulate as policy_simulation
from callvet.decision import store as policy_store
from callvet.workflow.definitions import parse_definition
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["BUILD_DIR", "EDITOR_CSP", "BuildFiles", "bundle", "jdm_page", "router"]

router = console_router()
BUILD_DIR = Path(os.environ.get("CALLVET_CONSOLE_BUILD_DIR") or HERE / "web" / "dist")
NOT_BUILT = ("the console's editor bundle was not built: run ./dev install (npm ci and npm run build in "
             "console/web)")
MAX_GRAPH = 2 << 20
EDITOR_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
              "connect-src 'self'; "
              "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


class BuildFiles(StaticFiles):
    """The bundle's files: a plain 404 saying how to build it when it is missing, and cached for a year
    when present (vite puts a content hash in every file name)."""

    def __init__(self) -> None:
        super().__init__(directory=BUILD_DIR, check_dir=False)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        self.all_directories = [BUILD_DIR]
        return super().lookup_path(path)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not BUILD_DIR.is_dir():
            return PlainTextResponse(NOT_BUILT, status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


@lru_cache(maxsize=4)
def _manifest(path: Path, mtime_ns: int) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def bundle(entry: str) -> dict[str, Any] | None:
    """The script and style sheets of one bundle entry (``src/policy_editor.jsx``), or None if unbuilt."""
    path = BUILD_DIR / ".vite" / "manifest.json"
    try:
        manifest = _manifest(path, path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return None
    if entry not in manifest:
        return None
    css: list[str] = []
    seen: set[str] = set()

    def walk(key: str) -> None:
        if key in seen or key not in manifest:
            return
        seen.add(key)
        for sheet in manifest[key].get("css", []):
            if sheet not in css:
                css.append(sheet)
        for child in manifest[key].get("imports", []):
            walk(child)

    walk(entry)
    return {"script": f"/console/build/{manifest[entry]['file']}",
            "css": [f"/console/build/{c}" for c in css]}


def _texts(lang: str, prefix: str, keys: tuple[str, ...]) -> dict[str, str]:
    t = translator(lang)
    return {k: t(f"{prefix}.{k}") for k in keys}


_SIM_KEYS = ("simulate", "simulating", "simulation", "replayed", "changedVerdicts", "changedLimits",
             "skipped",
             "noRecords", "outcome", "active", "draft", "from", "to", "count", "examples", "changed", "added",
             "removed")
_BPMN_KEYS = ("loaded", "warnings", "unreadable", "refused", "valid", "uploaded")


@router.get("/policies/{name}/edit")
def edit_policy(request: Request, name: str, version: int | None = None) -> Response:
    """The JDM editor on a version (the active one by default); the rule-table editor when unbuilt."""
    built = bundle("src/policy_editor.jsx")
    if built is None:
        return risk.table_editor_page(request, name, version, notice=NOT_BUILT)
    session = guard(request, *risk.EDITORS)
    try:
        row = risk.version_to_edit(ctx_of(request).db, name, version)
    except CallvetError as exc:
        return risk.policies_page_with(request, session, 404, error=exc.message)
    return jdm_page(request, session, name, row["content"], int(row["version"]))


def jdm_page(request: Request, session: Any, name: str, graph: Any, base: int, status: int = 200,
             **extra: Any) -> Response:
    """The JDM editor page on ``graph`` (also after a refused proposal, with its error, nothing lost)."""
    built = bundle("src/policy_editor.jsx")
    data = {"name": name, "base": base, "graph": graph,
            "simulateUrl": f"/console/policies/{name}/simulate", "limit": policy_simulation.DEFAULT_REPLAY,
            "text": _texts(lang_of(request), "jdm", _SIM_KEYS)}
    page = render(request, "policy_jdm.html", session, status, name=name, base=base, bundle=built,
                  title_key="nav.policies", editor_data=json.dumps(data, ensure_ascii=False), **extra)
    page.headers["content-security-policy"] = EDITOR_CSP
    return page


async def _json_body(request: Request) -> Any:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_GRAPH:
            raise _Refusal(413, f"at most {MAX_GRAPH} bytes", "too_large")
    try:
        return json.loads(raw)
    except ValueError:
        raise _Refusal(422, "the body is not JSON", "invalid_json") from None


class _Refusal(Exception):
    def __init__(self, status: int, error: str, code: str, element: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.code, self.element = status, error, code, element

    def response(self) -> JSONResponse:
        body = {"error": self.error, "code": self.code}
        if self.element:
            body["element"] = self.element
        return JSONResponse(body, status_code=self.status)


@router.post("/policies/{name}/simulate")
async def simulate_policy(request: Request, name: str) -> Response:
    """Replay recent stored applications through the draft (JSON ``{graph, limit}``) and the active
    policy; nothing is stored."""
    session = await guard_post(request, *risk.EDITORS)
    try:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("graph"), dict):
            raise _Refusal(422, "send {\"graph\": {...}, \"limit\": N}", "invalid_body")
        limit = body.get("limit", policy_simulation.DEFAULT_REPLAY)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise _Refusal(422, "limit must be a whole number", "invalid_limit")
        policy_store.seed(ctx_of(request).db)
        out = await run_in_threadpool(policy_simulation.replay, ctx_of(request).decision, name, body["graph"],
                                      limit=limit, actor=session.person.actor)
    except _Refusal as exc:
        return exc.response()
    except CallvetError as exc:
        return _Refusal(404 if exc.code == "policy_not_found" else 422, exc.message, exc.code).response()
    return JSONResponse(out)


@router.get("/processes/modeler")
def modeler_page(request: Request, key: str = "card_issuance", version: int | None = None) -> Response:
    """bpmn-js on a stored version (the active one by default) of a process."""
    session = guard(request, *risk.EDITORS)
    built = bundle("src/bpmn_modeler.js")
    if built is None:
        return render(request, "modeler.html", session, 503, bundle=None, error=NOT_BUILT,
                      title_key="nav.processes", modeler_data="{}")
    try:
        d, xml = runtime(ctx_of(request)).definitions.source(key[:100], version)
    except CallvetError as exc:
        return risk.processes_page_with(request, session, 404, error=exc.message)
    data = {"xml": xml, "validateUrl": "/console/processes/validate",
            "uploadUrl": "/console/processes/upload.json",
            "text": _texts(lang_of(request), "bm", _BPMN_KEYS)}
    page = render(request, "modeler.html", session, bundle=built, title_key="nav.processes",
                  key=d.process_key,
                  version=d.version, modeler_data=json.dumps(data, ensure_ascii=False))
    page.headers["content-security-policy"] = EDITOR_CSP
    return page


async def _bpmn_body(request: Request) -> bytes:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > risk.MAX_BPMN:
            raise _Refusal(413, f"a BPMN file may have at most {risk.MAX_BPMN} bytes", "too_large")
    if not raw.strip():
        raise _Refusal(422, "empty body: send BPMN 2.0 XML", "invalid_bpmn")
    return raw


@router.post("/processes/validate")
async def validate_process(request: Request) -> Response:
    """Parse and check a diagram as an upload would, without storing it."""
    await guard_post(request, *risk.EDITORS)
    try:
        xml = await _bpmn_body(request)
        handlers = runtime(ctx_of(request)).definitions.handlers
        parsed = await run_in_threadpool(parse_definition, xml, handlers)
    except _Refusal as exc:
        return exc.response()
    except CallvetError as exc:
        return _Refusal(422, exc.message, exc.code, str(exc.details.get("element") or "")).response()
    return JSONResponse({"process_key": parsed.process_key, "name": parsed.name})


@router.post("/processes/upload.json")
async def upload_process_json(request: Request) -> Response:
    """Store a diagram as a new (inactive) version; a refusal names the element."""
    session = await guard_post(request, *risk.EDITORS)
    try:
        xml = await _bpmn_body(request)
        d = await run_in_threadpool(runtime(ctx_of(request)).definitions.upload, xml,
                                    actor=session.person.actor)
    except _Refusal as exc:
        return exc.response()
    except CallvetError as exc:
        return _Refusal(422, exc.message, exc.code, str(exc.details.get("element") or "")).response()
    return JSONResponse({"process_key": d.process_key, "version": d.version, "active": d.active},
                        status_code=201)
