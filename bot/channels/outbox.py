"""The outbox relay: delivers what the engine queued, retrying until the channel takes it.

The engine's replies take a short cut: their rows are written already leased to this process,
and once their transaction commits they are handed to `deliver` and sent at once, without a
claim. Everything else (notifications, agents' messages, rows whose process died, retries)
goes the long way: rows are claimed in short transactions (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several processes share the work) and sent one chat at a time in id order.
Rows sent at about the same time are marked sent together, in one statement. A channel that
says "retry after N seconds" gets exactly that; other transient failures back off
exponentially; a permanent refusal (the user blocked the bot) marks the row failed.

A row this process holds (written leased to it, or claimed) keeps its lease of `LEASE` seconds
renewed every third of it, until it is marked sent or goes back to the queue: a slow send, or a
wait behind the rate limit, never lets another relay take a row that is still being sent.
When the process dies its rows' leases run out within `LEASE`, and any relay sends them. A
crash after the channel took a row and before the row was marked sent sends that message again,
once, within `LEASE` of the restart: delivery is at least once.

Over 400 lines: the relay's claim, send, lease-renewal and retry rules belong to one loop
and share its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.concurrency import KeyedLocks
from bot.delivery import LEASE, kept_payload
from bot.storage.models import OutboxItem, table_of
from bot.types import OutboxStatus

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
BATCH = 50
# Replies handed over by `deliver` and not yet sent, past which `room()` makes new work wait.
BACKLOG = 64
# How often the leases of the rows this process holds are pushed forward.
RENEW_EVERY = LEASE / 3

_OUTBOX = table_of(OutboxItem)
# Runs once for every few replies sent: built once, in Core, on a bare connection (no ORM
# session, nothing in it to synchronise).
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=OutboxStatus.SENT,
        sent_at=bindparam("now"),
        attempts=_OUTBOX.c.attempts + 1,
        last_error=None,
    )
)
# The few sent rows whose payload held a personal number keep it masked (see `kept_payload`).
_KEEP_MASKED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("b_id"))
    .values(payload=bindparam("b_payload", type_=_OUTBOX.c.payload.type))
)


class RetryLater(Exception):
    """The channel could not take the message now; try again after `seconds` (None: back off)."""

    def __init__(self, seconds: float | None = None, reason: str = "") -> None:
        super().__init__(reason or f"retry after {seconds}")
        self.seconds = seconds


class Undeliverable(Exception):
    """The channel refused the message for good (blocked bot, deleted chat)."""


class Sender(Protocol):
    async def send(self, chat_id: str, payload: dict[str, Any]) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _by_chat(items: list[OutboxItem]) -> list[list[OutboxItem]]:
    """The items of each chat, in their order."""
    chats: dict[tuple[str, str], list[OutboxItem]] = {}
    for item in items:
        chats.setdefault((item.channel, item.chat_id), []).append(item)
    return list(chats.values())


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300.0, 0.5 * 2 ** min(attempts, 10)))


class OutboxRelay:
    """Runs beside the server; `kick()` wakes it as soon as the engine queued something."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Mapping[str, Sender],
        *,
        poll_interval: float = 1.0,
        concurrency: int = 16,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._sessions = sessions
        self._clock = clock  # what "due" is measured against (tests move a fake one)
        self._engine: AsyncEngine = sessions.kw["bind"]
        self._senders = dict(senders)
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._concurrency = asyncio.Semaphore(concurrency)
        self._stopped = False
        self._chats = KeyedLocks()  # one chat's rows go out one at a time, in order
        self._inflight: set[asyncio.Task[int]] = set()
        self._unmarked: list[int] = []
        self._unmasked: dict[int, dict[str, Any]] = {}
        self._marking = asyncio.Lock()
        # Chats with rows sent back to the queue (retry after, backoff, a stale lease), by the
        # ids that wait: until the relay has sent every one of them, new replies to the chat
        # queue behind them instead of going out at once.
        self._held: dict[tuple[str, str], set[int]] = {}
        self._roomy = asyncio.Event()
        self._roomy.set()
        # Rows leased to this process and not yet marked sent or released, by id (renewed).
        self._leased: dict[int, OutboxItem] = {}
        self._renewing: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self._wake.set()

    def deliver(self, items: list[OutboxItem]) -> None:
        """Send rows leased to this process by the transaction that wrote them (which has just
        committed). A row that fails goes back to the queue like any other."""
        self._hold(items)
        for chat_items in _by_chat(items):
            task = asyncio.create_task(self._send_chat(chat_items, claimed=False))
            self._inflight.add(task)
            task.add_done_callback(self._delivered)
        if len(self._inflight) >= BACKLOG:
            self._roomy.clear()

    def _delivered(self, task: asyncio.Task[int]) -> None:
        self._inflight.discard(task)
        if len(self._inflight) < BACKLOG:
            self._roomy.set()

    async def room(self, timeout: float) -> None:
        """Wait (up to `timeout` seconds) while the replies handed over exceed the backlog.

        A webhook that waits here before taking an update slows its sender down to the pace
        at which replies go out, instead of answering ever more updates whose replies queue:
        without it, a fast sender got its 200s twice as fast as the replies left, and the
        replies' delay grew for as long as the load lasted. The timeout bounds the wait when
        the channel stalls (Telegram redelivers an update whose webhook call took too long)."""
        if not self._roomy.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._roomy.wait(), timeout)

    async def run(self) -> None:
        while not self._stopped:
            try:
                sent = await self.flush()
            except Exception:
                log.exception("outbox relay pass failed")
                sent = 0
            if sent:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def close(self) -> None:
        """Stop renewing leases (after the last `flush`); what is still held runs out."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None

    def _hold(self, items: list[OutboxItem]) -> None:
        for item in items:
            self._leased[item.id] = item
        if items and (self._renewing is None or self._renewing.done()):
            self._renewing = asyncio.create_task(self._keep_leases(), name="outbox-leases")

    def _let_go(self, ids: Iterable[int]) -> None:
        for row_id in ids:
            self._leased.pop(row_id, None)

    async def _keep_leases(self) -> None:
        """Push the held rows' leases forward every RENEW_EVERY, while any are held. A renewal
        that fails is logged; the rows' half-lease check (`_send_chat`) then sends them back to
        the queue rather than risk a second relay sending them too."""
        while self._leased:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            held = list(self._leased.values())
            if not held:
                break
            until = self._clock() + LEASE
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(
                        update(_OUTBOX)
                        .where(
                            _OUTBOX.c.id.in_([item.id for item in held]),
                            _OUTBOX.c.status == OutboxStatus.SENDING,
                        )
                        .values(next_attempt_at=until)
                    )
            except Exception as exc:
                log.warning("renewing %s outbox leases failed: %s", len(held), type(exc).__name__)
                continue
            for item in held:
                item.next_attempt_at = until

    async def flush(self) -> int:
        """One pass: send what is due, one task per chat; returns how many were sent (after
        the deliveries already under way have finished)."""
        await asyncio.gather(*self._inflight, return_exceptions=True)
        batch = await self._claim()
        if not batch:
            return 0
        results = await asyncio.gather(*(self._send_chat(items) for items in _by_chat(batch)))
        return sum(results)

    async def _claim(self) -> list[OutboxItem]:
        """Lease due rows in one statement, so two relays never take the same row."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            # Pending rows that are due, and rows whose lease ran out (their sender died).
            # A chat whose older row waits (retry_after, backoff) or is being sent is held whole:
            # its newer rows must not overtake it.
            older = aliased(OutboxItem)
            waiting = (
                select(older.id)
                .where(
                    older.channel == OutboxItem.channel,
                    older.chat_id == OutboxItem.chat_id,
                    older.id < OutboxItem.id,
                    older.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                    older.next_attempt_at > now,
                )
                .exists()
            )
            due = (
                select(OutboxItem.id)
                .where(
                    OutboxItem.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                    OutboxItem.next_attempt_at <= now,
                    OutboxItem.channel.in_(list(self._senders)),
                    ~waiting,
                )
                .order_by(OutboxItem.id)
                .limit(BATCH)
            )
            if session.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            claimed = await session.scalars(
                update(OutboxItem)
                .where(OutboxItem.id.in_(due.scalar_subquery()))
                .values(status=OutboxStatus.SENDING, next_attempt_at=now + LEASE)
                .returning(OutboxItem),
                execution_options={"synchronize_session": False},
            )
            items = sorted(claimed.all(), key=lambda item: item.id)
        self._hold(items)
        return items

    async def _send_chat(self, items: list[OutboxItem], *, claimed: bool = True) -> int:
        """Send one chat's items in order; how many the channel took. Items handed over by
        `deliver` (not `claimed`) for a chat that waits go to the queue behind what waits."""
        sent: list[int] = []
        chat = (items[0].channel, items[0].chat_id)
        async with self._concurrency, self._chats.hold(chat):
            # Rows held here for half their lease (a backlog behind the channel's rate limit)
            # go back to the queue rather than out: past the lease, a relay would claim and
            # send them as well.
            stale = items[0].next_attempt_at - self._clock() < LEASE / 2
            if stale or (not claimed and chat in self._held):
                await self._queue(items)
                return 0
            for index, item in enumerate(items):
                try:
                    payload = {**item.payload, "message_id": item.message_id}
                    await self._senders[item.channel].send(item.chat_id, payload)
                except RetryLater as exc:
                    delay = (
                        timedelta(seconds=exc.seconds) if exc.seconds else backoff(item.attempts)
                    )
                    # Keep the chat's order: everything after this one waits with it.
                    await self._release(items[index:], delay, str(exc))
                    break
                except Undeliverable as exc:
                    await self._failed(item, str(exc))
                    continue
                except Exception as exc:
                    log.warning("sending outbox item %s failed: %s", item.id, type(exc).__name__)
                    await self._release(items[index:], backoff(item.attempts), type(exc).__name__)
                    break
                sent.append(item.id)
                if (kept := kept_payload(item.payload)) is not None:
                    self._unmasked[item.id] = kept
            else:
                if claimed:
                    self._went_out(chat, items)
        if sent:
            await self._mark_sent(sent)
        return len(sent)

    async def _mark_sent(self, ids: list[int]) -> None:
        """Mark rows sent; ids that arrive while a mark waits for the database go in the next
        one, so under load one statement covers many rows. If marking fails, the rows stay
        leased and are sent again when the lease runs out (at least once)."""
        self._unmarked.extend(ids)
        async with self._marking:
            batch, self._unmarked = self._unmarked, []
            if not batch:
                return
            masked = [
                {"b_id": row_id, "b_payload": self._unmasked.pop(row_id)}
                for row_id in batch
                if row_id in self._unmasked
            ]
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(_MARK_SENT, {"ids": batch, "now": self._clock()})
                    if masked:
                        await connection.execute(_KEEP_MASKED, masked)
            except Exception as exc:
                log.warning("marking %s items sent failed: %s", len(batch), type(exc).__name__)
            finally:
                # Renewed until marked: a slow mark must not let another relay send them too.
                self._let_go(batch)

    async def _failed(self, item: OutboxItem, error: str) -> None:
        self._let_go([item.id])
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id)
                .values(
                    status=OutboxStatus.FAILED,
                    attempts=item.attempts + 1,
                    last_error=error,
                    payload=kept_payload(item.payload) or item.payload,
                )
            )

    def _wait(self, items: list[OutboxItem]) -> None:
        """The chat's rows that went back to the queue: newer replies wait behind them."""
        chat = (items[0].channel, items[0].chat_id)
        self._held.setdefault(chat, set()).update(item.id for item in items)

    def _went_out(self, chat: tuple[str, str], items: list[OutboxItem]) -> None:
        """Claimed rows went out: the chat is free once every row that waited has (rows sent
        back to the queue after this batch was claimed still wait)."""
        waiting = self._held.get(chat)
        if waiting is None:
            return
        waiting.difference_update(item.id for item in items)
        if not waiting:
            del self._held[chat]

    async def _queue(self, items: list[OutboxItem]) -> None:
        """Hand leased rows to the queue, due now: the claim keeps them behind the chat's
        waiting rows."""
        self._wait(items)
        self._let_go(item.id for item in items)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([item.id for item in items]))
                .values(status=OutboxStatus.PENDING, next_attempt_at=self._clock())
            )
        self.kick()

    async def _release(self, items: list[OutboxItem], delay: timedelta, error: str) -> None:
        self._let_go(item.id for item in items)
        self._wait(items)
        now = self._clock()
        async with self._sessions() as session, session.begin():
            for item in items:
                attempts = item.attempts + (1 if item is items[0] else 0)
                give_up = attempts >= MAX_ATTEMPTS
                values: dict[str, Any] = {
                    "status": OutboxStatus.FAILED if give_up else OutboxStatus.PENDING,
                    "attempts": attempts,
                    "next_attempt_at": now + delay,
                    "last_error": error,
                }
                if give_up and (kept := kept_payload(item.payload)) is not None:
                    values["payload"] = kept
                await session.execute(
                    update(OutboxItem).where(OutboxItem.id == item.id).values(values)
                )
                if give_up:
                    log.error("outbox item %s given up after %s attempts", item.id, attempts)
                    self._went_out((item.channel, item.chat_id), [item])  # nothing to wait for
