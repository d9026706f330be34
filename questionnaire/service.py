"""``InterviewService``: the questionnaire's one entry point for the API, the CLI and the call server.

No HTTP here. Every answer is scored and written in one transaction together with the new engine state,
so a call that breaks mid-way keeps everything scored so far; creation, results, aborts and deletions
are audited in the same transaction as the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callvet.core import audit
from callvet.core.application import Application
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.questionnaire.bank import Bank, load_bank
from callvet.questionnaire.encoder import load_encoder
from callvet.questionnaire.interview import InterviewEngine, InterviewState
from callvet.questionnaire.scoring import Scorer
from callvet.questionnaire.tables import interview_answers, interviews
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = ["LANGUAGES", "MAX_ATTEMPTS", "InterviewService", "Prosody", "Timing", "validation_error"]

LANGUAGES = ("zh-CN", "en", "en-US", "en-GB")
# Interviews per application: a caller who hangs up to hear a fresh paper gets only so many.
MAX_ATTEMPTS = 3


class Timing(BaseModel):
    """When and how the answer was spoken; produced by the call server from the audio."""

    model_config = ConfigDict(extra="allow")
    delay_s: float | None = Field(default=None, ge=0, le=600)
    duration_s: float | None = Field(default=None, ge=0, le=600)
    pauses: list[float] = Field(default_factory=list, max_length=200)
    speech_rate: float | None = Field(default=None, ge=0, le=50)


class Prosody(BaseModel):
    """Pitch and energy of the answer; extra keys (the call server's ``pitch_mean_hz``, ``energy_mean_db``,
    ``pitch_std_st`` ...) are kept and used as features in their own right."""

    model_config = ConfigDict(extra="allow")
    pitch_mean: float | None = Field(default=None, ge=0, le=2000)
    pitch_std: float | None = Field(default=None, ge=0, le=2000)
    energy_mean: float | None = Field(default=None, allow_inf_nan=False)
    energy_std: float | None = Field(default=None, ge=0)


def validation_error(exc: ValidationError, prefix: str) -> InvalidInput:
    """A typed 422 naming the first bad field by its dotted path (``application.applicant.mobile``)."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
    return InvalidInput(
        f"{path}: {err.get('msg', 'invalid')}",
        code="invalid_field",
        field=path,
        errors=[
            {"field": ".".join(str(p) for p in (prefix, *e.get("loc", ()))), "message": e.get("msg")}
            for e in exc.errors()[:10]
        ],
    )


