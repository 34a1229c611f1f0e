"""What an attacker from outside sent over HTTP, and what the bot must answer (issue 15).

Every test runs the real app from `webhook_server.create_app` on 127.0.0.1, Telegram pointed at
the Bot API stand-in, over a migrated database with the demo world: SQLite, and PostgreSQL when
TEST_DATABASE_URL is set.

- Bodies no reader should choke on (nested 5,000 deep, NaN, not UTF-8) on every JSON endpoint,
  a 5,000-digit signature timestamp, amounts like 1E+30 or 128.004, lone surrogates in a
  message: a 4xx JSON error or a normal answer, never a 5xx, never a traceback.
- Telegram updates that can never be handled: an update_id no BIGINT holds is acknowledged and
  dropped; a poison update is rejected within a few attempts, the chat hears an apology and its
  next message is answered.
- The outbox lease is renewed while a send is in flight, so a second relay never sends it too.
- /readyz with the remote platform stopped: 200 "degraded", and the bot still answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import webhook_server
from bot.channels import outbox
from bot.channels.body import MAX_DEPTH
from bot.channels.inbound import POISON_ATTEMPTS, REJECTED, transient
from bot.channels.outbox import OutboxRelay
from bot.cleantext import REPLACEMENT
from bot.notifications import sign
from bot.platform.server import create_platform_app
from bot.platform.sql import SqlPlatform
from bot.render import Renderer
from bot.storage.db import session_factory
from bot.storage.models import (
    Agent,
    Conversation,
    InboundUpdate,
    Message,
    OutboxItem,
    PlatformEvent,
)
from bot.types import Language
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from tests.support.common import FAST_HASHER, bot_app, stub_settings

SECRET = "robust-webhook-secret-0123456789"
NOTIFY_SECRET = "robust-notify-secret-0123456789"
TELEGRAM = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
PENDING_ORDER = "BT2026112600000013"  # M001's, pending, 15.50
FAQ_QUESTION = "手续费怎么收"
FAQ_ANSWER = "手续费标准"
AGENT_PASSWORD = "robust-agent-password"


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait for `condition`; fail with `what` after a generous `timeout` (no timing asserted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Bot:
    """The running app, its Bot API stand-in, and the database under it."""

    client: TestClient[Any, Any]
    stub: BotApiStub
    db: AsyncEngine

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, str]:
        response = await self.client.post(path, data=body, headers=headers)
        text = await response.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return response.status, parsed, text

    async def update(self, update: dict[str, Any] | bytes) -> tuple[int, Any, str]:
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        return await self.post("/telegram/webhook", body, TELEGRAM)

    async def notify(self, body: bytes, signature: str | None = None) -> tuple[int, Any, str]:
        headers = {
            "Content-Type": "application/json",
            "X-BTP-Signature": signature or sign(NOTIFY_SECRET, body),
        }
        return await self.post("/platform/notify", body, headers)

    async def session(self) -> dict[str, str]:
        response = await self.client.post("/api/chat/sessions")
        assert response.status == 201
        token = (await response.json())["token"]
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def texts_to(self, chat: int, count: int, timeout: float = 15.0) -> list[str]:
        """The first `count` texts the bot sent to `chat`, once they are all at the Bot API."""

        async def arrived() -> bool:
            return len(self.stub.sent_texts(chat)) >= count

        await until(arrived, timeout, f"{count} message(s) to chat {chat}")
        return self.stub.sent_texts(chat)[:count]

    async def scalar(self, query: Any) -> Any:
        async with self.db.connect() as connection:
            return (await connection.execute(query)).scalar()


@pytest.fixture
async def bot(db: AsyncEngine, world: None) -> AsyncIterator[Bot]:
    url = db.url.render_as_string(hide_password=False)
    async with BotApiStub() as stub:
        app = bot_app(stub_settings(url, stub, SECRET, NOTIFY_SECRET))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield Bot(client, stub, db)


def nested(depth: int) -> bytes:
    """A JSON object whose value nests `depth` arrays deep."""
    return b'{"update_id": 1, "a": ' + b"[" * depth + b"]" * depth + b"}"


def assert_refused(status: int, body: Any, text: str, expected: int, code: str) -> None:
    assert status == expected, text
    assert isinstance(body, dict) and body["error"]["code"] == code, text
    assert "Traceback" not in text and "Error" not in body["error"]["message"], text


# ---------------------------------------------------------------------------------------------
# Item 9: bodies, timestamps, amounts and lone surrogates that reached a 500


@pytest.mark.parametrize("depth", [5000, MAX_DEPTH + 1])
async def test_deeply_nested_json_is_a_400_on_every_json_endpoint(bot: Bot, depth: int) -> None:
    body = nested(depth)
    status, parsed, text = await bot.update(body)
    assert_refused(status, parsed, text, 400, "too_deep")
    status, parsed, text = await bot.notify(body)
    assert_refused(status, parsed, text, 400, "too_deep")
    # Without any authentication.
    status, parsed, text = await bot.post(
        "/api/chat/sessions", body, {"Content-Type": "application/json"}
    )
    assert_refused(status, parsed, text, 400, "too_deep")
    status, parsed, text = await bot.post("/api/chat/messages", body, await bot.session())
    assert_refused(status, parsed, text, 400, "too_deep")
    assert await bot.scalar(select(func.count()).select_from(InboundUpdate)) == 0


async def test_deeply_nested_json_is_a_400_on_the_agent_console(bot: Bot) -> None:
    async with session_factory(bot.db)() as session, session.begin():
        session.add(Agent(name="robust", password_hash=FAST_HASHER.hash(AGENT_PASSWORD)))
    login = await bot.client.get("/agent/login")
    form = re.search(r'name="csrf" value="([^"]*)"', await login.text())
    assert form is not None
    response = await bot.client.post(
        "/agent/login",
        data={"csrf": form.group(1), "name": "robust", "password": AGENT_PASSWORD},
        allow_redirects=False,
    )
    assert response.status == 303
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for depth in (5000, MAX_DEPTH + 1):
        status, parsed, text = await bot.post("/agent/api/online", nested(depth), headers)
        assert_refused(status, parsed, text, 400, "too_deep")


async def test_json_within_the_depth_limit_is_still_read(bot: Bot) -> None:
    status, _, text = await bot.post(
        "/api/chat/sessions", nested(MAX_DEPTH - 1), {"Content-Type": "application/json"}
    )
    assert status == 201, text


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": NaN}',
        b'{"text": "hi", "n": -Infinity}',
        b'{"text": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not UTF-8
        b'{"text": "unterminated',
        b'{"n": ' + b"9" * 5000 + b"}",  # over Python's 4,300-digit limit for integers
    ],
)
async def test_json_that_is_not_json_is_a_400(bot: Bot, body: bytes) -> None:
    status, parsed, text = await bot.post("/api/chat/messages", body, await bot.session())
    assert_refused(status, parsed, text, 400, "bad_json")
    status, parsed, text = await bot.update(body)
    assert_refused(status, parsed, text, 400, "bad_json")


async def test_a_signature_timestamp_of_5000_digits_is_a_401(bot: Bot) -> None:
    body = json.dumps({"id": "evt-ts", "order_no": PENDING_ORDER, "status": "paid"}).encode()
    for timestamp in ("9" * 5000, "12a", "-1", "1.5", ""):
        status, parsed, text = await bot.notify(body, f"t={timestamp},v1={'0' * 64}")
        assert_refused(status, parsed, text, 401, "bad_signature")


def payment_event(event_id: str, amount: Any) -> bytes:
    event = {"id": event_id, "order_no": PENDING_ORDER, "status": "paid", "amount": amount}
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "amount",
    ["1E+30", "1E+999999999", "15.504", "128.004", "0.001", "-15.50", "0", "1e-999999"],
)
async def test_an_amount_out_of_range_or_past_the_cent_is_a_422(bot: Bot, amount: str) -> None:
    status, parsed, text = await bot.notify(payment_event(f"evt-{amount}", amount))
    assert_refused(status, parsed, text, 422, "invalid_amount")
    # As a JSON number, not text (read as a decimal, never through a float).
    body = f'{{"id": "evt-n{amount}", "order_no": "{PENDING_ORDER}", "status": "paid", '
    status, parsed, text = await bot.notify(f'{body}"amount": {amount}}}'.encode())
    assert_refused(status, parsed, text, 422, "invalid_amount")
    assert await bot.scalar(select(func.count()).select_from(PlatformEvent)) == 0


@pytest.mark.parametrize(
    "amount", ["NaN", "Infinity", " 15.50", "15.50 ", "+15.50", "1_5.50", "15.5e0", "", "1" * 5000]
)
async def test_an_amount_not_written_plainly_is_a_422(bot: Bot, amount: str) -> None:
    """The order's amount is 15.50: each of these would be read as a number by Decimal()."""
    status, parsed, text = await bot.notify(payment_event(f"evt-{amount[:20]}", amount))
    assert_refused(status, parsed, text, 422, "invalid_amount")
    assert await bot.scalar(select(func.count()).select_from(PlatformEvent)) == 0


