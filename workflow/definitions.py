"""Process definitions: parse and validate BPMN, keep every version, one active version per process.

Validation happens once, at upload, and rejects a definition with :class:`InvalidInput` (HTTP 422) naming
the offending element: XML that is not well-formed or carries a DOCTYPE (no entity tricks), a document
that fails the BPMN 2.0 schema or SpiffWorkflow's parser, a condition/script/timer expression the
sandbox does not allow, a service task whose ``callvet:handler`` is not registered, or a user task whose
lane does not name a callvet role.

Per element, the ``meta`` stored with a version records what the runtime needs besides the SpiffWorkflow
spec: the handler of each service task and the skill, due hours and supervision kind of each user task.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callvet.core.audit import record
from callvet.core.auth import Role
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.workflow import sandbox
from callvet.workflow.tables import wf_definitions
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = [
    "NS",
    "PROCESSES_DIR",
    "Definition",
    "DefinitionStore",
    "ParsedDefinition",
    "parse_definition",
]

NS = "http://callvet.bank/schema/bpmn"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
PROCESSES_DIR = Path(__file__).resolve().parent / "processes"
MAX_XML_BYTES = 2 * 1024 * 1024
_VALIDATOR: BpmnValidator | None = None
_VALIDATOR_LOCK = threading.Lock()


def _validator() -> BpmnValidator:
    global _VALIDATOR
    with _VALIDATOR_LOCK:
        if _VALIDATOR is None:
            _VALIDATOR = BpmnValidator()
        return _VALIDATOR


@dataclass(frozen=True)
class ParsedDefinition:
    process_key: str
    name: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    meta: dict[str, Any]


@dataclass(frozen=True)
class Definition:
    id: int
    process_key: str
    version: int
    name: str
    active: bool
    created_at: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "process_key": self.process_key,
            "version": self.version,
            "name": self.name,
            "active": self.active,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def _bad(message: str, element: str = "", **details: Any) -> InvalidInput:
    return InvalidInput(message, code="invalid_bpmn", element=element, **details)


def _element_label(node: Any) -> str:
    tag = etree.QName(node).localname if isinstance(node.tag, str) else "?"
    ident = node.get("id")
    return f"{tag}#{ident}" if ident else tag


def _owner(node: Any) -> Any:
    """The nearest ancestor (or self) with an id: the element a person would look for in a modeller."""
    while node is not None and node.get("id") is None:
        node = node.getparent()
    return node


def _safe_xml(xml: str | bytes) -> Any:
    raw = xml.encode("utf-8") if isinstance(xml, str) else xml
    if len(raw) > MAX_XML_BYTES:
        raise _bad(f"definition larger than {MAX_XML_BYTES} bytes")
    upper = raw.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise _bad("DOCTYPE and entity declarations are not allowed in BPMN uploads", "definitions")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )
    try:
        return etree.fromstring(raw, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise _bad(f"XML is not well-formed: {exc.msg} (line {exc.lineno})", "definitions") from None


def _check_expressions(root: Any) -> None:
    checks = [
        ("conditionExpression", "eval"),
        ("script", "exec"),
        ("timeDuration", "eval"),
        ("timeDate", "eval"),
        ("timeCycle", "eval"),
    ]
    for local, mode in checks:
        for node in root.iter(f"{{{BPMN}}}{local}"):
            text = node.text or ""
            owner = _owner(node)
            label = _element_label(owner) if owner is not None else local
            if not text.strip():
                raise _bad(f"{label}: empty {local}", label)
            try:
                sandbox.validate(text, mode=mode)
            except sandbox.SandboxError as exc:
                raise _bad(
                    f"{label}: {local} rejected by the sandbox: {exc}", label, reason=str(exc)
                ) from None
    for node in root.iter(f"{{{BPMN}}}scriptTask"):
        fmt = node.get("scriptFormat")
        if fmt not in (None, "", "python", "callvet"):
            label = _element_label(node)
            raise _bad(f"{label}: scriptFormat {fmt!r} is not supported (use python)", label)


def _check_references(root: Any) -> None:
    """Dangling references the parser would silently drop (a boundary event on nothing, a flow to nowhere)."""
    ids = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    for node in root.iter(f"{{{BPMN}}}boundaryEvent"):
        if node.get("attachedToRef") not in ids:
            label = _element_label(node)
            raise _bad(f"{label}: attachedToRef {node.get('attachedToRef')!r} names no element", label)
    for node in root.iter(f"{{{BPMN}}}sequenceFlow"):
        for attr in ("sourceRef", "targetRef"):
            if node.get(attr) not in ids:
                label = _element_label(node)
                raise _bad(f"{label}: {attr} {node.get(attr)!r} names no element", label)


def _collect_meta(root: Any, spec: BpmnProcessSpec, handlers: set[str] | None) -> dict[str, Any]:
    roles = {r.value for r in Role}
    elements: dict[str, Any] = {}
    for node in root.iter(f"{{{BPMN}}}serviceTask"):
        label = _element_label(node)
        handler = node.get(f"{{{NS}}}handler")
        if not handler:
            raise _bad(f"{label}: service task without callvet:handler", label)
        if handlers is not None and handler not in handlers:
            raise _bad(
                f"{label}: unknown handler {handler!r}; registered: {', '.join(sorted(handlers))}", label
            )
        elements[node.get("id")] = {"kind": "service", "handler": handler, "name": node.get("name") or ""}
    for node in root.iter(f"{{{BPMN}}}userTask"):
        label = _element_label(node)
        ts = spec.task_specs.get(node.get("id"))
        lane = getattr(ts, "lane", None)
        if lane not in roles:
            raise _bad(
                f"{label}: a user task must sit in a lane named after a role "
                f"({', '.join(sorted(roles))}); lane is {lane!r}",
                label,
            )
        try:
            due_hours = float(node.get(f"{{{NS}}}dueHours") or 24)
        except ValueError:
            raise _bad(f"{label}: callvet:dueHours must be a number", label) from None
        try:
            level = int(node.get(f"{{{NS}}}level") or 1)
        except ValueError:
            raise _bad(f"{label}: callvet:level must be a whole number", label) from None
        supervise = node.get(f"{{{NS}}}supervise")
        if supervise not in (None, "issuance", "limit_adjustment"):
            raise _bad(f"{label}: callvet:supervise must be issuance or limit_adjustment", label)
        elements[node.get("id")] = {
            "kind": "user",
            "role": lane,
            "skill": node.get(f"{{{NS}}}skill"),
            "due_hours": due_hours,
            "supervise": supervise,
            "level": level,
            "name": node.get("name") or node.get("id"),
        }
    return {"elements": elements}


def parse_definition(xml: str | bytes, handlers: set[str] | None = None) -> ParsedDefinition:
    """Parse and fully validate one BPMN document holding one executable process."""
    root = _safe_xml(xml)
    if etree.QName(root).namespace != BPMN or etree.QName(root).localname != "definitions":
        raise _bad("the document root must be bpmn:definitions", _element_label(root))
    _check_expressions(root)
    _check_references(root)
    parser = BpmnParser(validator=_validator())
    try:
        parser.add_bpmn_xml(root, filename="upload.bpmn")
        executable = [p.get("id") for p in root.iter(f"{{{BPMN}}}process") if p.get("isExecutable") == "true"]
        if len(executable) != 1:
            raise _bad(f"expected exactly one executable process, found {len(executable)}", "process")
        key = executable[0]
        spec = parser.get_spec(key)
        subs = parser.get_subprocess_specs(key)
    except ValidationException as exc:
        label = (
            f"{exc.tag}#{exc.id}" if getattr(exc, "id", "") else (getattr(exc, "tag", "") or "definitions")
        )
        where = f" (line {exc.line_number})" if getattr(exc, "line_number", "") else ""
        raise _bad(f"{label}: {exc}{where}", label, reason=str(exc)) from None
    except SpiffWorkflowException as exc:
        raise _bad(f"parser rejected the definition: {exc}", "definitions", reason=str(exc)) from None
    if not key or len(key) > 100:
        raise _bad("process id must be 1-100 characters", "process")
    meta = _collect_meta(root, spec, handlers)
    name = next((p.get("name") or key for p in root.iter(f"{{{BPMN}}}process") if p.get("id") == key), key)
    return ParsedDefinition(key, name, spec, subs, meta)


def _iso(v: Any) -> str:
    return v.isoformat() if v is not None else ""


class DefinitionStore:
    """Versions in the database, parsed specs cached in memory by definition id."""

    def __init__(self, db: Database, handlers: set[str] | None = None) -> None:
        self.db = db
        self.handlers = handlers
        self._cache: dict[int, ParsedDefinition] = {}
        self._lock = threading.Lock()

    def upload(self, xml: str | bytes, *, actor: str, activate: bool | None = None) -> Definition:
        """Store a new version; it becomes active when it is the first one (or ``activate`` is true)."""
        parsed = parse_definition(xml, self.handlers)
        try:
            text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
        except UnicodeDecodeError:
            raise _bad("BPMN uploads must be UTF-8 encoded", "definitions") from None
        try:
            def_id, version = self._insert(parsed, text, actor, activate)
        except IntegrityError:
            raise Conflict(
                f"another version of {parsed.process_key!r} was stored concurrently; retry",
                code="concurrent_upload",
            ) from None
        with self._lock:
            self._cache[int(def_id)] = parsed
        return self.get(parsed.process_key, version)

    def _insert(
        self, parsed: ParsedDefinition, text: str, actor: str, activate: bool | None
    ) -> tuple[int, int]:
        with self.db.begin() as conn:
            last = conn.execute(
                select(func.max(wf_definitions.c.version)).where(
                    wf_definitions.c.process_key == parsed.process_key
                )
            ).scalar()
            version = (last or 0) + 1
            make_active = activate if activate is not None else last is None
            if make_active:
                conn.execute(
                    update(wf_definitions)
                    .where(wf_definitions.c.process_key == parsed.process_key)
                    .values(active=False)
                )
            def_id = conn.execute(
                insert(wf_definitions).values(
                    process_key=parsed.process_key,
                    version=version,
                    name=parsed.name,
                    xml=text,
                    meta=parsed.meta,
                    active=make_active,
                    created_at=utcnow(),
                    created_by=actor,
                )
            ).inserted_primary_key[0]
            record(
                conn,
                actor,
                "workflow.definition.upload",
                "wf_definition",
                f"{parsed.process_key}:{version}",
                details={"active": make_active},
            )
        return int(def_id), version

    def activate(self, process_key: str, version: int, *, actor: str) -> Definition:
        with self.db.begin() as conn:
            row = conn.execute(
                select(wf_definitions.c.id).where(
                    wf_definitions.c.process_key == process_key, wf_definitions.c.version == version
                )
            ).first()
            if row is None:
                raise NotFound(f"no version {version} of process {process_key!r}")
            conn.execute(
                update(wf_definitions).where(wf_definitions.c.process_key == process_key).values(active=False)
            )
            conn.execute(update(wf_definitions).where(wf_definitions.c.id == row.id).values(active=True))
            record(conn, actor, "workflow.definition.activate", "wf_definition", f"{process_key}:{version}")
        return self.get(process_key, version)

    def get(self, process_key: str, version: int | None = None) -> Definition:
        stmt = select(wf_definitions).where(wf_definitions.c.process_key == process_key)
        stmt = (
            stmt.where(wf_definitions.c.version == version)
            if version
            else stmt.where(wf_definitions.c.active.is_(True))
        )
        with self.db.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            what = f"version {version} of" if version else "an active version of"
            raise NotFound(f"no {what} process {process_key!r}")
        return _to_def(row)

    def source(self, process_key: str, version: int | None = None) -> tuple[Definition, str]:
        """A version (the active one by default) with its BPMN XML as uploaded, for a modeller to open."""
        d = self.get(process_key, version)
        with self.db.connect() as conn:
            xml = conn.execute(select(wf_definitions.c.xml).where(wf_definitions.c.id == d.id)).scalar_one()
        return d, str(xml)

    def list(self) -> list[Definition]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(wf_definitions).order_by(wf_definitions.c.process_key, wf_definitions.c.version)
            ).all()
        return [_to_def(r) for r in rows]

    def parsed(self, definition_id: int) -> ParsedDefinition:
        hit = self._cache.get(definition_id)
        if hit is not None:
            return hit
        with self.db.connect() as conn:
            row = conn.execute(
                select(wf_definitions.c.xml).where(wf_definitions.c.id == definition_id)
            ).first()
        if row is None:
            raise NotFound(f"no definition id {definition_id}")
        parsed = parse_definition(row.xml, None)
        with self._lock:
            self._cache[definition_id] = parsed
        return parsed

    def load_shipped(self, *, actor: str = "system") -> list[Definition]:
        """Store each shipped ``processes/*.bpmn`` whose exact text is not stored yet.

        A new shipped text is a release: it becomes the active version. Text equal to any stored version
        is skipped, so an uploaded custom version stays active across restarts.
        """
        loaded = []
        for path in sorted(PROCESSES_DIR.glob("*.bpmn")):
            xml = path.read_text(encoding="utf-8")
            with self.db.connect() as conn:
                known = {
                    r.xml
                    for r in conn.execute(
                        select(wf_definitions.c.xml).where(wf_definitions.c.process_key == path.stem)
                    ).all()
                }
            if xml in known:
                continue
            try:
                loaded.append(self.upload(xml, actor=actor, activate=True))
            except (Conflict, IntegrityError):
                continue
        return loaded


def _to_def(row: Any) -> Definition:
    return Definition(
        row.id, row.process_key, row.version, row.name, bool(row.active), _iso(row.created_at), row.created_by
    )
