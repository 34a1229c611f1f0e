"""Plain data the platform gateway returns; no ORM objects or HTTP payloads leak past it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class MerchantStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class OrderStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CLOSED = "closed"
    REFUNDED = "refunded"

    def moves_forward_to(self, new: OrderStatus) -> bool:
        """An order's status only moves forward: a late `pending` never overwrites `paid`."""
        return _ORDER_PROGRESS[new] > _ORDER_PROGRESS[self]


_ORDER_PROGRESS = {
    OrderStatus.CREATED: 0,
    OrderStatus.PENDING: 1,
    OrderStatus.FAILED: 2,
    OrderStatus.CLOSED: 2,
    OrderStatus.PAID: 3,
    OrderStatus.REFUNDED: 4,
}


class Method(StrEnum):
    QR = "qr"
    LINK = "link"
    APP = "app"


class AttemptStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WithdrawalStatus(StrEnum):
    REQUESTED = "requested"
    PROCESSING = "processing"
    PAID = "paid"
    FAILED = "failed"


class FailureCode(StrEnum):
    """Why a payment attempt failed, as the payment channel reports it."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    NETWORK_TIMEOUT = "network_timeout"
    INVALID_PAYMENT_INFO = "invalid_payment_info"
    RISK_BLOCKED = "risk_blocked"
    BANK_DECLINED = "bank_declined"
    ORDER_EXPIRED = "order_expired"
    LIMIT_EXCEEDED = "limit_exceeded"
    CHANNEL_UNAVAILABLE = "channel_unavailable"


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str
    status: MerchantStatus
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """A back-office login of a merchant; the password hash never leaves the platform."""

    login: str
    merchant_id: str
    status: AccountStatus
    failed_attempts: int = 0
    locked_until: datetime | None = None
    # The account's last successful login: how a password reset is seen to have worked.
    last_login_at: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True, slots=True)
class PaymentAttempt:
    status: AttemptStatus
    at: datetime
    failure_code: FailureCode | None = None


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    """One payment attempt across the platform, as incident detection reads it: which
    merchant, which channel (the order's method), how it ended and why, and when."""

    merchant_id: str
    channel: Method
    status: AttemptStatus
    at: datetime
    failure_code: FailureCode | None = None
    # The platform's id of the attempt and its order, when it says: how an attempt that a
    # payment notification also reported is counted once (`bot.incidents.detector.unreported`).
    attempt_id: str | None = None
    order_no: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """What the payment channel holds for an order, and when the platform last synced it."""

    status: OrderStatus
    synced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Order:
    order_no: str
    merchant_id: str
    amount: Decimal
    method: Method
    status: OrderStatus
    created_at: datetime
    currency: str = "CNY"
    payer_phone: str | None = None
    description: str | None = None
    updated_at: datetime | None = None
    attempts: tuple[PaymentAttempt, ...] = ()
    channel: ChannelRecord | None = None

    @property
    def last_failure(self) -> FailureCode | None:
        failed = [a for a in self.attempts if a.failure_code is not None]
        return failed[-1].failure_code if failed else None

    @property
    def in_sync(self) -> bool:
        return self.channel is None or self.channel.status == self.status


@dataclass(frozen=True, slots=True)
class Withdrawal:
    id: str
    merchant_id: str
    amount: Decimal
    status: WithdrawalStatus
    requested_at: datetime
    paid_at: datetime | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentLink:
    id: str
    merchant_id: str
    amount: Decimal
    url: str
    created_at: datetime
    description: str | None = None
    # When a payer paid through the link (None: not yet).
    paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResetResult:
    """The outcome of a reset request; the bot answers the same way whatever `sent` says."""

    sent: bool
    throttled: bool = False


class StatusChange(StrEnum):
    """What a payment event did to the order it names, as the platform holds it."""

    MOVED = "moved"  # the order moved forward to the event's status now
    ALREADY = "already"  # the order was at that status already (the platform's own record)
    BEHIND = "behind"  # the order is past it: the event is late and changes nothing


@dataclass(frozen=True, slots=True)
class PaymentStatusResult:
    """The platform's answer to a payment event: the order after it, and what it changed."""

    order: Order
    change: StatusChange


@dataclass(frozen=True, slots=True)
class ResyncResult:
    order_no: str
    before: OrderStatus
    after: OrderStatus
    channel_status: OrderStatus | None
    changed: bool = field(default=False)

    @property
    def in_sync(self) -> bool:
        return self.channel_status is None or self.channel_status == self.after
