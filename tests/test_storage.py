"""The schema: migrations match the models, and moments keep their instant on every database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.platform.tables  # noqa: F401  (registers the platform tables)
from bot.platform.sql import SqlPlatform
from bot.platform.world import load_world, read_world
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import Base, Conversation, Identity, RateEvent
from bot.storage.unit import add_new
from bot.turn_writer import _LOAD
from tests.conftest import FAST_HASHER

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
        conversation.state = "queued"  # a loaded object's change: flushed at the commit
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
# lock must leave the loop free, end when the lock goes, and give up at the busy timeout.


async def _locked_insert(
    path: Path, busy_timeout: float, release_after: float | None
) -> tuple[str, float, int]:
    """Insert through the bot's engine while another connection holds the write lock; the
    outcome, the seconds it took, and how often the loop ran something else meanwhile."""
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url, Settings.model_construct(database_busy_timeout=busy_timeout))
    await upgrade(engine)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    if release_after is not None:
        loop.call_later(release_after, holder.execute, "COMMIT")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beside = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.execute(insert(RateEvent).values(key="lock-test", at=datetime.now(UTC)))
        outcome = "stored"
    except OperationalError as exc:
        outcome = str(exc.orig)
    finally:
        took = time.monotonic() - started
        beside.cancel()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()
    return outcome, took, ticks


async def test_a_locked_sqlite_database_is_waited_for_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    outcome, took, ticks = await _locked_insert(tmp_path / "a.db", 5.0, release_after=0.4)
    assert outcome == "stored"
    assert 0.3 < took < 3.0
    assert ticks >= 10  # the loop ran the ticker while the insert waited


async def test_a_sqlite_lock_held_past_the_busy_timeout_fails_as_locked(tmp_path: Path) -> None:
    outcome, took, ticks = await _locked_insert(tmp_path / "b.db", 0.5, release_after=None)
    assert outcome == "database is locked"
    assert 0.4 < took < 3.0
    assert ticks >= 10
