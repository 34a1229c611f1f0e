"""Payment notifications with the platform behind HTTP: a real `btp-bot platform serve` process.

The bot runs with `PLATFORM_API_URL` pointing at the platform process (its own SQLite database,
the demo world, an API key), so every step of a notification (the order looked up, its status
moved, the amount checked) crosses the wire through `HttpPlatform`: the bot's database holds no
platform order at all. The chats are bound and verified over the same wire.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.incidents import store
from bot.notifications import sign
from bot.platform.http import HttpPlatform
from bot.platform.models import FailureCode, OrderStatus
from bot.platform.tables import OrderRow
from bot.platform.world import load_world, read_world
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import create_engine, session_factory
from bot.storage.models import Message, PlatformEvent
from bot.types import IncomingMessage
from tests.support.common import DEMO_WORLD, FAST_HASHER, bot_app, migrated_sqlite
from webhook_server import RUNTIME

SECRET = "remote-notify-secret"
KEY = "remote-platform-key"
ORDER = "BT2026112600000013"  # M001, pending, 15.50, payer phone ending 2222


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def platform_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`btp-bot platform serve --demo` on a database of its own, for the module's tests: its
    URL and its database's."""
    port = _port()
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('platform') / 'platform.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "PLATFORM_API_KEY": KEY,
        "DEMO_WORLD": str(DEMO_WORLD),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "platform", "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket listens
        assert "platform API on" in line, process.stderr.read() if process.stderr else line
        yield f"http://127.0.0.1:{port}", database
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def platform_url(platform_process: tuple[str, str]) -> str:
    """The platform process, its demo world loaded again: what an earlier test paid or bound
    is as the demo has it (orders, accounts and bind codes are replaced)."""
    url, database = platform_process
    db = create_engine(database)
    try:
        await load_world(session_factory(db), read_world(DEMO_WORLD), FAST_HASHER)
    finally:
        await db.dispose()
    return url


@pytest.fixture
async def client(
    platform_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient[Any, Any]]:
    path = tmp_path / "bot.db"
    shutil.copyfile(await migrated_sqlite(tmp_path_factory), path)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        platform_api_url=platform_url,
        platform_api_key=SecretStr(KEY),
        platform_webhook_secret=SecretStr(SECRET),
        demo_world=None,
    )
    async with TestClient(TestServer(bot_app(settings))) as client:
        yield client


@pytest.fixture
async def platform(platform_url: str) -> AsyncIterator[HttpPlatform]:
    async with HttpPlatform(platform_url, api_key=KEY) as remote:
        yield remote


def event(status: str = "paid", amount: str = "15.50", event_id: str = "evt_1") -> bytes:
    body = {"id": event_id, "type": "payment.status", "order_no": ORDER}
    return json.dumps({**body, "status": status, "amount": amount}).encode()


async def post(client: TestClient[Any, Any], body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "X-BTP-Signature": sign(SECRET, body)}
    response = await client.post("/platform/notify", data=body, headers=headers)
    return response.status, await response.json()


async def say(
    client: TestClient[Any, Any], channel: str, chat: str, number: int, text: str
) -> None:
    engine = client.app[RUNTIME].bot.engine
    await engine.handle(IncomingMessage(channel, chat, chat, f"{chat}:{number}", text))


async def count(client: TestClient[Any, Any], model: type) -> int:
    async with client.app[RUNTIME].bot.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def notices(client: TestClient[Any, Any]) -> list[str]:
    async with client.app[RUNTIME].bot.sessions() as session:
        query = select(Message.text).where(Message.sender_kind == "system")
        return list((await session.scalars(query)).all())


