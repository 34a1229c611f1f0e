"""The outbox relay: delivers what the engine queued, retrying until the channel takes it.

Rows are claimed in short transactions (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
processes share the work), sent one chat at a time in id order, and marked sent once. A channel
that says "retry after N seconds" gets exactly that; other transient failures back off
exponentially; a permanent refusal (the user blocked the bot) marks the row failed. A crash
after sending and before marking sends that message again: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.storage.models import OutboxItem

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
LEASE = timedelta(seconds=60)
BATCH = 50


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
    ) -> None:
        self._sessions = sessions
        self._senders = dict(senders)
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._concurrency = asyncio.Semaphore(concurrency)
        self._stopped = False

    def kick(self) -> None:
        self._wake.set()

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

    async def flush(self) -> int:
        """One pass: send what is due, one task per chat; returns how many were sent."""
        batch = await self._claim()
        if not batch:
            return 0
        by_chat: dict[tuple[str, str], list[OutboxItem]] = {}
        for item in batch:
            by_chat.setdefault((item.channel, item.chat_id), []).append(item)
        results = await asyncio.gather(*(self._send_chat(items) for items in by_chat.values()))
        return sum(results)

    async def _claim(self) -> list[OutboxItem]:
        """Lease due rows in one statement, so two relays never take the same row."""
        now = _now()
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
                    older.status.in_(("pending", "sending")),
                    older.next_attempt_at > now,
                )
                .exists()
            )
            due = (
                select(OutboxItem.id)
                .where(
                    OutboxItem.status.in_(("pending", "sending")),
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
                .values(status="sending", next_attempt_at=now + LEASE)
                .returning(OutboxItem),
                execution_options={"synchronize_session": False},
            )
            return sorted(claimed.all(), key=lambda item: item.id)

    async def _send_chat(self, items: list[OutboxItem]) -> int:
        sent = 0
        async with self._concurrency:
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
                    return sent
                except Undeliverable as exc:
                    await self._finish(item, "failed", str(exc))
                    continue
                except Exception as exc:
                    log.warning("sending outbox item %s failed: %s", item.id, type(exc).__name__)
                    await self._release(items[index:], backoff(item.attempts), type(exc).__name__)
                    return sent
                await self._finish(item, "sent", None)
                sent += 1
        return sent

    async def _finish(self, item: OutboxItem, status: str, error: str | None) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id)
                .values(
                    status=status,
                    sent_at=_now() if status == "sent" else None,
                    attempts=item.attempts + 1,
                    last_error=error,
                )
            )

    async def _release(self, items: list[OutboxItem], delay: timedelta, error: str) -> None:
        now = _now()
        async with self._sessions() as session, session.begin():
            for item in items:
                attempts = item.attempts + (1 if item is items[0] else 0)
                give_up = attempts >= MAX_ATTEMPTS
                await session.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == item.id)
                    .values(
                        status="failed" if give_up else "pending",
                        attempts=attempts,
                        next_attempt_at=now + delay,
                        last_error=error,
                    )
                )
                if give_up:
                    log.error("outbox item %s given up after %s attempts", item.id, attempts)
