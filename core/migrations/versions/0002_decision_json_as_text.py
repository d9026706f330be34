"""decision_records: the five JSON columns become text (commit 74965f2, SerializedJSON).

That commit changed the column type in the table definition only, so databases made before it kept
``JSON`` columns (on SQLite, NUMERIC affinity: a JSON document such as ``1e5`` came back as a float).
On PostgreSQL the values are cast with ``::text``, which keeps the stored document.

Revision ID: 0002_decision_json_as_text
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_decision_json_as_text"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

_COLUMNS = ("reasons", "policy_versions", "application", "investigation", "details")
_NULLABLE = {"investigation", "details"}


def upgrade() -> None:
    with op.batch_alter_table("decision_records") as batch:
        for name in _COLUMNS:
            batch.alter_column(
                name,
                type_=sa.Text(),
                existing_type=sa.JSON(),
                existing_nullable=name in _NULLABLE,
                postgresql_using=f"{name}::text",
            )


def downgrade() -> None:
    with op.batch_alter_table("decision_records") as batch:
        for name in _COLUMNS:
            batch.alter_column(
                name,
                type_=sa.JSON(),
                existing_type=sa.Text(),
                existing_nullable=name in _NULLABLE,
                postgresql_using=f"{name}::json",
            )
