"""Tables of the embedded platform (used when no remote platform API is configured).

They live in the bot's database under Alembic, prefixed `platform_`. Amounts are integer fen
(cents), exact on every database; passwords are argon2 hashes; reset tokens are stored only as
SHA-256 digests, bind codes (6 digits, reversed from a plain digest in seconds) as HMAC-SHA256
under a server key (`platform_secrets`, or BIND_CODE_SECRET kept apart from the database).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.gateway import MAX_IDEMPOTENCY_KEY
from bot.storage.models import Base, utcnow

_ID = BigInteger().with_variant(Integer, "sqlite")


class MerchantRow(Base):
    __tablename__ = "platform_merchants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16))
    bind_code_digest: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    bind_code_used_at: Mapped[datetime | None] = mapped_column(default=None)


class PlatformSecretRow(Base):
    """A server key the platform generated for itself (hex), by name."""

    __tablename__ = "platform_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BindFailureRow(Base):
    """A bind code tried and not found: the platform's own count across every client."""

    __tablename__ = "platform_bind_failures"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AccountRow(Base):
    __tablename__ = "platform_accounts"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("platform_merchants.id"), index=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")
    email: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    # The last successful login (migration 0021): what a password reset is checked against.
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class OrderRow(Base):
    __tablename__ = "platform_orders"
    __table_args__ = (Index("ix_platform_orders_merchant_created", "merchant_id", "created_at"),)

    order_no: Mapped[str] = mapped_column(String(18), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("platform_merchants.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    method: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    payer_phone: Mapped[str | None] = mapped_column(String(32), default=None)
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AttemptRow(Base):
    __tablename__ = "platform_payment_attempts"
    # Incident detection reads the platform's latest attempts by time (migration 0020).
    __table_args__ = (Index("ix_platform_payment_attempts_at", "at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("platform_orders.order_no"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelRecordRow(Base):
    __tablename__ = "platform_channel_records"

    order_no: Mapped[str] = mapped_column(ForeignKey("platform_orders.order_no"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    synced_at: Mapped[datetime | None] = mapped_column(default=None)


class WithdrawalRow(Base):
    __tablename__ = "platform_withdrawals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("platform_merchants.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class PaymentLinkRow(Base):
    __tablename__ = "platform_payment_links"
    __table_args__ = (
        Index(
            "ux_platform_payment_links_idempotency",
            "merchant_id",
            "idempotency_key",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("platform_merchants.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    url: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The caller's key for "this request": one link per merchant and key (migration 0011).
    idempotency_key: Mapped[str | None] = mapped_column(String(MAX_IDEMPOTENCY_KEY), default=None)
    # When a payer paid through it (migration 0021): what a link's outcome is checked against.
    paid_at: Mapped[datetime | None] = mapped_column(default=None)


class PasswordResetRow(Base):
    __tablename__ = "platform_password_resets"
    __table_args__ = (Index("ix_platform_password_resets_login_at", "login", "requested_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(64))
    token_digest: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    delivered_to: Mapped[str] = mapped_column(String(200))


class NotificationOutboxRow(Base):
    """Messages to merchants when no SMTP server is configured; secrets are masked in `body`."""

    __tablename__ = "platform_notification_outbox"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
