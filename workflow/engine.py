"""The durable workflow runtime: SpiffWorkflow instances whose every step is committed to the database.

Durability model
----------------
* An instance row holds its SpiffWorkflow state (serialised without the spec, see :mod:`.state`) and a
  revision counter. Every save is ``UPDATE ... WHERE rev = :seen``, so two writers cannot both advance
  one instance (the loser gets :class:`Conflict`, or stops quietly when it is a background runner).
* Steps run in a unit of work: state, events, human-task rows, audit rows and the writes of
  transactional handlers commit together or not at all. Engine tasks (gateways, events, scripts) are
  deterministic and are replayed from the last committed state after a crash. Service tasks are the side
  effects: each runs once per *effect key* (instance id + element id + occurrence) and its result is
  stored under that key; a replay reuses the stored result instead of calling the handler again.
* Instances are ``running`` until they reach a wait state, so a process killed with SIGKILL leaves them
  ``running``; :meth:`WorkflowRuntime.run_due` (the worker loop) resumes them, and also wakes instances
  whose timer (``next_timer_at``) is due, which is how deadline timers fire after a restart.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import CallvetError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from callvet.workflow import sandbox
from callvet.workflow.definitions import DefinitionStore, ParsedDefinition
from callvet.workflow.handlers import (
    Decider,
    HandlerCall,
    HandlerRegistry,
    default_registry,
    engine_decider,
    real_decider,
    validate_application,
)
from callvet.workflow.products import ConfigStore, configure_handler
from callvet.workflow.state import SandboxScriptEngine, StateCodec, aware, current_data, next_timer, subject
from callvet.workflow.tables import wf_effects, wf_events, wf_instances, wf_tasks
from callvet.workflow.tasks import TaskBoard
from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

__all__ = ["InstanceStatus", "SandboxScriptEngine", "WorkflowRuntime", "engine_decider"]

MAX_DATA_BYTES = 256 * 1024
SHIPPED_NEEDS_APPLICATION = {"card_issuance", "limit_adjustment", "instalment_loan"}


class InstanceStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"


_ALLOWED = {
    InstanceStatus.RUNNING: {
        InstanceStatus.RUNNING,
        InstanceStatus.WAITING,
        InstanceStatus.COMPLETED,
        InstanceStatus.FAILED,
    },
    InstanceStatus.WAITING: {
        InstanceStatus.RUNNING,
        InstanceStatus.WAITING,
        InstanceStatus.COMPLETED,
        InstanceStatus.FAILED,
    },
    InstanceStatus.COMPLETED: set(),
    InstanceStatus.FAILED: set(),
}


def _transition(old: InstanceStatus, new: InstanceStatus) -> InstanceStatus:
    if new not in _ALLOWED[old]:
        raise Conflict(f"instance is {old.value}; cannot become {new.value}", code="invalid_transition")
    return new


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


@dataclass
class _Loaded:
    id: str
    definition_id: int
    process_key: str
    version: int
    status: InstanceStatus
    rev: int
    parsed: ParsedDefinition
    wf: BpmnWorkflow
    events: list[dict[str, Any]] = field(default_factory=list)
    committed_rev: int = 0
    mutation_committed: bool = False
    had_human: bool = True

    def __post_init__(self) -> None:
        self.committed_rev = self.rev
        self.had_human = bool(self.wf.get_tasks(state=TaskState.READY, manual=True))


class _UnitOfWork:
    """One lazily opened write transaction spanning consecutive steps of one instance."""

    def __init__(self, db: Database, inst: _Loaded) -> None:
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
    """Everything the API, the CLI and the worker do with workflows goes through this object."""

    def __init__(
        self,
        db: Database,
        *,
        decide: Decider | None = None,
        settings: Any = None,
        registry: HandlerRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        from callvet.workflow.supervise import Supervisor

        self.db = db
        self.settings = settings
        self.clock = clock
        self.config = ConfigStore(db)
        self.registry = registry or default_registry(configure_handler(self.config))
        self.definitions = DefinitionStore(db, self.registry.names())
        self.board = TaskBoard(db, self.config, clock)
        self.supervisor = Supervisor(db, clock)
        self._decide = decide
        self._codec = StateCodec()
        self._engine = self._codec.script_engine
        self._ready = False
        self._interview_service: Any = None
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
        if self._decide is None:
            self._decide = real_decider(self.db, self.settings)
        return self._decide(application, investigation, actor)

    def _interviews(self) -> Any:
        """The questionnaire part's interview store (read only here, so no sentence encoder)."""
        if self._interview_service is None:
            from callvet.questionnaire.service import InterviewService

            self._interview_service = InterviewService(self.db, use_encoder=False)
        return self._interview_service

    # ---- (de)serialisation -----------------------------------------------------------------------
    def _dump(self, wf: BpmnWorkflow) -> str:
        return self._codec.dump(wf)

    def _load(self, instance_id: str) -> _Loaded:
        with self.db.connect() as conn:
            row = conn.execute(select(wf_instances).where(wf_instances.c.id == instance_id)).first()
        if row is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        parsed = self.definitions.parsed(row.definition_id)
        return _Loaded(
            row.id,
            row.definition_id,
            row.process_key,
            row.version,
            InstanceStatus(row.status),
            row.rev,
            parsed,
            self._codec.restore(parsed, row.state),
        )

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
    ) -> dict[str, Any]:
        self.ensure_ready()
        data = _check_data(data)
        if process_key in SHIPPED_NEEDS_APPLICATION:
            validate_application(data)
        if process_key == "instalment_loan":
            self._validate_loan(data)
        definition = self.definitions.get(process_key, version)
        parsed = self.definitions.parsed(definition.id)
        wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=self._engine)
        for t in wf.get_tasks(state=TaskState.READY):
            t.data.update(copy.deepcopy(data))
        iid = instance_id or str(uuid.uuid4())
        now = self.clock()
        try:
            self._insert_instance(iid, definition, data, wf, actor, now, process_key)
        except IntegrityError:
            raise Conflict(f"instance {iid} exists", code="instance_exists") from None
        if run:
            with contextlib.suppress(Unavailable):
                self._advance(iid, actor)
        return self.summary(iid)

    def _insert_instance(
        self,
        iid: str,
        definition: Any,
        data: dict[str, Any],
        wf: BpmnWorkflow,
        actor: str,
        now: datetime,
        process_key: str,
    ) -> None:
        with self.db.begin() as conn:
            conn.execute(
                insert(wf_instances).values(
                    id=iid,
                    definition_id=definition.id,
                    process_key=process_key,
                    version=definition.version,
                    status=InstanceStatus.RUNNING.value,
                    state=self._dump(wf),
                    data=data,
                    rev=1,
                    created_by=actor,
                    subject=subject(data),
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(wf_events).values(
                    instance_id=iid,
                    at=now,
                    kind="instance.started",
                    element="",
                    details={"actor": actor, "version": definition.version},
                )
            )
            record(
                conn,
                actor,
                "workflow.instance.start",
                "wf_instance",
                iid,
                details={"process_key": process_key, "version": definition.version},
            )

    def _validate_loan(self, data: dict[str, Any]) -> None:
        """Reject an unknown product or an amount outside its bands before anything is stored."""
        cfg = self.config.get("products")
        product = data.get("product")
        if product not in cfg.instalment:
            raise InvalidInput(
                f"unknown instalment product {product!r}; one of {', '.join(cfg.instalment)}",
                code="unknown_product",
            )
        amount = data.get("amount")
        top = cfg.instalment[product].bands[-1].max_amount
        if not isinstance(amount, int | float) or isinstance(amount, bool) or not 0 < amount <= top:
            raise InvalidInput(
                f"amount must be a number in (0, {top}] for {product}", code="amount_out_of_band"
            )

    # ---- the step loop -------------------------------------------------------------------------------
    def _advance(
        self, instance_id: str, actor: str, mutate: Callable[[_Loaded, Connection], None] | None = None
    ) -> _Loaded:
        """Run the instance until it waits or ends; ``mutate`` (complete a task, deliver a message) is
        applied first, inside the same unit of work as the steps it triggers."""
        inst = self._load(instance_id)
        if inst.status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED) and mutate is not None:
            raise Conflict(f"instance is {inst.status.value}", code="instance_finished")
        if inst.status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED):
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

    def _run_engine(self, inst: _Loaded, actor: str, uow: _UnitOfWork) -> None:
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
        if status is InstanceStatus.COMPLETED:
            inst.events.append({"kind": "instance.completed", "element": "", "details": {}})
        self._save(uow.conn(), inst, status)
        uow.commit()

    def _mark_failed(self, inst: _Loaded, message: str) -> None:
        """Fail the instance on its last committed state (uncommitted progress is discarded)."""
        now = self.clock()
        with self.db.begin() as conn:
            res = conn.execute(
                update(wf_instances)
                .where(wf_instances.c.id == inst.id, wf_instances.c.rev == inst.committed_rev)
                .values(
                    status=InstanceStatus.FAILED.value,
                    rev=inst.committed_rev + 1,
                    error=message,
                    updated_at=now,
                    next_timer_at=None,
                )
            )
            if res.rowcount != 1:
                raise Conflict(f"instance {inst.id} was changed concurrently", code="stale_instance")
            conn.execute(
                insert(wf_events).values(
                    instance_id=inst.id,
                    at=now,
                    kind="instance.failed",
                    element="",
                    details={"error": message},
                )
            )
            conn.execute(
                update(wf_tasks)
                .where(wf_tasks.c.instance_id == inst.id, wf_tasks.c.status == "open")
                .values(status="cancelled", completed_at=now)
            )
        inst.status = InstanceStatus.FAILED

    def _note(self, inst: _Loaded, task: Any) -> None:
        spec = task.task_spec
        if spec.bpmn_id is None or type(spec).__name__ in (
            "ExclusiveGateway",
            "ParallelGateway",
            "BoundaryEventSplit",
            "BoundaryEventJoin",
        ):
            return
        inst.events.append(
            {
                "kind": f"{type(spec).__name__}.completed",
                "element": spec.bpmn_id,
                "details": {"name": spec.bpmn_name or ""},
            }
        )

    def _run_service(self, inst: _Loaded, task: Any, actor: str, uow: _UnitOfWork) -> None:
        """Run a service task once per effect key (instance, element, occurrence).

        A transactional handler writes on the unit of work, so its effect commits with the state that
        follows it. A non-transactional one (the decision engine commits its own records) runs with no
        write transaction open -- on SQLite a second writer in the same thread would deadlock -- and its
        result is stored at once under the effect key, so a crash before the state commit replays the
        stored result instead of deciding twice.
        """
        element = task.task_spec.bpmn_id
        meta = inst.parsed.meta["elements"].get(element) or {}
        handler_name = meta.get("handler", "")
        occurrence = 1 + len(inst.wf.get_tasks(state=TaskState.COMPLETED, spec_name=task.task_spec.name))
        key = f"{inst.id}:{element}:{occurrence}"
        handler = self.registry.get(handler_name)
        lookup = select(wf_effects.c.result).where(wf_effects.c.effect_key == key)
        if uow.is_open:
            stored = uow.conn().execute(lookup).first()
        else:
            with self.db.connect() as c:
                stored = c.execute(lookup).first()
        replayed = stored is not None
        if stored is not None:
            result = stored.result
        elif self.registry.transactional(handler_name):
            conn = uow.conn()
            result = handler(self._call(inst, task, key, conn, actor))
            self._store_effect(conn, inst, key, handler_name, result)
        else:
            if uow.is_open:
                self._save(uow.conn(), inst, InstanceStatus.RUNNING)
                uow.commit()
            result = handler(self._call(inst, task, key, None, actor))
            with self.db.begin() as c:
                self._store_effect(c, inst, key, handler_name, result)
        task.data.update(copy.deepcopy(result))
        task.run()
        if task.state == TaskState.STARTED:
            task.complete()
        inst.events.append(
            {
                "kind": "service.completed",
                "element": element,
                "details": {"handler": handler_name, "effect_key": key, "replayed": replayed},
            }
        )

    def _store_effect(self, conn: Connection, inst: _Loaded, key: str, handler: str, result: Any) -> None:
        try:
            conn.execute(
                insert(wf_effects).values(
                    effect_key=key, instance_id=inst.id, handler=handler, result=result, at=self.clock()
                )
            )
        except IntegrityError:
            raise Conflict(f"instance {inst.id} was advanced concurrently", code="stale_instance") from None

    def _call(self, inst: _Loaded, task: Any, key: str, conn: Any, actor: str) -> HandlerCall:
        return HandlerCall(
            instance_id=inst.id,
            process_key=inst.process_key,
            element=task.task_spec.bpmn_id,
            effect_key=key,
            data=copy.deepcopy(task.data),
            conn=conn,
            actor=actor,
            services={"decide": self.decide, "runtime": self, "interviews": self._interviews},
        )

    def _save(
        self, conn: Connection, inst: _Loaded, status: InstanceStatus, error: str | None = None
    ) -> None:
        new_status = _transition(inst.status, status) if status is not inst.status else status
        now = self.clock()
        timer_at = next_timer(inst.wf)
        res = conn.execute(
            update(wf_instances)
            .where(wf_instances.c.id == inst.id, wf_instances.c.rev == inst.rev)
            .values(
                state=self._dump(inst.wf),
                rev=inst.rev + 1,
                status=new_status.value,
                data=current_data(inst.wf),
                updated_at=now,
                next_timer_at=timer_at,
                error=error,
            )
        )
        if res.rowcount != 1:
            raise Conflict(f"instance {inst.id} was changed concurrently; retry", code="stale_instance")
        inst.rev += 1
        inst.status = new_status
        if inst.events:
            conn.execute(
                insert(wf_events),
                [
                    {
                        "instance_id": inst.id,
                        "at": now,
                        "kind": e["kind"],
                        "element": e["element"],
                        "details": e["details"],
                    }
                    for e in inst.events
                ],
            )
            inst.events.clear()
        has_human = bool(inst.wf.get_tasks(state=TaskState.READY, manual=True))
        if has_human or inst.had_human:
            self.board.sync(
                conn,
                inst.id,
                inst.parsed.meta,
                inst.wf,
                finished=new_status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED),
            )
        inst.had_human = has_human

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
        with self.db.connect() as conn:
            row = conn.execute(select(wf_tasks).where(wf_tasks.c.task_id == task_id)).first()
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        if row.status != "open":
            raise Conflict(f"task {task_id} is already {row.status}", code="task_not_open")
        if role is not None and row.role != role:
            raise Forbidden(f"task {task_id} needs role {row.role!r}")
        from callvet.workflow.forms import validate_completion

        with self.db.connect() as conn:
            pkey = conn.execute(select(wf_instances.c.process_key)
                                .where(wf_instances.c.id == row.instance_id)).scalar()
        validate_completion(str(pkey), row.element, data)

        def mutate(inst: _Loaded, conn: Connection) -> None:
            try:
                task = inst.wf.get_task_from_id(uuid.UUID(task_id))
            except Exception:
                task = None
            if task is None or task.state != TaskState.READY:
                raise Conflict(f"task {task_id} is not ready", code="task_not_open")
            reviewer = reviewer_id or actor
            task.data.update(copy.deepcopy(data))
            task.data["reviewed_by"] = reviewer
            task.data.setdefault("reviewers", [])
            task.data["reviewers"] = [*task.data["reviewers"], reviewer]
            task.run()
            done = conn.execute(
                update(wf_tasks)
                .where(wf_tasks.c.task_id == task_id, wf_tasks.c.status == "open")
                .values(status="completed", completed_at=self.clock(), completed_by=actor)
            )
            if done.rowcount != 1:
                raise Conflict(f"task {task_id} is already completed", code="task_not_open")
            inst.events.append(
                {
                    "kind": "task.completed",
                    "element": task.task_spec.bpmn_id,
                    "details": {"task_id": task_id, "actor": actor, "data": data},
                }
            )
            meta = inst.parsed.meta["elements"].get(task.task_spec.bpmn_id) or {}
            if meta.get("supervise"):
                self.supervisor.check(
                    conn,
                    kind=meta["supervise"],
                    instance_id=inst.id,
                    task_id=task_id,
                    data=task.data,
                    actor=actor,
                    reviewer_id=reviewer,
                    assignee=row.assignee,
                    task_created_at=aware(row.created_at),
                    review_level=int(meta.get("level") or 1),
                )
            record(
                conn,
                actor,
                "workflow.task.complete",
                "wf_task",
                task_id,
                details={"instance_id": inst.id, "element": task.task_spec.bpmn_id},
            )

        self._advance(row.instance_id, actor, mutate)
        return self.summary(row.instance_id)

    def deliver_message(
        self, instance_id: str, name: str, payload: dict[str, Any], *, actor: str
    ) -> dict[str, Any]:
        """Deliver a BPMN message (e.g. ``investigation_result``) to an instance waiting for it."""
        self.ensure_ready()
        payload = _check_data(payload, "message payload")

        def mutate(inst: _Loaded, conn: Connection) -> None:
            waiting = {e.name for e in inst.wf.waiting_events() if e.event_type == "MessageEventDefinition"}
            if name not in waiting:
                raise Conflict(
                    f"instance {instance_id} is not waiting for message {name!r}"
                    + (f"; waiting for {sorted(waiting)}" if waiting else ""),
                    code="not_waiting",
                )
            inst.wf.send_event(BpmnEvent(MessageEventDefinition(name), payload=copy.deepcopy(payload)))
            inst.events.append(
                {
                    "kind": "message.received",
                    "element": name,
                    "details": {"actor": actor, "keys": sorted(payload)},
                }
            )
            record(conn, actor, "workflow.message", "wf_instance", instance_id, details={"name": name})

        self._advance(instance_id, actor, mutate)
        return self.summary(instance_id)

    # ---- the worker ------------------------------------------------------------------------------
    def run_due(
        self, *, limit: int = 200, actor: str = "system:worker", shard: tuple[int, int] | None = None
    ) -> int:
        """Resume ``running`` instances (interrupted by a crash) and wake those with a due timer.

        ``shard=(k, n)`` (n a power of two up to 16) takes only instances whose id ends in the k-th of n
        equal groups of hex digits, so n workers share the load without racing on the same instances.
        """
        self.ensure_ready()
        now = self.clock()
        stmt = (
            select(wf_instances.c.id)
            .where(
                (wf_instances.c.status == InstanceStatus.RUNNING.value)
                | (
                    (wf_instances.c.status == InstanceStatus.WAITING.value)
                    & (wf_instances.c.next_timer_at <= now)
                )
            )
            .order_by(wf_instances.c.updated_at)
            .limit(limit)
        )
        if shard is not None:
            k, n = shard
            if n not in (1, 2, 4, 8, 16) or not 0 <= k < n:
                raise InvalidInput(
                    "shard must be k/n with n in 1, 2, 4, 8, 16 and 0 <= k < n", code="invalid_shard"
                )
            digits = [f"{d:x}" for d in range(16) if d * n // 16 == k]
            stmt = stmt.where(func.substr(wf_instances.c.id, func.length(wf_instances.c.id), 1).in_(digits))
        with self.db.connect() as conn:
            ids = [r.id for r in conn.execute(stmt).all()]
        done = 0
        for iid in ids:
            try:
                self._advance(iid, actor)
                done += 1
            except (Conflict, Unavailable, OperationalError):
                continue  # raced, engine down or database busy: the next round retries it
        return done

    def tick(self, *, actor: str = "system:worker") -> dict[str, int]:
        """One scheduler round: resume/wake instances, reminders, escalations, assignment, priorities."""
        advanced = self.run_due(actor=actor)
        stats = self.board.housekeeping()
        stats["advanced"] = advanced
        return stats

    # ---- cancelling and erasing ----------------------------------------------------------------
    def cancel(self, instance_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Stop a running or waiting instance (it becomes ``failed`` with the reason); audited."""
        if not reason.strip():
            raise InvalidInput("a reason is required", code="reason_required")
        inst = self._load(instance_id)
        if inst.status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED):
            raise Conflict(f"instance is {inst.status.value}", code="instance_finished")
        self._mark_failed(inst, f"cancelled by {actor}: {reason.strip()[:500]}")
        with self.db.begin() as conn:
            record(conn, actor, "workflow.instance.cancel", "wf_instance", instance_id, reason=reason)
        return self.summary(instance_id)

    def erase(self, instance_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Delete a finished instance with its data, events, tasks, effects and supervision records.

        Issuance rows (a card was issued, for how much) stay as the bank's business record; the audit
        log keeps who erased what and why, never the erased data.
        """
        if not reason.strip():
            raise InvalidInput("a reason is required", code="reason_required")
        from callvet.workflow.tables import wf_checks, wf_findings

        with self.db.begin() as conn:
            row = conn.execute(select(wf_instances.c.status).where(wf_instances.c.id == instance_id)).first()
            if row is None:
                raise NotFound(f"no workflow instance {instance_id!r}")
            if row.status not in (InstanceStatus.COMPLETED.value, InstanceStatus.FAILED.value):
                raise Conflict(
                    "only completed or failed instances can be erased; cancel it first",
                    code="instance_active",
                )
            counts = {}
            for table in (wf_events, wf_tasks, wf_effects, wf_findings, wf_checks):
                counts[table.name] = conn.execute(
                    delete(table).where(table.c.instance_id == instance_id)
                ).rowcount
            conn.execute(delete(wf_instances).where(wf_instances.c.id == instance_id))
            record(
                conn,
                actor,
                "workflow.instance.erase",
                "wf_instance",
                instance_id,
                reason=reason,
                details={"deleted": counts},
            )
        return {"instance_id": instance_id, "erased": True, "deleted": counts}

    # ---- reading ---------------------------------------------------------------------------------
    def list_instances(
        self, *, status: str | None = None, process_key: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first; ``status`` one of running, waiting, completed, failed."""
        if status is not None and status not in {s.value for s in InstanceStatus}:
            raise InvalidInput(f"unknown status {status!r}", code="invalid_status")
        stmt = (
            select(
                wf_instances.c.id,
                wf_instances.c.process_key,
                wf_instances.c.version,
                wf_instances.c.status,
                wf_instances.c.created_at,
                wf_instances.c.updated_at,
            )
            .order_by(wf_instances.c.created_at.desc())
            .limit(max(1, min(limit, 1000)))
        )
        if status is not None:
            stmt = stmt.where(wf_instances.c.status == status)
        if process_key is not None:
            stmt = stmt.where(wf_instances.c.process_key == process_key)
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            {
                "instance_id": r.id,
                "process_key": r.process_key,
                "version": r.version,
                "status": r.status,
                "created_at": aware(r.created_at).isoformat(),  # type: ignore[union-attr]
                "updated_at": aware(r.updated_at).isoformat(),
            }  # type: ignore[union-attr]
            for r in rows
        ]

    def waiting_for(self, instance_id: str) -> list[str]:
        """Names of the messages the instance waits for (e.g. ``investigation_result``)."""
        inst = self._load(instance_id)
        return sorted({e.name for e in inst.wf.waiting_events() if e.event_type == "MessageEventDefinition"})

    def summary(self, instance_id: str, *, with_events: bool = False) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(wf_instances).where(wf_instances.c.id == instance_id)).first()
            if row is None:
                raise NotFound(f"no workflow instance {instance_id!r}")
            out: dict[str, Any] = {
                "instance_id": row.id,
                "process_key": row.process_key,
                "version": row.version,
                "status": row.status,
                "error": row.error,
                "next_timer_at": aware(row.next_timer_at).isoformat() if row.next_timer_at else None,
            }
            if with_events:
                out["data"] = row.data
                out["created_at"] = aware(row.created_at).isoformat()  # type: ignore[union-attr]
                out["updated_at"] = aware(row.updated_at).isoformat()  # type: ignore[union-attr]
                evs = conn.execute(
                    select(wf_events).where(wf_events.c.instance_id == instance_id).order_by(wf_events.c.id)
                ).all()
                out["events"] = [
                    {
                        "at": aware(e.at).isoformat(),
                        "kind": e.kind,  # type: ignore[union-attr]
                        "element": e.element,
                        "details": e.details,
                    }
                    for e in evs
                ]
                out["tasks"] = self.board.for_instance(conn, instance_id)
        if with_events and out["status"] == InstanceStatus.WAITING.value:
            out["waiting_for"] = self.waiting_for(instance_id)
        return out
