"""outcome_checks: a partial index of the pending checks (replacing (status, id))

Revision ID: 0040
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0021"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


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


def downgrade() -> None:
    op.create_index("ix_outcome_checks_status_id", "outcome_checks", ["status", "id"])
    op.drop_index("ix_outcome_checks_pending", table_name="outcome_checks")
