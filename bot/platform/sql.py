"""`SqlPlatform`: the embedded platform on the bot's own database (the default).

Over 400 lines: one method per operation of the `PlatformGateway` contract, for the embedded
platform; the contract tests hold it and `HttpPlatform` to the same behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.digests import token_digest
from bot.platform.gateway import (
    MAX_RECENT_ATTEMPTS,
    AmountMismatch,
    BindCodesPaused,
    MerchantNotActive,
    PlatformRejected,
)
from bot.platform.models import (
    Account,
    AccountStatus,
    AttemptSeen,
    AttemptStatus,
    ChannelRecord,
    FailureCode,
    Merchant,
    MerchantStatus,
    Method,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentLink,
    PaymentStatusResult,
    ResetResult,
    ResyncResult,
    StatusChange,
    Withdrawal,
    WithdrawalStatus,
)
from bot.platform.notifier import Notice, Notifier, OutboxNotifier
from bot.platform.tables import (
    AccountRow,
    AttemptRow,
    BindFailureRow,
    ChannelRecordRow,
    MerchantRow,
    OrderRow,
    PasswordResetRow,
    PaymentLinkRow,
    PlatformSecretRow,
    WithdrawalRow,
)
from bot.storage.unit import current_session, insert_once

RESETS_PER_ACCOUNT_PER_HOUR = 3
RESET_TOKEN_LIFETIME = timedelta(minutes=30)
BIND_KEY = "bind_code_key"
_BIND_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('platform:bind_codes'))")


def bind_code_digest(key: bytes, code: str) -> str:
    """A bind code at rest: keyed, since a plain digest of 6 digits is reversed by trying all."""
    return hmac.new(key, code.strip().encode(), hashlib.sha256).hexdigest()


async def bind_code_key(session: AsyncSession, configured: str | None) -> bytes:
    """BIND_CODE_SECRET when set; otherwise the key kept in the database, made on first use."""
    if configured:
        return configured.encode()
    stored = await session.get(PlatformSecretRow, BIND_KEY)
    if stored is None:
        key = secrets.token_hex(32)
        await insert_once(session, PlatformSecretRow, name=BIND_KEY, value=key, created_at=_now())
        stored = await session.get(PlatformSecretRow, BIND_KEY)
    assert stored is not None  # inserted now, or by whoever won the race, in this view
    return bytes.fromhex(stored.value)


def to_fen(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def from_fen(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _now() -> datetime:
    return datetime.now(UTC)


ResetMessage = Callable[[str], tuple[str, str]]


def _plain_reset_message(link: str) -> tuple[str, str]:
    return "B特派 password reset", link


class SqlPlatform:
    """The platform's data in SQL tables; joins the message's transaction when it shares it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        shares_bot_database: bool = True,
        notifier: Notifier | None = None,
        public_url: str = "https://pay.btp.example",
        reset_message: ResetMessage = _plain_reset_message,
        clock: Callable[[], datetime] = _now,
        bind_code_secret: str | None = None,
        bind_limit: tuple[int, timedelta] | None = None,
    ) -> None:
        self._sessions = sessions
        self._shares = shares_bot_database
        self._notifier = notifier or OutboxNotifier()
        self._public_url = public_url.rstrip("/")
        self._reset_message = reset_message
        self._clock = clock
        self._bind_code_secret = bind_code_secret
        self._bind_limit = bind_limit

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        outer = current_session.get() if self._shares else None
        if outer is not None:
            async with outer.begin_nested():
                yield outer
            return
        async with self._sessions() as session, session.begin():
            yield session

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        async with self._unit() as session:
            row = await session.get(MerchantRow, merchant_id)
            return _merchant(row) if row else None

    async def get_order(self, order_no: str) -> Order | None:
        async with self._unit() as session:
            row = await session.get(OrderRow, order_no.upper())
            return await _order(session, row) if row else None

    async def list_orders(
        self, merchant_id: str, *, since: datetime | None = None, limit: int = 50
    ) -> list[Order]:
        async with self._unit() as session:
            query = select(OrderRow).where(OrderRow.merchant_id == merchant_id)
            if since is not None:
                query = query.where(OrderRow.created_at >= since)
            rows = await session.scalars(query.order_by(OrderRow.created_at.desc()).limit(limit))
            return [await _order(session, row) for row in rows.all()]

    async def get_account(self, login: str) -> Account | None:
        async with self._unit() as session:
            row = await session.scalar(select(AccountRow).where(AccountRow.login == login))
            return _account(row) if row else None

    async def list_accounts(self, merchant_id: str) -> list[Account]:
        async with self._unit() as session:
            rows = await session.scalars(
                select(AccountRow)
                .where(AccountRow.merchant_id == merchant_id)
                .order_by(AccountRow.login)
            )
            return [_account(row) for row in rows.all()]

    async def get_withdrawal(self, withdrawal_id: str) -> Withdrawal | None:
        async with self._unit() as session:
            row = await session.get(WithdrawalRow, withdrawal_id.upper())
            return _withdrawal(row) if row else None

    async def list_withdrawals(self, merchant_id: str, *, limit: int = 10) -> list[Withdrawal]:
        async with self._unit() as session:
            rows = await session.scalars(
                select(WithdrawalRow)
                .where(WithdrawalRow.merchant_id == merchant_id)
                .order_by(WithdrawalRow.requested_at.desc())
                .limit(limit)
            )
            return [_withdrawal(row) for row in rows.all()]

    async def recent_payment_attempts(
        self, since: datetime, *, limit: int = MAX_RECENT_ATTEMPTS
    ) -> list[AttemptSeen]:
        # One range scan of ix_platform_payment_attempts_at (migration 0020), each attempt
        # joined to its order by primary key for the merchant and the channel.
        async with self._unit() as session:
            rows = await session.execute(
                select(
                    OrderRow.merchant_id,
                    OrderRow.method,
                    AttemptRow.status,
                    AttemptRow.at,
                    AttemptRow.failure_code,
                    AttemptRow.id,
                    AttemptRow.order_no,
                )
                .join(OrderRow, OrderRow.order_no == AttemptRow.order_no)
                .where(AttemptRow.at >= since)
                .order_by(AttemptRow.at.desc(), AttemptRow.id.desc())
                .limit(min(limit, MAX_RECENT_ATTEMPTS))
            )
            return [
                AttemptSeen(
                    merchant,
                    Method(method),
                    AttemptStatus(status),
                    at,
                    FailureCode(code) if code else None,
                    str(attempt_id),
                    order_no,
                )
                for merchant, method, status, at, code, attempt_id, order_no in rows.all()
            ]

    async def create_payment_link(
        self,
        merchant_id: str,
        amount: Decimal,
        description: str | None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentLink:
        """A link that collects for the merchant; only an active merchant may collect. A key
        used before for this merchant gives back the link it made (unique in the table)."""
        link_id = "PL" + secrets.token_hex(8).upper()
        row = PaymentLinkRow(
            id=link_id,
            merchant_id=merchant_id,
            amount_fen=to_fen(amount),
            description=description,
            url=f"{self._public_url}/l/{link_id}",
            created_at=self._clock(),
            idempotency_key=idempotency_key,
        )
        async with self._unit() as session:
            merchant = await session.get(MerchantRow, merchant_id)
            if merchant is None:
                raise PlatformRejected("no such merchant")
            if idempotency_key is not None:
                made = await session.scalar(
                    select(PaymentLinkRow).where(
                        PaymentLinkRow.merchant_id == merchant_id,
                        PaymentLinkRow.idempotency_key == idempotency_key,
                    )
                )
                if made is not None:
                    row = made
            if row.id == link_id:
                if merchant.status != MerchantStatus.ACTIVE:
                    raise MerchantNotActive(MerchantStatus(merchant.status))
                session.add(row)
        return PaymentLink(
            row.id, merchant_id, from_fen(row.amount_fen), row.url, row.created_at, description
        )

    async def get_payment_link(self, link_id: str) -> PaymentLink | None:
        async with self._unit() as session:
            row = await session.get(PaymentLinkRow, link_id)
            return _link(row) if row is not None else None

    async def start_password_reset(self, login: str) -> ResetResult:
        now = self._clock()
        async with self._unit() as session:
            account = await session.scalar(select(AccountRow).where(AccountRow.login == login))
            if account is None:
                return ResetResult(sent=False)
            recent = await session.scalar(
                select(func.count())
                .select_from(PasswordResetRow)
                .where(
                    PasswordResetRow.login == login,
                    PasswordResetRow.requested_at > now - timedelta(hours=1),
                )
            )
            if (recent or 0) >= RESETS_PER_ACCOUNT_PER_HOUR:
                return ResetResult(sent=False, throttled=True)
            merchant = await session.get(MerchantRow, account.merchant_id)
            recipient = account.email or account.phone or (merchant.email if merchant else None)
            if not recipient:
                return ResetResult(sent=False)
            token = secrets.token_urlsafe(24)
            session.add(
                PasswordResetRow(
                    login=login,
                    token_digest=token_digest(token),
                    requested_at=now,
                    expires_at=now + RESET_TOKEN_LIFETIME,
                    delivered_to=recipient.split("@")[-1] if "@" in recipient else "sms",
                )
            )
            subject, body = self._reset_message(f"{self._public_url}/reset?token={token}")
            await self._notifier.send(
                session, Notice("password_reset", recipient, subject, body, token)
            )
            return ResetResult(sent=True)

    async def resync_order(self, order_no: str) -> ResyncResult:
        now = self._clock()
        async with self._unit() as session:
            row = await session.get(OrderRow, order_no.upper(), with_for_update=True)
            if row is None:
                raise LookupError(order_no)
            before = OrderStatus(row.status)
            channel = await session.get(ChannelRecordRow, row.order_no)
            if channel is None:
                return ResyncResult(row.order_no, before, before, None)
            channel_status = OrderStatus(channel.status)
            after = before
            if before.moves_forward_to(channel_status):
                after = channel_status
                row.status, row.updated_at = after.value, now
            channel.synced_at = now
            return ResyncResult(
                row.order_no, before, after, channel_status, changed=after != before
            )

    async def record_payment_status(
        self, order_no: str, status: OrderStatus, amount: Decimal
    ) -> PaymentStatusResult | None:
        """The embedded platform learns payments from these events: the order moves forward to
        `status` (a late `pending` never overwrites `paid`) when `amount` is the order's."""
        async with self._unit() as session:
            row = await session.get(OrderRow, order_no.upper(), with_for_update=True)
            if row is None:
                return None
            if from_fen(row.amount_fen) != amount:
                raise AmountMismatch("the amount does not match the order")
            current = OrderStatus(row.status)
            if current == status:
                change = StatusChange.ALREADY
            elif current.moves_forward_to(status):
                row.status, row.updated_at = status.value, self._clock()
                change = StatusChange.MOVED
            else:
                change = StatusChange.BEHIND
            return PaymentStatusResult(await _order(session, row), change)

    async def redeem_bind_code(self, code: str) -> str | None:
        """The merchant whose unused code this is, consuming it. With `bind_limit` (count,
        window) at most that many wrong codes are tried per window, whoever sends them: the
        bot's own counts cannot see calls of other processes still in flight."""
        async with self._unit() as session:
            now = self._clock()
            if self._bind_limit is not None:
                limit, window = self._bind_limit
                if session.get_bind().dialect.name == "postgresql":
                    await session.execute(_BIND_LOCK)  # count and record as one, across processes
                failures = await session.scalar(
                    select(func.count())
                    .select_from(BindFailureRow)
                    .where(BindFailureRow.at > now - window)
                )
                if (failures or 0) >= limit:
                    raise BindCodesPaused(f"{limit} wrong bind codes within {window}")
            # Read each time, not kept: a key made in a transaction that rolls back is no key.
            key = await bind_code_key(session, self._bind_code_secret)
            # A code stored before keyed digests (plain SHA-256) still works, once: it is
            # consumed by the redemption; `btp-bot platform load` stores every code keyed.
            digests = [bind_code_digest(key, code), token_digest(code.strip())]
            result = await session.execute(
                update(MerchantRow)
                .where(
                    MerchantRow.bind_code_digest.in_(digests),
                    MerchantRow.bind_code_used_at.is_(None),
                )
                .values(bind_code_used_at=now)
                .returning(MerchantRow.id)
            )
            merchant_id = result.scalar_one_or_none()
            if merchant_id is None and self._bind_limit is not None:
                stale = BindFailureRow.at < now - self._bind_limit[1]
                await session.execute(delete(BindFailureRow).where(stale))
                session.add(BindFailureRow(at=now))
            return merchant_id


def _merchant(row: MerchantRow) -> Merchant:
    return Merchant(row.id, row.name, MerchantStatus(row.status), row.email, row.phone)


def _account(row: AccountRow) -> Account:
    return Account(
        row.login,
        row.merchant_id,
        AccountStatus(row.status),
        row.failed_attempts,
        row.locked_until,
        row.last_login_at,
    )


def _link(row: PaymentLinkRow) -> PaymentLink:
    return PaymentLink(
        row.id,
        row.merchant_id,
        from_fen(row.amount_fen),
        row.url,
        row.created_at,
        row.description,
        row.paid_at,
    )


def _withdrawal(row: WithdrawalRow) -> Withdrawal:
    return Withdrawal(
        row.id,
        row.merchant_id,
        from_fen(row.amount_fen),
        WithdrawalStatus(row.status),
        row.requested_at,
        row.paid_at,
        row.failure_reason,
    )


async def _order(session: AsyncSession, row: OrderRow) -> Order:
    attempts = await session.scalars(
        select(AttemptRow)
        .where(AttemptRow.order_no == row.order_no)
        .order_by(AttemptRow.at, AttemptRow.id)
    )
    channel = await session.get(ChannelRecordRow, row.order_no)
    return Order(
        order_no=row.order_no,
        merchant_id=row.merchant_id,
        amount=from_fen(row.amount_fen),
        method=Method(row.method),
        status=OrderStatus(row.status),
        created_at=row.created_at,
        currency=row.currency,
        payer_phone=row.payer_phone,
        description=row.description,
        updated_at=row.updated_at,
        attempts=tuple(
            PaymentAttempt(
                AttemptStatus(a.status),
                a.at,
                FailureCode(a.failure_code) if a.failure_code else None,
            )
            for a in attempts.all()
        ),
        channel=ChannelRecord(OrderStatus(channel.status), channel.synced_at) if channel else None,
    )
