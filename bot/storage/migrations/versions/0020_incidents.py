"""incidents: platform-wide payment problems, their baselines and the chats to tell at the end;
platform_payment_attempts by time (what the detector reads)

Revision ID: 0020
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0012"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_platform_payment_attempts_at", "platform_payment_attempts", ["at"])
    op.create_table(
        "incidents",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("normal_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_by", sa.String(64), nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("message_zh", sa.Text(), nullable=True),
        sa.Column("message_en", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("merchant_count", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("series", sa.JSON(), nullable=False),
        sa.Column("merchants", sa.JSON(), nullable=False),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_table(
        "incident_baselines",
        sa.Column("key", sa.String(48), primary_key=True),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "incident_askers",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("conversation_id", _ID, sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("incident_id", "conversation_id"),
    )


def downgrade() -> None:
    op.drop_table("incident_askers")
    op.drop_table("incident_baselines")
    op.drop_index("ix_incidents_status", table_name="incidents")
    op.drop_table("incidents")
    op.drop_index("ix_platform_payment_attempts_at", table_name="platform_payment_attempts")
