"""The changes a caller makes to a waiting instance: complete a human task, deliver a message.

Each is a *mutation* the step loop applies first inside its unit of work, so the change, the audit row
and every step it triggers commit in one transaction (or none of them does).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from callvet.core.audit import record
from callvet.core.errors import Conflict
from callvet.workflow.codec import aware
from callvet.workflow.deps import SupervisionCheck
from callvet.workflow.repository import LoadedInstance
from callvet.workflow.tasks import TaskBoard
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Connection

__all__ = ["CompleteTask", "DeliverMessage", "waiting_messages"]


def waiting_messages(inst: LoadedInstance) -> set[str]:
    return {e.name for e in inst.wf.waiting_events() if e.event_type == "MessageEventDefinition"}


class CompleteTask:
    """Run a ready user task with the reviewer's data, close its row, check it if supervised, audit."""

    def __init__(
        self,
        board: TaskBoard,
        supervisor: SupervisionCheck,
        row: Any,
        data: dict[str, Any],
        *,
        actor: str,
        reviewer_id: str | None,
    ) -> None:
        self.board = board
        self.supervisor = supervisor
        self.row = row
        self.data = data
        self.actor = actor
        self.reviewer = reviewer_id or actor

    def _ready_task(self, inst: LoadedInstance) -> Any:
        task_id = self.row.task_id
        try:
            task = inst.wf.get_task_from_id(uuid.UUID(task_id))
        except Exception:
            task = None
        if task is None or task.state != TaskState.READY:
            raise Conflict(f"task {task_id} is not ready", code="task_not_open")
        return task

    def __call__(self, inst: LoadedInstance, conn: Connection) -> None:
        task_id, actor = self.row.task_id, self.actor
        task = self._ready_task(inst)
        task.data.update(copy.deepcopy(self.data))
        task.data["reviewed_by"] = self.reviewer
        task.data.setdefault("reviewers", [])
        task.data["reviewers"] = [*task.data["reviewers"], self.reviewer]
        task.run()
        self.board.complete(conn, task_id, actor)
        element = task.task_spec.bpmn_id
        inst.events.append(
            {
                "kind": "task.completed",
                "element": element,
                "details": {"task_id": task_id, "actor": actor, "data": self.data},
            }
        )
        meta = inst.parsed.meta["elements"].get(element) or {}
        if meta.get("supervise"):
            self.supervisor.check(
                conn,
                kind=meta["supervise"],
                instance_id=inst.id,
                task_id=task_id,
                data=task.data,
                actor=actor,
                reviewer_id=self.reviewer,
                assignee=self.row.assignee,
                task_created_at=aware(self.row.created_at),
                review_level=int(meta.get("level") or 1),
            )
        record(
            conn, actor, "workflow.task.complete", "wf_task", task_id,
            details={"instance_id": inst.id, "element": element},
        )


class DeliverMessage:
    """Send a BPMN message the instance waits for (409 ``not_waiting`` otherwise), audited."""

    def __init__(self, name: str, payload: dict[str, Any], *, actor: str) -> None:
        self.name = name
        self.payload = payload
        self.actor = actor

    def __call__(self, inst: LoadedInstance, conn: Connection) -> None:
        waiting = waiting_messages(inst)
        if self.name not in waiting:
            raise Conflict(
                f"instance {inst.id} is not waiting for message {self.name!r}"
                + (f"; waiting for {sorted(waiting)}" if waiting else ""),
                code="not_waiting",
            )
        inst.wf.send_event(BpmnEvent(MessageEventDefinition(self.name), payload=copy.deepcopy(self.payload)))
        inst.events.append(
            {
                "kind": "message.received",
                "element": self.name,
                "details": {"actor": self.actor, "keys": sorted(self.payload)},
            }
        )
        record(conn, self.actor, "workflow.message", "wf_instance", inst.id, details={"name": self.name})
