"""Guessing attacks from outside, over real HTTP (issue 15): order proofs, bind codes, and
payment links of merchants that may not collect.

The whole app from `create_app` listens on 127.0.0.1 over the `db` tier (SQLite, and
PostgreSQL when TEST_DATABASE_URL is set) with the demo world loaded. An attacker here opens a
new web chat session for every guess, as the attack run did. Windows are passed by moving the
stored attempts back in time, not by waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.platform.gateway import MerchantNotActive
from bot.platform.http import HttpPlatform
from bot.platform.models import MerchantStatus
from bot.platform.server import create_platform_app
from bot.platform.sql import SqlPlatform
from bot.platform.tables import BindFailureRow, MerchantRow, PaymentLinkRow, PlatformSecretRow
from bot.settings import Settings
from bot.storage.db import session_factory
from bot.storage.models import RateEvent
from bot.types import Language
from tests.botapi import BotApiStub
from tests.support.common import bot_app, listening
from tests.support.console import ALL_DAY, agent_session, asks_for_a_person, with_console
from tests.support.console import Server as ConsoleServer
from tests.support.telegram import SECRET as TG_SECRET
from tests.support.telegram import Telegram
from tests.support.webchat import Visitor, text_of

PENDING_ORDER = "BT2026112600000013"  # M001, pending, ¥15.50, payer phone ends 2222
TWELVE_YUAN_ORDER = "BT2026112600000021"  # M002, paid, ¥12.00, payer phone ends 3333
UNKNOWN_ORDER = "BT2026112600009999"
M001_CODE, M002_CODE = "482913", "275160"
M003_CODE = "913527"  # 张姐服装, pending_review
TG_USER = 515151


@dataclass
class Server:
    base: str
    http: aiohttp.ClientSession
    db: AsyncEngine
    app: web.Application

    async def visitor(self) -> Visitor:
        return await Visitor(self.http, self.base).open()

    async def rate_events(self, key: str) -> int:
        async with session_factory(self.db)() as session:
            count = await session.scalar(
                select(func.count()).select_from(RateEvent).where(RateEvent.key == key)
            )
            return int(count or 0)

    async def age_rate_events(self, **delta: float) -> None:
        """Every counted attempt (the bot's and the platform's) happened `delta` earlier: a
        window passes without waiting."""
        async with session_factory(self.db)() as session, session.begin():
            for event in (await session.scalars(select(RateEvent))).all():
                event.at -= timedelta(**delta)
            for failure in (await session.scalars(select(BindFailureRow))).all():
                failure.at -= timedelta(**delta)


def _settings(db: AsyncEngine, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url.render_as_string(hide_password=False),
        "platform_webhook_secret": SecretStr("test-platform-webhook-secret"),
        "telegram_bot_token": None,
        "default_language": Language.ZH,
        "demo_world": None,
        "business_hours": ALL_DAY,
        "business_days": "0123456",
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running(db: AsyncEngine, **overrides: Any) -> AsyncIterator[Server]:
    """The app on a random port of 127.0.0.1, over `db` (the demo world loaded already)."""
    settings = _settings(db, **overrides)
    app = with_console(bot_app(settings), settings)
    async with listening(app) as base, aiohttp.ClientSession() as http:
        yield Server(base, http, db, app)


@pytest.fixture
async def server(db: AsyncEngine, world: None) -> AsyncIterator[Server]:
    async with running(db) as server:
        yield server


@asynccontextmanager
async def from_address(server: Server, address: str) -> AsyncIterator[Server]:
    """The same server, reached from another loopback address (another client, to limits)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield Server(server.base, http, server.db, server.app)


async def ask_about(server: Server, order_no: str, proof: str) -> str:
    """A new session asks about `order_no` and offers `proof`: one guess, one session."""
    visitor = await server.visitor()
    replies = await visitor.say(f"订单{order_no}付款了吗")
    assert "手机号的后4位" in text_of(replies), text_of(replies)
    return text_of(await visitor.say(proof))


def same_reply(text: str, order_no: str) -> str:
    return text.replace(order_no, "<order>")


# ---- 1. customer order proof -------------------------------------------------------------


async def test_wrong_proofs_from_new_sessions_lock_the_order_even_for_the_right_proof(
    server: Server,
) -> None:
    wrong = [await ask_about(server, PENDING_ORDER, f"{n:04d}") for n in range(5)]
    assert all("无法核实" in text for text in wrong)
    # The right proof, from a new session, now reads exactly as a wrong one.
    locked = await ask_about(server, PENDING_ORDER, "2222")
    assert locked == wrong[0]
    assert "待支付" not in locked
    # ... and exactly as an order that does not exist.
    unknown = await ask_about(server, UNKNOWN_ORDER, "2222")
    assert same_reply(unknown, UNKNOWN_ORDER) == same_reply(locked, PENDING_ORDER)
    # Every proof while locked was counted, so the order stays locked while guessing goes on.
    assert await server.rate_events(f"verify:order:{PENDING_ORDER}") == 6
    await server.age_rate_events(minutes=16)
    assert "待支付" in await ask_about(server, PENDING_ORDER, "2222")


