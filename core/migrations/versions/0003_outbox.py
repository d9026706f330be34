"""outbox: the transactional outbox (issue 17).

Revision ID: 0003_outbox
Revises: 0002_decision_json_as_text
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002_decision_json_as_text"
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    """Guarded create: a database adopted from ``create_all`` may already have the table."""
    return name not in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    if _missing("outbox"):
        op.create_table(
            "outbox",
            sa.Column(
                "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
            ),
            sa.Column("event_id", sa.String(length=36), nullable=False),
            sa.Column("subject", sa.String(length=200), nullable=False),
            sa.Column("aggregate_type", sa.String(length=64), nullable=False),
            sa.Column("aggregate_id", sa.String(length=100), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("event_id"),
        )
        op.create_index("ix_outbox_pending", "outbox", ["published_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
