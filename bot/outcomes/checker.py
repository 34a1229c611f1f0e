"""The checker: settles the pending outcome checks against the platform, as a scheduled job.

A pass reads the pending checks (oldest first, in batches, one short transaction each), asks
the platform for each one's evidence with no transaction open (a remote platform may take
seconds; the embedded one opens its own), and writes what it found: `VERIFIED` when the
evidence is there within the window, `NOT_VERIFIED` when the window has passed without it (or
the platform no longer knows the subject), nothing when it is still to come. A platform that
cannot answer ends the pass; the checks stay pending for the next.

The evidence, by kind: a link's `paid_at`; a login after the reset (`last_login_at`); the
order's two statuses agreeing (`Order.in_sync`); a successful attempt after the diagnosis, on
the same order or a new one of the merchant's. An FAQ answer is the other way round: the
evidence against it is the chat asking the same entry again within the window (another FAQ
check of the same conversation and entry), and it is verified when the window closes without.

On PostgreSQL one process at a time runs a pass: a session advisory lock taken without waiting
(`pg_try_advisory_lock`) on a connection of its own; another process finding it held skips
the pass. SQLite has one process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.platform.gateway import PlatformGateway, PlatformUnavailable
from bot.platform.models import AttemptStatus, Order
from bot.storage.models import OutcomeCheck, table_of
from bot.types import OutcomeKind, OutcomeStatus

log = logging.getLogger(__name__)

BATCH = 200
LOCK_KEY = "outcome-checker"

_CHECKS = table_of(OutcomeCheck)
_PENDING = (
    select(
        _CHECKS.c.id,
        _CHECKS.c.conversation_id,
        _CHECKS.c.kind,
        _CHECKS.c.subject,
        _CHECKS.c.started_at,
        _CHECKS.c.due_at,
    )
    # The status written out, not bound: a prepared statement's generic plan on PostgreSQL
    # reads the partial index ix_outcome_checks_pending only then (benchmarks/README.md).
    .where(_CHECKS.c.status == literal_column("'pending'"), _CHECKS.c.id > bindparam("after"))
    .order_by(_CHECKS.c.id)
    .limit(bindparam("batch"))
)
_SETTLE = (
    update(_CHECKS)
    .where(_CHECKS.c.id == bindparam("_id"), _CHECKS.c.status == OutcomeStatus.PENDING)
    .values(
        status=bindparam("_status"),
        checked_at=bindparam("_checked_at"),
        evidence_at=bindparam("_evidence_at"),
    )
)
# The first time the same chat was answered the same entry again, after this check began.
_REPEAT = select(func.min(_CHECKS.c.started_at)).where(
    _CHECKS.c.conversation_id == bindparam("conversation_id"),
    _CHECKS.c.kind == OutcomeKind.FAQ,
    _CHECKS.c.subject == bindparam("subject"),
    _CHECKS.c.started_at > bindparam("started_at"),
    _CHECKS.c.started_at <= bindparam("due_at"),
    _CHECKS.c.id != bindparam("id"),
)
_TRY_LOCK = sql_text("SELECT pg_try_advisory_lock(hashtext(:key))")
_UNLOCK = sql_text("SELECT pg_advisory_unlock(hashtext(:key))")


@dataclass(slots=True)
class PassResult:
    """What one pass did: checks looked at, and how many it settled each way."""

    looked: int = 0
    settled: dict[OutcomeStatus, int] = field(default_factory=dict)
    skipped: bool = False  # another process held the lock
    interrupted: bool = False  # the platform could not answer

    def count(self, status: OutcomeStatus) -> int:
        return self.settled.get(status, 0)


@dataclass(frozen=True, slots=True)
class _Pending:
    id: int
    conversation_id: int
    kind: OutcomeKind
    subject: str
    started_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the platform (or the transcript) showed: whether it knows the subject, and when
    the awaited thing happened (None: not yet). `against`: it is evidence that the answer did
    not hold (a repeat contact)."""

    known: bool
    at: datetime | None = None
    against: bool = False


