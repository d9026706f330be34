"""Interviews and their answers; the engine state is stored whole after every answer."""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import Column, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text

__all__ = ["interview_answers", "interviews"]

interviews = Table(
    "questionnaire_interviews",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("application_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("language", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("verdict", String(16), nullable=True),
    Column("risk_score", Float, nullable=True),
    Column("engine_state", JSONText, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_questionnaire_interviews_app", "application_id", "attempt", unique=True),
)

interview_answers = Table(
    "questionnaire_answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "interview_id",
        String(36),
        ForeignKey("questionnaire_interviews.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    Column("question_id", String(64), nullable=False),
    Column("question", JSONText, nullable=False),
    Column("transcript", Text, nullable=False),
    Column("timing", JSONText, nullable=True),
    Column("prosody", JSONText, nullable=True),
    Column("assessment", JSONText, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_questionnaire_answers_interview", "interview_id", "seq", unique=True),
)
