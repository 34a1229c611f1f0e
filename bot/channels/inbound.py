"""Durable inbound updates: stored before they are acknowledged, processed in order per chat.

A webhook answers 200 only after the update was committed. `receive` stores the update and
handles it in one transaction, so the 200 also means "handled, replies queued", and a sender
that delivers faster than the bot handles is slowed down by the answers instead of piling up
a backlog. When that handling fails, or older updates of the chat still wait, the update is
stored alone (`accept`) and handled later from the queue. A unique key on (source, update_id)
makes a redelivered or concurrently delivered update a no-op. Updates of one chat are handled
one after another in arrival order; different chats run in parallel. A queued update whose
handling fails is retried, and after a crash every unprocessed update is picked up again on
start.

A failure that may pass (the database locked or gone, a timeout) is retried with backoff, up to
MAX_ATTEMPTS times (about a minute). Any other failure (a bug, a value the code cannot take) is
taken to fail every time: after POISON_ATTEMPTS attempts within about a second, the update is
rejected (marked processed, its payload dropped, `last_error` starting with "rejected"), the
chat is told (`on_rejected`), and the chat's next updates go on at once. Retries wait outside
the chat's turn and the concurrency slot, so a failing update holds up nothing else meanwhile.
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
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.concurrency import KeyedLocks
from bot.privacy import mask_pii
from bot.storage.models import INBOUND_MAX_ATTEMPTS, InboundUpdate
from bot.storage.runner import in_unit
from bot.storage.unit import inbound_claimed, insert_once

log = logging.getLogger(__name__)

Processor = Callable[[dict[str, Any]], Awaitable[None]]
Rejected = Callable[[dict[str, Any]], Awaitable[None]]
# Attempts for an update whose failure may pass (backoff from retry_base: 0.5 s, 1 s, ... 64 s).
MAX_ATTEMPTS = INBOUND_MAX_ATTEMPTS
# Attempts for one whose failure will not: on arrival, again from the queue, and once more
# 2 x poison_retry later (0.5 s by default).
POISON_ATTEMPTS = 3
REJECTED = "rejected"


def _now() -> datetime:
    return datetime.now(UTC)


class _HandlingFailed(Exception):
    """The processor raised inside `receive`'s transaction (the cause is chained)."""


# PostgreSQL's SQLSTATE classes (and codes) of failures that pass: connection lost (08), a
# serialization failure or deadlock (40), out of resources (53), a lock not available (55P03),
# an operator's shutdown or a cancelled query (57), a system error (58).
_PASSING_SQLSTATES = ("08", "40", "53", "55P03", "57", "58")


def transient(exc: BaseException) -> bool:
    """Whether a handling failure may pass if the update is tried again later: the database or
    the network failed, not the code on this update (a bug, a value no column takes)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True  # SQLite's "database is locked" is an OperationalError
        state = getattr(exc.orig, "sqlstate", None)
        return isinstance(state, str) and state.startswith(_PASSING_SQLSTATES)
    return isinstance(exc, OSError | PoolTimeout)  # OSError: TimeoutError, ConnectionError


def _error_text(exc: BaseException) -> str:
    """What `last_error` keeps of a failure: a database error's own message, without the
    statement's parameters (the user's text among them), and no personal number in full."""
    detail = exc.orig if isinstance(exc, DBAPIError) else exc
    return mask_pii(f"{type(exc).__name__}: {detail}")[:500]


class InboundDispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        source: str,
        processor: Processor,
        *,
        on_rejected: Rejected | None = None,
        retry_base: float = 0.5,
        poison_retry: float = 0.25,
        concurrency: int = 8,
    ) -> None:
        self._sessions = sessions
        self._source = source
        self._processor = processor
        self._on_rejected = on_rejected
        self._retry_base = retry_base
        self._poison_retry = poison_retry
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
            assert cause is not None
            return await self.accept(update_id, chat_key, payload, failed=cause)

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

    async def accept(
        self,
        update_id: int,
        chat_key: str,
        payload: dict[str, Any],
        *,
        failed: BaseException | None = None,
    ) -> bool:
        """Store the update durably and queue it; True when it is new. Raises if not stored.
        `failed`: the error of a first attempt that already ran (counted as one)."""
        async with self._sessions() as session, session.begin():
            row_id = await self._insert(session, update_id, chat_key, payload, None, failed)
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
        failed: BaseException | None = None,
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
            attempts=0 if failed is None else 1,
            last_error=None if failed is None else _error_text(failed),
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
                    retry_in = await self._process(row_id)
                if retry_in is None:
                    queue.pop(0)
                else:
                    # Outside the chat's turn and the slot: other chats go on meanwhile, and
                    # the chat's new updates queue behind this one.
                    await asyncio.sleep(retry_in)
        finally:
            self._chats.pop(chat_key, None)
            if not self._queues.get(chat_key):
                self._queues.pop(chat_key, None)

    async def _process(self, row_id: int) -> float | None:
        """Handle one stored update, and mark it handled in the same transaction; None when
        finished with it (handled, or rejected), else the seconds to wait before trying again."""
        async with self._sessions() as session:
            row = await session.get(InboundUpdate, row_id)
            if row is None or row.processed_at is not None:
                return None
            payload, attempts = row.payload, row.attempts
        try:
            await in_unit(self._sessions, partial(self._handle_stored, row_id, payload))
        except Exception as exc:
            attempts += 1
            passing = transient(exc)
            log.warning(
                "update %s failed (attempt %s): %s",
                row_id,
                attempts,
                type(exc).__name__,
                exc_info=attempts == 1,
            )
            if attempts >= (MAX_ATTEMPTS if passing else POISON_ATTEMPTS):
                await self._reject(row_id, attempts, exc, payload)
                return None
            with contextlib.suppress(Exception):
                async with self._sessions() as session, session.begin():
                    await session.execute(
                        update(InboundUpdate)
                        .where(InboundUpdate.id == row_id)
                        .values(attempts=attempts, last_error=_error_text(exc))
                    )
            base = self._retry_base if passing else self._poison_retry
            return float(base * 2 ** (attempts - 1))
        return None

    async def _reject(
        self, row_id: int, attempts: int, exc: Exception, payload: dict[str, Any]
    ) -> None:
        """Give the update up for good: recorded as rejected (the payload, which holds the
        user's text unmasked, dropped), and the chat told."""
        log.error("update %s rejected after %s attempts: %s", row_id, attempts, type(exc).__name__)
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(InboundUpdate)
                    .where(InboundUpdate.id == row_id)
                    .values(
                        processed_at=_now(),
                        payload={},
                        attempts=attempts,
                        last_error=f"{REJECTED}: {_error_text(exc)}"[:500],
                    )
                )
        except Exception as store_exc:
            # Not marked: after a restart it is tried once more (`resume_pending`).
            log.warning("marking update %s rejected failed: %s", row_id, type(store_exc).__name__)
        if self._on_rejected is not None:
            try:
                await self._on_rejected(payload)
            except Exception:
                log.exception("telling the chat of rejected update %s failed", row_id)

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