async def test_an_order_that_does_not_exist_is_counted_per_its_number(server: Server) -> None:
    for n in range(3):
        text = await ask_about(server, UNKNOWN_ORDER, f"{n:04d}")
        assert "无法核实" in text
    assert await server.rate_events(f"verify:order:{UNKNOWN_ORDER}") == 3
    assert await server.rate_events("verify:client:webchat:127.0.0.1") == 3


async def test_one_client_address_is_stopped_across_sessions_and_orders(server: Server) -> None:
    # 20 wrong proofs from one address: 4 sessions, 5 each, on 20 different order numbers.
    for chat in range(4):
        visitor = await server.visitor()
        for n in range(5):
            order_no = f"BT20261126{chat:04d}{n:04d}"
            await visitor.say(f"订单{order_no}付款了吗")
            assert "无法核实" in text_of(await visitor.say("0000"))
    visitor = await server.visitor()
    replies = await visitor.say(f"订单{PENDING_ORDER}付款了吗")
    assert "验证失败次数过多" in text_of(replies)
    await server.age_rate_events(minutes=16)
    assert "待支付" in await ask_about(server, PENDING_ORDER, "2222")


async def test_one_client_address_gets_a_hundred_wrong_proofs_a_day(server: Server) -> None:
    # 100 wrong proofs over the last hours (under 20 in any 15 minutes) from 127.0.0.1.
    earlier = datetime.now(UTC) - timedelta(hours=2)
    async with session_factory(server.db)() as session, session.begin():
        session.add_all(
            RateEvent(key="verify:client:webchat:127.0.0.1", at=earlier - timedelta(minutes=n))
            for n in range(100)
        )
    replies = await (await server.visitor()).say(f"订单{PENDING_ORDER}付款了吗")
    assert "验证失败次数过多" in text_of(replies) and "24小时" in text_of(replies)
    async with from_address(server, "127.0.0.2") as other:
        assert "待支付" in await ask_about(other, PENDING_ORDER, "2222")


async def test_one_chat_is_stopped_after_five_wrong_proofs(server: Server) -> None:
    visitor = await server.visitor()
    for n in range(5):
        await visitor.say(f"订单BT202611260000{n:04d}付款了吗")
        await visitor.say("0000")
    replies = await visitor.say(f"订单{PENDING_ORDER}付款了吗")
    assert "验证失败次数过多" in text_of(replies)


async def test_four_digits_are_phone_digits_never_an_amount(server: Server) -> None:
    text = await ask_about(server, TWELVE_YUAN_ORDER, "0012")  # the order is ¥12.00
    assert "无法核实" in text and "已支付" not in text
    assert "已支付" in await ask_about(server, TWELVE_YUAN_ORDER, "12元")


@pytest.mark.parametrize("amount", ["15.50", "15.5元", "¥15.5", "金额是 ￥15.50"])
async def test_an_amount_written_as_one_proves_the_order(server: Server, amount: str) -> None:
    assert "待支付" in await ask_about(server, PENDING_ORDER, amount)


async def test_one_message_carries_one_proof(server: Server) -> None:
    visitor = await server.visitor()
    await visitor.say(f"订单{PENDING_ORDER}付款了吗")
    replies = await visitor.say("1234 ¥15.50")
    assert "只能提供一项" in text_of(replies) and "待支付" not in text_of(replies)
    assert await server.rate_events(f"verify:order:{PENDING_ORDER}") == 0
    # Still waiting for the proof: one proof alone now goes through.
    assert "待支付" in text_of(await visitor.say("¥15.50"))


# ---- 2. merchant bind codes --------------------------------------------------------------


async def bind_attempt(server: Server, code: str) -> list[dict[str, Any]]:
    """A new session tries one bind code."""
    return await (await server.visitor()).say(f"/bind {code}")


async def test_one_address_is_stopped_after_three_wrong_codes(db: AsyncEngine, world: None) -> None:
    async with running(db, bind_global_limit=100) as server:
        for code in ("000001", "000002", "000003"):
            assert "无效" in text_of(await bind_attempt(server, code))
        # The right code from this address now waits; from another address it binds.
        refused = await bind_attempt(server, M001_CODE)
        assert "这里输错的绑定码太多" in text_of(refused) and "60分钟" in text_of(refused)
        assert [b["action"] for r in refused for b in r["buttons"]] == ["human"]
        async with from_address(server, "127.0.0.2") as other:
            assert "小王水果店" in text_of(await bind_attempt(other, M001_CODE))
        await server.age_rate_events(minutes=61)
        assert "李记早餐" in text_of(await bind_attempt(server, M002_CODE))