async def test_a_payment_reaches_the_bound_merchant_and_the_verified_customer(
    client: TestClient[Any, Any], platform: HttpPlatform
) -> None:
    await say(client, "telegram", "1001", 1, "/bind 482913")
    await say(client, "webchat", "wc_customer", 1, f"我付款了吗 {ORDER}")
    await say(client, "webchat", "wc_customer", 2, "2222")
    assert await post(client, event()) == (200, {"result": "applied", "notified": 2})
    told = await notices(client)
    assert len(told) == 2 and all("收到付款 ¥15.50" in text for text in told)
    order = await platform.get_order(ORDER)
    assert order is not None and order.status is OrderStatus.PAID
    # Only the wire could have answered: the bot's own database holds no platform order.
    assert await count(client, OrderRow) == 0


async def test_replays_and_late_events_change_nothing_on_either_side(
    client: TestClient[Any, Any], platform: HttpPlatform
) -> None:
    await say(client, "telegram", "1001", 1, "/bind 482913")
    assert (await post(client, event(event_id="evt_paid")))[1]["result"] == "applied"
    told = len(await notices(client))
    assert await post(client, event(event_id="evt_paid")) == (
        200,
        {"result": "duplicate", "notified": 0},
    )
    # A second event saying the same thing: the platform holds the order at `paid` already,
    # and the bot heard `paid` before, so no chat is told twice.
    assert (await post(client, event(event_id="evt_again")))[1]["result"] == "stale"
    assert (await post(client, event("pending", event_id="evt_late")))[1]["result"] == "stale"
    assert len(await notices(client)) == told
    order = await platform.get_order(ORDER)
    assert order is not None and order.status is OrderStatus.PAID


async def test_a_failed_payment_is_kept_for_incident_detection_as_the_platform_knows_it(
    client: TestClient[Any, Any], platform: HttpPlatform
) -> None:
    """The merchant and the channel come from the platform's answer over the wire."""
    failed = {
        "id": "evt_failed",
        "type": "payment.status",
        "order_no": ORDER,
        "status": "failed",
        "amount": "15.50",
        "failure_code": "network_timeout",
        "attempt_id": "att-1",
    }
    assert (await post(client, json.dumps(failed).encode()))[1]["result"] == "applied"
    order = await platform.get_order(ORDER)
    assert order is not None
    async with client.app[RUNTIME].bot.sessions() as session:
        since = datetime.now(UTC) - timedelta(minutes=10)
        seen = await store.notified_failures(session, since, 100)
    assert [(a.merchant_id, a.channel, a.failure_code, a.attempt_id, a.order_no) for a in seen] == [
        ("M001", order.method, FailureCode.NETWORK_TIMEOUT, "att-1", ORDER)
    ]


async def test_a_wrong_amount_or_an_unknown_order_is_refused_and_nothing_is_claimed(
    client: TestClient[Any, Any], platform: HttpPlatform
) -> None:
    status, body = await post(client, event(amount="16.00"))
    assert (status, body["error"]) == (
        422,
        {"code": "amount_mismatch", "message": "the amount does not match the order"},
    )
    unknown = event().replace(ORDER.encode(), b"BT2026112699999999")
    status, body = await post(client, unknown)
    assert status == 422 and body["error"]["code"] == "unknown_order"
    assert await count(client, PlatformEvent) == 0
    order = await platform.get_order(ORDER)
    assert order is not None and order.status is OrderStatus.PENDING


async def test_a_platform_that_cannot_answer_gets_503_and_the_event_counts_later(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Nothing is claimed while the platform is down, so its redelivery is applied."""
    path = tmp_path / "bot.db"
    shutil.copyfile(await migrated_sqlite(tmp_path_factory), path)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        platform_api_url=f"http://127.0.0.1:{_port()}",  # nothing listens there
        platform_api_key=SecretStr(KEY),
        platform_timeout=0.5,
        platform_webhook_secret=SecretStr(SECRET),
        demo_world=None,
    )
    async with TestClient(TestServer(bot_app(settings))) as client:
        status, body = await post(client, event())
        assert (status, body["error"]["code"]) == (503, "unavailable")
        assert await count(client, PlatformEvent) == 0
