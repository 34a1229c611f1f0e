"""webchat_sessions: when the token was last used, so an idle token expires

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    # A session from before this revision counts as last used when it was opened.
    op.execute("UPDATE webchat_sessions SET last_seen_at = created_at")
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webchat_sessions", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
