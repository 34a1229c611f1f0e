"""The bot on a remote platform: Engine -> HttpPlatform -> the contract server on 127.0.0.1.

The server runs over its own database (as B特派's real platform would), with a middleware that
can slow it down or make it fail, so the bot meets real timeouts and real 500s.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.engine import Engine
from bot.faq.knowledge import Knowledge
from bot.nlu.matcher import Matcher
from bot.platform.http import HttpPlatform
from bot.platform.outside import OutsideTransactions
from bot.platform.server import create_platform_app
from bot.platform.sql import SqlPlatform
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory
from tests.support.common import (
    Chat,
    Faults,
    demo_sqlite,
    listening,
)

KEY = "test-platform-key"


@pytest.fixture
async def platform(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, Faults]]:
    shutil.copyfile(await demo_sqlite(tmp_path_factory), tmp_path / "platform.db")
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}")
    faults = Faults()
    app = create_platform_app(SqlPlatform(session_factory(db), shares_bot_database=False), KEY)
    app.middlewares.insert(0, faults.middleware)
    try:
        async with listening(app) as base:
            yield base, faults
    finally:
        await db.dispose()


@pytest.fixture
async def remote_chat(
    platform: tuple[str, Faults],
    db: AsyncEngine,
    settings: Settings,
    knowledge: Knowledge,
    matcher: Matcher,
    renderer: Renderer,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Chat]:
    """A chat whose gateway gives up after 0.3 s (or `request.param` seconds, indirectly)."""
    url, _ = platform
    timeout = float(getattr(request, "param", 0.3))
    gateway = HttpPlatform(url, api_key=KEY, timeout=timeout, retries=1, backoff=0.01)
    engine = Engine(
        settings=settings,
        sessions=session_factory(db),
        knowledge=knowledge,
        matcher=matcher,
        renderer=renderer,
        gateway=OutsideTransactions(gateway),  # as bot.app.build_gateway builds it
    )
    try:
        yield Chat(engine)
    finally:
        await gateway.close()


async def test_bind_and_diagnose_over_http(remote_chat: Chat) -> None:
    await remote_chat.say("/bind 482913")
    assert "小王水果店" in remote_chat.text
    await remote_chat.say("订单BT2026112600000005支付失败了")
    assert "发卡银行拒绝" in remote_chat.text


async def test_timeout_says_the_service_is_unavailable_and_offers_a_person(
    remote_chat: Chat, platform: tuple[str, Faults]
) -> None:
    _, faults = platform
    await remote_chat.say("/bind 482913")
    faults.delay = 1.0
    await remote_chat.say("订单BT2026112600000005支付失败了")
    assert "暂时不可用" in remote_chat.text
    assert [b.action for b in remote_chat.buttons] == ["human"]
    faults.delay = 0.0
    await remote_chat.say("订单BT2026112600000005支付失败了")
    assert "发卡银行拒绝" in remote_chat.text


async def test_server_error_in_english_then_recovery(
    remote_chat: Chat, platform: tuple[str, Faults]
) -> None:
    _, faults = platform
    await remote_chat.say("/bind 482913")
    faults.status = 500
    await remote_chat.say("where is my withdrawal W0001")
    assert "unavailable" in remote_chat.text
    faults.status = None
    await remote_chat.say("where is my withdrawal W0001")
    assert "processing" in remote_chat.text


async def test_outage_in_the_middle_of_a_flow_ends_it_cleanly(
    remote_chat: Chat, platform: tuple[str, Faults]
) -> None:
    _, faults = platform
    await remote_chat.say("我付款了没有")
    await remote_chat.say("BT2026112600000012")
    faults.status = 503
    await remote_chat.say("1111")
    assert "暂时不可用" in remote_chat.text
    faults.status = None
    await remote_chat.say("1111")
    assert "已支付" not in remote_chat.text  # the flow ended; "1111" alone is not a question


# The platform answers only when the test lets it (a gate, not a delay racing the timeout);
# the gateway's timeout is far longer, so the wait ends with an answer.
@pytest.mark.parametrize("remote_chat", [60.0], indirect=True)
async def test_a_slow_platform_holds_up_only_the_chat_that_waits_for_it(
    remote_chat: Chat, platform: tuple[str, Faults]
) -> None:
    """The platform is called outside the message's transaction, so the database (on SQLite
    one connection) stays free for other chats while one waits for the platform."""
    _, faults = platform
    await remote_chat.say("/bind 482913")
    faults.gate = asyncio.Event()
    before = faults.requests
    slow = asyncio.create_task(remote_chat.say("订单BT2026112600000005支付失败了"))
    while faults.requests == before:  # until the first chat waits for the platform
        await asyncio.sleep(0.01)
    other = Chat(remote_chat.engine)
    await other.say("手续费怎么收")
    assert not slow.done()  # answered while the first chat still waits for the platform
    assert "暂时不可用" not in other.text
    faults.gate.set()
    await slow
    assert "发卡银行拒绝" in remote_chat.text
