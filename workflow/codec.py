"""The instance-state codec: SpiffWorkflow (de)serialisation without the spec, the sandboxed script
engine restored workflows run with, and readers of a workflow's state (current data, next timer, subject).

(Formerly ``workflow/state.py``; that name said "state machine", which lives in :mod:`.status`.)

The spec of a definition version is large and immutable, so saved states leave it out and
:func:`restore` takes it from the definition cache; a state is a few kilobytes of task tree and data.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from callvet.workflow import sandbox
from callvet.workflow.definitions import ParsedDefinition
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.bpmn.serializer import DEFAULT_CONFIG, BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

__all__ = ["SandboxScriptEngine", "StateCodec", "aware", "current_data", "next_timer", "subject"]


class _SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Routes every condition, script and timer expression through :mod:`.sandbox`."""

    def evaluate(self, expression: str, context: dict[str, Any], external_context: Any = None) -> Any:
        names = dict(external_context or {})
        names.update(context)
        return sandbox.evaluate(expression, names)

    def execute(self, script: str, context: dict[str, Any], external_context: Any = None) -> bool:
        sandbox.execute(script, context)
        return True

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> Any:
        raise sandbox.SandboxError("service calls go through callvet handlers")


class SandboxScriptEngine(PythonScriptEngine):
    def __init__(self) -> None:
        super().__init__(environment=_SandboxEnvironment())

    def validate(self, expression: str) -> None:
        sandbox.validate(expression)


_SPEC: contextvars.ContextVar[ParsedDefinition] = contextvars.ContextVar("callvet_wf_spec")


class _Converter(BpmnWorkflowConverter):
    """Leaves the (large, immutable) spec out of every saved state; restores it from the cache."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict[str, Any]) -> BpmnWorkflow:
        parsed = _SPEC.get()
        workflow = self.target_class(parsed.spec, parsed.subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], uuid.UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(uuid.UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _make_serializer() -> BpmnWorkflowSerializer:
    config = dict(DEFAULT_CONFIG)
    config[BpmnWorkflow] = _Converter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


class StateCodec:
    """Workflow <-> JSON text, spec excluded; one per process (the serializer registry is reusable)."""

    def __init__(self) -> None:
        self._serializer = _make_serializer()
        self.script_engine = SandboxScriptEngine()

    def dump(self, wf: BpmnWorkflow) -> str:
        return json.dumps(self._serializer.to_dict(wf), separators=(",", ":"))

    def restore(self, parsed: ParsedDefinition, state: str) -> BpmnWorkflow:
        token = _SPEC.set(parsed)
        try:
            wf = self._serializer.from_dict(json.loads(state))
        finally:
            _SPEC.reset(token)
        wf.script_engine = self.script_engine
        return wf


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def subject(data: dict[str, Any]) -> str | None:
    """The applicant's id number, indexed so supervision can count repeated applications."""
    app = data.get("application")
    if isinstance(app, dict) and isinstance(app.get("applicant"), dict):
        ident = app["applicant"].get("id_number")
        return str(ident)[:64] if ident else None
    return None


def current_data(wf: BpmnWorkflow) -> dict[str, Any]:
    """The data a person would call "the instance's data": of the last task that ran."""
    task = wf.last_task
    if task is None:
        ready = wf.get_tasks(state=TaskState.READY)
        task = ready[0] if ready else None
    data = dict(task.data) if task is not None else {}
    return json.loads(json.dumps(data, default=str))


def next_timer(wf: BpmnWorkflow) -> datetime | None:
    times = []
    for ev in wf.waiting_events():
        if "Timer" in ev.event_type and isinstance(ev.value, str):
            try:
                times.append(datetime.fromisoformat(ev.value))
            except ValueError:
                continue
    if not times:
        return None
    return min(aware(t) for t in times)  # type: ignore[type-var]