class InterviewService:
    """Create interviews, take answers, read and delete them. Thread-safe; state lives in the database."""

    def __init__(
        self,
        db: Database,
        *,
        models_dir: Path | None = None,
        use_encoder: bool = True,
        bank: Bank | None = None,
        scorer: Scorer | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        enrich: Callable[[Application], Application] | None = None,
    ) -> None:
        self.db = db
        self._enrich = enrich
        self.max_attempts = max_attempts
        self.bank = bank or load_bank()
        if scorer is None:
            encoder = None
            if use_encoder and models_dir is not None:
                encoder = load_encoder(models_dir)
            scorer = Scorer(encoder)
        self.scorer = scorer

    @property
    def encoder_loaded(self) -> bool:
        return self.scorer.encoder is not None

    # ------------------------------------------------------------------ create

    def create(
        self, application: Application | dict[str, Any], *, language: str | None = None, actor: str = "system"
    ) -> dict[str, Any]:
        if not isinstance(application, Application):
            if not isinstance(application, dict):
                raise InvalidInput("application must be an object", code="invalid_field", field="application")
            try:
                application = Application.model_validate(application)
            except ValidationError as exc:
                raise validation_error(exc, "application") from exc
        if self._enrich is not None:
            application = self._enrich(application)
        if language is not None and language not in LANGUAGES:
            raise InvalidInput(
                f"language must be one of {', '.join(LANGUAGES)}", code="invalid_field", field="language"
            )
        lang = language or application.language
        for _ in range(3):
            try:
                return self._create(application, lang, actor)
            except IntegrityError:
                continue
        raise Conflict("could not allocate an attempt number; retry", code="attempt_race")

    def _create(self, app: Application, lang: str, actor: str) -> dict[str, Any]:
        iid = str(uuid.uuid4())
        now = utcnow()
        with self.db.begin() as conn:
            attempt = (
                conn.execute(
                    select(func.coalesce(func.max(interviews.c.attempt), 0)).where(
                        interviews.c.application_id == app.application_id
                    )
                ).scalar_one()
                + 1
            )
            if attempt > self.max_attempts:
                raise Conflict(
                    f"application {app.application_id} has had {attempt - 1} interviews; "
                    f"the limit is {self.max_attempts}",
                    code="attempts_exhausted",
                )
            eng = InterviewEngine.new(self.bank, self.scorer, app, attempt=attempt, language=lang)
            conn.execute(
                insert(interviews).values(
                    id=iid,
                    application_id=app.application_id,
                    attempt=attempt,
                    language=lang,
                    state=eng.status.value,
                    verdict=None,
                    risk_score=None,
                    engine_state=eng.state,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
            )
            audit.record(
                conn,
                actor,
                "interview.create",
                "interview",
                iid,
                details={"application_id": app.application_id, "attempt": attempt, "language": lang},
            )
        return {"interview_id": iid, "application_id": app.application_id, "attempt": attempt, **eng.view()}

    # ------------------------------------------------------------------ answer

    def answer(
        self,
        interview_id: str,
        question_id: str,
        transcript: str,
        *,
        timing: Timing | dict[str, Any] | None = None,
        prosody: Prosody | dict[str, Any] | None = None,
        actor: str = "system",
    ) -> dict[str, Any]:
        """Score the answer to the pending question; returns ``{assessment, question | result}``."""
        timing_d = self._model(Timing, timing, "timing")
        prosody_d = self._model(Prosody, prosody, "prosody")
        if not isinstance(question_id, str) or not question_id:
            raise InvalidInput("question_id is required", code="invalid_field", field="question_id")
        if not isinstance(transcript, str):
            raise InvalidInput("transcript must be a string", code="invalid_field", field="transcript")
        try:
            return self._answer(interview_id, question_id, transcript, timing_d, prosody_d, actor)
        except IntegrityError as exc:
            # Two answers raced for the same question (SQLite has no row lock): the loser is told so and
            # the winner's answer stands.
            raise Conflict(
                "another answer to this interview was stored at the same time; reload it",
                code="concurrent_answer",
            ) from exc

    def _answer(
        self,
        interview_id: str,
        question_id: str,
        transcript: str,
        timing_d: dict[str, Any] | None,
        prosody_d: dict[str, Any] | None,
        actor: str,
    ) -> dict[str, Any]:
        with self.db.begin() as conn:
            stmt = select(interviews).where(interviews.c.id == interview_id)
            if self.db.dialect != "sqlite":
                stmt = stmt.with_for_update()
            row = conn.execute(stmt).first()
            if row is None:
                raise NotFound(f"interview {interview_id} not found", code="interview_not_found")
            eng = InterviewEngine(self.bank, self.scorer, dict(row.engine_state))
            pending = eng.current
            out = eng.answer(question_id, transcript, timing_d, prosody_d)
            seq = len(eng.state["answers"])
            conn.execute(
                insert(interview_answers).values(
                    interview_id=interview_id,
                    seq=seq,
                    question_id=question_id,
                    question=pending.public() if pending else {},
                    transcript=transcript,
                    timing=timing_d,
                    prosody=prosody_d,
                    assessment=out["assessment"],
                    actor=actor,
                    created_at=utcnow(),
                )
            )
            result = eng.state.get("result")
            conn.execute(
                update(interviews)
                .where(interviews.c.id == interview_id)
                .values(
                    state=eng.status.value,
                    engine_state=eng.state,
                    updated_at=utcnow(),
                    verdict=result["verdict"] if result else None,
                    risk_score=result["risk_score"] if result else None,
                )
            )
            if eng.status is InterviewState.FINISHED:
                audit.record(
                    conn,
                    actor,
                    "interview.result",
                    "interview",
                    interview_id,
                    details={"application_id": row.application_id, **result},
                )
        return {"interview_id": interview_id, **out}

    @staticmethod
    def _model(cls: type[BaseModel], value: Any, name: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, BaseModel):
            return value.model_dump(exclude_none=True)
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} must be an object", code="invalid_field", field=name)
        try:
            return cls.model_validate(value).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise validation_error(exc, name) from exc

    # ------------------------------------------------------------------ read, abort, delete

    def get(self, interview_id: str, *, include_answers: bool = True) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(interviews).where(interviews.c.id == interview_id)).first()
            if row is None:
                raise NotFound(f"interview {interview_id} not found", code="interview_not_found")
            answers = (
                conn.execute(
                    select(interview_answers)
                    .where(interview_answers.c.interview_id == interview_id)
                    .order_by(interview_answers.c.seq)
                ).all()
                if include_answers
                else []
            )
        eng = InterviewEngine(self.bank, self.scorer, dict(row.engine_state))
        out = {
            "interview_id": row.id,
            "application_id": row.application_id,
            "attempt": row.attempt,
            "language": row.language,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            **eng.view(),
        }
        if include_answers:
            out["answers"] = [
                {
                    "seq": a.seq,
                    "question": a.question,
                    "transcript": a.transcript,
                    "timing": a.timing,
                    "prosody": a.prosody,
                    "assessment": a.assessment,
                    "at": a.created_at.isoformat(),
                }
                for a in answers
            ]
        return out

    def list_for_application(self, application_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(
                    interviews.c.id,
                    interviews.c.attempt,
                    interviews.c.state,
                    interviews.c.verdict,
                    interviews.c.risk_score,
                    interviews.c.created_at,
                )
                .where(interviews.c.application_id == application_id)
                .order_by(interviews.c.attempt)
            ).all()
        return [
            {
                "interview_id": r.id,
                "attempt": r.attempt,
                "state": r.state,
                "verdict": r.verdict,
                "risk_score": r.risk_score,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]

    def abort(self, interview_id: str, *, reason: str, actor: str = "system") -> dict[str, Any]:
        """End an interview early (call dropped, caller hung up); it keeps what was scored."""
        with self.db.begin() as conn:
            row = conn.execute(select(interviews).where(interviews.c.id == interview_id)).first()
            if row is None:
                raise NotFound(f"interview {interview_id} not found", code="interview_not_found")
            eng = InterviewEngine(self.bank, self.scorer, dict(row.engine_state))
            eng.abort(reason)
            result = eng.state["result"]
            conn.execute(
                update(interviews)
                .where(interviews.c.id == interview_id)
                .values(
                    state=eng.status.value,
                    engine_state=eng.state,
                    updated_at=utcnow(),
                    verdict=result["verdict"],
                    risk_score=result["risk_score"],
                )
            )
            audit.record(
                conn, actor, "interview.abort", "interview", interview_id, reason=reason, details=result
            )
        return {"interview_id": interview_id, **eng.view()}

    def delete(self, interview_id: str, *, reason: str, actor: str = "system") -> None:
        """Erase an interview and its answers (data-subject deletion); the audit row says who and why."""
        if not reason.strip():
            raise InvalidInput("a reason is required to delete an interview", field="reason")
        with self.db.begin() as conn:
            row = conn.execute(
                select(interviews.c.application_id).where(interviews.c.id == interview_id)
            ).first()
            if row is None:
                raise NotFound(f"interview {interview_id} not found", code="interview_not_found")
            conn.execute(delete(interview_answers).where(interview_answers.c.interview_id == interview_id))
            conn.execute(delete(interviews).where(interviews.c.id == interview_id))
            audit.record(
                conn,
                actor,
                "interview.delete",
                "interview",
                interview_id,
                reason=reason,
                details={"application_id": row.application_id},
            )
