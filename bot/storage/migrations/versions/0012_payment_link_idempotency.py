"""platform_payment_links: the caller's idempotency key, one link per merchant and key

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("platform_payment_links") as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(100), nullable=True))
        batch_op.create_index(
            "ux_platform_payment_links_idempotency",
            ["merchant_id", "idempotency_key"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("platform_payment_links") as batch_op:
        batch_op.drop_index("ux_platform_payment_links_idempotency")
        batch_op.drop_column("idempotency_key")
