"""platform_secrets: the server key bind codes are stored under (HMAC-SHA256);
platform_bind_failures: wrong bind codes, counted by the platform across all its clients

Bind codes stored before this revision are plain SHA-256 digests; a migration cannot key them
again without the codes. They keep working once (redemption consumes a code), and
`btp-bot platform load` stores every code of its world keyed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "platform_bind_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_bind_failures", schema=None) as batch_op:
        batch_op.create_index("ix_platform_bind_failures_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("platform_bind_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_bind_failures_at")
    op.drop_table("platform_bind_failures")
    op.drop_table("platform_secrets")
