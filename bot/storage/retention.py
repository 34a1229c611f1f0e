"""Pruning the bookkeeping rows that exist so that nothing is lost or done twice.

Every Telegram update leaves a row in `inbound_updates`, every other channel's message id one
in `processed_inbound`, every reply one in `outbox`; limits leave `rate_events`, and order
questions `order_watches`. Each matters for a bounded time: Telegram stops redelivering an
update after 24 hours, a web chat client retries within minutes, the longest rate window and
an order's watch are 24 hours. Without pruning these tables grow by two rows or more with
every message for ever, and keep the raw updates of failed handlings, personal numbers and
all, as long.

`prune` deletes finished rows older than the retention (`RETENTION_DAYS`, 7 by default): a
handled update, a reply sent or given up. What is not finished (an update waiting to be
handled or retried, a reply waiting to go out) is never touched, however old; neither is
the transcript (`messages`) or anything an agent or the platform keeps. It deletes in small
batches, one short transaction each, so that SQLite's one write lock is never held for long
and messages keep flowing while it runs; several processes pruning at once only share the
work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.models import (
    INBOUND_MAX_ATTEMPTS,
    InboundUpdate,
    OrderWatch,
    OutboxItem,
    ProcessedInbound,
    RateEvent,
    table_of,
)
from bot.types import OutboxStatus

log = logging.getLogger(__name__)

BATCH = 500
# The server's pruning task: its first pass waits for start-up to settle (updates left from
# before being resumed, the first requests compiling their statements); then one an hour.
FIRST_PASS = timedelta(minutes=1)
INTERVAL = timedelta(hours=1)
# The longest any of these rows is needed; a retention below it would break the guarantees.
LONGEST_NEED = timedelta(hours=24)


_INBOUND = table_of(InboundUpdate)
_PROCESSED = table_of(ProcessedInbound)
_OUTBOX = table_of(OutboxItem)
_RATE = table_of(RateEvent)
_WATCHES = table_of(OrderWatch)


@dataclass(frozen=True)
class _Rule:
    """Which rows of a table are finished and older than `cutoff`."""

    table: Table
    finished: Callable[[datetime], ColumnElement[bool]]


_RULES = (
    _Rule(
        _INBOUND,
        lambda cutoff: or_(
            _INBOUND.c.processed_at < cutoff,
            # Given up after its last attempt: kept as long as a handled one, no longer.
            and_(
                _INBOUND.c.processed_at.is_(None),
                _INBOUND.c.attempts >= INBOUND_MAX_ATTEMPTS,
                _INBOUND.c.received_at < cutoff,
            ),
        ),
    ),
    _Rule(_PROCESSED, lambda cutoff: _PROCESSED.c.processed_at < cutoff),
    _Rule(
        _OUTBOX,
        lambda cutoff: and_(
            _OUTBOX.c.status.in_((OutboxStatus.SENT, OutboxStatus.FAILED)),
            _OUTBOX.c.created_at < cutoff,
        ),
    ),
    _Rule(_RATE, lambda cutoff: _RATE.c.at < cutoff),
    _Rule(_WATCHES, lambda cutoff: _WATCHES.c.created_at < cutoff),
)


async def prune(
    engine: AsyncEngine, retention: timedelta, *, now: datetime | None = None
) -> dict[str, int]:
    """Delete the finished rows older than `retention`; how many went, per table."""
    if retention < LONGEST_NEED:
        raise ValueError(f"a retention under {LONGEST_NEED} would forget rows still needed")
    cutoff = (now or datetime.now(UTC)) - retention
    counts: dict[str, int] = {}
    for rule in _RULES:
        oldest = (
            select(rule.table.c.id)
            .where(rule.finished(cutoff))
            .order_by(rule.table.c.id)
            .limit(BATCH)
            .scalar_subquery()
        )
        statement = delete(rule.table).where(rule.table.c.id.in_(oldest))
        deleted = 0
        while True:
            async with engine.begin() as connection:
                batch = (await connection.execute(statement)).rowcount
            deleted += batch
            if batch < BATCH:
                break
            await asyncio.sleep(0)  # let the messages waiting for the database go first
        counts[rule.table.name] = deleted
    return counts


async def keep_pruning(engine: AsyncEngine, retention: timedelta) -> None:
    """The server's task: prune after `FIRST_PASS`, then every `INTERVAL`; a pass that
    failed is tried again at the next."""
    await asyncio.sleep(FIRST_PASS.total_seconds())
    while True:
        try:
            counts = await prune(engine, retention)
        except Exception as exc:
            log.warning("pruning failed: %s", type(exc).__name__)
        else:
            if any(counts.values()):
                log.info("pruned %s", ", ".join(f"{n} {t}" for t, n in counts.items() if n))
        await asyncio.sleep(INTERVAL.total_seconds())