async def test_wrong_codes_from_many_addresses_pause_binding_for_everyone(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.engine")
    # A botnet: every wrong code from a new address and a new session. The default global
    # limit is 3 wrong codes an hour.
    for n, code in enumerate(("000001", "000002", "000003")):
        async with from_address(server, f"127.0.0.{n + 2}") as bot:
            assert "无效" in text_of(await bind_attempt(bot, code))
    assert any("limit bind_global reached" in r.getMessage() for r in caplog.records)
    async with server.http.get(f"{server.base}/metrics") as response:
        assert 'btp_limit_tripped_total{limit="bind_global"} 1.0' in await response.text()
    # The real merchant's right code, from a fresh address: paused, not tried, not used up.
    async with from_address(server, "127.0.0.9") as merchant:
        paused = await bind_attempt(merchant, M001_CODE)
        assert "绑定功能暂时不可用" in text_of(paused) and "60分钟" in text_of(paused)
        assert [b["action"] for r in paused for b in r["buttons"]] == ["human"]
        await server.age_rate_events(minutes=61)
        assert "小王水果店" in text_of(await bind_attempt(merchant, M001_CODE))


async def test_concurrent_wrong_codes_get_no_more_tries_than_the_limit(server: Server) -> None:
    async def guess(n: int) -> str:
        async with from_address(server, f"127.0.1.{n + 1}") as bot:
            return text_of(await bind_attempt(bot, f"{100000 + n}"))

    answers = await asyncio.gather(*(guess(n) for n in range(12)))
    assert sum("无效" in a for a in answers) == 3, answers
    assert sum("暂时不可用" in a for a in answers) == 9, answers
    assert await server.rate_events("bind:global") == 3


async def test_bind_codes_are_stored_under_a_key_not_as_a_plain_digest(server: Server) -> None:
    async with session_factory(server.db)() as session:
        stored = await session.get(MerchantRow, "M001")
        secret = await session.get(PlatformSecretRow, "bind_code_key")
    assert stored is not None and secret is not None
    assert stored.bind_code_digest != hashlib.sha256(M001_CODE.encode()).hexdigest()
    keyed = hmac.new(bytes.fromhex(secret.value), M001_CODE.encode(), hashlib.sha256)
    assert stored.bind_code_digest == keyed.hexdigest()
    assert "小王水果店" in text_of(await bind_attempt(server, M001_CODE))


async def test_a_code_stored_before_keyed_digests_still_binds_once(server: Server) -> None:
    legacy = hashlib.sha256(M002_CODE.encode()).hexdigest()
    async with session_factory(server.db)() as session, session.begin():
        await session.execute(
            update(MerchantRow).where(MerchantRow.id == "M002").values(bind_code_digest=legacy)
        )
    assert "李记早餐" in text_of(await bind_attempt(server, M002_CODE))
    assert "无效或已被使用" in text_of(await bind_attempt(server, M002_CODE))


async def test_a_telegram_user_is_a_client_of_its_own(db: AsyncEngine, world: None) -> None:
    """Telegram has no client address: the Telegram user's id stands in for it."""
    async with BotApiStub() as stub:
        settings = _settings(
            db,
            telegram_bot_token=stub.token,
            telegram_api_url=stub.url,
            telegram_webhook_secret=TG_SECRET,
        )
        async with TestClient(TestServer(bot_app(settings))) as client:
            telegram = Telegram(client, stub)
            for code in ("000001", "000002", "000003"):
                assert "无效" in "\n".join(await telegram.say(f"/bind {code}", chat=TG_USER))
            refused = "\n".join(await telegram.say(f"/bind {M001_CODE}", chat=TG_USER))
            assert "这里输错的绑定码太多" in refused
            async with session_factory(db)() as session:
                keys = set(await session.scalars(select(RateEvent.key)))
            assert f"bind:client:telegram:{TG_USER}" in keys


async def test_the_platform_counts_wrong_codes_of_calls_in_flight_at_once(
    db: AsyncEngine, world: None
) -> None:
    """With PLATFORM_API_URL the bot calls outside its transaction, so codes in flight at
    once are not counted against each other by the bot: the platform counts them itself."""
    platform = SqlPlatform(
        session_factory(db), shares_bot_database=False, bind_limit=(3, timedelta(hours=1))
    )
    async with listening(create_platform_app(platform, "key")) as base:
        remote = {
            "platform_api_url": base,
            "platform_api_key": SecretStr("key"),
            "bind_global_limit": 100,  # the bot's own count would let all of them through
        }
        async with running(db, **remote) as server:

            async def guess(n: int) -> str:
                async with from_address(server, f"127.0.2.{n + 1}") as bot:
                    return text_of(await bind_attempt(bot, f"{200000 + n}"))

            answers = await asyncio.gather(*(guess(n) for n in range(12)))
            assert sum("无效" in a for a in answers) == 3, answers
            assert sum("绑定功能暂时不可用" in a for a in answers) == 9, answers
            async with from_address(server, "127.0.2.99") as merchant:
                assert "暂时不可用" in text_of(await bind_attempt(merchant, M001_CODE))
            async with session_factory(db)() as session:
                assert await session.scalar(select(func.count()).select_from(BindFailureRow)) == 3
                await session.execute(
                    update(BindFailureRow).values(at=datetime.now(UTC) - timedelta(minutes=61))
                )
                await session.commit()
            async with from_address(server, "127.0.2.99") as merchant:
                assert "小王水果店" in text_of(await bind_attempt(merchant, M001_CODE))


# ---- 13. payment links of merchants that may not collect ---------------------------------


async def payment_links(server: Server) -> int:
    async with session_factory(server.db)() as session:
        return int(await session.scalar(select(func.count()).select_from(PaymentLinkRow)) or 0)


async def set_status(server: Server, merchant_id: str, status: str) -> None:
    async with session_factory(server.db)() as session, session.begin():
        await session.execute(
            update(MerchantRow).where(MerchantRow.id == merchant_id).values(status=status)
        )


async def test_a_merchant_under_review_hears_why_it_cannot_make_a_link(server: Server) -> None:
    visitor = await server.visitor()
    assert "张姐服装" in text_of(await visitor.say(f"/bind {M003_CODE}"))
    replies = await visitor.say("生成一个88元的收款链接")
    assert "审核中" in text_of(replies) and "1-3个工作日" in text_of(replies)
    assert "https://" not in text_of(replies)
    assert [b["action"] for r in replies for b in r["buttons"]] == ["human"]
    await visitor.say("/lang en")
    replies = await visitor.say("create a payment link for 50 yuan")
    assert "under review" in text_of(replies)
    assert await payment_links(server) == 0


async def test_the_platform_refuses_a_suspended_merchant_at_confirmation(server: Server) -> None:
    visitor = await server.visitor()
    await visitor.say(f"/bind {M001_CODE}")
    replies = await visitor.say("生成一个88元的收款链接")
    confirm = next(b for r in replies for b in r["buttons"] if "确认" in b["label"])
    await set_status(server, "M001", "suspended")  # suspended while the merchant confirms
    replies = await visitor.press(confirm["action"])
    assert "暂停收款" in text_of(replies) and "https://" not in text_of(replies)
    assert await payment_links(server) == 0
    await set_status(server, "M001", "active")
    replies = await visitor.say("生成一个88元的收款链接")
    confirm = next(b for r in replies for b in r["buttons"] if "确认" in b["label"])
    assert "https://" in text_of(await visitor.press(confirm["action"]))
    assert await payment_links(server) == 1


async def test_the_platform_api_refuses_with_the_merchant_status(
    db: AsyncEngine, world: None
) -> None:
    platform = SqlPlatform(session_factory(db), shares_bot_database=False)
    async with listening(create_platform_app(platform, "key")) as base:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/v1/payment-links",
                json={"merchant_id": "M003", "amount": "88.00"},
                headers={"Authorization": "Bearer key"},
            ) as response:
                assert response.status == 422
                error = (await response.json())["error"]
            assert error["code"] == "merchant_not_active"
            assert error["merchant_status"] == "pending_review"
        async with HttpPlatform(base, api_key="key") as client:
            with pytest.raises(MerchantNotActive) as refused:
                await client.create_payment_link("M003", Decimal("88.00"), None)
            assert refused.value.status is MerchantStatus.PENDING_REVIEW
            link = await client.create_payment_link("M001", Decimal("88.00"), None)
            assert link.merchant_id == "M001"


async def test_the_console_tool_shows_the_refusal(server: Server) -> None:
    console = ConsoleServer(server.base, server.app)
    await console.add_agent("picker", capacity=0, online=True)
    await console.add_agent("小张")
    await asks_for_a_person(server.http, server.base, f"/bind {M003_CODE}", "转人工")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        waiting = (await agent.queue())["waiting"]
        assert len(waiting) == 1
        await agent.claim(waiting[0]["handoff_id"])
        tools = f"/agent/api/chats/{waiting[0]['conversation_id']}"
        status, body = await agent.post(f"{tools}/payment-link", amount="66.50")
        assert status == 409, body
        assert body["error"]["code"] == "merchant_not_active"
        assert "pending review" in body["error"]["message"]
        _, page = await agent.page(f"/agent/chats/{waiting[0]['conversation_id']}")
        assert "err_merchant_not_active" in page  # the console's own words for it
    assert await payment_links(server) == 0
