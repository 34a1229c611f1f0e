"""Pruning the delivery bookkeeping: finished rows past the retention go, nothing else does."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.channels.inbound import MAX_ATTEMPTS
from bot.settings import Settings
from bot.storage import retention
from bot.storage.db import create_engine
from bot.storage.models import (
    Base,
    Conversation,
    InboundUpdate,
    Message,
    OrderWatch,
    OutboxItem,
    ProcessedInbound,
    RateEvent,
)
from bot.storage.retention import BATCH, prune
from tests.support.common import bot_app, migrated_sqlite, until

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=8)
RECENT = NOW - timedelta(days=6)
WEEK = timedelta(days=7)


async def _rows(db: AsyncEngine, model: Any, column: str) -> list[Any]:
    table = model.__table__
    async with db.connect() as connection:
        result = await connection.execute(select(table.c[column]).order_by(table.c.id))
        return list(result.scalars())


def table(model: type[Base]) -> Table:
    """The model's table, typed as a Table (SQLAlchemy types `__table__` as a FromClause)."""
    return cast(Table, model.__table__)


async def _seed(db: AsyncEngine) -> None:
    def update(
        update_id: int, received: datetime, processed: datetime | None, attempts: int = 0
    ) -> dict[str, Any]:
        return {
            "source": "telegram",
            "update_id": update_id,
            "chat_key": "7",
            "payload": {} if processed else {"update_id": update_id},
            "received_at": received,
            "processed_at": processed,
            "attempts": attempts,
        }

    def reply(text: str, status: str, created: datetime) -> dict[str, Any]:
        return {
            "conversation_id": 1,
            "channel": "telegram",
            "chat_id": "7",
            "payload": {"text": text},
            "status": status,
            "attempts": 0,
            "next_attempt_at": created,
            "created_at": created,
        }

    async with db.begin() as connection:
        await connection.execute(
            insert(table(Conversation)),
            {
                "id": 1,
                "channel": "telegram",
                "chat_id": "7",
                "state": "bot",
                "language": "zh",
                "language_pinned": False,
                "slots": {},
                "failures": 0,
                "findings": {},
                "created_at": OLD,
                "updated_at": OLD,
            },
        )
        await connection.execute(
            insert(table(Message)),
            {
                "conversation_id": 1,
                "direction": "in",
                "sender_kind": "user",
                "text": "你好",
                "created_at": OLD,
            },
        )
        await connection.execute(
            insert(table(InboundUpdate)),
            [
                update(1, OLD, OLD),  # handled long ago: goes
                update(2, OLD, None),  # waiting, however old: stays
                update(3, OLD, None, MAX_ATTEMPTS),  # given up long ago: goes
                update(4, RECENT, RECENT),  # handled within the week: stays
                update(5, RECENT, None, MAX_ATTEMPTS),  # given up within the week: stays
            ],
        )
        await connection.execute(
            insert(table(OutboxItem)),
            [
                reply("sent old", "sent", OLD),
                reply("failed old", "failed", OLD),
                reply("pending old", "pending", OLD),
                reply("sending old", "sending", OLD),
                reply("sent recent", "sent", RECENT),
            ],
        )
        await connection.execute(
            insert(table(ProcessedInbound)),
            [
                {"channel": "webchat", "message_id": "old", "processed_at": OLD},
                {"channel": "webchat", "message_id": "recent", "processed_at": RECENT},
            ],
        )
        await connection.execute(
            insert(table(RateEvent)),
            [{"key": "old", "at": OLD}, {"key": "recent", "at": RECENT}],
        )
        await connection.execute(
            insert(table(OrderWatch)),
            [
                {"conversation_id": 1, "order_no": "BT0000000000000001", "created_at": OLD},
                {"conversation_id": 1, "order_no": "BT0000000000000002", "created_at": RECENT},
            ],
        )


async def test_only_finished_rows_past_the_retention_go(db: AsyncEngine) -> None:
    await _seed(db)
    counts = await prune(db, WEEK, now=NOW)
    assert counts == {
        "inbound_updates": 2,
        "processed_inbound": 1,
        "outbox": 2,
        "rate_events": 1,
        "order_watches": 1,
    }
    assert await _rows(db, InboundUpdate, "update_id") == [2, 4, 5]
    assert [p["text"] for p in await _rows(db, OutboxItem, "payload")] == [
        "pending old",
        "sending old",
        "sent recent",
    ]
    assert await _rows(db, ProcessedInbound, "message_id") == ["recent"]
    assert await _rows(db, RateEvent, "key") == ["recent"]
    assert await _rows(db, OrderWatch, "order_no") == ["BT0000000000000002"]
    # The transcript and the conversation are not bookkeeping.
    assert await _rows(db, Message, "text") == ["你好"]
    assert await _rows(db, Conversation, "chat_id") == ["7"]
    # A second pass finds nothing more.
    assert set((await prune(db, WEEK, now=NOW)).values()) == {0}


async def test_many_rows_go_in_batches(db: AsyncEngine) -> None:
    rows = 2 * BATCH + 7
    async with db.begin() as connection:
        await connection.execute(
            insert(table(ProcessedInbound)),
            [
                {"channel": "webchat", "message_id": f"m{n}", "processed_at": OLD}
                for n in range(rows)
            ]
            + [{"channel": "webchat", "message_id": "kept", "processed_at": RECENT}],
        )
    assert (await prune(db, WEEK, now=NOW))["processed_inbound"] == rows
    assert await _rows(db, ProcessedInbound, "message_id") == ["kept"]


async def test_a_retention_shorter_than_a_day_is_refused(db: AsyncEngine) -> None:
    await _seed(db)
    with pytest.raises(ValueError, match="still needed"):
        await prune(db, timedelta(hours=23), now=NOW)
    assert len(await _rows(db, InboundUpdate, "id")) == 5


async def test_the_server_prunes_once_it_has_started(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "FIRST_PASS", timedelta(seconds=0.2))
    path = tmp_path / "app.db"
    shutil.copyfile(await migrated_sqlite(tmp_path_factory), path)
    url = f"sqlite+aiosqlite:///{path}"
    db = create_engine(url)
    old = datetime.now(UTC) - timedelta(days=3)
    async with db.begin() as connection:
        await connection.execute(
            insert(table(ProcessedInbound)),
            [
                {"channel": "webchat", "message_id": "old", "processed_at": old},
                {"channel": "webchat", "message_id": "new", "processed_at": datetime.now(UTC)},
            ],
        )
    settings = Settings(database_url=url, demo_world=None, retention_days=2)
    async with TestClient(TestServer(bot_app(settings))):

        async def pruned() -> bool:
            return await _rows(db, ProcessedInbound, "message_id") == ["new"]

        await until(pruned, 30, "the server's pruning job to remove the old row")
    assert await _rows(db, ProcessedInbound, "message_id") == ["new"]
    await db.dispose()