async def test_a_whole_cent_amount_is_applied(bot: Bot) -> None:
    body = b'{"id": "evt-ok", "order_no": "%s", "status": "paid", "amount": 15.50}' % (
        PENDING_ORDER.encode()
    )
    status, parsed, text = await bot.notify(body)
    assert status == 200 and parsed["result"] == "applied", text


async def test_an_event_id_with_control_characters_is_a_400(bot: Bot) -> None:
    status, parsed, text = await bot.notify(payment_event("evt\u0000\u0007", "15.50"))
    assert_refused(status, parsed, text, 400, "bad_request")


async def test_a_lone_surrogate_in_a_web_chat_message_is_answered(bot: Bot) -> None:
    headers = await bot.session()
    body = b'{"text": "\\ud800' + FAQ_QUESTION.encode() + b'\\udfff"}'
    status, parsed, text = await bot.post("/api/chat/messages", body, headers)
    assert status == 200, text
    assert FAQ_ANSWER in " ".join(reply["text"] for reply in parsed["replies"])
    history = await bot.client.get("/api/chat/history", headers=headers)
    assert history.status == 200
    said = (await history.json())["messages"][0]["text"]
    assert said == f"{REPLACEMENT}{FAQ_QUESTION}{REPLACEMENT}"


async def test_a_lone_surrogate_in_a_telegram_message_is_answered(bot: Bot) -> None:
    chat = 515_001
    update = tg.text_message(7_001, chat, f"\ud800{FAQ_QUESTION}")
    status, _, text = await bot.update(json.dumps(update).encode())  # "\ud800" escaped
    assert status == 200, text
    (reply,) = await bot.texts_to(chat, 1)
    assert FAQ_ANSWER in reply
    stored = await bot.scalar(
        select(Message.text)
        .join(Conversation, Message.conversation_id == Conversation.id)
        .where(Conversation.chat_id == str(chat), Message.direction == "in")
    )
    assert stored == f"{REPLACEMENT}{FAQ_QUESTION}"


