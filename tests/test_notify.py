"""Signed payment notifications through the real app: refused when forged, applied once."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.notifications import sign
from bot.platform.tables import OrderRow
from bot.settings import Settings
from bot.storage.models import Message, OutboxItem, PlatformEvent
from bot.types import IncomingMessage
from tests.support.common import bot_app, demo_sqlite
from webhook_server import RUNTIME

SECRET = "notify-secret-for-tests"
ORDER = "BT2026112600000013"  # M001, pending, 15.50, payer phone ending 2222


@pytest.fixture
async def client(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient[Any, Any]]:
    path = tmp_path / "app.db"
    shutil.copyfile(await demo_sqlite(tmp_path_factory), path)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        platform_webhook_secret=SecretStr(SECRET),
        demo_world=None,
    )
    async with TestClient(TestServer(bot_app(settings))) as client:
        yield client


def event(status: str = "paid", amount: str = "15.50", event_id: str = "evt_1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": "payment.status",
            "order_no": ORDER,
            "status": status,
            "amount": amount,
        }
    ).encode()


async def post(
    client: TestClient[Any, Any], body: bytes, signature: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {
        "Content-Type": "application/json",
        "X-BTP-Signature": signature if signature is not None else sign(SECRET, body),
    }
    response = await client.post("/platform/notify", data=body, headers=headers)
    return response.status, await response.json()


async def count(client: TestClient[Any, Any], model: type) -> int:
    async with client.app[RUNTIME].bot.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def order_status(client: TestClient[Any, Any]) -> str:
    async with client.app[RUNTIME].bot.sessions() as session:
        row = await session.get(OrderRow, ORDER)
        assert row is not None
        return str(row.status)


async def say(
    client: TestClient[Any, Any], channel: str, chat: str, number: int, text: str
) -> None:
    engine = client.app[RUNTIME].bot.engine
    await engine.handle(IncomingMessage(channel, chat, chat, f"{chat}:{number}", text))


async def test_bound_merchant_and_verified_customer_are_told(client: TestClient[Any, Any]) -> None:
    await say(client, "telegram", "1001", 1, "/bind 482913")
    await say(client, "webchat", "wc_customer", 1, f"我付款了吗 {ORDER}")
    await say(client, "webchat", "wc_customer", 2, "2222")
    status, body = await post(client, event())
    assert (status, body) == (200, {"result": "applied", "notified": 2})
    assert await order_status(client) == "paid"
    async with client.app[RUNTIME].bot.sessions() as session:
        notices = (
            await session.scalars(select(Message).where(Message.sender_kind == "system"))
        ).all()
        queued = (await session.scalars(select(OutboxItem))).all()
    assert all("收到付款 ¥15.50" in n.text for n in notices) and len(notices) == 2
    assert {item.channel for item in queued} >= {"telegram"}


async def test_replay_changes_nothing(client: TestClient[Any, Any]) -> None:
    await say(client, "telegram", "1001", 1, "/bind 482913")
    assert (await post(client, event()))[1]["result"] == "applied"
    messages = await count(client, Message)
    assert await post(client, event()) == (200, {"result": "duplicate", "notified": 0})
    assert await count(client, Message) == messages


async def test_late_pending_never_overwrites_paid(client: TestClient[Any, Any]) -> None:
    await post(client, event("paid", event_id="evt_paid"))
    status, body = await post(client, event("pending", event_id="evt_late"))
    assert (status, body["result"]) == (200, "stale")
    assert await order_status(client) == "paid"


async def test_wrong_amount_is_refused_and_nothing_changes(client: TestClient[Any, Any]) -> None:
    status, body = await post(client, event(amount="16.00"))
    assert status == 422 and body == {
        "error": {"code": "amount_mismatch", "message": "the amount does not match the order"}
    }
    assert await order_status(client) == "pending"
    assert await count(client, PlatformEvent) == 0


FORGERIES: dict[str, Callable[[], str]] = {
    "missing": lambda: "",
    "malformed": lambda: "t=1,v1=00",
    "zero digest": lambda: f"t={int(time.time())},v1=" + "0" * 64,
    "other secret": lambda: sign("another-secret", event()),
    "too old": lambda: sign(SECRET, event(), timestamp=int(time.time()) - 301),
    "from the future": lambda: sign(SECRET, event(), timestamp=int(time.time()) + 301),
    "other body": lambda: sign(SECRET, event(amount="0.01")),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_or_stale_signatures_are_refused(
    client: TestClient[Any, Any], forgery: str
) -> None:
    status, body = await post(client, event(), FORGERIES[forgery]())
    assert status == 401 and body["error"]["code"] == "bad_signature"  # type: ignore[index]
    assert await count(client, PlatformEvent) == 0
    assert await order_status(client) == "pending"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "x"}',
        json.dumps(
            {"id": "e", "order_no": ORDER, "status": "teleported", "amount": "15.50"}
        ).encode(),
    ],
)
async def test_malformed_events_get_400(client: TestClient[Any, Any], body: bytes) -> None:
    status, _ = await post(client, body)
    assert status == 400
    assert await count(client, PlatformEvent) == 0


async def test_unknown_order_is_422(client: TestClient[Any, Any]) -> None:
    body = json.dumps(
        {"id": "e9", "order_no": "BT2026112699999999", "status": "paid", "amount": "1.00"}
    ).encode()
    status, payload = await post(client, body)
    assert status == 422 and payload["error"]["code"] == "unknown_order"  # type: ignore[index]


async def test_health_readiness_and_metrics(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await (await client.get("/readyz")).json()
    assert ready == {"status": "ready", "platform": "embedded"}
    await post(client, event())
    text = await (await client.get("/metrics")).text()
    assert 'btp_platform_events_total{outcome="applied"} 1.0' in text
