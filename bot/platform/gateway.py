"""`PlatformGateway`: everything the bot asks of B特派's platform, as one protocol.

The bot enforces who may see what; the gateway is the platform's trusted back end. Any
implementation raises `PlatformUnavailable` when it cannot answer (timeout, 5xx, circuit open),
and the engine turns that into one polite reply with the offer of a person.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from bot.platform.models import (
    Account,
    AttemptSeen,
    Merchant,
    MerchantStatus,
    Order,
    OrderStatus,
    PaymentLink,
    PaymentStatusResult,
    ResetResult,
    ResyncResult,
    Withdrawal,
)

# The header a caller names "this request" with, so a repeat is answered with the first
# effect (payment links); at most this long, printable.
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 100
# The most payment attempts one `recent_payment_attempts` call returns (newest first).
MAX_RECENT_ATTEMPTS = 20_000


class PlatformError(Exception):
    """Base of the gateway's errors."""


class PlatformUnavailable(PlatformError):
    """The platform could not answer now; the user is told so and offered a person."""


class PlatformRejected(PlatformError):
    """The platform refused a request as invalid (e.g. an amount outside the limits)."""


class AmountMismatch(PlatformRejected):
    """A payment event's amount is not the order's: a bug or a forgery, and nothing changes."""


class BindCodesPaused(PlatformRejected):
    """Too many wrong bind codes were tried lately, from anywhere: none is tried now."""


class MerchantNotActive(PlatformRejected):
    """The merchant may not collect money yet or any more: under review, or suspended."""

    def __init__(self, status: MerchantStatus) -> None:
        super().__init__(f"the merchant is {status.value.replace('_', ' ')}: it cannot collect")
        self.status = status


@runtime_checkable
class PlatformGateway(Protocol):
    async def get_merchant(self, merchant_id: str) -> Merchant | None: ...

    async def get_order(self, order_no: str) -> Order | None: ...

    async def list_orders(
        self, merchant_id: str, *, since: datetime | None = None, limit: int = 50
    ) -> list[Order]: ...

    async def get_account(self, login: str) -> Account | None: ...

    async def list_accounts(self, merchant_id: str) -> list[Account]: ...

    async def get_withdrawal(self, withdrawal_id: str) -> Withdrawal | None: ...

    async def list_withdrawals(self, merchant_id: str, *, limit: int = 10) -> list[Withdrawal]: ...

    async def create_payment_link(
        self,
        merchant_id: str,
        amount: Decimal,
        description: str | None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentLink:
        """A new link; with `idempotency_key`, a repeated call with the same key (a retried
        turn, a retried request) returns the link the first one made instead of a second."""
        ...

    async def get_payment_link(self, link_id: str) -> PaymentLink | None:
        """A link made before, with `paid_at` once a payer paid through it."""
        ...

    async def start_password_reset(self, login: str) -> ResetResult: ...

    async def resync_order(self, order_no: str) -> ResyncResult: ...

    async def record_payment_status(
        self, order_no: str, status: OrderStatus, amount: Decimal
    ) -> PaymentStatusResult | None:
        """Hold a signed payment event against the order: forward only, the amount must be the
        order's (`AmountMismatch`); None when there is no such order. Repeating it is harmless."""
        ...

    async def redeem_bind_code(self, code: str) -> str | None:
        """The merchant id the one-time code belongs to, consuming it; None if unknown or used."""
        ...

    async def recent_payment_attempts(
        self, since: datetime, *, limit: int = MAX_RECENT_ATTEMPTS
    ) -> list[AttemptSeen]:
        """Payment attempts made at or after `since` across every merchant, newest first, at
        most `limit`: what incident detection counts (bot/incidents/)."""
        ...
