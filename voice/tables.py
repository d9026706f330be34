"""Blacklist tables: fraudster identities, their voiceprints, and the index generation counter.

Raw audio is never stored, only the print (float32 bytes) and the SHA-256 of the uploaded bytes, so a
re-upload of the same file is recognised without keeping the recording. ``blacklist_state`` holds one row
whose ``generation`` is bumped in every transaction that adds or removes a print: a process holding a
FAISS index in memory compares it with the generation it last synced to and catches changes made by other
processes (the CLI, other API workers) with one cheap query per search, or, on PostgreSQL, on a
``NOTIFY callvet_blacklist`` that a trigger on ``blacklist_state`` sends in the very transaction of the
bump (issue 17; :mod:`callvet.voice.blacklist_sync`): a trigger, so that every writer notifies, the
service, the CLI, a test or a script that bumps the row by hand.
"""

from __future__ import annotations

from callvet.core.db import metadata
from sqlalchemy import (
    DDL,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    event,
)

__all__ = ["NOTIFY_CHANNEL", "NOTIFY_DDL", "blacklist_identities", "blacklist_samples", "blacklist_state"]

blacklist_identities = Table(
    "blacklist_identities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(200), nullable=False),
    Column("notes", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

blacklist_samples = Table(
    "blacklist_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "identity_id",
        Integer,
        ForeignKey("blacklist_identities.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("backend_id", String(200), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("stats_mean", Float, nullable=False),
    Column("stats_std", Float, nullable=False),
    Column("net_speech_s", Float, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_blacklist_samples_identity", "identity_id"),
    Index("ix_blacklist_samples_backend", "backend_id", "id"),
    Index("ix_blacklist_samples_sha", "sha256"),
)

blacklist_state = Table(
    "blacklist_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False, default=0),
)

#: The channel a generation bump notifies on PostgreSQL (payload: the new generation, a hint only).
NOTIFY_CHANNEL = "callvet_blacklist"
#: The trigger (function in the schema of the table) that notifies on every generation change; run by
#: ``create_all`` (below) and by migration 0008 for databases made before it.
NOTIFY_DDL = (
    "CREATE OR REPLACE FUNCTION callvet_blacklist_notify() RETURNS trigger AS $$ BEGIN "
    f"PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.generation::text); RETURN NEW; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS blacklist_state_notify ON blacklist_state",
    "CREATE TRIGGER blacklist_state_notify AFTER UPDATE OF generation ON blacklist_state "
    "FOR EACH ROW EXECUTE FUNCTION callvet_blacklist_notify()",
)
for _stmt in NOTIFY_DDL:
    event.listen(blacklist_state, "after_create", DDL(_stmt).execute_if(dialect="postgresql"))