async def evidence(engine: AsyncEngine, gateway: PlatformGateway, check: _Pending) -> Evidence:
    if check.kind is OutcomeKind.PAYMENT_LINK:
        link = await gateway.get_payment_link(check.subject)
        return Evidence(link is not None, link.paid_at if link else None)
    if check.kind is OutcomeKind.PASSWORD_RESET:
        account = await gateway.get_account(check.subject)
        if account is None:
            return Evidence(False)
        login = account.last_login_at
        # A login before the reset was started says nothing about the reset.
        return Evidence(True, login if login is not None and login > check.started_at else None)
    if check.kind is OutcomeKind.RESYNC:
        order = await gateway.get_order(check.subject)
        if order is None:
            return Evidence(False)
        synced = order.channel.synced_at if order.channel else None
        return Evidence(True, (synced or check.started_at) if order.in_sync else None)
    if check.kind is OutcomeKind.PAYMENT_FAILURE:
        order = await gateway.get_order(check.subject)
        if order is None:
            return Evidence(False)
        since = check.started_at
        later = await gateway.list_orders(order.merchant_id, since=since)
        return Evidence(True, _first_success([order, *later], since))
    async with engine.connect() as connection:
        again = await connection.scalar(
            _REPEAT,
            {
                "conversation_id": check.conversation_id,
                "subject": check.subject,
                "started_at": check.started_at,
                "due_at": check.due_at,
                "id": check.id,
            },
        )
    return Evidence(True, again, against=again is not None)


def _first_success(orders: list[Order], since: datetime) -> datetime | None:
    """The first successful payment attempt after `since` on any of `orders`."""
    moments = [
        attempt.at
        for order in orders
        for attempt in order.attempts
        if attempt.status is AttemptStatus.SUCCEEDED and attempt.at > since
    ]
    return min(moments, default=None)


def verdict(check: _Pending, found: Evidence, now: datetime) -> OutcomeStatus | None:
    """The check's status from its evidence; None while the evidence may still come."""
    if found.against:
        return OutcomeStatus.NOT_VERIFIED
    if check.kind is OutcomeKind.FAQ:
        return OutcomeStatus.VERIFIED if now >= check.due_at else None
    if found.at is not None and found.at <= check.due_at:
        return OutcomeStatus.VERIFIED
    if not found.known or now >= check.due_at:
        return OutcomeStatus.NOT_VERIFIED
    return None


async def check_pass(
    engine: AsyncEngine,
    gateway: PlatformGateway,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
) -> PassResult:
    """One pass over the pending checks (on PostgreSQL only if no other process runs one)."""
    if engine.dialect.name != "postgresql":
        return await _run(engine, gateway, now, batch)
    async with engine.connect() as holder:
        taken = await holder.scalar(_TRY_LOCK, {"key": LOCK_KEY})
        await holder.commit()  # the session lock outlives the transaction; no snapshot is held
        if not taken:
            return PassResult(skipped=True)
        try:
            return await _run(engine, gateway, now, batch)
        finally:
            await holder.execute(_UNLOCK, {"key": LOCK_KEY})
            await holder.commit()


async def _run(
    engine: AsyncEngine, gateway: PlatformGateway, now: datetime | None, batch: int
) -> PassResult:
    moment = now or datetime.now(UTC)
    result = PassResult()
    after = 0
    while True:
        async with engine.connect() as connection:
            rows = (await connection.execute(_PENDING, {"after": after, "batch": batch})).all()
        if not rows:
            return result
        settled: list[dict[str, object]] = []
        try:
            for row in rows:
                check = _Pending(
                    row.id,
                    row.conversation_id,
                    row.kind,
                    row.subject,
                    row.started_at,
                    row.due_at,
                )
                found = await evidence(engine, gateway, check)
                status = verdict(check, found, moment)
                result.looked += 1
                if status is not None:
                    settled.append(
                        {
                            "_id": check.id,
                            "_status": status,
                            "_checked_at": moment,
                            "_evidence_at": found.at,
                        }
                    )
                    result.settled[status] = result.settled.get(status, 0) + 1
        except PlatformUnavailable:
            result.interrupted = True
        if settled:
            async with engine.begin() as connection:
                await connection.execute(_SETTLE, settled)
        if result.interrupted or len(rows) < batch:
            return result
        after = rows[-1].id
        await asyncio.sleep(0)  # let the messages waiting for the database go first


async def keep_checking(engine: AsyncEngine, gateway: PlatformGateway, interval: timedelta) -> None:
    """The server's task: a pass every `interval` (`OUTCOME_CHECK_SECONDS`), the first one
    `interval` after start; a pass that failed is tried again at the next."""
    while True:
        await asyncio.sleep(interval.total_seconds())
        try:
            done = await check_pass(engine, gateway)
        except Exception as exc:
            log.warning("outcome checks failed: %s", type(exc).__name__)
        else:
            if done.settled:
                log.info(
                    "outcome checks: %s",
                    ", ".join(f"{n} {s.value}" for s, n in done.settled.items()),
                )
