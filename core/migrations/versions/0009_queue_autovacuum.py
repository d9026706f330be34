"""Queue-like tables (``outbox``, ``case_events``, ``call_queue``) are vacuumed after 1 % of their rows
changed instead of 20 % on PostgreSQL, so their pending queries do not wade through dead index entries
(bench/workflow/RESULTS.md, the 100k day). SQLite: nothing.

Revision ID: 0009_queue_autovacuum
Revises: 0008_blacklist_notify
"""

from __future__ import annotations

from alembic import op

revision = "0009_queue_autovacuum"
down_revision = "0008_blacklist_notify"
branch_labels = None
depends_on = None

#: As core.db.QUEUE_AUTOVACUUM at this revision (a migration keeps its own frozen copy).
_SETTINGS = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02"
_RESET = "autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor"
_TABLES = ("outbox", "case_events", "call_queue")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET ({_SETTINGS})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({_RESET})")