async def test_an_unexpected_exception_is_a_500_without_details(
    db: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No input above reaches this; a bug would, and must not show its traceback."""

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(webhook_server, "healthz", broken)
    url = db.url.render_as_string(hide_password=False)
    async with BotApiStub() as stub:
        app = bot_app(stub_settings(url, stub, SECRET, NOTIFY_SECRET))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            with caplog.at_level(logging.ERROR, logger="webhook_server"):
                response = await client.get("/healthz")
                text = await response.text()
    assert response.status == 500
    assert json.loads(text) == {"error": {"code": "internal", "message": "internal error"}}
    assert "secret detail" not in text and "Traceback" not in text
    assert any(
        record.exc_info and "secret detail" in str(record.exc_info[1]) for record in caplog.records
    )


# ---------------------------------------------------------------------------------------------
# Item 10: Telegram updates that can never be handled


@pytest.mark.parametrize("update_id", [2**70, 2**63, -1, "7", 1.5, True, None, [1]], ids=repr)
async def test_an_update_id_that_is_no_id_is_acknowledged_and_not_stored(
    bot: Bot, update_id: Any
) -> None:
    chat = 515_101
    update = tg.text_message(1, chat, FAQ_QUESTION)
    update["update_id"] = update_id
    status, parsed, text = await bot.update(update)
    assert status == 200 and parsed == {"ok": True, "rejected": "bad_update_id"}, text
    assert await bot.scalar(select(func.count()).select_from(InboundUpdate)) == 0
    # The chat is not held up by it.
    assert (await bot.update(tg.text_message(7_101, chat, FAQ_QUESTION)))[0] == 200
    (reply,) = await bot.texts_to(chat, 1)
    assert FAQ_ANSWER in reply


@pytest.mark.parametrize("chat_id", ["x" * 1000, 2**64, None, 1.5], ids=repr)
async def test_a_chat_id_that_is_no_id_is_acknowledged_and_not_stored(
    bot: Bot, chat_id: Any
) -> None:
    update = tg.text_message(7_151, 515_151, FAQ_QUESTION)
    update["message"]["chat"]["id"] = chat_id
    status, parsed, text = await bot.update(update)
    assert status == 200 and parsed == {"ok": True, "rejected": "bad_chat_id"}, text
    assert await bot.scalar(select(func.count()).select_from(InboundUpdate)) == 0


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "passes"),
    [
        (OperationalError("UPDATE", {}, _Orig("")), True),  # SQLite: database is locked
        (DBAPIError("UPDATE", {}, _Orig("40P01")), True),  # PostgreSQL: deadlock detected
        (DBAPIError("UPDATE", {}, _Orig("08006")), True),  # connection failure
        (DBAPIError("UPDATE", {}, _Orig("22021")), False),  # a character no column takes
        (IntegrityError("INSERT", {}, _Orig("23505")), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (TypeError("bad value"), False),
        (KeyError("message"), False),
    ],
    ids=repr,
)
def test_which_failures_are_retried_for_a_minute(error: Exception, passes: bool) -> None:
    assert transient(error) is passes


def poisoned(update_id: int, chat: int) -> dict[str, Any]:
    """A text message whose date is not a time: python-telegram-bot fails on it every time."""
    update = tg.text_message(update_id, chat, FAQ_QUESTION)
    update["message"]["date"] = "yesterday"
    return update


async def test_a_poison_update_is_rejected_the_chat_hears_why_and_goes_on(bot: Bot) -> None:
    chat = 515_201
    apology = Renderer().render(Language.ZH, "update_rejected")  # the chat's language
    assert (await bot.update(poisoned(7_201, chat)))[0] == 200
    # The next message of the chat, right behind it.
    assert (await bot.update(tg.text_message(7_202, chat, FAQ_QUESTION)))[0] == 200
    first, second = await bot.texts_to(chat, 2)
    assert first.strip() == apology.strip()
    assert FAQ_ANSWER in second
    async with bot.db.connect() as connection:
        row = (
            await connection.execute(
                select(
                    InboundUpdate.processed_at,
                    InboundUpdate.attempts,
                    InboundUpdate.last_error,
                    InboundUpdate.payload,
                ).where(InboundUpdate.update_id == 7_201)
            )
        ).one()
    assert row.processed_at is not None
    assert row.attempts == POISON_ATTEMPTS
    assert row.last_error.startswith(f"{REJECTED}: TypeError")
    assert row.payload == {}  # the user's text is not kept in the raw update
    assert len(bot.stub.sent_texts(chat)) == 2  # one apology, not one per attempt


async def test_a_poison_update_outside_a_private_chat_is_rejected_silently(bot: Bot) -> None:
    chat = -100_515_301
    update = tg.group_message(7_301, chat, FAQ_QUESTION)
    update["message"]["date"] = "yesterday"
    assert (await bot.update(update))[0] == 200

    async def rejected() -> bool:
        error = await bot.scalar(
            select(InboundUpdate.last_error).where(InboundUpdate.update_id == 7_301)
        )
        return isinstance(error, str) and error.startswith(REJECTED)

    await until(rejected, 15, "the group update to be rejected")
    assert bot.stub.sent_texts(chat) == []


# ---------------------------------------------------------------------------------------------
# Item 12: the outbox lease, renewed while the send is in flight


class Recording:
    """A second relay's Telegram sender: it must never get the row the first is sending."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, chat_id: str, payload: dict[str, Any]) -> None:
        self.sent.append(chat_id)


async def test_a_send_slower_than_the_lease_keeps_its_row_from_a_second_relay(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short lease, so a send can outlast it within a test; the renewal keeps its ratio.
    lease = timedelta(seconds=1.2)
    monkeypatch.setattr("bot.engine.LEASE", lease)
    monkeypatch.setattr("bot.turn_writer.LEASE", lease)
    monkeypatch.setattr(outbox, "LEASE", lease)
    monkeypatch.setattr(outbox, "RENEW_EVERY", lease / 3)
    chat = 515_401
    bot.stub.delay("sendMessage", 3.5)  # three leases
    other = Recording()
    second = OutboxRelay(session_factory(bot.db), {"telegram": other})
    assert (await bot.update(tg.text_message(7_401, chat, FAQ_QUESTION)))[0] == 200

    async def in_flight() -> bool:
        return bool(await bot.scalar(select(func.count()).where(OutboxItem.status == "sending")))

    await until(in_flight, 10, "the reply to be in flight")
    # Another process's relay, passing again and again while the first sends.
    while not bot.stub.sent_texts(chat):
        await second.flush()
        await asyncio.sleep(0.1)
    await second.close()
    (reply,) = await bot.texts_to(chat, 1)
    assert FAQ_ANSWER in reply
    assert other.sent == [], "a second relay sent the reply the first was still sending"

    async def marked() -> bool:
        status = await bot.scalar(select(OutboxItem.status).where(OutboxItem.chat_id == str(chat)))
        return bool(status == "sent")

    await until(marked, 10, "the reply to be marked sent")


# ---------------------------------------------------------------------------------------------
# Item 15: /readyz while the platform API is down


async def test_readyz_says_degraded_while_the_platform_is_down_and_faq_still_works(
    db: AsyncEngine, world: None
) -> None:
    platform = web.AppRunner(
        create_platform_app(SqlPlatform(session_factory(db), shares_bot_database=False), None)
    )
    await platform.setup()
    site = web.TCPSite(platform, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = db.url.render_as_string(hide_password=False)
    stopped = False
    try:
        async with BotApiStub() as stub:
            settings = stub_settings(
                url, stub, SECRET, NOTIFY_SECRET, platform_api_url=f"http://127.0.0.1:{port}"
            )
            async with TestClient(TestServer(bot_app(settings), host="127.0.0.1")) as client:
                response = await client.get("/readyz")
                assert response.status == 200
                assert await response.json() == {"status": "ready", "platform": "ok"}

                await platform.cleanup()  # the platform API stops listening
                stopped = True
                response = await client.get("/readyz")
                assert response.status == 200
                assert await response.json() == {"status": "degraded", "platform": "unavailable"}
                # Degraded, not down: questions are still answered.
                session = await client.post("/api/chat/sessions")
                token = (await session.json())["token"]
                answer = await client.post(
                    "/api/chat/messages",
                    json={"text": FAQ_QUESTION},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status == 200
                replies = (await answer.json())["replies"]
                assert FAQ_ANSWER in " ".join(reply["text"] for reply in replies)
                metrics = await (await client.get("/metrics")).text()
                assert 'where="platform_unready"' in metrics
    finally:
        if not stopped:
            await platform.cleanup()


async def test_readyz_with_the_embedded_platform(bot: Bot) -> None:
    response = await bot.client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "platform": "embedded"}
