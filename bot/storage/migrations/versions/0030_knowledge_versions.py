"""kb_versions and kb_publications: the knowledge, versioned in the database

Revision ID: 0030
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0021"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "kb_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("base_id", _ID, sa.ForeignKey("kb_versions.id"), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("preview", sa.JSON, nullable=True),
    )
    op.create_table(
        "kb_publications",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("version_id", _ID, sa.ForeignKey("kb_versions.id"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_kb_publications_version_id", "kb_publications", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_kb_publications_version_id", "kb_publications")
    op.drop_table("kb_publications")
    op.drop_table("kb_versions")
