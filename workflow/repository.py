"""The instance repository: the only code that writes ``wf_instances``, ``wf_events`` and ``wf_effects``.

Every write takes the caller's connection, so the caller's unit of work decides what commits together
(the state, its events, the human-task rows, the audit row). Every status it writes goes through
:func:`callvet.workflow.status.transition`; every state save is ``UPDATE ... WHERE rev = :seen``, so two
writers cannot both advance one instance (the loser gets 409 ``stale_instance``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callvet.core import outbox
from callvet.core.db import Database
from callvet.core.errors import Conflict, NotFound
from callvet.workflow.codec import StateCodec, current_data, next_timer, subject
from callvet.workflow.definitions import Definition, DefinitionStore, ParsedDefinition
from callvet.workflow.status import InstanceStatus, transition
from callvet.workflow.tables import wf_effects, wf_events, wf_instances
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = ["EventLog", "InstanceRepository", "LoadedInstance", "workflow_events"]

# Statements compiled once and executed with parameters (see core.audit).
_INSERT_EFFECT = insert(wf_effects)
_INSERT_EVENT = insert(wf_events)
_SELECT_EFFECT = select(wf_effects.c.result).where(wf_effects.c.effect_key == bindparam("key"))
_SELECT_INSTANCE = select(wf_instances).where(wf_instances.c.id == bindparam("iid"))
_SAVE = (
    update(wf_instances)
    .where(wf_instances.c.id == bindparam("b_id"), wf_instances.c.rev == bindparam("b_rev"))
    .values(
        state=bindparam("b_state"), rev=bindparam("b_new_rev"), status=bindparam("b_status"),
        data=bindparam("b_data"), updated_at=bindparam("b_at"), next_timer_at=bindparam("b_timer"),
        error=bindparam("b_error"),
    )
)


@dataclass
class LoadedInstance:
    """An instance in memory between its load and its save; ``events`` wait for the next save.

    ``pending_insert`` (a new instance) writes its row in the first transaction its steps open, so a start
    and its first steps commit together; ``fresh`` means no effect can be stored for it yet (no lookups);
    ``settled`` means the last run ended in a committed wait or end state (its fields are current)."""

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
    pending_insert: Callable[[Connection], None] | None = None
    fresh: bool = False
    settled: bool = False

    def __post_init__(self) -> None:
        self.committed_rev = self.rev
        self.had_human = bool(self.wf.get_tasks(state=TaskState.READY, manual=True))


#: Journal kinds that also go to the rest of the bank (``callvet.workflow.<kind>``, docs/events.md).
PUBLISHED_PREFIXES = ("task.", "instance.")
#: A task's submitted form data rides along up to this size; beyond it the event carries its keys only.
MAX_EVENT_DATA_BYTES = 16 * 1024


def workflow_events(iid: str, events: list[dict[str, Any]], at: datetime) -> list[outbox.Event]:
    """Outbox events for the journal entries other systems follow (tasks and instance lifecycle)."""
    out = []
    for e in events:
        kind = str(e["kind"])
        if not kind.startswith(PUBLISHED_PREFIXES):
            continue
        details = dict(e.get("details") or {})
        data = details.get("data")
        if data is not None and len(outbox.json_bytes(data)) > MAX_EVENT_DATA_BYTES:
            details["data"] = {"truncated": True, "keys": sorted(map(str, data))[:100]}
        out.append(outbox.Event(f"callvet.workflow.{kind}", "workflow_instance", iid, {
            "instance_id": iid, "kind": kind, "element": e.get("element") or "", "details": details,
            "at": at.isoformat()}, created_at=at))
    return out


class EventLog:
    """Appends instance events (also for the task board: reminders, escalations, assignments); task and
    instance events also go to the outbox, in the same transaction."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock

    def append(
        self, conn: Connection, iid: str, kind: str, element: str, details: dict[str, Any]
    ) -> None:
        at = self.clock()
        conn.execute(
            _INSERT_EVENT,
            {"instance_id": iid, "at": at, "kind": kind, "element": element, "details": details},
        )
        outbox.add(conn, workflow_events(iid, [{"kind": kind, "element": element, "details": details}], at))

    def append_many(
        self, conn: Connection, iid: str, events: list[dict[str, Any]], at: datetime
    ) -> None:
        if events:
            conn.execute(
                _INSERT_EVENT,
                [
                    {"instance_id": iid, "at": at, "kind": e["kind"], "element": e["element"],
                     "details": e["details"]}
                    for e in events
                ],
            )
            outbox.add(conn, workflow_events(iid, events, at))


