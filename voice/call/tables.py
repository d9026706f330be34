"""Call records: one row per call, plus its timeline (verdicts, answers, errors, lag) as events."""

from __future__ import annotations

from callvet.core.db import JSONText, metadata
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

__all__ = ["call_events", "calls"]

calls = Table(
    "calls",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("protocol", String(16), nullable=False),
    Column("stream_id", String(100), nullable=False, default=""),
    Column("call_sid", String(100), nullable=False, default=""),
    Column("application_id", String(100), nullable=True),
    Column("language", String(32), nullable=True),
    Column("params", JSONText, nullable=True),
    Column("actor", String(200), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", Text, nullable=True),
    Column("close_code", Integer, nullable=True),
    Column("audio_s", Float, nullable=False, default=0.0),
    Column("net_speech_s", Float, nullable=False, default=0.0),
    Column("alarm", Boolean, nullable=False, default=False),
    Column("alarm_ever", Boolean, nullable=False, default=False),
    Column("verdicts", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    Column("stats", JSONText, nullable=True),
    # -- issue 17: a live call survives its replica (docs/calls.md, Resuming a call). ``resume_key`` is
    # the robot's id of the call (Twilio callSid, mod_audio_fork uuid); ``epoch`` counts the sessions
    # that have owned the call, and a session writes its end and checkpoints only while the epoch is
    # its own (a replica that lost the call to another cannot overwrite it); ``checkpoint`` is the
    # voiceprint accumulator's running state (JSON: embedding sums, never audio).
    Column("resume_key", String(100), nullable=True),
    Column("epoch", Integer, nullable=False, default=0, server_default="0"),
    Column("checkpoint", Text, nullable=True),
    Index("ix_calls_alarm_ever", "alarm_ever", "created_at"),
    Index("ix_calls_resume_key", "resume_key"),
    Index("ix_calls_application", "application_id"),
)

call_events = Table(
    "call_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(32), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("t_s", Float, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("data", JSONText, nullable=True),
    Index("ix_call_events_call", "call_id", "id"),
)
