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

A failed payment's event is also kept for incident detection (its merchant and channel from the
gateway's answer, its failure code and attempt id), unless the platform's order is already
past it: `bot.incidents.store.notified_failures` reads it back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import record_outgoing
from bot.platform import codec
from bot.platform.gateway import AmountMismatch, PlatformGateway, PlatformRejected
from bot.platform.models import FailureCode, Order, OrderStatus, StatusChange
from bot.render import Renderer
from bot.storage.models import Conversation, Identity, OrderWatch, PlatformEvent
from bot.storage.runner import in_unit
from bot.types import Language, Reply, SenderKind

TOLERANCE = 300
WATCH_WINDOW = timedelta(hours=24)
# Seconds since 1970, as the platform signs them: digits only, and few enough to be a time.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


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


def _event_id(value: str) -> str:
    if not 0 < len(value) <= 64 or not value.isprintable():
        raise ValueError("invalid id")
    return value


def _order_no(value: str) -> str:
    order_no = value.upper()
    if len(order_no) != 18 or not order_no.startswith("BT"):
        raise ValueError("invalid order_no")
    return order_no


class PaymentEvent(BaseModel):
    """A signed `payment.status` event, as the platform sends it (unknown fields ignored).

    The amount follows the platform's rules for amounts (`codec.amount_in_request`): more than
    0, at most 9999999999.99, whole cents, as text written plainly or a JSON number read
    exactly; "128.004" is refused, not rounded: the platform never sends a third decimal, so
    one means a bug or a forgery."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[StrictStr, AfterValidator(_event_id)]
    type: Literal["payment.status"] = "payment.status"
    order_no: Annotated[StrictStr, AfterValidator(_order_no)]
    status: OrderStatus
    amount: codec.RequestAmount
    # A failed payment may say why, and which attempt it was: incident detection counts it
    # (once, when the platform's attempts list the same attempt id; decision record 0020).
    failure_code: FailureCode | None = None
    attempt_id: Annotated[StrictStr, AfterValidator(_event_id)] | None = None

    @classmethod
    def parse(cls, raw: Any) -> PaymentEvent:
        """`raw` (parsed JSON, numbers as Decimal) as an event; raises EventError: 400 for a
        malformed event, 422 for an amount that cannot be right."""
        try:
            return codec.decode(cls, raw)
        except codec.CodecError as exc:
            # An amount given as text or a number that is not one the platform could send
            # ("NaN", "15.504", " 15.50") is well-formed and wrong: 422, not 400.
            given = raw.get("amount") if isinstance(raw, dict) else None
            if exc.code == "invalid_amount" or (
                exc.field == "amount"
                and isinstance(given, str | int | Decimal)
                and not isinstance(given, bool)
            ):
                raise EventError("invalid_amount", f"amount: {_AMOUNT_RULE}", 422) from exc
            raise EventError("bad_request", str(exc)) from exc


_AMOUNT_RULE = f"more than 0, at most {codec.MAX_AMOUNT}, whole cents"


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
        claim = PlatformEvent(event_id=event.id, order_no=event.order_no, status=event.status)
        session.add(claim)
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
        if event.status == OrderStatus.FAILED and result.change is not StatusChange.BEHIND:
            # What the detector counts: whose order and which channel, as the platform says.
            claim.merchant_id = result.order.merchant_id
            claim.channel = result.order.method.value
            claim.failure_code = event.failure_code.value if event.failure_code else None
            claim.attempt_id = event.attempt_id
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
