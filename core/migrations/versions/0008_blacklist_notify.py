"""blacklist: on PostgreSQL a trigger notifies ``callvet_blacklist`` on every generation bump (issue 17),
in the bump's own transaction, so replicas sync their FAISS index on the notification instead of
checking the generation before each search. SQLite: nothing (it keeps the per-search check).

Revision ID: 0008_blacklist_notify
Revises: 0007_call_resume
"""

from __future__ import annotations

from alembic import op

revision = "0008_blacklist_notify"
down_revision = "0007_call_resume"
branch_labels = None
depends_on = None

#: As voice/tables.py NOTIFY_DDL at this revision (a migration keeps its own frozen copy; core does not
#: import voice).
_DDL = (
    "CREATE OR REPLACE FUNCTION callvet_blacklist_notify() RETURNS trigger AS $$ BEGIN "
    "PERFORM pg_notify('callvet_blacklist', NEW.generation::text); RETURN NEW; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS blacklist_state_notify ON blacklist_state",
    "CREATE TRIGGER blacklist_state_notify AFTER UPDATE OF generation ON blacklist_state "
    "FOR EACH ROW EXECUTE FUNCTION callvet_blacklist_notify()",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for stmt in _DDL:
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS blacklist_state_notify ON blacklist_state")
    op.execute("DROP FUNCTION IF EXISTS callvet_blacklist_notify()")
