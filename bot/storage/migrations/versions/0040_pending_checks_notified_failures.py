"""outcome_checks: a partial index of the pending checks (replacing (status, id)); platform
events: what a failed payment's notification tells incident detection

Revision ID: 0040
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0030"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")
_FAILED = sa.text("status = 'failed'")


def upgrade() -> None:
    # The checker's batch (status = 'pending' AND id > :after ORDER BY id) walks only the
    # pending rows; settled history no longer sits in front of the first batch.
    op.create_index(
        "ix_outcome_checks_pending",
        "outcome_checks",
        ["id"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.drop_index("ix_outcome_checks_status_id", table_name="outcome_checks")
    with op.batch_alter_table("platform_events") as batch_op:
        batch_op.add_column(sa.Column("merchant_id", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("channel", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("failure_code", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("attempt_id", sa.String(64), nullable=True))
    op.create_index(
        "ix_platform_events_failed_at",
        "platform_events",
        ["received_at"],
        postgresql_where=_FAILED,
        sqlite_where=_FAILED,
    )


def downgrade() -> None:
    op.drop_index("ix_platform_events_failed_at", table_name="platform_events")
    with op.batch_alter_table("platform_events") as batch_op:
        batch_op.drop_column("attempt_id")
        batch_op.drop_column("failure_code")
        batch_op.drop_column("channel")
        batch_op.drop_column("merchant_id")
    op.create_index("ix_outcome_checks_status_id", "outcome_checks", ["status", "id"])
    op.drop_index("ix_outcome_checks_pending", table_name="outcome_checks")
