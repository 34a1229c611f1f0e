"""embedded platform tables and rate events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:29:53.987345
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_merchants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bind_code_digest", sa.String(length=64), nullable=True),
        sa.Column("bind_code_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_merchants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_merchants_bind_code_digest"), ["bind_code_digest"], unique=False
        )

    op.create_table(
        "platform_notification_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "platform_password_resets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_to", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_password_resets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_platform_password_resets_login_at", ["login", "requested_at"], unique=False
        )

    op.create_table(
        "rate_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rate_events", schema=None) as batch_op:
        batch_op.create_index("ix_rate_events_key_at", ["key", "at"], unique=False)

    op.create_table(
        "platform_accounts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["platform_merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("login"),
    )
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_accounts_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "platform_orders",
        sa.Column("order_no", sa.String(length=18), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payer_phone", sa.String(length=32), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["platform_merchants.id"],
        ),
        sa.PrimaryKeyConstraint("order_no"),
    )
    with op.batch_alter_table("platform_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_platform_orders_merchant_created", ["merchant_id", "created_at"], unique=False
        )

    op.create_table(
        "platform_payment_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["platform_merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_payment_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_payment_links_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "platform_withdrawals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["platform_merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_withdrawals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_withdrawals_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "platform_channel_records",
        sa.Column("order_no", sa.String(length=18), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_no"],
            ["platform_orders.order_no"],
        ),
        sa.PrimaryKeyConstraint("order_no"),
    )
    op.create_table(
        "platform_payment_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_no", sa.String(length=18), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_code", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_no"],
            ["platform_orders.order_no"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("platform_payment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_payment_attempts_order_no"), ["order_no"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("platform_payment_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_payment_attempts_order_no"))

    op.drop_table("platform_payment_attempts")
    op.drop_table("platform_channel_records")
    with op.batch_alter_table("platform_withdrawals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_withdrawals_merchant_id"))

    op.drop_table("platform_withdrawals")
    with op.batch_alter_table("platform_payment_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_payment_links_merchant_id"))

    op.drop_table("platform_payment_links")
    with op.batch_alter_table("platform_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_orders_merchant_created")

    op.drop_table("platform_orders")
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_accounts_merchant_id"))

    op.drop_table("platform_accounts")
    with op.batch_alter_table("rate_events", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_events_key_at")

    op.drop_table("rate_events")
    with op.batch_alter_table("platform_password_resets", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_password_resets_login_at")

    op.drop_table("platform_password_resets")
    op.drop_table("platform_notification_outbox")
    with op.batch_alter_table("platform_merchants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_merchants_bind_code_digest"))

    op.drop_table("platform_merchants")
