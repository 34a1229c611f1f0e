"""Payment events from the platform, and telling the chats that care.

An event is applied in one transaction with its effect: the event id is claimed (a replay finds
it taken and changes nothing), the event is held against the order through the platform gateway
(`PlatformGateway.record_payment_status`: the amount must be the order's, the status moves
forward only), and a notice is written (transcript and outbox) to every chat bound to the
order's merchant and every customer chat that asked about the order in the last 24 hours.

The gateway is whichever the bot runs on: the embedded platform joins the transaction; a remote
one (`PLATFORM_API_URL`) is called outside it (`bot.platform.outside.in_unit`). A later event
for an order the bot already heard about at the same stage or further (a late `pending` after
`paid`, a second `paid`) is stale, from the bot's own record of events, whatever the platform's
order says: the chats are told once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import record_outgoing
from bot.platform.gateway import AmountMismatch, PlatformGateway, PlatformRejected
from bot.platform.models import Order, OrderStatus, StatusChange
from bot.platform.outside import in_unit
from bot.render import Renderer
from bot.storage.models import Conversation, Identity, OrderWatch, PlatformEvent
from bot.types import Language, Reply, SenderKind

TOLERANCE = 300
WATCH_WINDOW = timedelta(hours=24)
# The largest amount an order can have (as the platform's API has it), and the unit of amounts.
MAX_AMOUNT = Decimal("9999999999.99")
CENT = Decimal("0.01")
# Seconds since 1970, as the platform signs them: digits only, and few enough to be a time.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# An amount as text, written plainly (docs/platform-api.md): no sign, exponent, space or "_".
_PLAIN_AMOUNT = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,13})?")


class SignatureError(Exception):
    """The notification is not from the platform, or not from now."""


class EventError(Exception):
    """The event is well signed but cannot be applied (unknown order, wrong amount, bad shape).

    `status`: the HTTP status that says so, 400 for a malformed event, 422 for a well-formed
    one with a value that cannot be right (an amount with a third decimal)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-BTP-Signature` header value for `body` (what the platform sends; tests use it)."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within 5 minutes of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not signature:
        raise SignatureError("malformed signature header")
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE:
        raise SignatureError("timestamp outside the tolerance")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("signature mismatch")


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    id: str
    order_no: str
    status: OrderStatus
    amount: Decimal

    @classmethod
    def parse(cls, raw: Any) -> PaymentEvent:
        if not isinstance(raw, dict):
            raise EventError("bad_request", "the event must be a JSON object")
        try:
            event_id = str(raw["id"])
            order_no = str(raw["order_no"]).upper()
            status = OrderStatus(str(raw["status"]))
            amount = raw["amount"]
        except KeyError as exc:
            raise EventError("bad_request", f"missing field: {exc}") from exc
        except ValueError as exc:
            raise EventError("bad_request", "invalid status") from exc
        if raw.get("type", "payment.status") != "payment.status":
            raise EventError("bad_request", "unsupported event type")
        if (
            not 0 < len(event_id) <= 64
            or not event_id.isprintable()
            or len(order_no) != 18
            or not order_no.startswith("BT")
        ):
            raise EventError("bad_request", "invalid id or order_no")
        return cls(event_id, order_no, status, _amount(amount))


def _amount(raw: object) -> Decimal:
    """An amount in yuan: more than 0, at most MAX_AMOUNT, whole cents ("128.004" is refused,
    not rounded: the platform never sends a third decimal, so one means a bug or a forgery);
    as text written plainly, or a JSON number (read exactly, see `parse_float`)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise EventError("bad_request", "amount: a decimal number, as text or a JSON number")
    if isinstance(raw, str) and not _PLAIN_AMOUNT.fullmatch(raw):
        raise _amount_refused()
    amount = Decimal(raw)  # exact: plain digits, an int, or a JSON number read as a Decimal
    # The range first: a huge exponent (1E+30, 1E+999999) cannot be rounded to cents.
    if not (amount.is_finite() and 0 < amount <= MAX_AMOUNT and amount == amount.quantize(CENT)):
        raise _amount_refused()
    return amount


def _amount_refused() -> EventError:
    return EventError(
        "invalid_amount", f"amount: more than 0, at most {MAX_AMOUNT}, whole cents", 422
    )


class PaymentNotifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gateway: PlatformGateway,
        renderer: Renderer,
        relay_channels: frozenset[str],
    ) -> None:
        self._sessions = sessions
        self._gateway = gateway
        self._renderer = renderer
        self._relay_channels = relay_channels

    async def apply(self, event: PaymentEvent) -> tuple[Applied, int]:
        """Apply once; returns what happened and how many chats were told. Raises EventError
        when the event cannot be applied, `PlatformUnavailable` when the platform cannot say."""
        try:
            return await in_unit(self._sessions, lambda session: self._apply(session, event))
        except IntegrityError:
            async with self._sessions() as session:
                if await session.get(PlatformEvent, event.id) is not None:
                    return Applied.DUPLICATE, 0
            raise

    async def _apply(self, session: AsyncSession, event: PaymentEvent) -> tuple[Applied, int]:
        session.add(PlatformEvent(event_id=event.id, order_no=event.order_no, status=event.status))
        await session.flush()
        try:
            result = await self._gateway.record_payment_status(
                event.order_no, event.status, event.amount
            )
        except AmountMismatch as exc:
            raise EventError("amount_mismatch", "the amount does not match the order", 422) from exc
        except PlatformRejected as exc:
            raise EventError("rejected", "the platform refused the event", 422) from exc
        if result is None:
            raise EventError("unknown_order", "no such order", 422)
        if result.change is StatusChange.BEHIND or await self._heard_before(session, event):
            return Applied.STALE, 0
        if event.status != OrderStatus.PAID:
            return Applied.APPLIED, 0
        order, told = result.order, 0
        for conversation in await self._audience(session, order):
            text = self._renderer.render(
                Language(conversation.language),
                "notices/payment_received",
                amount=str(order.amount),
                order_no=order.order_no,
            )
            await record_outgoing(
                session,
                conversation,
                [Reply(text)],
                sender=SenderKind.SYSTEM,
                queue=conversation.channel in self._relay_channels,
            )
            told += 1
        return Applied.APPLIED, told

    async def _heard_before(self, session: AsyncSession, event: PaymentEvent) -> bool:
        """Whether an earlier event for this order was at the same stage or further."""
        earlier = await session.scalars(
            select(PlatformEvent.status).where(
                PlatformEvent.order_no == event.order_no, PlatformEvent.event_id != event.id
            )
        )
        return any(not OrderStatus(status).moves_forward_to(event.status) for status in earlier)

    async def _audience(self, session: AsyncSession, order: Order) -> list[Conversation]:
        merchants = (
            select(Conversation)
            .join(Identity, Conversation.identity_id == Identity.id)
            .where(Identity.kind == "merchant", Identity.merchant_id == order.merchant_id)
        )
        since = datetime.now(UTC) - WATCH_WINDOW
        watchers = (
            select(Conversation)
            .join(OrderWatch, OrderWatch.conversation_id == Conversation.id)
            .where(OrderWatch.order_no == order.order_no, OrderWatch.created_at > since)
        )
        found: dict[int, Conversation] = {}
        for query in (merchants, watchers):
            for conversation in (await session.scalars(query)).all():
                found[conversation.id] = conversation
        return list(found.values())
