"""platform_events: looked up by order, to tell whether an event's stage was heard before

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_platform_events_order_no", "platform_events", ["order_no"])


def downgrade() -> None:
    op.drop_index("ix_platform_events_order_no", table_name="platform_events")