class InstanceRepository:
    def __init__(
        self,
        db: Database,
        definitions: DefinitionStore,
        codec: StateCodec,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.definitions = definitions
        self.codec = codec
        self.clock = clock
        self.events = EventLog(clock)

    # ---- reading ----------------------------------------------------------------------------------
    def load(self, instance_id: str) -> LoadedInstance:
        """The instance with its workflow restored; 404 if there is none."""
        with self.db.connect() as conn:
            row = conn.execute(_SELECT_INSTANCE, {"iid": instance_id}).first()
        if row is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        parsed = self.definitions.parsed(row.definition_id)
        return LoadedInstance(
            row.id,
            row.definition_id,
            row.process_key,
            row.version,
            InstanceStatus(row.status),
            row.rev,
            parsed,
            self.codec.restore(parsed, row.state),
        )

    def row(self, conn: Connection, instance_id: str) -> Any:
        """The raw row (for the read views); 404 if there is none."""
        row = conn.execute(_SELECT_INSTANCE, {"iid": instance_id}).first()
        if row is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        return row

    def process_key(self, instance_id: str) -> str:
        with self.db.connect() as conn:
            return str(
                conn.execute(
                    select(wf_instances.c.process_key).where(wf_instances.c.id == instance_id)
                ).scalar()
            )

    def due(self, now: datetime, *, limit: int, id_suffixes: list[str] | None = None) -> list[str]:
        """Ids of ``running`` instances and of ``waiting`` ones whose timer is due, oldest update first;
        ``id_suffixes`` keeps only ids whose last hex digit is one of them (worker sharding)."""
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
        if id_suffixes is not None:
            last = func.substr(wf_instances.c.id, func.length(wf_instances.c.id), 1)
            stmt = stmt.where(last.in_(id_suffixes))
        with self.db.connect() as conn:
            return [r.id for r in conn.execute(stmt).all()]

    def stored_effect(self, conn: Connection, key: str) -> Any:
        """The stored result row of effect ``key``, or None."""
        return conn.execute(_SELECT_EFFECT, {"key": key}).first()

    # ---- writing ----------------------------------------------------------------------------------
    def insert(
        self,
        conn: Connection,
        iid: str,
        definition: Definition,
        data: dict[str, Any],
        wf: BpmnWorkflow,
        actor: str,
        state: str | None = None,
    ) -> None:
        """A new ``running`` instance and its ``instance.started`` event; 409 if the id exists.
        ``state``: ``wf`` as dumped earlier (a start whose steps may have run in memory since)."""
        now = self.clock()
        try:
            conn.execute(
                insert(wf_instances).values(
                    id=iid,
                    definition_id=definition.id,
                    process_key=definition.process_key,
                    version=definition.version,
                    status=InstanceStatus.RUNNING.value,
                    state=state if state is not None else self.codec.dump(wf),
                    data=data,
                    rev=1,
                    created_by=actor,
                    subject=subject(data),
                    created_at=now,
                    updated_at=now,
                )
            )
        except IntegrityError:
            raise Conflict(f"instance {iid} exists", code="instance_exists") from None
        detail = {"actor": actor, "version": definition.version}
        self.events.append_many(
            conn, iid, [{"kind": "instance.started", "element": "", "details": detail}], now
        )

    def save(
        self, conn: Connection, inst: LoadedInstance, status: InstanceStatus, error: str | None = None
    ) -> None:
        """Write the state as revision ``rev + 1`` with ``status`` and flush the pending events."""
        new_status = transition(inst.status, status)
        now = self.clock()
        res = conn.execute(
            _SAVE,
            {"b_id": inst.id, "b_rev": inst.rev, "b_state": self.codec.dump(inst.wf),
             "b_new_rev": inst.rev + 1, "b_status": new_status.value, "b_data": current_data(inst.wf),
             "b_at": now,
             "b_timer": next_timer(inst.wf), "b_error": error},
        )
        if res.rowcount != 1:
            raise Conflict(f"instance {inst.id} was changed concurrently; retry", code="stale_instance")
        inst.rev += 1
        inst.status = new_status
        self.events.append_many(conn, inst.id, inst.events, now)
        inst.events.clear()

    def mark_failed(self, conn: Connection, inst: LoadedInstance, message: str) -> None:
        """``failed`` on the last committed state (uncommitted progress is not written)."""
        new_status = transition(inst.status, InstanceStatus.FAILED)
        now = self.clock()
        res = conn.execute(
            update(wf_instances)
            .where(wf_instances.c.id == inst.id, wf_instances.c.rev == inst.committed_rev)
            .values(
                status=new_status.value,
                rev=inst.committed_rev + 1,
                error=message,
                updated_at=now,
                next_timer_at=None,
            )
        )
        if res.rowcount != 1:
            raise Conflict(f"instance {inst.id} was changed concurrently", code="stale_instance")
        self.events.append_many(
            conn, inst.id, [{"kind": "instance.failed", "element": "", "details": {"error": message}}], now
        )
        inst.status = new_status

    def store_effect(self, conn: Connection, iid: str, key: str, handler: str, result: Any) -> None:
        """The handler's result under its effect key; 409 if a concurrent runner stored it first."""
        try:
            conn.execute(
                _INSERT_EFFECT,
                {"effect_key": key, "instance_id": iid, "handler": handler, "result": result,
                 "at": self.clock()},
            )
        except IntegrityError:
            raise Conflict(f"instance {iid} was advanced concurrently", code="stale_instance") from None

    def status_for_update(self, conn: Connection, instance_id: str) -> InstanceStatus:
        row = conn.execute(select(wf_instances.c.status).where(wf_instances.c.id == instance_id)).first()
        if row is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        return InstanceStatus(row.status)

    def delete_events(self, conn: Connection, instance_id: str) -> int:
        return int(conn.execute(delete(wf_events).where(wf_events.c.instance_id == instance_id)).rowcount)

    def delete_effects(self, conn: Connection, instance_id: str) -> int:
        return int(conn.execute(delete(wf_effects).where(wf_effects.c.instance_id == instance_id)).rowcount)

    def delete(self, conn: Connection, instance_id: str) -> None:
        conn.execute(delete(wf_instances).where(wf_instances.c.id == instance_id))
