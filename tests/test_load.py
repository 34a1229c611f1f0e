"""Load: many concurrent Telegram conversations through the real app, then everything drains.

    BTP_LONG_TESTS=1 .venv/bin/python -m pytest -q -s tests/test_load.py

runs the long variant too (1,000 conversations x 10 messages; several minutes, most of it the
outbox relay keeping to Telegram's 30 messages a second), and the 200 x 10 load on PostgreSQL as
well when TEST_DATABASE_URL is set. Without BTP_LONG_TESTS=1 those are skipped with that reason,
and the default variant runs 200 conversations x 10 messages on SQLite (about 1.5 minutes); the
duplicate-delivery tests run on every database. `-s` shows the counts and timings printed.

The real app (`create_app`) with the real python-telegram-bot answers `POST /telegram/webhook`;
the Bot API stand-in (tests/botapi.py) on 127.0.0.1 takes the replies. Conversations mix FAQ
questions, the customer payment-status flow (order number, then the payer's phone digits), a
hand-over request "转人工" with no agent online (a ticket), and a flow left waiting. The driver
delivers like Telegram: one chat's updates one after another, retried on a 5xx (counted and
reported). Once the inbound store and the outbox are drained the test checks that every update
was stored and processed once, every outbox row sent once and in order, and that no
conversation or handoff is left in an impossible state.

Also here: the same update delivered 2-5 times at once, and the same signed platform event
posted 2-5 times at once, take effect once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.diagnostics.registry import FLOWS
from bot.notifications import sign
from bot.privacy import mask_pii
from bot.settings import Settings
from bot.storage.models import (
    Conversation,
    Handoff,
    InboundUpdate,
    Message,
    OutboxItem,
    PlatformEvent,
)
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from tests.support.common import bot_app, stub_settings
from webhook_server import RUNTIME

LONG = os.environ.get("BTP_LONG_TESTS") == "1"
SECRET = "load-webhook-secret-0123456789"
NOTIFY_SECRET = "load-notify-secret-0123456789"
HEADERS = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
FIRST_CHAT = 700_000_000
# How many times the driver re-delivers an update answered with a 5xx (Telegram retries too).
DELIVERY_TRIES = 20

TICKET_TEXT = "我的提现三天了还没到账，麻烦帮我查一下"
# The scripts: what each kind of conversation says, and how it must end.
SCRIPTS: dict[str, list[str]] = {
    "faq": [
        "你好",
        "提现多久到账",
        "手续费怎么收",
        "怎么注册",
        "二维码收款怎么用",
        "how long does a withdrawal take",
        "提现多久到账",
        "手续费怎么收",
        "怎么注册",
        "谢谢",
    ],
    "flow": [
        "你好",
        "我付款了没有",
        "BT2026112600000012",
        "1111",
        "提现多久到账",
        "我付款了没有",
        "BT2026112600000013",
        "2222",
        "手续费怎么收",
        "谢谢",
    ],
    "handoff": [
        "提现多久到账",
        "转人工",
        TICKET_TEXT,
        "确认",  # the message is read back and left once confirmed
        "手续费怎么收",
        "怎么注册",
        "二维码收款怎么用",
        "提现多久到账",
        "手续费怎么收",
        "谢谢",
    ],
    "open_flow": [
        "你好",
        "提现多久到账",
        "手续费怎么收",
        "我付款了没有",
        "BT2026112600000012",
        "1111",
        "怎么注册",
        "二维码收款怎么用",
        "手续费怎么收",
        "我付款了没有",
    ],
}
KINDS = list(SCRIPTS)
# Each message gets one reply; a piece of it tells which message it answers.
ANSWERS = {
    "你好": "B特派智能客服",
    "提现多久到账": "1-3个工作日",
    "手续费怎么收": "手续费标准",
    "怎么注册": "注册入驻",
    "二维码收款怎么用": "二维码收款适合",
    "how long does a withdrawal take": "1-3 working days",
    "谢谢": "不客气",
    "我付款了没有": "请告诉我订单号",
    "BT2026112600000012": "付款手机号的后4位",
    "BT2026112600000013": "付款手机号的后4位",
    "1111": "BT2026112600000012（¥88.00）：已支付",
    "2222": "BT2026112600000013（¥15.50）：待支付",
    "转人工": "请直接留言",
    TICKET_TEXT: "确认就这样留言吗",
    "确认": "留言已收到",
}


@dataclass
class Delivery:
    """What the driver saw: 200s, and the statuses it had to retry."""

    ok: int = 0
    retried: collections.Counter[str] = field(default_factory=collections.Counter)


def app_settings(database_url: str, stub: BotApiStub, **extra: Any) -> Settings:
    return stub_settings(database_url, stub, SECRET, NOTIFY_SECRET, **extra)


@asynccontextmanager
async def serve(db: AsyncEngine, stub: BotApiStub) -> AsyncIterator[TestClient[Any, Any]]:
    """The whole app on 127.0.0.1 over the test's database, and an HTTP client for it."""
    url = db.url.render_as_string(hide_password=False)
    server = TestServer(bot_app(app_settings(url, stub)), host="127.0.0.1")
    # Telegram itself keeps at most 40 webhook connections open; 100 is more than that.
    connector = aiohttp.TCPConnector(limit=100)
    async with TestClient(server, connector=connector) as client:
        yield client


