"""console logins: known agent devices; an agent's capacity may follow AGENT_CAPACITY

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_devices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_digest"),
    )
    with op.batch_alter_table("agent_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_devices_agent_id"), ["agent_id"], unique=False)
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.alter_column("capacity", existing_type=sa.Integer(), nullable=True)
    # Until now a capacity was only ever AGENT_CAPACITY copied when the agent was created, never
    # chosen for the agent: the agents that exist follow the setting from here on.
    op.execute("UPDATE agents SET capacity = NULL")


def downgrade() -> None:
    op.execute("UPDATE agents SET capacity = 3 WHERE capacity IS NULL")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.alter_column("capacity", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("agent_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_devices_agent_id"))
    op.drop_table("agent_devices")
