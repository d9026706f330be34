"""What the service-task handlers need, given at construction instead of looked up by name.

The runtime used to hand every handler a string-keyed ``services`` dict (``"decide"``, ``"runtime"``,
``"interviews"``) and build the decision engine and the interview store on first use with imports inside
functions. :class:`WorkflowDeps` names those three collaborators as Protocols, so a composition root (or a
test) builds them once and a handler's needs are visible in its type. :func:`default_deps` is the
compatible path for callers that give only a database and settings: it binds the real decision engine
and interview store lazily (building them loads models, and a missing model must be a 503 on the first
decision, not a crash at start-up).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from callvet.core.db import Database
from callvet.core.errors import CallvetError, Unavailable
from callvet.core.settings import get_settings
from callvet.decision import DecisionEngine
from callvet.questionnaire.service import InterviewService
from sqlalchemy import Connection

__all__ = [
    "Decider",
    "InterviewReader",
    "LazyDecider",
    "LazyInterviews",
    "SupervisionCheck",
    "WorkflowDeps",
    "default_deps",
    "engine_decider",
]


class Decider(Protocol):
    """(application, investigation or None, actor) -> the decision as ``Decision.to_dict()``."""

    def __call__(
        self, application: dict[str, Any], investigation: dict[str, Any] | None, actor: str, /
    ) -> dict[str, Any]: ...


class InterviewReader(Protocol):
    """The questionnaire part's stored interviews, read only (``questionnaire.collect``)."""

    def get(self, interview_id: str, *, include_answers: bool = True) -> dict[str, Any]: ...


class SupervisionCheck(Protocol):
    """Checks one completed action in the caller's transaction (``issuance.apply_limit``)."""

    def check(
        self,
        conn: Connection,
        *,
        kind: str,
        instance_id: str,
        task_id: str,
        data: dict[str, Any],
        actor: str,
        reviewer_id: str | None,
        assignee: str | None,
        task_created_at: datetime | None,
        review_level: int = 1,
    ) -> list[Any]: ...


@dataclass(frozen=True)
class WorkflowDeps:
    """The handlers' collaborators; :class:`~callvet.workflow.engine.WorkflowRuntime` takes one."""

    decide: Decider
    interviews: InterviewReader
    supervisor: SupervisionCheck


class _EngineDecider:
    """A :class:`callvet.decision.DecisionEngine` as a :class:`Decider`. ``in_transaction``: it can
    store its record on the caller's connection (``conn=``), so the decision handlers run inside the
    step's unit of work (:func:`~.handlers.decisions_in_transaction`): one commit instead of three, and
    a crash before it rolls the record back with the state (the replay decides again, once)."""

    in_transaction = True

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(
        self, application: dict[str, Any], investigation: dict[str, Any] | None, actor: str, /,
        conn: Connection | None = None,
    ) -> dict[str, Any]:
        if conn is not None and conn.engine is not self.engine.db.engine:
            conn = None  # another database: the engine commits its own record
        return self.engine.decide(application, investigation, actor=actor, conn=conn).to_dict()  # type: ignore[no-any-return]


def engine_decider(engine: Any) -> Decider:
    """Adapt a :class:`callvet.decision.DecisionEngine` to the handlers' :class:`Decider` signature."""
    return _EngineDecider(engine)


class LazyDecider:
    """The real decision engine, built on the first decision; 503 ``decision_unavailable`` until it
    can be (e.g. the credit model is not trained yet), retried on the next call."""

    def __init__(self, db: Database, settings: Any = None) -> None:
        self._db = db
        self._settings = settings
        self._decide: Decider | None = None
        self._lock = threading.Lock()

    def _build(self) -> Decider:
        try:
            engine = DecisionEngine.from_settings(self._settings or get_settings(), self._db)
        except CallvetError:
            raise
        except Exception as exc:
            raise Unavailable(f"decision engine unavailable: {exc}", code="decision_unavailable") from None
        return engine_decider(engine)

    def bind(self) -> Decider:
        """Build the engine now (raising 503 if it cannot be) and return the bound decider."""
        if self._decide is None:
            with self._lock:
                if self._decide is None:
                    self._decide = self._build()
        return self._decide

    in_transaction = True

    def __call__(
        self, application: dict[str, Any], investigation: dict[str, Any] | None, actor: str, /,
        conn: Connection | None = None,
    ) -> dict[str, Any]:
        return self.bind()(application, investigation, actor, conn=conn)  # type: ignore[call-arg]


class LazyInterviews:
    """The interview store without a sentence encoder (only reads here), built on first read."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._service: InterviewService | None = None

    def get(self, interview_id: str, *, include_answers: bool = True) -> dict[str, Any]:
        if self._service is None:
            self._service = InterviewService(self._db, use_encoder=False)
        return self._service.get(interview_id, include_answers=include_answers)


def default_deps(
    db: Database,
    supervisor: SupervisionCheck,
    *,
    decide: Decider | None = None,
    settings: Any = None,
    interviews: InterviewReader | None = None,
) -> WorkflowDeps:
    """Deps for a runtime built from a database alone: the given ``decide`` or the real engine."""
    return WorkflowDeps(
        decide=decide if decide is not None else LazyDecider(db, settings),
        interviews=interviews if interviews is not None else LazyInterviews(db),
        supervisor=supervisor,
    )
