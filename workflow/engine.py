"""The durable workflow runtime: SpiffWorkflow instances whose every step is committed to the database.

Durability model
----------------
* An instance row holds its SpiffWorkflow state (serialised without the spec, see :mod:`.codec`) and a
  revision counter. Every save is ``UPDATE ... WHERE rev = :seen``, so two writers cannot both advance
  one instance (the loser gets :class:`Conflict`, or stops quietly when it is a background runner).
* Steps run in a unit of work: state, events, human-task rows, audit rows and the writes of
  transactional handlers commit together or not at all. Engine tasks (gateways, events, scripts) are
  deterministic and are replayed from the last committed state after a crash. Service tasks are the side
  effects: each runs once per *effect key* (instance id + element id + occurrence) and its result is
  stored under that key; a replay reuses the stored result instead of calling the handler again.
* A start writes the instance row in the first transaction its steps open (issue 11): the row, its
  audit row, the first steps and their effects -- the decision record too -- commit together, or, if
  the steps fail, the row alone is written as ``running`` for the worker.
* Instances are ``running`` until they reach a wait state, so a process killed with SIGKILL leaves them
  ``running``; :meth:`WorkflowRuntime.run_due` (the worker loop) resumes them, and also wakes instances
  whose timer (``next_timer_at``) is due, which is how deadline timers fire after a restart.

The rooms
---------
This module is the step loop and its unit of work. The instance rows, events and effects are written
only by :class:`~.repository.InstanceRepository`, task rows only by :class:`~.tasks.TaskBoard`, status
changes only through :func:`~.status.transition`; JSON read models are :class:`~.views.InstanceViews`,
the worker's rounds :class:`~.worker.Worker`, caller changes :mod:`.commands`, product rules the start
hooks of :mod:`.products`, and what handlers use :class:`~.deps.WorkflowDeps`.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import CallvetError, Conflict, InvalidInput, Unavailable
from callvet.workflow import sandbox
from callvet.workflow.codec import SandboxScriptEngine, StateCodec, aware, current_data, next_timer
from callvet.workflow.commands import CompleteTask, DeliverMessage, waiting_messages
from callvet.workflow.definitions import DefinitionStore
from callvet.workflow.deps import Decider, WorkflowDeps, default_deps, engine_decider
from callvet.workflow.forms import validate_completion
from callvet.workflow.handlers import (
    HandlerCall,
    HandlerRegistry,
    decisions_in_transaction,
    default_registry,
)
from callvet.workflow.products import ConfigStore, StartHook, configure_handler, start_hooks
from callvet.workflow.repository import InstanceRepository, LoadedInstance
from callvet.workflow.status import FINISHED, InstanceStatus
from callvet.workflow.supervise import Supervisor
from callvet.workflow.tasks import TaskBoard
from callvet.workflow.views import InstanceViews
from callvet.workflow.worker import Worker
from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

__all__ = ["InstanceStatus", "SandboxScriptEngine", "WorkflowRuntime", "engine_decider"]

MAX_DATA_BYTES = 256 * 1024

Mutation = Callable[[LoadedInstance, Connection], None]
FinishHook = Callable[[Connection, str, str, dict[str, Any]], None]
_QUIET_SPECS = ("ExclusiveGateway", "ParallelGateway", "BoundaryEventSplit", "BoundaryEventJoin")


def _check_data(data: Any, what: str = "data") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object", code="invalid_data")
    try:
        size = len(json.dumps(data))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}", code="invalid_data") from None
    if size > MAX_DATA_BYTES:
        raise InvalidInput(f"{what} larger than {MAX_DATA_BYTES} bytes", code="invalid_data")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("_")]
    if bad:
        raise InvalidInput(f"{what} keys must not start with '_': {bad[:5]}", code="invalid_data")
    return data


class _UnitOfWork:
    """One lazily opened write transaction spanning consecutive steps of one instance."""

    def __init__(self, db: Database, inst: LoadedInstance) -> None:
        self.db = db
        self.inst = inst
        self._conn: Connection | None = None
        self._tx: Any = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.db.engine.connect()
            self._tx = self._conn.begin()
            if self.inst.pending_insert is not None:
                try:
                    self.inst.pending_insert(self._conn)
                except BaseException:
                    self.rollback()
                    raise
        return self._conn

    def commit(self) -> None:
        if self._conn is None:
            return
        try:
            self._tx.commit()
        finally:
            self._conn.close()
            self._conn = None
        self.inst.committed_rev = self.inst.rev
        self.inst.mutation_committed = True
        self.inst.pending_insert = None

    def rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._tx.rollback()
        finally:
            self._conn.close()
            self._conn = None
        self.inst.rev = self.inst.committed_rev


def _describe(exc: BaseException) -> str:
    """The error and, for SpiffWorkflow's wrappers, the sandbox or handler error underneath."""
    message = str(exc).strip()
    inner = exc.__cause__ or exc.__context__
    if inner is not None and str(inner) not in message:
        message = f"{message} {type(inner).__name__}: {inner}".strip()
    return message[:2000]


