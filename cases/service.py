"""``CaseService``: intake, the case record, call dispatch, stream admission and the result pump.

Exactly once from call end to decision
--------------------------------------
When a case's call ends, :meth:`CaseService.record_call_end` writes, in ONE transaction, the
``call_ended`` case event (keyed ``call:<call_id>``, unique per case, with the call's evidence), the queue
row's ``done`` and the case's ``deciding``. That row is an outbox entry: ``delivered_at`` NULL until the
pump has handed it on. The pump (:meth:`CaseService.pump`, a background thread in the API, and once at
start-up) delivers each pending entry to the case's workflow instance as the ``investigation_result``
message carrying ``evidence_key``; the workflow runs the investigation-outcome decision and routes the
case. Then the entry is marked delivered. A crash after delivery but before the mark is caught on the
next pass: an instance that no longer waits and whose data holds the same ``evidence_key`` is marked
delivered without a second message; the workflow's own revision check means two pumps cannot both
deliver. So a SIGKILL anywhere loses nothing (the entry stays pending) and doubles nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from callvet.cases import dispatch
from callvet.cases.dispatch import CallWindow
from callvet.cases.intake import Intake, Window, default_tz, field_error, iso, summarise_verdicts
from callvet.cases.ports import CaseInterviews, CaseWorkflow
from callvet.cases.state import TERMINAL, CaseStatus, QueueStatus, check_transition
from callvet.cases.tables import call_queue, case_events, cases
from callvet.core import outbox
from callvet.core.application import Application
from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import CallvetError, Conflict, Forbidden, InvalidInput, NotFound
from callvet.voice.call.store import CallStore
from pydantic import ValidationError
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = ["PROCESSES", "CaseService", "Intake", "summarise_verdicts"]

log = logging.getLogger("callvet.cases")

PROCESSES = ("card_issuance", "limit_adjustment", "instalment_loan")
PUMPED = ("call_ended", "unreachable")
MAX_PAGE = 200
# Statements compiled once and executed with parameters (see core.audit).
_INSERT_EVENT = insert(case_events)
_SELECT_CASE = select(cases).where(cases.c.case_id == bindparam("cid"))
_SELECT_STATUS = select(cases.c.status).where(cases.c.case_id == bindparam("cid"))
_BY_APPLICATION = select(cases).where(cases.c.application_id == bindparam("aid"))


class CaseService:
    """Thread-safe; one per process. ``runtime`` and ``interviews`` are factories so that the heavy
    parts (decision engine, sentence encoder) are built on first use; :mod:`.ports` types them."""

    def __init__(self, db: Database, runtime: Callable[[], CaseWorkflow],
                 interviews: Callable[[], CaseInterviews] | None,
                 *, stream_url: str = "/v1/calls/stream", clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._runtime = runtime
        self._interviews = interviews
        self.stream_url = stream_url
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pump_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def runtime(self) -> CaseWorkflow:
        return self._runtime()

    # ---- intake ------------------------------------------------------------------------------------
    def create(self, body: dict[str, Any], *, actor: str) -> tuple[dict[str, Any], bool]:
        """Open (or find) the case for an application; True when it is new."""
        try:
            intake = Intake.model_validate(body)
        except ValidationError as exc:
            raise field_error(exc) from None
        try:
            app = Application.model_validate(intake.application)
        except ValidationError as exc:
            raise field_error(exc, "application") from None
        process = intake.process or "card_issuance"
        if process not in PROCESSES:
            raise InvalidInput(f"process must be one of {', '.join(PROCESSES)}", code="invalid_field",
                               field="process")
        existing = self._by_application(app.application_id)
        if existing is not None:
            return self._resume(existing, intake, actor), False
        case_id = uuid.uuid4().hex
        now = self.clock()
        app_json = app.model_dump(mode="json")
        try:
            with self.db.begin() as conn:
                conn.execute(insert(cases).values(
                    case_id=case_id, application_id=app.application_id, status=CaseStatus.RECEIVED.value,
                    process_key=process, product=intake.product or app.card_product,
                    instance_id=str(uuid.UUID(case_id)), call_ids=[], application=app_json,
                    actor=actor[:200], created_at=now, updated_at=now,
                ))
                self._event(conn, case_id, "received", {"process": process, "actor": actor})
                record(conn, actor, "case.create", "case", case_id,
                       details={"application_id": app.application_id, "process": process})
        except IntegrityError:
            found = self._by_application(app.application_id)
            if found is None:
                raise
            return self._resume(found, intake, actor), False
        row = SimpleNamespace(case_id=case_id, application_id=app.application_id,
                              status=CaseStatus.RECEIVED.value, process_key=process,
                              instance_id=str(uuid.UUID(case_id)), application=app_json)
        return self._resume(row, intake, actor), True

    def _resume(self, row: Any, intake: Intake, actor: str) -> dict[str, Any]:
        """Bring a case to where it should be after intake: started in its process, queued for a call.
        Safe to repeat (a resubmission after a crash between these steps finishes them)."""
        if row.status == CaseStatus.RECEIVED.value:
            self._start_workflow(row, intake, actor)
        return self.get(row.case_id, timeline=False)

    def _start_workflow(self, row: Any, intake: Intake, actor: str) -> None:
        rt = self.runtime
        data: dict[str, Any] = {"application": row.application, "case_id": row.case_id}
        for k in ("product", "amount", "current_limit", "requested_limit"):
            v = getattr(intake, k)
            if v is not None:
                data[k] = v
        if intake.documents:
            data["documents"] = list(intake.documents)
        try:
            summary = rt.start(row.process_key, data, actor=actor, instance_id=row.instance_id, detail=True)
        except Conflict as exc:
            if exc.code != "instance_exists":
                raise
            summary = rt.summary(row.instance_id, with_events=True)
        wf = summary.get("data") or {}
        pre = wf.get("prescreen") or {}
        waiting = summary.get("waiting_for") or []
        now = self.clock()
        with self.db.begin() as conn:
            cur = CaseStatus(conn.execute(_SELECT_STATUS, {"cid": row.case_id}).scalar_one())
            if cur is not CaseStatus.RECEIVED:
                return
            values: dict[str, Any] = {"prescreen_decision": pre.get("decision"),
                                      "prescreen_decision_id": pre.get("decision_id"), "updated_at": now}
            if "investigation_result" in waiting:
                new = CaseStatus.AWAITING_CALL
                w = intake.call_window or Window(timezone=default_tz(row.application))
                window = CallWindow(w.timezone, w.start_hour, w.end_hour)
                deadline = now + timedelta(hours=intake.deadline_hours)
                amount = float(intake.amount or row.application.get("requested_limit") or 0.0)
                qid = dispatch.enqueue(conn, row.case_id, risk=float(pre.get("score") or 0.0), amount=amount,
                                       window=window, deadline=deadline,
                                       mobile=(row.application.get("applicant") or {}).get("mobile"), now=now)
                self._event(conn, row.case_id, "call_requested", {
                    "call_request_id": qid, "timezone": window.timezone,
                    "hours": [window.start_hour, window.end_hour], "deadline_at": deadline.isoformat()})
            else:
                new = self._status_from_workflow(summary)
                values.update(self._final_values(wf))
            check_transition(cur, new)
            values["status"] = new.value
            conn.execute(update(cases).where(cases.c.case_id == row.case_id).values(**values))
            self._event(conn, row.case_id, "prescreened", {
                "decision": pre.get("decision"), "decision_id": pre.get("decision_id"),
                "reasons": [r.get("code") for r in pre.get("reasons") or []], "next": new.value})

    @staticmethod
    def _final_values(wf: dict[str, Any]) -> dict[str, Any]:
        final = wf.get("final") or wf.get("prescreen") or {}
        out: dict[str, Any] = {"final_decision": final.get("decision"),
                               "final_decision_id": final.get("decision_id")}
        if wf.get("outcome") in ("card_issued", "loan_disbursed", "limit_changed"):
            out["credit_limit"] = float(wf.get("approved_amount") or wf.get("credit_limit")
                                        or wf.get("amount") or wf.get("requested_limit") or 0.0)
        return out

    @staticmethod
    def _status_from_workflow(summary: dict[str, Any]) -> CaseStatus:
        wf = summary.get("data") or {}
        if summary["status"] == "failed":
            return CaseStatus.FAILED
        outcome = wf.get("outcome")
        if outcome in ("card_issued", "loan_disbursed", "limit_changed"):
            return CaseStatus.ISSUED
        if outcome == "declined":
            return CaseStatus.DECLINED
        return CaseStatus.REVIEW

    # ---- reading -----------------------------------------------------------------------------------
    def _by_application(self, application_id: str) -> Any:
        with self.db.connect() as conn:
            return conn.execute(_BY_APPLICATION, {"aid": application_id}).first()

    def _row(self, case_id: str, conn: Connection | None = None) -> Any:
        if conn is None:
            with self.db.connect() as c:
                return self._row(case_id, c)
        row = conn.execute(_SELECT_CASE, {"cid": case_id}).first()
        if row is None:
            raise NotFound(f"no case {case_id!r}", code="case_not_found")
        return row

    def get(self, case_id: str, *, timeline: bool = True) -> dict[str, Any]:
        """The case: status, decisions, the current step, evidence and (optionally) the timeline."""
        row = self._row(case_id)
        if row.status == CaseStatus.REVIEW.value and row.instance_id:
            row = self._sync_review(row)
        out: dict[str, Any] = {
            "case_id": row.case_id, "application_id": row.application_id, "status": row.status,
            "process": row.process_key, "product": row.product, "instance_id": row.instance_id,
            "decision": {"prescreen": row.prescreen_decision,
                         "prescreen_decision_id": row.prescreen_decision_id,
                         "final": row.final_decision, "final_decision_id": row.final_decision_id,
                         "credit_limit": row.credit_limit},
            "interview_id": row.interview_id, "call_ids": list(row.call_ids or []),
            "evidence": row.evidence, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }
        out["next"] = self._next(row)
        if timeline:
            with self.db.connect() as conn:
                evs = conn.execute(select(case_events).where(case_events.c.case_id == case_id)
                                   .order_by(case_events.c.id).limit(500)).all()
                q = conn.execute(select(call_queue).where(call_queue.c.case_id == case_id)).first()
            out["timeline"] = [{"at": iso(e.at), "kind": e.kind, "data": e.data,
                                **({"delivered_at": iso(e.delivered_at)} if e.kind in PUMPED else {})}
                               for e in evs]
            if q is not None:
                out["call_request"] = {"call_request_id": q.id, "status": q.status, "attempts": q.attempts,
                                       "max_attempts": q.max_attempts, "last_outcome": q.last_outcome,
                                       "next_attempt_at": iso(q.next_attempt_at), "priority": q.priority}
            if row.instance_id:
                try:
                    wf = self.runtime.summary(row.instance_id, with_events=True)
                except NotFound:
                    wf = None
                if wf is not None:
                    data = wf.get("data") or {}
                    out["workflow"] = {"status": wf["status"], "waiting_for": wf.get("waiting_for", []),
                                       "error": wf.get("error"),
                                       "tasks": [t for t in wf.get("tasks", [])]}
                    out["decision"]["reasons"] = {
                        k: (data.get(k) or {}).get("reasons") for k in ("prescreen", "final") if data.get(k)}
                    inv = data.get("investigation") or {}
                    if inv.get("questionnaire"):
                        out["interview_result"] = inv["questionnaire"]
        return out

    def _sync_review(self, row: Any) -> Any:
        """A case in review follows its workflow: once the reviewer's task has run the process to its end,
        the case takes the outcome. :meth:`workflow_finished` does this as the task completes; this read-side
        check catches instances finished by a runtime without the hook (both update only from ``review``,
        so they cannot both apply)."""
        summary = self.runtime.summary(row.instance_id, with_events=True)
        if summary["status"] not in ("completed", "failed"):
            return row
        with self.db.begin() as conn:
            self._take_outcome(conn, row.case_id, summary["status"], summary.get("data") or {})
        return self._row(row.case_id)

    def workflow_finished(self, conn: Connection, instance_id: str, status: str,
                          data: dict[str, Any]) -> None:
        """The workflow's finish hook (:meth:`WorkflowRuntime.add_finish_hook`): an approver's completion
        that ends the process moves its case out of ``review`` in the same transaction, so
        ``GET /v1/cases?status=review`` lists only cases still waiting for a person."""
        try:
            case_id = uuid.UUID(instance_id).hex
        except ValueError:
            return  # an instance started by hand, not by a case
        self._take_outcome(conn, case_id, status, data, instance_id=instance_id)

    def _take_outcome(self, conn: Connection, case_id: str, status: str, data: dict[str, Any], *,
                      instance_id: str | None = None) -> None:
        """A case in ``review`` takes its finished workflow's outcome, with one ``reviewed`` event (only
        from ``review``, so the hook and the read-side check cannot both apply)."""
        new = self._status_from_workflow({"status": status, "data": data})
        if new is CaseStatus.REVIEW:
            return
        where = [cases.c.case_id == case_id, cases.c.status == CaseStatus.REVIEW.value]
        if instance_id is not None:
            where.append(cases.c.instance_id == instance_id)
        res = conn.execute(update(cases).where(*where)
                           .values(status=new.value, updated_at=self.clock(), **self._final_values(data)))
        if res.rowcount == 1:
            self._event(conn, case_id, "reviewed", {
                "status": new.value, "review_decision": data.get("review_decision"),
                "reviewed_by": data.get("reviewed_by")})

    def _next(self, row: Any) -> str:
        return {
            CaseStatus.RECEIVED.value: "prescreen",
            CaseStatus.AWAITING_CALL.value: "investigation_call",
            CaseStatus.IN_CALL.value: "call_in_progress",
            CaseStatus.DECIDING.value: "investigation_decision",
            CaseStatus.REVIEW.value: "human_review",
        }.get(row.status, "none")

    def list(self, *, status: str | None, limit: int = 50, after: str | None = None) -> dict[str, Any]:
        """Newest first, keyset-paged: pass the previous page's ``next_cursor`` as ``after``."""
        if status is not None and status not in {s.value for s in CaseStatus}:
            raise InvalidInput(f"status must be one of {', '.join(s.value for s in CaseStatus)}",
                               code="invalid_field", field="status")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1..{MAX_PAGE}", code="invalid_field", field="limit")
        stmt = select(cases.c.case_id, cases.c.application_id, cases.c.status, cases.c.process_key,
                      cases.c.final_decision, cases.c.created_at)
        if status:
            stmt = stmt.where(cases.c.status == status)
        if after:
            try:
                ts_s, cid = after.split("~", 1)
                ts = datetime.fromisoformat(ts_s)
            except ValueError:
                raise InvalidInput("after must be a cursor from a previous page", code="invalid_field",
                                   field="after") from None
            stmt = stmt.where((cases.c.created_at < ts)
                              | ((cases.c.created_at == ts) & (cases.c.case_id < cid)))
        stmt = stmt.order_by(cases.c.created_at.desc(), cases.c.case_id.desc()).limit(limit + 1)
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        page = rows[:limit]
        items = [{"case_id": r.case_id, "application_id": r.application_id, "status": r.status,
                  "process": r.process_key, "final_decision": r.final_decision,
                  "created_at": iso(r.created_at)} for r in page]
        cursor = None
        if len(rows) > limit:
            last = page[-1]
            cursor = f"{last.created_at.replace(tzinfo=None).isoformat()}~{last.case_id}"
        return {"cases": items, "next_cursor": cursor}

    def counts(self) -> dict[str, int]:
        with self.db.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(
                select(cases.c.status, func.count()).group_by(cases.c.status)).all()}

    # ---- robots ------------------------------------------------------------------------------------
    def claim(self, robot: str, *, base_url: str = "") -> dict[str, Any] | None:
        got = dispatch.claim(self.db, robot, now=self.clock())
        if got is None:
            return None
        row = self._row(got["case_id"])
        interview_id = self._interview_for(row, robot)
        with self.db.begin() as conn:  # the case's new interview and the claim event: one commit
            if interview_id and interview_id != row.interview_id:
                conn.execute(update(cases).where(cases.c.case_id == row.case_id)
                             .values(interview_id=interview_id))
            self._event(conn, row.case_id, "call_claimed", {
                "call_request_id": got["call_request_id"], "robot": robot, "attempt": got["attempt"],
                "lease_version": got["lease_version"], "interview_id": interview_id})
        token = got.pop("token")
        params = {"case_id": row.case_id, "stream_token": token, "application_id": row.application_id,
                  "language": row.application.get("language")}
        if interview_id:
            params["interview_id"] = interview_id
        return {**got, "application_id": row.application_id, "language": row.application.get("language"),
                "stream_url": base_url + self.stream_url, "custom_parameters": params}

    def _interview_for(self, row: Any, actor: str) -> str | None:
        """The interview the call will run: the case's unfinished one, else a new one."""
        if self._interviews is None:
            return None
        svc = self._interviews()
        if row.interview_id:
            try:
                if svc.get(row.interview_id, include_answers=False).get("state") == "asking":
                    return str(row.interview_id)
            except NotFound:
                pass
        try:
            created = svc.create(row.application, actor=actor)
        except Conflict:
            return row.interview_id  # attempts exhausted: the call goes ahead on voice evidence
        return str(created["interview_id"])

    def report_outcome(self, request_id: str, outcome: str, *, lease_version: int,
                       robot: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.begin() as conn:
            out = dispatch.report_outcome(conn, request_id, outcome, lease_version=lease_version, robot=robot,
                                          now=now)
            self._event(conn, out["case_id"], "call_not_connected", {
                "outcome": outcome, "attempts": out["attempts"], "next_attempt_at": out["next_attempt_at"]})
            if out["status"] == QueueStatus.EXHAUSTED.value:
                self._transition(conn, out["case_id"], CaseStatus.DECIDING)
                self._event(conn, out["case_id"], "unreachable", {
                    "attempts": out["attempts"], "last_outcome": outcome}, key=f"unreachable:{request_id}")
        if out["status"] == QueueStatus.EXHAUSTED.value:
            self._wake.set()
        return out

    # ---- the stream joins its case -------------------------------------------------------------------
    def admit_stream(self, call_id: str, params: dict[str, Any]) -> str | None:
        """Join a starting stream to its case with the one-time token (customParameters ``case_id``,
        ``stream_token``). None for a stream that names no case; :class:`Forbidden` for a bad token."""
        case_id, token = params.get("case_id"), params.get("stream_token")
        if not token:
            # A key-authenticated stream (/v1/calls/stream) may name a case as metadata only; joining a
            # case takes the claim's one-time token (/v1/cases/stream requires it).
            return None
        if not (isinstance(case_id, str) and isinstance(token, str) and token):
            raise Forbidden("a stream for a case needs its case_id and the one-time token from the claim",
                            code="stream_token_invalid")
        with self.db.begin() as conn:
            qid = dispatch.admit(conn, case_id, token, call_id, now=self.clock())
            if qid is None and params.get("resumed") and dispatch.readmit(conn, case_id, token, call_id):
                self._event(conn, case_id, "call_resumed", {"call_id": call_id})
                return case_id
            if qid is None:
                raise Forbidden("the stream token is unknown, used, expired or for another case",
                                code="stream_token_invalid")
            row = self._row(case_id, conn)
            conn.execute(update(cases).where(cases.c.case_id == case_id).values(
                call_ids=[*(row.call_ids or []), call_id]))
            self._transition(conn, case_id, CaseStatus.IN_CALL)
            self._event(conn, case_id, "call_started", {"call_id": call_id, "call_request_id": qid})
        return case_id

    def record_call_end(self, case_id: str, call_id: str, *, reason: str,
                        verdicts: list[dict[str, Any]], epoch: int = 0) -> bool:
        """The durable end of a case's call (the outbox entry the pump delivers); False when it was
        already recorded (an observer called twice, or a sweeper after a restart) or when the session
        ending it (``epoch``) no longer owns the call because another replica resumed it (issue 17)."""
        evidence = {"call_id": call_id, "end_reason": reason[:200],
                    "voiceprint": summarise_verdicts(verdicts)}
        try:
            with self.db.begin() as conn:
                if not CallStore.owns_call(conn, call_id, epoch, self.db.dialect):
                    return False
                conn.execute(update(call_queue).where(call_queue.c.case_id == case_id,
                                                      call_queue.c.call_id == call_id)
                             .values(status=QueueStatus.DONE.value))
                conn.execute(update(cases).where(cases.c.case_id == case_id).values(evidence=evidence))
                self._transition(conn, case_id, CaseStatus.DECIDING)
                self._event(conn, case_id, "call_ended", evidence, key=f"call:{call_id}")
                outbox.add(conn, [outbox.event("case", "call_result", case_id,
                                               {"case_id": case_id, **evidence})])
        except IntegrityError:
            return False
        self._wake.set()
        return True

    # ---- the pump ----------------------------------------------------------------------------------
    def pump(self, *, limit: int = 100, actor: str = "system:cases",
             shard: tuple[int, int] | None = None) -> int:
        """Deliver pending call results to their workflows; returns how many were delivered.
        ``shard`` ``(k, n)`` takes only entries whose id is ``k`` mod ``n``, so that replicas' pumps
        share the work instead of racing for the same entries (a race is safe, only wasted work)."""
        with self._pump_lock:
            stmt = select(case_events).where(case_events.c.delivered_at.is_(None),
                                             case_events.c.kind.in_(PUMPED))
            if shard is not None:
                stmt = stmt.where(case_events.c.id % shard[1] == shard[0])
            with self.db.connect() as conn:
                pending = conn.execute(stmt.order_by(case_events.c.id).limit(limit)).all()
            done = 0
            for ev in pending:
                try:
                    self._deliver(ev, actor)
                    done += 1
                except CallvetError as exc:
                    log.warning("case %s: delivering %s failed: %s", ev.case_id, ev.key, exc.message)
                    with self.db.begin() as conn:
                        conn.execute(update(case_events).where(case_events.c.id == ev.id).values(
                            attempts=case_events.c.attempts + 1, error=exc.message[:500]))
            return done

    def _investigation(self, row: Any, ev: Any) -> dict[str, Any]:
        data = ev.data or {}
        inv: dict[str, Any] = {"evidence_key": ev.key, "investigator": "callvet:case-pump"}
        flags: list[str] = []
        if ev.kind == "unreachable":
            inv["questionnaire"] = {"verdict": "inconclusive", "reasons": ["applicant_unreachable"]}
            flags.append("applicant_unreachable")
        else:
            vp = data.get("voiceprint") or {}
            inv["call_id"] = data.get("call_id")
            inv["voiceprint_alarm"] = bool(vp.get("confirmed_alarm"))
            if vp.get("review_hit"):
                flags.append("voiceprint_review_tier")
            if vp.get("spoof_flag"):
                flags.append("spoof_flag")
            if row.interview_id:
                inv["interview_id"] = row.interview_id
                if self._interviews is not None:
                    got = self._interviews().get(row.interview_id, include_answers=False)
                    if (got.get("result") or {}).get("verdict") == "fail":
                        flags.append("questionnaire_failed")
            else:
                inv["questionnaire"] = {"verdict": "inconclusive", "reasons": ["no_interview"]}
        inv["review_flags"] = flags
        return inv

    def _deliver(self, ev: Any, actor: str) -> None:
        row = self._row(ev.case_id)
        rt = self.runtime
        inv = self._investigation(row, ev)
        try:
            summary = rt.deliver_message(row.instance_id, "investigation_result", {"investigation": inv},
                                         actor=actor, detail=True)
            _failpoint("after_deliver")
        except Conflict as exc:
            # Not waiting (or advanced concurrently): delivered before when its data holds this
            # result's evidence key (a crash between delivery and the mark), else a real conflict.
            summary = rt.summary(row.instance_id, with_events=True)
            if ((summary.get("data") or {}).get("investigation") or {}).get("evidence_key") != ev.key:
                if exc.code == "not_waiting" or exc.code == "instance_finished":
                    raise Conflict(f"workflow {row.instance_id} is {summary['status']}, not waiting for "
                                   "the investigation result", code="not_waiting") from None
                raise
        wf = summary.get("data") or {}
        new = self._status_from_workflow(summary)
        now = self.clock()
        with self.db.begin() as conn:
            res = conn.execute(update(case_events).where(case_events.c.id == ev.id,
                                                         case_events.c.delivered_at.is_(None))
                               .values(delivered_at=now, attempts=case_events.c.attempts + 1, error=None))
            if res.rowcount != 1:
                return
            cur = CaseStatus(conn.execute(_SELECT_STATUS, {"cid": row.case_id}).scalar_one())
            if cur not in TERMINAL:
                check_transition(cur, new)
                conn.execute(update(cases).where(cases.c.case_id == row.case_id).values(
                    status=new.value, updated_at=now, **self._final_values(wf)))
            final = wf.get("final") or {}
            decided = {
                "decision": final.get("decision"), "decision_id": final.get("decision_id"),
                "reasons": [r.get("code") for r in final.get("reasons") or []],
                "review_flags": inv.get("review_flags"), "status": new.value,
                "tasks": [t["task_id"] for t in summary.get("tasks", []) if t.get("status") == "open"]}
            self._event(conn, row.case_id, "decided", decided)
            outbox.add(conn, [outbox.event("case", "decided", row.case_id, {
                "case_id": row.case_id, "application_id": row.application_id, **decided})])

    def start_pump(self, interval_s: float = 1.0, *, shard: tuple[int, int] | None = None) -> None:
        """A daemon thread that pumps on every recorded call end and at least every ``interval_s``."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    while self.pump(shard=shard) and not self._stop.is_set():
                        pass
                except Exception:
                    log.exception("case pump round failed")
                self._wake.wait(interval_s)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="case-pump", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # ---- helpers -----------------------------------------------------------------------------------
    def _event(self, conn: Connection, case_id: str, kind: str, data: dict[str, Any], *,
               key: str | None = None) -> None:
        conn.execute(_INSERT_EVENT, {"case_id": case_id, "at": self.clock(), "kind": kind, "key": key,
                                     "data": data, "attempts": 0})

    def _transition(self, conn: Connection, case_id: str, new: CaseStatus) -> None:
        cur = CaseStatus(conn.execute(_SELECT_STATUS, {"cid": case_id}).scalar_one())
        check_transition(cur, new)
        conn.execute(update(cases).where(cases.c.case_id == case_id).values(status=new.value,
                                                                            updated_at=self.clock()))


def _failpoint(name: str) -> None:
    """Crash tests: ``CALLVET_CASES_FAILPOINT=after_deliver`` SIGKILLs this process right after the
    workflow took the message and before the pump marked it delivered (the worst moment)."""
    if os.environ.get("CALLVET_CASES_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
