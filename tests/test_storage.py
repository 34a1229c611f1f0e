"""The schema: migrations match the models, and moments keep their instant on every database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.platform.tables  # noqa: F401  (registers the platform tables)
from bot.platform.sql import SqlPlatform
from bot.platform.world import load_world, read_world
from bot.storage.db import session_factory
from bot.storage.models import Base
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