class WorkflowRuntime:
    """The step loop; the API, the CLI and the worker reach the workflow rooms through this object.

    ``deps`` (decider, interview store, supervisor) is what a composition root gives; without it the
    runtime builds :func:`~.deps.default_deps` from ``decide`` (or the real engine, bound lazily) and
    ``settings``, which is the construction path the API and CLI use today.
    """

    def __init__(
        self,
        db: Database,
        *,
        decide: Decider | None = None,
        settings: Any = None,
        registry: HandlerRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        deps: WorkflowDeps | None = None,
        hooks: Mapping[str, tuple[StartHook, ...]] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.config = ConfigStore(db)
        self.registry = registry or default_registry(configure_handler(self.config))
        self.definitions = DefinitionStore(db, self.registry.names())
        self._codec = StateCodec()
        self._engine = self._codec.script_engine
        self.repo = InstanceRepository(db, self.definitions, self._codec, clock)
        self.board = TaskBoard(db, self.config, clock, self.repo.events)
        self.supervisor = Supervisor(db, clock)
        self.deps = deps or default_deps(db, self.supervisor, decide=decide, settings=settings)
        self.registry = decisions_in_transaction(self.registry, self.deps.decide)
        self.hooks = dict(hooks if hooks is not None else start_hooks(self.config))
        self.finish_hooks: list[FinishHook] = []
        self.views = InstanceViews(db, self.repo, self.board)
        self.worker = Worker(self.repo, self.board, self._advance, clock)
        self._ready = False
        self._lock = threading.Lock()

    # ---- setup -------------------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        """Write default configuration and load the shipped processes (once per process)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self.config.ensure_defaults()
                self.definitions.load_shipped()
                self._ready = True

    def decide(
        self, application: dict[str, Any], investigation: dict[str, Any] | None, actor: str
    ) -> dict[str, Any]:
        return self.deps.decide(application, investigation, actor)

    # ---- starting ------------------------------------------------------------------------------------
    def start(
        self,
        process_key: str,
        data: dict[str, Any],
        *,
        actor: str,
        version: int | None = None,
        run: bool = True,
        instance_id: str | None = None,
        detail: bool = False,
    ) -> dict[str, Any]:
        """Store a new instance with its audit row and, with ``run``, advance it: the row commits with its
        first steps (one transaction up to the first wait or non-transactional handler). ``detail`` adds
        ``data``, ``waiting_for`` and ``tasks`` from the state just committed (no re-read)."""
        self.ensure_ready()
        data = _check_data(data)
        for hook in self.hooks.get(process_key, ()):
            hook(data)
        definition = self.definitions.get(process_key, version)
        parsed = self.definitions.parsed(definition.id)
        wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=self._engine)
        for t in wf.get_tasks(state=TaskState.READY):
            t.data.update(copy.deepcopy(data))
        iid = instance_id or str(uuid.uuid4())
        state = self._codec.dump(wf)  # the state to store is the one before any step runs

        def insert(conn: Connection) -> None:
            self.repo.insert(conn, iid, definition, data, wf, actor, state)
            record(
                conn, actor, "workflow.instance.start", "wf_instance", iid,
                details={"process_key": process_key, "version": definition.version},
            )

        if not run:
            with self.db.begin() as conn:
                insert(conn)
            return self.summary(iid, with_events=detail)
        inst = LoadedInstance(iid, definition.id, process_key, definition.version, InstanceStatus.RUNNING,
                              1, parsed, wf, pending_insert=insert, fresh=True)
        uow = _UnitOfWork(self.db, inst)
        try:
            self._run_engine(inst, actor, uow)
        except (Conflict, Unavailable, IntegrityError) as exc:
            uow.rollback()
            if inst.pending_insert is None:
                # The start is committed (``running``): another runner advanced it first, or the worker
                # resumes it when the engine is back.
                return self._detail(inst, detail)
            if isinstance(exc, Conflict) and exc.code == "instance_exists":
                raise
            self._insert_alone(inst)
        except Exception:
            uow.rollback()
            self._insert_alone(inst)
            raise
        return self._detail(inst, detail)

    def _insert_alone(self, inst: LoadedInstance) -> None:
        """A start whose first steps did not commit still stands (``running``): the worker runs them."""
        if inst.pending_insert is not None:
            with self.db.begin() as conn:
                inst.pending_insert(conn)
            inst.pending_insert = None

    def _detail(self, inst: LoadedInstance, detail: bool) -> dict[str, Any]:
        """The summary after a run; with ``detail`` and a settled run, built from the state in memory
        (what was just committed) instead of re-reading and re-parsing it."""
        if not detail or not inst.settled:
            return self.summary(inst.id, with_events=detail)
        out: dict[str, Any] = {
            "instance_id": inst.id, "process_key": inst.process_key, "version": inst.version,
            "status": inst.status.value, "error": None, "next_timer_at": None,
            "data": current_data(inst.wf), "tasks": [],
        }
        timer = next_timer(inst.wf)
        if timer is not None:
            out["next_timer_at"] = aware(timer).isoformat()  # type: ignore[union-attr]
        if inst.status is InstanceStatus.WAITING:
            out["waiting_for"] = sorted(waiting_messages(inst))
        if inst.had_human:
            with self.db.connect() as conn:
                out["tasks"] = self.board.for_instance(conn, inst.id)
        return out

    # ---- the step loop -------------------------------------------------------------------------------
    def _advance(self, instance_id: str, actor: str, mutate: Mutation | None = None) -> LoadedInstance:
        """Run the instance until it waits or ends; ``mutate`` (complete a task, deliver a message) is
        applied first, inside the same unit of work as the steps it triggers."""
        inst = self.repo.load(instance_id)
        if inst.status in FINISHED:
            if mutate is not None:
                raise Conflict(f"instance is {inst.status.value}", code="instance_finished")
            return inst
        uow = _UnitOfWork(self.db, inst)
        try:
            if mutate is not None:
                mutate(inst, uow.conn())
            self._run_engine(inst, actor, uow)
        except (Conflict, Unavailable, IntegrityError) as exc:
            uow.rollback()
            if isinstance(exc, IntegrityError):
                exc = Conflict(f"instance {inst.id} was advanced concurrently; retry", code="stale_instance")
            if mutate is not None and not inst.mutation_committed:
                raise exc from None  # the caller's change did not land: 409/503, and they may retry
            if mutate is None and isinstance(exc, Unavailable):
                raise
            # Otherwise the caller's change is committed and the instance stays ``running``: another
            # runner advanced it first (Conflict), or the worker resumes it when the engine is back.
        except BaseException:
            uow.rollback()
            raise
        return inst

    def _run_engine(self, inst: LoadedInstance, actor: str, uow: _UnitOfWork) -> None:
        """Steps until a wait state. Writes accumulate in ``uow`` and commit with the state they lead to;
        it is committed early only before a non-transactional handler (see :meth:`_run_service`)."""
        try:
            while True:
                inst.wf.refresh_timers()
                ready = inst.wf.get_tasks(state=TaskState.READY, manual=False)
                if not ready:
                    break
                task = ready[0]
                if isinstance(task.task_spec, ServiceTask):
                    self._run_service(inst, task, actor, uow)
                else:
                    task.run()
                    self._note(inst, task)
        except (Conflict, Unavailable):
            raise  # nothing uncommitted is kept: the last committed state is resumed later
        except (SpiffWorkflowException, sandbox.SandboxError, CallvetError) as exc:
            uow.rollback()
            self._mark_failed(inst, _describe(exc))
            return
        status = InstanceStatus.COMPLETED if inst.wf.is_completed() else InstanceStatus.WAITING
        reviewed = status is InstanceStatus.COMPLETED and inst.had_human
        if status is InstanceStatus.COMPLETED:
            inst.events.append({"kind": "instance.completed", "element": "", "details": {}})
        self._save(uow.conn(), inst, status)
        if reviewed:
            data = current_data(inst.wf)
            for hook in self.finish_hooks:
                hook(uow.conn(), inst.id, status.value, data)
        uow.commit()
        inst.settled = True

    def _fail(self, conn: Connection, inst: LoadedInstance, message: str) -> None:
        """``failed`` with ``message`` on the last committed state; its open tasks cancelled."""
        self.repo.mark_failed(conn, inst, message)
        self.board.cancel_open(conn, inst.id)

    def _mark_failed(self, inst: LoadedInstance, message: str) -> None:
        """Fail the instance after a step error (uncommitted progress is discarded)."""
        with self.db.begin() as conn:
            if inst.pending_insert is not None:
                inst.pending_insert(conn)
                inst.pending_insert = None
            self._fail(conn, inst, message)

    def _note(self, inst: LoadedInstance, task: Any) -> None:
        spec = task.task_spec
        if spec.bpmn_id is None or type(spec).__name__ in _QUIET_SPECS:
            return
        inst.events.append(
            {
                "kind": f"{type(spec).__name__}.completed",
                "element": spec.bpmn_id,
                "details": {"name": spec.bpmn_name or ""},
            }
        )

    def _run_service(self, inst: LoadedInstance, task: Any, actor: str, uow: _UnitOfWork) -> None:
        """Run a service task once per effect key (instance, element, occurrence).

        A transactional handler writes on the unit of work, so its effect commits with the state that
        follows it; the real decision engine is one (it stores its record on the step's connection, see
        :func:`~.handlers.decisions_in_transaction`). A non-transactional one (a decider that commits its
        own records) runs with no write transaction open -- on SQLite a second writer in the same thread
        would deadlock -- and its result is stored at once under the effect key, so a crash before the
        state commit replays the stored result instead of deciding twice.
        """
        element = task.task_spec.bpmn_id
        meta = inst.parsed.meta["elements"].get(element) or {}
        handler_name = meta.get("handler", "")
        occurrence = 1 + len(inst.wf.get_tasks(state=TaskState.COMPLETED, spec_name=task.task_spec.name))
        key = f"{inst.id}:{element}:{occurrence}"
        handler = self.registry.get(handler_name)
        if inst.fresh:
            stored = None  # a new instance in its first run: nothing can be stored under its keys yet
        elif uow.is_open:
            stored = self.repo.stored_effect(uow.conn(), key)
        else:
            with self.db.connect() as c:
                stored = self.repo.stored_effect(c, key)
        if stored is not None:
            result = stored.result
        elif self.registry.transactional(handler_name):
            conn = uow.conn()
            result = handler(self._call(inst, task, key, conn, actor))
            self.repo.store_effect(conn, inst.id, key, handler_name, result)
        else:
            if uow.is_open or inst.pending_insert is not None:
                self._save(uow.conn(), inst, InstanceStatus.RUNNING)
                uow.commit()
            result = handler(self._call(inst, task, key, None, actor))
            with self.db.begin() as c:
                self.repo.store_effect(c, inst.id, key, handler_name, result)
        task.data.update(copy.deepcopy(result))
        task.run()
        if task.state == TaskState.STARTED:
            task.complete()
        inst.events.append(
            {
                "kind": "service.completed",
                "element": element,
                "details": {"handler": handler_name, "effect_key": key, "replayed": stored is not None},
            }
        )

    def _call(self, inst: LoadedInstance, task: Any, key: str, conn: Any, actor: str) -> HandlerCall:
        return HandlerCall(
            instance_id=inst.id,
            process_key=inst.process_key,
            element=task.task_spec.bpmn_id,
            effect_key=key,
            data=copy.deepcopy(task.data),
            conn=conn,
            actor=actor,
            deps=self.deps,
        )

    def _save(
        self, conn: Connection, inst: LoadedInstance, status: InstanceStatus, error: str | None = None
    ) -> None:
        """Save the state (repository) and bring the instance's task rows in line (task board)."""
        self.repo.save(conn, inst, status, error)
        has_human = bool(inst.wf.get_tasks(state=TaskState.READY, manual=True))
        if has_human or inst.had_human:
            self.board.sync(conn, inst.id, inst.parsed.meta, inst.wf, finished=inst.status in FINISHED)
        inst.had_human = has_human

    def add_finish_hook(self, hook: FinishHook) -> None:
        """Run ``hook(conn, instance_id, status, data)`` in the transaction that completes an instance whose
        last run began with a person's task open (an approver's completion ends the process): whoever
        mirrors the outcome (the case record) then changes with it, atomically, instead of on a later
        read. Exceptions roll the whole step back, so a hook must only write."""
        self.finish_hooks.append(hook)

    # ---- human tasks and messages ----------------------------------------------------------------
    def complete_task(
        self,
        task_id: str,
        data: dict[str, Any],
        *,
        actor: str,
        role: str | None,
        reviewer_id: str | None = None,
    ) -> dict[str, Any]:
        """Complete an open user task; ``role`` None means admin (may do any task)."""
        self.ensure_ready()
        data = _check_data(data)
        row = self.board.open_task(task_id, role)
        validate_completion(self.repo.process_key(row.instance_id), row.element, data)
        change = CompleteTask(
            self.board, self.deps.supervisor, row, data, actor=actor, reviewer_id=reviewer_id
        )
        self._advance(row.instance_id, actor, change)
        return self.summary(row.instance_id)

    def deliver_message(
        self, instance_id: str, name: str, payload: dict[str, Any], *, actor: str, detail: bool = False
    ) -> dict[str, Any]:
        """Deliver a BPMN message (e.g. ``investigation_result``) to an instance waiting for it;
        ``detail`` as in :meth:`start`."""
        self.ensure_ready()
        payload = _check_data(payload, "message payload")
        inst = self._advance(instance_id, actor, DeliverMessage(name, payload, actor=actor))
        return self._detail(inst, detail)

    # ---- cancelling and erasing ----------------------------------------------------------------
    def cancel(self, instance_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Stop a running or waiting instance (it becomes ``failed`` with the reason); the change and
        its audit row commit in one transaction."""
        if not reason.strip():
            raise InvalidInput("a reason is required", code="reason_required")
        inst = self.repo.load(instance_id)
        if inst.status in FINISHED:
            raise Conflict(f"instance is {inst.status.value}", code="instance_finished")
        with self.db.begin() as conn:
            self._fail(conn, inst, f"cancelled by {actor}: {reason.strip()[:500]}")
            record(conn, actor, "workflow.instance.cancel", "wf_instance", instance_id, reason=reason)
        return self.summary(instance_id)

    def erase(self, instance_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Delete a finished instance with its data, events, tasks, effects and supervision records.

        Issuance rows (a card was issued, for how much) stay as the bank's business record; the audit
        log keeps who erased what and why, never the erased data.
        """
        if not reason.strip():
            raise InvalidInput("a reason is required", code="reason_required")
        with self.db.begin() as conn:
            if self.repo.status_for_update(conn, instance_id) not in FINISHED:
                raise Conflict(
                    "only completed or failed instances can be erased; cancel it first",
                    code="instance_active",
                )
            counts = {
                "wf_events": self.repo.delete_events(conn, instance_id),
                "wf_tasks": self.board.erase(conn, instance_id),
                "wf_effects": self.repo.delete_effects(conn, instance_id),
                **self.supervisor.erase(conn, instance_id),
            }
            self.repo.delete(conn, instance_id)
            record(
                conn, actor, "workflow.instance.erase", "wf_instance", instance_id,
                reason=reason, details={"deleted": counts},
            )
        return {"instance_id": instance_id, "erased": True, "deleted": counts}

    # ---- the worker and the views (their own rooms; kept here for the API's one entry point) --------
    def run_due(
        self, *, limit: int = 200, actor: str = "system:worker", shard: tuple[int, int] | None = None
    ) -> int:
        """See :meth:`.worker.Worker.run_due`."""
        self.ensure_ready()
        return self.worker.run_due(limit=limit, actor=actor, shard=shard)

    def tick(self, *, actor: str = "system:worker") -> dict[str, int]:
        """See :meth:`.worker.Worker.tick`."""
        self.ensure_ready()
        return self.worker.tick(actor=actor)

    def list_instances(
        self, *, status: str | None = None, process_key: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.views.list_instances(status=status, process_key=process_key, limit=limit)

    def waiting_for(self, instance_id: str) -> list[str]:
        return self.views.waiting_for(instance_id)

    def summary(self, instance_id: str, *, with_events: bool = False) -> dict[str, Any]:
        return self.views.summary(instance_id, with_events=with_events)