async def deliver(client: TestClient[Any, Any], update: dict[str, Any], seen: Delivery) -> None:
    """POST one update until it is acknowledged with 200, as Telegram would (5xx: again)."""
    body = json.dumps(update)
    for attempt in range(DELIVERY_TRIES):
        try:
            async with client.post("/telegram/webhook", data=body, headers=HEADERS) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, text = 0, type(exc).__name__
        if status == 200:
            seen.ok += 1
            return
        assert status == 0 or status >= 500, f"update {update['update_id']}: {status} {text}"
        seen.retried[str(status or text)] += 1
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    raise AssertionError(f"update {update['update_id']} never acknowledged: {seen.retried}")


async def converse(
    client: TestClient[Any, Any], chat: int, texts: list[str], first_update: int, seen: Delivery
) -> None:
    for number, text in enumerate(texts):
        await deliver(client, tg.text_message(first_update + number, chat, text), seen)


async def count(db: AsyncEngine, query: Any) -> int:
    async with db.connect() as connection:
        return int((await connection.execute(query)).scalar_one() or 0)


async def drained(db: AsyncEngine, timeout: float) -> tuple[int, int]:
    """Wait until no update is unprocessed and no outbox row is pending or sending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        unprocessed = await count(
            db,
            select(func.count())
            .select_from(InboundUpdate)
            .where(InboundUpdate.processed_at.is_(None)),
        )
        unsent = await count(
            db,
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.status.in_(("pending", "sending"))),
        )
        if (unprocessed == 0 and unsent == 0) or loop.time() > deadline:
            return unprocessed, unsent
        await asyncio.sleep(0.5)


def sent_calls(stub: BotApiStub) -> list[Any]:
    return [c for c in stub.calls if c.method in ("sendMessage", "sendPhoto")]


async def run_load(db: AsyncEngine, conversations: int, messages: int = 10) -> dict[str, Any]:
    """Drive the conversations, wait for the drain, check everything; returns the counts."""
    chats = {FIRST_CHAT + n: KINDS[n % len(KINDS)] for n in range(conversations)}
    seen = Delivery()
    async with BotApiStub() as stub, serve(db, stub) as client:
        started = time.monotonic()
        await asyncio.gather(
            *(
                converse(client, chat, SCRIPTS[kind][:messages], (chat - FIRST_CHAT) * 100, seen)
                for chat, kind in chats.items()
            )
        )
        posted = time.monotonic() - started
        # Generous: the relay keeps to Telegram's 30 messages a second on its own.
        unprocessed, unsent = await drained(db, timeout=120 + conversations * messages / 10)
        elapsed = time.monotonic() - started
        runtime = client.app[RUNTIME]
        assert runtime.dispatcher is not None
        await runtime.dispatcher.idle()
        calls = sent_calls(stub)
    total = conversations * messages
    report: dict[str, Any] = {
        "conversations": conversations,
        "updates_posted": seen.ok,
        "deliveries_retried": dict(seen.retried),
        "seconds_posting": round(posted, 1),
        "seconds_until_drained": round(elapsed, 1),
        "unprocessed_left": unprocessed,
        "unsent_left": unsent,
    }
    async with db.connect() as connection:
        updates = (
            await connection.execute(
                select(
                    InboundUpdate.chat_key,
                    InboundUpdate.update_id,
                    InboundUpdate.processed_at,
                    InboundUpdate.attempts,
                    InboundUpdate.last_error,
                )
            )
        ).all()
        inbound = (
            await connection.execute(
                select(Conversation.chat_id, Message.text, Message.channel_message_id)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.direction == "in", Conversation.channel == "telegram")
                .order_by(Message.id)
            )
        ).all()
        outbox = (
            await connection.execute(
                select(OutboxItem.id, OutboxItem.chat_id, OutboxItem.status, OutboxItem.payload)
                .where(OutboxItem.channel == "telegram")
                .order_by(OutboxItem.id)
            )
        ).all()
        conversations_rows = (
            await connection.execute(
                select(Conversation.id, Conversation.chat_id, Conversation.flow)
                .add_columns(Conversation.flow_step, Conversation.state)
                .where(Conversation.channel == "telegram")
            )
        ).all()
        handoffs = (
            await connection.execute(
                select(Conversation.chat_id, Handoff.status, Handoff.ticket_text).join(
                    Conversation, Conversation.id == Handoff.conversation_id
                )
            )
        ).all()
    retried_updates = [u for u in updates if u.attempts]
    report.update(
        {
            "inbound_stored": len(updates),
            "inbound_processed": sum(1 for u in updates if u.processed_at is not None),
            "inbound_retried_in_processing": len(retried_updates),
            "messages_in": len(inbound),
            "outbox_rows": len(outbox),
            "outbox_by_status": dict(collections.Counter(row.status for row in outbox)),
            "bot_api_sends_ok": sum(1 for c in calls if not c.failed),
            "bot_api_sends_failed": sum(1 for c in calls if c.failed),
            "handoffs_by_status": dict(collections.Counter(h.status for h in handoffs)),
        }
    )
    print(f"\nload report: {json.dumps(report, ensure_ascii=False)}")
    if retried_updates:
        errors = collections.Counter(u.last_error for u in retried_updates)
        print(f"processing errors that were retried: {errors.most_common(5)}")

    # Every update acknowledged, stored once, processed once.
    assert seen.ok == total
    assert len(updates) == total
    assert len({(u.chat_key, u.update_id) for u in updates}) == total
    assert unprocessed == 0, f"{unprocessed} stored updates never processed"
    assert all(u.processed_at is not None for u in updates)
    # Every inbound message stored exactly once, in the order sent.
    stored: dict[str, list[str]] = collections.defaultdict(list)
    for chat_id, text, _ in inbound:
        stored[chat_id].append(text)
    assert len(inbound) == total
    assert len({row.channel_message_id for row in inbound}) == total
    for chat, kind in chats.items():
        expected = [mask_pii(text) for text in SCRIPTS[kind][:messages]]
        assert stored[str(chat)] == expected, f"chat {chat} ({kind}) stored out of order"
    # Every reply sent once, in order per chat.
    assert unsent == 0, f"{unsent} outbox rows never sent"
    assert {row.status for row in outbox} == {"sent"}
    assert not [c for c in calls if c.failed]
    assert len(calls) == len(outbox)
    wanted: dict[str, list[str]] = collections.defaultdict(list)
    for row in outbox:
        wanted[row.chat_id].append(str(row.payload["text"]).strip())
    arrived: dict[str, list[str]] = collections.defaultdict(list)
    for call in calls:
        text = call.params.get("text", call.params.get("caption", ""))
        arrived[str(call.params["chat_id"])].append(str(text).strip())
    for chat, kind in chats.items():
        assert arrived[str(chat)] == wanted[str(chat)], f"chat {chat}: replies out of order"
        script = SCRIPTS[kind][:messages]
        assert len(wanted[str(chat)]) == len(script), f"chat {chat}: not one reply per message"
        for text, reply in zip(script, wanted[str(chat)], strict=True):
            assert ANSWERS[text] in reply, f"chat {chat}: {text!r} answered with {reply[:80]!r}"
    # No flow at a step that does not exist, and every conversation ended where it should.
    by_chat = {row.chat_id: row for row in conversations_rows}
    assert len(by_chat) == conversations
    for row in conversations_rows:
        if row.flow is not None:
            assert row.flow in FLOWS, row
            assert row.flow_step in FLOWS[row.flow].steps, row
        assert row.state == "bot", row
    tickets: dict[str, list[tuple[str | None, str | None]]] = collections.defaultdict(list)
    for chat_id, status, ticket in handoffs:
        tickets[chat_id].append((status, ticket))
    for chat, kind in chats.items():
        row = by_chat[str(chat)]
        if kind == "open_flow":
            assert (row.flow, row.flow_step) == ("payment_status", "order"), row
        else:
            assert row.flow is None, row
        if kind == "handoff":
            assert tickets[str(chat)] == [("ticket", mask_pii(TICKET_TEXT))], chat
        else:
            assert tickets[str(chat)] == [], (chat, kind, tickets[str(chat)])
    return report


async def test_load_200_conversations_of_10_messages(db: AsyncEngine, world: None) -> None:
    if db.dialect.name != "sqlite" and not LONG:
        pytest.skip("on PostgreSQL (about 2 minutes more): set BTP_LONG_TESTS=1 to run it")
    await run_load(db, 200)


@pytest.mark.skipif(not LONG, reason="long variant (1,000 x 10): set BTP_LONG_TESTS=1 to run it")
async def test_load_1000_conversations_of_10_messages(db: AsyncEngine, world: None) -> None:
    await run_load(db, 1000)


# Duplicate deliveries


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def settle(client: TestClient[Any, Any], db: AsyncEngine) -> None:
    runtime = client.app[RUNTIME]
    assert runtime.dispatcher is not None
    await runtime.dispatcher.idle()

    async def outbox_done() -> bool:
        pending = await count(
            db,
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.status.in_(("pending", "sending"))),
        )
        return pending == 0

    await wait_for(outbox_done)


@pytest.mark.parametrize("copies", [2, 3, 4, 5])
async def test_the_same_update_delivered_at_once_takes_effect_once(
    db: AsyncEngine, world: None, copies: int
) -> None:
    chat = 800_000 + copies
    async with BotApiStub() as stub, serve(db, stub) as client:
        update = tg.text_message(9_000 + copies, chat, "提现多久到账")
        body = json.dumps(update)

        async def post() -> int:
            async with client.post("/telegram/webhook", data=body, headers=HEADERS) as response:
                return response.status

        statuses = await asyncio.gather(*(post() for _ in range(copies)))
        assert statuses == [200] * copies
        await settle(client, db)
        # A late redelivery, after processing, is acknowledged and ignored too.
        assert await post() == 200
        await settle(client, db)
        assert await count(db, select(func.count()).select_from(InboundUpdate)) == 1
        handled = select(func.count()).select_from(InboundUpdate)
        assert await count(db, handled.where(InboundUpdate.processed_at.is_not(None))) == 1
        inbound = select(func.count()).select_from(Message).where(Message.direction == "in")
        assert await count(db, inbound) == 1
        outbox = await count(db, select(func.count()).select_from(OutboxItem))
        assert outbox == 1
        sends = [c for c in sent_calls(stub) if c.params.get("chat_id") == chat]
        assert len(sends) == 1 and not sends[0].failed
        assert "1-3个工作日" in sends[0].params["text"]


# Orders of M001 that can still move to "paid", with their amounts.
PAYABLE = {2: ("BT2026112600000013", "15.50"), 3: ("BT2026112600000010", "128.00")}
PAYABLE |= {4: ("BT2026112600000001", "88.50"), 5: ("BT2026112600000002", "35.00")}


@pytest.mark.parametrize("copies", [2, 3, 4, 5])
async def test_the_same_signed_event_posted_at_once_takes_effect_once(
    db: AsyncEngine, world: None, copies: int
) -> None:
    chat = 810_000 + copies
    order_no, amount = PAYABLE[copies]
    async with BotApiStub() as stub, serve(db, stub) as client:
        # A merchant's chat, bound to M001 with its one-time code: it hears about payments.
        async with client.post(
            "/telegram/webhook",
            data=json.dumps(tg.text_message(9_100 + copies, chat, "/bind 482913")),
            headers=HEADERS,
        ) as response:
            assert response.status == 200
        await settle(client, db)
        assert len([c for c in sent_calls(stub) if c.params.get("chat_id") == chat]) == 1
        event = {
            "id": f"evt_dup_{copies}",
            "type": "payment.status",
            "order_no": order_no,
            "status": "paid",
            "amount": amount,
        }
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "X-BTP-Signature": sign(NOTIFY_SECRET, body)}

        async def post() -> tuple[int, dict[str, Any]]:
            async with client.post("/platform/notify", data=body, headers=headers) as response:
                return response.status, await response.json()

        answers = await asyncio.gather(*(post() for _ in range(copies)))
        assert [status for status, _ in answers] == [200] * copies, answers
        results = sorted(answer["result"] for _, answer in answers)
        assert results == ["applied"] + ["duplicate"] * (copies - 1), answers
        assert sum(answer["notified"] for _, answer in answers) == 1
        await settle(client, db)
        assert await count(db, select(func.count()).select_from(PlatformEvent)) == 1
        sends = [c for c in sent_calls(stub) if c.params.get("chat_id") == chat]
        assert len(sends) == 2, [c.params.get("text") for c in sends]
        assert f"收到付款 ¥{amount}" in sends[1].params["text"]
        assert order_no in sends[1].params["text"]
