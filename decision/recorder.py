"""Storing decisions by group commit, and answering a retried request from what was stored.

One commit per ``POST /v1/decisions`` bounded the rate by the database's commit cost (issue 17). The
:class:`DecisionRecorder` hands each request's rows to one :class:`~callvet.core.groupcommit.GroupCommitter`
thread: whatever requests are waiting share one transaction (their decision rows in one multi-row insert,
their audit rows in another), and each request returns only after that transaction committed. A batch
that fails is retried request by request, so only the request at fault fails.

A request may carry an idempotency key. Its decision id is then derived from the caller and the key
(:func:`callvet.core.idempotency.idempotent_id`), so a retry -- after a timeout, or through another
replica after this one died -- collides with the stored row instead of deciding twice, and the caller
gets the stored decision back (:meth:`DecisionRecorder.stored_answer`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from callvet.core import outbox
from callvet.core.application import Application
from callvet.core.bulkinsert import BulkInsert, pipelined
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict
from callvet.core.groupcommit import GroupCommitter
from callvet.core.tables import audit_log
from callvet.core.tables import outbox as outbox_table
from callvet.decision.tables import decision_records
from callvet.decision.types import Decision, Investigation
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

__all__ = ["PG_WRITERS", "DecisionRecorder", "PendingWrite", "decision_events"]

#: Writer connections on PostgreSQL: one batch is written while the previous waits for its fsync (see
#: :mod:`callvet.core.groupcommit`). SQLite writes one transaction at a time, so it has one.
PG_WRITERS = 2

@dataclass(frozen=True)
class PendingWrite:
    """One request's rows: its decisions and the one audit row that says who made them."""

    rows: list[dict[str, Any]]
    audit: dict[str, Any]
    #: Issue 17: the ``callvet.decision.created`` events, committed in the same group transaction.
    events: list[outbox.Event] = field(default_factory=list)


def decision_events(decisions: Sequence[Decision], at: Any) -> list[outbox.Event]:
    """``callvet.decision.created`` per stored decision (docs/events.md): the outcome and why, not the
    application's personal data."""
    return [outbox.Event("callvet.decision.created", "decision", d.decision_id, {
        "decision_id": d.decision_id, "application_id": d.application_id, "decision": d.decision.value,
        "credit_limit": d.credit_limit, "score": d.score, "score_band": d.score_band,
        "reasons": [r.code for r in d.reasons], "policy_versions": d.policy_versions,
        "model_version": d.model_version, "decided_at": at.isoformat(),
    }, created_at=at) for d in decisions]


_DECISIONS, _AUDIT, _OUTBOX = BulkInsert(decision_records), BulkInsert(audit_log), BulkInsert(outbox_table)


def _write(conn: Connection, items: Sequence[PendingWrite]) -> None:
    """A batch's three inserts (decisions, audit, outbox events), in one pipeline on PostgreSQL."""
    with pipelined(conn):
        _DECISIONS.run(conn, [r for item in items for r in item.rows])
        _AUDIT.run(conn, [item.audit for item in items])
        _OUTBOX.run(conn, outbox.rows([e for item in items for e in item.events]))


class DecisionRecorder:
    """Decision rows of many concurrent requests committed together; thread-safe, one per engine."""

    def __init__(self, db: Database, *, max_batch: int = 256, max_queue: int = 4096,
                 writers: int | None = None) -> None:
        self.db = db
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._writers = writers if writers is not None else (1 if db.dialect == "sqlite" else PG_WRITERS)
        self._committer: GroupCommitter[PendingWrite] | None = None

    @property
    def committer(self) -> GroupCommitter[PendingWrite]:
        """Started on the first stored decision (an engine that only decides starts no thread)."""
        if self._committer is None:
            self._committer = GroupCommitter(self.db, _write, max_batch=self._max_batch,
                                             max_queue=self._max_queue, name="decision-commit",
                                             writers=self._writers)
        return self._committer

    @staticmethod
    def pending(decisions: list[Decision], apps: list[Application], invs: list[Investigation | None],
                actor: str) -> PendingWrite:
        now = utcnow()
        versions_json = json.dumps(decisions[0].policy_versions)
        reasons_json: dict[tuple[int, ...], str] = {}
        rows = []
        for d, a, v in zip(decisions, apps, invs, strict=True):
            key = tuple(id(r) for r in d.reasons)
            rj = reasons_json.get(key)
            if rj is None:
                rj = reasons_json[key] = json.dumps([r.to_dict() for r in d.reasons], ensure_ascii=False)
            rows.append({
                "decision_id": d.decision_id, "application_id": d.application_id,
                "decision": d.decision.value, "credit_limit": d.credit_limit, "score": d.score,
                "reasons": rj, "policy_versions": versions_json, "model_version": d.model_version,
                "application": a.model_dump_json(),
                "investigation": v.model_dump_json() if v is not None else None,
                "details": {**d.details, "score_band": d.score_band}, "actor": actor, "created_at": now,
            })
        target = decisions[0].decision_id if len(decisions) == 1 else f"batch:{decisions[0].decision_id}"
        audit = {"at": now, "actor": actor, "action": "decision.create", "target_type": "decision",
                 "target_id": target, "reason": "", "details": {"count": len(decisions)}}
        return PendingWrite(rows, audit, decision_events(decisions, now))

    def submit(self, item: PendingWrite) -> Future[None]:
        """Queue ``item``; the future resolves once it is committed (503 ``overloaded`` when full)."""
        return self.committer.submit(item)

    def write_on(self, conn: Connection, item: PendingWrite) -> None:
        """Write ``item`` in the caller's open transaction (it commits or rolls back with it)."""
        _write(conn, [item])

    def store(self, item: PendingWrite, timeout: float = 30.0) -> None:
        """Return once ``item`` is committed; its own error (a duplicate id, say) is raised here."""
        self.committer.write_one(item, timeout=timeout)

    def stored_answer(self, decision_id: str, application_id: str) -> dict[str, Any]:
        """The stored decision ``decision_id`` as the API answers it (a retried idempotent request);
        a key reused for another application is a conflict, not a replay."""
        with self.db.connect() as conn:
            r = conn.execute(select(decision_records).where(decision_records.c.decision_id == decision_id)
                             ).first()
        if r is None:
            raise Conflict("the decision could not be stored; retry", code="decision_not_stored")
        if r.application_id != application_id:
            raise Conflict("this idempotency key was used for another application",
                           code="idempotency_key_reused")
        details = r.details or {}
        return {"decision_id": r.decision_id, "application_id": r.application_id, "decision": r.decision,
                "credit_limit": r.credit_limit, "score": r.score, "score_band": details.get("score_band"),
                "reasons": r.reasons, "policy_versions": r.policy_versions, "model_version": r.model_version,
                "replayed": True}

    @staticmethod
    def is_duplicate(exc: BaseException) -> bool:
        return isinstance(exc, IntegrityError)

    @property
    def queued(self) -> int:
        return self._committer.queued if self._committer is not None else 0

    def close(self) -> None:
        """Write what is queued, then stop (a draining replica's last decisions still land)."""
        if self._committer is not None:
            self._committer.close()
