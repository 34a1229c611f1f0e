"""Durable inbound updates: stored before they are acknowledged, processed in order per chat.

A webhook answers 200 only after `accept` committed the update; a unique key on (source,
update_id) makes a redelivered or concurrently delivered update a no-op. Updates of one chat are
processed one after another in arrival order; different chats run in parallel. An update whose
processing fails is retried with backoff, and after a crash every unprocessed update is picked
up again on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import InboundUpdate

log = logging.getLogger(__name__)

Processor = Callable[[dict[str, Any]], Awaitable[None]]
MAX_ATTEMPTS = 8


def _now() -> datetime:
    return datetime.now(UTC)


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
        self._queues: dict[str, list[int]] = {}

    async def accept(self, update_id: int, chat_key: str, payload: dict[str, Any]) -> bool:
        """Store the update durably; True when it is new. Raises if it could not be stored."""
        try:
            async with self._sessions() as session, session.begin():
                row = InboundUpdate(
                    source=self._source, update_id=update_id, chat_key=chat_key, payload=payload
                )
                session.add(row)
                await session.flush()
                row_id = row.id
        except IntegrityError:
            return False
        self._enqueue(chat_key, row_id)
        return True

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
                async with self._slots:
                    done = await self._process(row_id)
                if done:
                    queue.pop(0)
        finally:
            self._chats.pop(chat_key, None)
            if not self._queues.get(chat_key):
                self._queues.pop(chat_key, None)

    async def _process(self, row_id: int) -> bool:
        """Process one update; True when finished with it (processed, or given up)."""
        async with self._sessions() as session:
            row = await session.get(InboundUpdate, row_id)
            if row is None or row.processed_at is not None:
                return True
            payload, attempts = row.payload, row.attempts
        try:
            await self._processor(payload)
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
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(InboundUpdate).where(InboundUpdate.id == row_id).values(processed_at=_now())
            )
        return True

    async def idle(self) -> None:
        """Wait until every queued update was handled (tests, graceful shutdown)."""
        while self._chats:
            await asyncio.gather(*list(self._chats.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._chats.values()):
            task.cancel()
        await asyncio.gather(*list(self._chats.values()), return_exceptions=True)
