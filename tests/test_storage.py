"""The schema: migrations match the models, and moments keep their instant on every database."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.platform.tables  # noqa: F401  (registers the platform tables)
from bot.platform.sql import SqlPlatform
from bot.platform.world import load_world, read_world
from bot.settings import Settings
from bot.storage import sqlite_inline
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import Base, Conversation, Identity, RateEvent
from bot.storage.unit import add_new
from bot.turn_writer import _LOAD
from bot.types import ConversationState
from tests.support.common import FAST_HASHER, Seconds

BEIJING = timezone(timedelta(hours=8))


async def test_migrations_create_exactly_the_models(db: AsyncEngine) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return list(compare_metadata(context, Base.metadata))

    async with db.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_offsets_are_kept_as_instants(db: AsyncEngine, tmp_path: Path) -> None:
    world = tmp_path / "world.yaml"
    world.write_text(
        "merchants: [{id: M9, name: 测试}]\n"
        "orders:\n"
        "  - {order_no: BT2026112600009999, merchant: M9, amount: '1.00', method: qr,\n"
        "     status: paid, created_at: '2026-11-26T09:12:00+08:00'}\n",
        encoding="utf-8",
    )
    await load_world(session_factory(db), read_world(world), FAST_HASHER)
    platform = SqlPlatform(session_factory(db), shares_bot_database=False)
    order = await platform.get_order("BT2026112600009999")
    assert order is not None
    assert order.created_at == datetime(2026, 11, 26, 1, 12, tzinfo=UTC)
    since_beijing = datetime(2026, 11, 26, 9, 0, tzinfo=BEIJING)
    assert [o.order_no for o in await platform.list_orders("M9", since=since_beijing)] == [
        "BT2026112600009999"
    ]
    assert (
        await platform.list_orders("M9", since=datetime(2026, 11, 26, 9, 30, tzinfo=BEIJING)) == []
    )


async def test_a_new_row_is_stored_whole_and_loaded_in_the_session(db: AsyncEngine) -> None:
    """`add_new`: one INSERT, the defaults on the object, changes afterwards saved as for a
    loaded object; a taken key (with `unless_taken`) changes nothing."""
    sessions = session_factory(db)
    async with sessions() as session, session.begin():
        conversation = Conversation(channel="t", chat_id="1", language="en")
        assert await add_new(session, conversation)
        assert conversation.id is not None
        assert (conversation.state, conversation.slots, conversation.failures) == ("bot", {}, 0)
        assert conversation.created_at is not None
        # A loaded object's change: flushed at the commit.
        conversation.state = ConversationState.QUEUED
        first = Identity(channel="t", user_id="1", kind="merchant", merchant_id="M1")
        assert await add_new(session, first, unless_taken=True)
        again = Identity(channel="t", user_id="1", kind="customer")
        assert not await add_new(session, again, unless_taken=True)
        assert again not in session
    async with sessions() as session:
        stored = await session.get(Conversation, conversation.id)
        assert stored is not None
        assert (stored.state, stored.language, stored.slots) == ("queued", "en", {})
        identities = (await session.scalars(select(Identity))).all()
        assert [(i.kind, i.merchant_id) for i in identities] == [("merchant", "M1")]


async def test_the_rate_limit_count_reads_only_the_last_minute(tmp_path: Path) -> None:
    """Every message counts its chat's messages of the last minute (`Engine._load`); SQLite
    finds them through an index, not by reading every message the chat ever sent."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    await upgrade(engine)
    compiled = _LOAD[False].compile(dialect=engine.dialect)
    values = compiled.construct_params(
        {"channel": "t", "chat_id": "1", "user_id": "1", "since": "2026-11-26 00:00:00"}
    )
    async with engine.connect() as connection:
        plan = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(values[k] for k in compiled.positiontup or [])
        )
        steps = [row[-1] for row in plan]
    await engine.dispose()
    assert any(
        "messages USING COVERING INDEX ix_messages_conversation_direction_at" in step
        and "created_at>" in step
        for step in steps
    ), steps


# SQLite on the loop's thread (bot/storage/sqlite_inline.py): waiting for another connection's
# lock must leave the loop free, end when the lock goes, and give up at the busy timeout. The
# busy timeout is read on a clock the test moves, so nothing here depends on how fast the
# machine is.


class _Locked:
    """A SQLite file whose write lock another connection holds, and an insert through the
    bot's engine that waits for it (as a task, so the test can look at it meanwhile)."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.engine = create_engine(
            f"sqlite+aiosqlite:///{path}",
            Settings.model_construct(database_busy_timeout=busy_timeout),
        )
        self.path = path
        self.holder: sqlite3.Connection | None = None

    async def __aenter__(self) -> _Locked:
        await upgrade(self.engine)
        self.holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.holder.execute("BEGIN IMMEDIATE")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.holder is not None
        if self.holder.in_transaction:
            self.holder.execute("ROLLBACK")
        self.holder.close()
        await self.engine.dispose()

    def release(self) -> None:
        assert self.holder is not None
        self.holder.execute("COMMIT")

    def insert(self) -> asyncio.Task[str]:
        async def insert() -> str:
            try:
                async with session_factory(self.engine)() as session, session.begin():
                    await session.execute(
                        insert_rate_event.values(key="lock-test", at=datetime.now(UTC))
                    )
            except OperationalError as exc:
                return str(exc.orig)
            return "stored"

        return asyncio.create_task(insert())


insert_rate_event = insert(RateEvent)


async def _loop_turns(count: int) -> None:
    """Let the loop run other work `count` times (each a real pause, so a retry is due)."""
    for _ in range(count):
        await asyncio.sleep(0.01)


async def test_a_locked_sqlite_database_is_waited_for_without_stopping_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Seconds()
    monkeypatch.setattr(sqlite_inline, "time", SimpleNamespace(monotonic=clock))
    async with _Locked(tmp_path / "a.db", busy_timeout=5.0) as locked:
        waiting = locked.insert()
        # This coroutine runs while the insert waits: the wait does not hold the loop (were it
        # to, these turns would come only after the insert had given up, and it would be done).
        await _loop_turns(10)
        assert not waiting.done()
        clock.advance(4.9)  # still within the busy timeout
        await _loop_turns(3)
        assert not waiting.done()
        locked.release()
        assert await waiting == "stored"


async def test_a_sqlite_lock_held_past_the_busy_timeout_fails_as_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Seconds()
    monkeypatch.setattr(sqlite_inline, "time", SimpleNamespace(monotonic=clock))
    async with _Locked(tmp_path / "b.db", busy_timeout=0.5) as locked:
        waiting = locked.insert()
        await _loop_turns(10)
        assert not waiting.done()
        clock.advance(0.6)  # past the busy timeout, the lock still held
        assert await waiting == "database is locked"
