"""Durable inbound updates: stored before they are acknowledged, processed in order per chat.

A webhook answers 200 only after the update was committed. `receive` stores the update and
handles it in one transaction, so the 200 also means "handled, replies queued", and a sender
that delivers faster than the bot handles is slowed down by the answers instead of piling up
a backlog. When that handling fails, or older updates of the chat still wait, the update is
stored alone (`accept`) and handled later from the queue. A unique key on (source, update_id)
makes a redelivered or concurrently delivered update a no-op. Updates of one chat are handled
one after another in arrival order; different chats run in parallel. A queued update whose
handling fails is retried with backoff, and after a crash every unprocessed update is picked
up again on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.concurrency import KeyedLocks
from bot.platform.outside import in_unit
from bot.storage.models import InboundUpdate
from bot.storage.unit import inbound_claimed, insert_once

log = logging.getLogger(__name__)

Processor = Callable[[dict[str, Any]], Awaitable[None]]
MAX_ATTEMPTS = 8


def _now() -> datetime:
    return datetime.now(UTC)


class _HandlingFailed(Exception):
    """The processor raised inside `receive`'s transaction (the cause is chained)."""


class InboundDispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        source: str,
        processor: Processor,
        *,
        retry_base: float = 0.5,
        concurrency: int = 8,
    ) -> None:
        self._sessions = sessions
        self._source = source
        self._processor = processor
        self._retry_base = retry_base
        # Chats are handled in parallel, but only this many at once: under a burst, hundreds of
        # handlers would otherwise queue on the database ahead of the webhook's own insert.
        self._slots = asyncio.Semaphore(concurrency)
        self._chats: dict[str, asyncio.Task[None]] = {}
        # Held while one of the chat's updates is handled, by `receive` or by the queue.
        self._chats_held = KeyedLocks()
        self._queues: dict[str, list[int]] = {}

    async def receive(self, update_id: int, chat_key: str, payload: dict[str, Any]) -> bool:
        """Store the update and handle it in one transaction; True when it is new.

        Raises only if the update could not be stored: a handling failure leaves it stored
        and queued for a retry."""
        if self._queues.get(chat_key):
            return await self.accept(update_id, chat_key, payload)  # behind the chat's older ones
        try:
            async with self._chats_held.hold(chat_key):
                if self._queues.get(chat_key):
                    return await self.accept(update_id, chat_key, payload)
                return await in_unit(
                    self._sessions, partial(self._store_and_handle, update_id, chat_key, payload)
                )
        except _HandlingFailed as failed:
            cause = failed.__cause__
            log.warning(
                "update %s failed, queued for a retry: %s",
                update_id,
                type(cause).__name__,
                exc_info=cause,
            )
            return await self.accept(update_id, chat_key, payload)

    async def _store_and_handle(
        self, update_id: int, chat_key: str, payload: dict[str, Any], session: AsyncSession
    ) -> bool:
        if await self._insert(session, update_id, chat_key, payload, _now()) is None:
            return False
        claimed = inbound_claimed.set(True)  # the row just inserted is the update's claim
        try:
            await self._processor(payload)
        except Exception as exc:
            raise _HandlingFailed from exc
        finally:
            inbound_claimed.reset(claimed)
        return True

    async def accept(self, update_id: int, chat_key: str, payload: dict[str, Any]) -> bool:
        """Store the update durably and queue it; True when it is new. Raises if not stored."""
        async with self._sessions() as session, session.begin():
            row_id = await self._insert(session, update_id, chat_key, payload, None)
        if row_id is None:
            return False
        self._enqueue(chat_key, row_id)
        return True

    async def _insert(
        self,
        session: AsyncSession,
        update_id: int,
        chat_key: str,
        payload: dict[str, Any],
        processed_at: datetime | None,
    ) -> int | None:
        return await insert_once(
            session,
            InboundUpdate,
            source=self._source,
            update_id=update_id,
            chat_key=chat_key,
            # A handled update keeps its key, not its text: the transcript holds the message,
            # with personal numbers masked, and the raw update would hold them in full.
            payload={} if processed_at is not None else payload,
            processed_at=processed_at,
        )

    async def resume_pending(self) -> int:
        """Queue every stored, unprocessed update (after a restart), oldest first."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(InboundUpdate.id, InboundUpdate.chat_key)
                    .where(
                        InboundUpdate.source == self._source,
                        InboundUpdate.processed_at.is_(None),
                        InboundUpdate.attempts < MAX_ATTEMPTS,
                    )
                    .order_by(InboundUpdate.id)
                )
            ).all()
        for row_id, chat_key in rows:
            self._enqueue(chat_key, row_id)
        return len(rows)

    def _enqueue(self, chat_key: str, row_id: int) -> None:
        queue = self._queues.setdefault(chat_key, [])
        if row_id in queue:
            return
        queue.append(row_id)
        if chat_key not in self._chats:
            task = asyncio.create_task(self._drain(chat_key))
            self._chats[chat_key] = task

    async def _drain(self, chat_key: str) -> None:
        try:
            queue = self._queues[chat_key]
            while queue:
                row_id = queue[0]
                async with self._slots, self._chats_held.hold(chat_key):
                    done = await self._process(row_id)
                if done:
                    queue.pop(0)
        finally:
            self._chats.pop(chat_key, None)
            if not self._queues.get(chat_key):
                self._queues.pop(chat_key, None)

    async def _process(self, row_id: int) -> bool:
        """Handle one stored update, and mark it handled in the same transaction; True when
        finished with it (handled, or given up)."""
        async with self._sessions() as session:
            row = await session.get(InboundUpdate, row_id)
            if row is None or row.processed_at is not None:
                return True
            payload, attempts = row.payload, row.attempts
        try:
            await in_unit(self._sessions, partial(self._handle_stored, row_id, payload))
        except Exception as exc:
            attempts += 1
            log.warning(
                "update %s failed (attempt %s): %s",
                row_id,
                attempts,
                type(exc).__name__,
                exc_info=attempts == 1,
            )
            with contextlib.suppress(Exception):
                async with self._sessions() as session, session.begin():
                    await session.execute(
                        update(InboundUpdate)
                        .where(InboundUpdate.id == row_id)
                        .values(attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:500])
                    )
            if attempts >= MAX_ATTEMPTS:
                log.error("update %s given up after %s attempts", row_id, attempts)
                return True
            await asyncio.sleep(self._retry_base * 2 ** (attempts - 1))
            return False
        return True

    async def _handle_stored(
        self, row_id: int, payload: dict[str, Any], session: AsyncSession
    ) -> None:
        await self._processor(payload)
        await session.execute(
            update(InboundUpdate)
            .where(InboundUpdate.id == row_id, InboundUpdate.processed_at.is_(None))
            .values(processed_at=_now(), payload={})
        )

    async def idle(self) -> None:
        """Wait until every queued update was handled (tests, graceful shutdown)."""
        while self._chats:
            await asyncio.gather(*list(self._chats.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._chats.values()):
            task.cancel()
        await asyncio.gather(*list(self._chats.values()), return_exceptions=True)
