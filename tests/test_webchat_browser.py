"""The web chat page in a real headless Chromium, against the real app on 127.0.0.1.

Playwright drives /usr/bin/chromium (never a downloaded browser). The page is used the way a
merchant on a phone would: questions, suggestion buttons, binding, a payment link with its QR
code, a payment notice pushed over the WebSocket, and a reload that must lose nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    WebSocketRoute,
    expect,
)
from sqlalchemy import update

from bot.settings import PROJECT_ROOT
from bot.storage.db import create_engine, session_factory
from bot.storage.models import WebChatSession, utcnow
from tests.support.browser import CHROMIUM, PHONE, ChatPage
from tests.support.webchat import PENDING_ORDER, notify, payment_event, serve_webchat

SCREENSHOT = PROJECT_ROOT / "var" / "webchat.png"
LANGUAGE_SCREENSHOT = PROJECT_ROOT / "var" / "webchat-language.png"

# No skip: `make test` installs Debian's chromium; a missing browser is a failure, not a pass.
assert CHROMIUM.exists(), "the browser tests need Debian's chromium (make browser)"


@pytest.fixture
async def base(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with serve_webchat(tmp_path, tmp_path_factory) as url:
        yield url


@pytest.fixture
async def chat(base: str, browser: Browser) -> AsyncIterator[ChatPage]:
    """A phone-sized page; closed before the server stops (its WebSocket would hold it up)."""
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    context.set_default_timeout(10_000)
    try:
        yield ChatPage(await context.new_page(), base)
    finally:
        await context.close()


async def test_a_merchant_on_a_phone_asks_collects_and_is_told_of_the_payment(
    chat: ChatPage,
) -> None:
    await chat.open()
    await expect(chat.page).to_have_title("B特派 在线客服")

    await chat.say("提现多久到账")
    await expect(chat.bot("1-3个工作日")).to_be_visible()

    await chat.say("提现相关的那个")
    await expect(chat.bot("您是想问")).to_be_visible()
    await chat.press("怎么提现、多久到账")
    await expect(chat.user("怎么提现、多久到账")).to_be_visible()
    await expect(chat.bot("1-3个工作日")).to_have_count(2)

    await chat.say("/bind 482913")
    await expect(chat.bot("小王水果店")).to_be_visible()

    await chat.say("生成一个88元的收款链接")
    await expect(chat.bot("¥88.00")).to_be_visible()
    await chat.press("确认生成")
    qr = chat.page.locator("#messages > li.msg--bot img.msg__image")
    await expect(qr).to_be_visible()
    await expect(qr).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    assert await qr.evaluate("image => image.naturalWidth") > 0
    await chat.settled()

    await chat.page.evaluate("window.__sameDocument = true")
    async with aiohttp.ClientSession() as http:
        told = await notify(http, chat.base, payment_event("evt_browser_1"))
    assert told == {"result": "applied", "notified": 1}
    notice = chat.page.locator("#messages > li.msg--system", has_text="收到付款")
    await expect(notice).to_contain_text(PENDING_ORDER)
    assert await chat.page.evaluate("window.__sameDocument") is True  # pushed, not reloaded
    await expect(notice).to_have_count(1)

    before = await chat.messages.all_text_contents()
    assert len(before) == 13  # six things said by the merchant, six answers, one notice
    await chat.page.reload()
    await expect(chat.messages).to_have_text(before)
    await expect(qr).to_be_visible()
    await expect(chat.page.locator("#typing")).to_be_hidden()
    await expect(chat.page.locator("#status")).to_be_hidden()

    SCREENSHOT.parent.mkdir(exist_ok=True)
    await chat.page.screenshot(path=str(SCREENSHOT))
    assert chat.problems == []


async def test_markup_typed_by_the_user_stays_text(chat: ChatPage) -> None:
    attacks = ['<img src=x onerror="window.__xss=1">', "<script>window.__xss=2</script>"]
    await chat.open()
    for attack in attacks:
        await chat.say(attack)
        await chat.settled()
    for _ in range(2):  # as sent, and as rebuilt from the history after a reload
        users = chat.page.locator("#messages > li.msg--user .msg__text")
        await expect(users).to_have_text(attacks)
        await expect(chat.page.locator("#messages img, #messages script")).to_have_count(0)
        assert await chat.page.evaluate("typeof window.__xss") == "undefined"
        await chat.page.reload()
        await expect(chat.input).to_be_enabled()
    assert chat.problems == []


async def test_the_language_toggle_switches_the_page(chat: ChatPage) -> None:
    page = chat.page
    await chat.open()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(chat.input).to_have_attribute("placeholder", "输入您的问题…")
    await expect(page.locator("#send")).to_contain_text("发送")

    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("button", name="English")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page).to_have_title("B特派 Support")
    await expect(chat.input).to_have_attribute("placeholder", "Type your question…")
    await expect(page.locator("#send")).to_contain_text("Send")
    await expect(chat.bot("English")).to_be_visible()  # the bot switched too
    await chat.settled()
    # The toggle is a button, not something the user said: no "/lang en" bubble.
    await expect(page.locator("#messages .msg--user")).to_have_count(0)

    await page.reload()  # the conversation's language, from the history, wins over the default
    await expect(chat.input).to_have_attribute("placeholder", "Type your question…")
    await expect(page.locator(".brand__subtitle")).to_have_text("Support chat")
    await expect(chat.bot("English")).to_be_visible()
    await expect(page.locator("#messages .msg--user")).to_have_count(0)
    await expect(page.locator("#messages")).not_to_contain_text("/lang")
    LANGUAGE_SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(LANGUAGE_SCREENSHOT), full_page=True)

    await page.get_by_role("button", name="中文").click()
    await expect(chat.input).to_have_attribute("placeholder", "输入您的问题…")
    await expect(chat.bot("中文")).to_be_visible()
    await chat.settled()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert chat.problems == []


async def test_a_dropped_connection_and_a_lost_session_lose_nothing(chat: ChatPage) -> None:
    page = chat.page
    links: list[WebSocketRoute] = []
    refuse = False

    async def socket(route: WebSocketRoute) -> None:
        if refuse:
            await route.close(code=1011)
        else:
            route.connect_to_server()
            links.append(route)

    await page.route_web_socket(re.compile(r"/api/chat/ws"), socket)
    await chat.open()
    await chat.say("/bind 482913")
    await expect(chat.bot("小王水果店")).to_be_visible()
    await chat.settled()

    refuse = True  # the network drops; what is pushed meanwhile must come from the history
    await links[-1].close()
    await expect(page.locator("#status")).to_have_text("连接已断开，正在重新连接…")
    async with aiohttp.ClientSession() as http:
        told = await notify(http, chat.base, payment_event("evt_browser_2"))
    assert told == {"result": "applied", "notified": 1}
    refuse = False
    notice = page.locator("#messages > li.msg--system", has_text="收到付款")
    await expect(notice).to_have_count(1)
    await expect(page.locator("#status")).to_be_hidden()

    # The stored token stops working (a new deployment, a wiped database): start afresh.
    await page.evaluate(
        """localStorage.setItem("btp.webchat.session",
           JSON.stringify({session_id: "wc_gone", token: "not-a-valid-token"}))"""
    )
    await page.reload()
    await expect(page.locator("#messages > li")).to_contain_text(["会话已失效"])
    await chat.say("提现多久到账")
    await expect(chat.bot("1-3个工作日")).to_be_visible()
    # The browser logs the refused history request; nothing else may go wrong.
    assert [p for p in chat.problems if "status of 401" not in p] == []


async def test_an_expired_session_is_renewed_and_the_message_still_answered(
    chat: ChatPage, tmp_path: Path
) -> None:
    page = chat.page
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    await chat.open()
    await chat.say("提现多久到账")
    await expect(chat.bot("1-3个工作日")).to_be_visible()
    await chat.settled()
    before = await page.evaluate("JSON.parse(localStorage.getItem('btp.webchat.session'))")

    # A day and a bit without use: the token has expired on the server.
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'webchat.db'}")
    try:
        async with session_factory(db)() as session, session.begin():
            await session.execute(
                update(WebChatSession)
                .where(WebChatSession.id == before["session_id"])
                .values(last_seen_at=utcnow() - timedelta(hours=25))
            )
    finally:
        await db.dispose()

    await chat.say("手续费怎么收")
    await chat.settled()
    # The page says so, and the message goes to the new session, which answers it.
    await expect(chat.messages).to_have_count(3)
    await expect(chat.messages.nth(0)).to_contain_text("会话已失效，已为您开始新的对话。")
    await expect(chat.messages.nth(1)).to_contain_text("手续费怎么收")
    await expect(chat.messages.nth(2)).to_have_class(re.compile(r"msg--bot"))
    after = await page.evaluate("JSON.parse(localStorage.getItem('btp.webchat.session'))")
    assert after["session_id"] != before["session_id"]
    await expect(page.locator("#status")).to_be_hidden()
    # The token never travelled in a WebSocket's URL, old session or new.
    assert sockets and not [url for url in sockets if "token" in url]
    assert before["token"] not in str(sockets) and after["token"] not in str(sockets)
    assert [p for p in chat.problems if "status of 401" not in p] == []


async def test_an_address_out_of_new_sessions_is_told_to_wait(
    browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with serve_webchat(tmp_path, tmp_path_factory, webchat_sessions_per_address=1) as base:
        async with aiohttp.ClientSession() as http, http.post(f"{base}/api/chat/sessions") as r:
            assert r.status == 201  # the address's one session, taken by another visitor
        context = await browser.new_context(viewport=PHONE, locale="zh-CN")
        context.set_default_timeout(10_000)
        try:
            page = await context.new_page()
            await page.goto(base)
            status = page.locator("#status")
            await expect(status).to_have_text("您所在的网络新开的对话太多，请稍候，稍后会自动重试…")
            await expect(page.locator("#input")).to_be_disabled()
        finally:
            await context.close()
