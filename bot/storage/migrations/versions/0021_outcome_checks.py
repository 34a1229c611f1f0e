"""outcome_checks (verified resolution); the platform's evidence: links' paid_at, accounts'
last_login_at

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "outcome_checks",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", _ID, sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evidence_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outcome_checks_status_id", "outcome_checks", ["status", "id"])
    op.create_index("ix_outcome_checks_started", "outcome_checks", ["started_at"])
    op.create_index("ix_outcome_checks_conversation_id", "outcome_checks", ["conversation_id"])
    with op.batch_alter_table("platform_payment_links") as batch_op:
        batch_op.add_column(sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("platform_accounts") as batch_op:
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("platform_accounts") as batch_op:
        batch_op.drop_column("last_login_at")
    with op.batch_alter_table("platform_payment_links") as batch_op:
        batch_op.drop_column("paid_at")
    op.drop_table("outcome_checks")
