"""The agent console in a real headless Chromium, against the real app on 127.0.0.1.

Playwright drives /usr/bin/chromium (never a downloaded browser), as in the web chat tests. One
browser context is the agent's console, another the user's web chat on a phone, a third the
supervisor; Telegram is the Bot API stand-in, fed through the real webhook. Everything the agent
sees arrives live, over the console's WebSocket, with no reload.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from playwright.async_api import (
    Dialog,
    expect,
)

from bot.settings import PROJECT_ROOT
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from tests.support import console_browser
from tests.support.browser import CHROMIUM, ChatPage
from tests.support.console import BIND_CODE, FAILED_ORDER, Server
from tests.support.console_browser import Console, OpenPage

# The console's browser fixtures (tests/support/console_browser.py), used by name.
server, stub = console_browser.server, console_browser.stub

SCREENSHOT = PROJECT_ROOT / "var" / "console.png"
RATING_SCREENSHOT = PROJECT_ROOT / "var" / "webchat-rating.png"
WEBHOOK_SECRET = "console-webhook-secret-0123456789"
TELEGRAM_CHAT = 7_700_001
ATTACKS = ['<img src=x onerror="window.__xss=1">', "<script>window.__xss=2</script>"]

assert CHROMIUM.exists(), "the browser tests need Debian's chromium (make browser)"


async def telegram_says(base: str, update_id: int, text: str) -> None:
    """A Telegram user writes: the update arrives on the webhook as Telegram sends it."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/telegram/webhook",
            json=tg.text_message(update_id, TELEGRAM_CHAT, text),
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        ) as response,
    ):
        assert response.status == 200


async def telegram_received(stub: BotApiStub, part: str, timeout: float = 10.0) -> str:
    """The first text sent to the Telegram user that contains `part`, waiting for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for text in stub.sent_texts(TELEGRAM_CHAT):
            if part in text:
                return text
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{part!r} not sent; sent: {stub.sent_texts(TELEGRAM_CHAT)}")


async def test_an_agent_takes_chats_from_the_web_and_telegram_through_to_a_rating(
    server: Server, stub: BotApiStub, open_page: OpenPage
) -> None:
    # 小张 takes chats by hand (capacity 0: nothing is auto-assigned), so every request waits in
    # the queue until claimed.
    await server.add_agent("小张", capacity=0)
    await server.add_agent("老王", supervisor=True)
    agent = Console(await open_page(), server.base)
    await agent.login("小张")
    await agent.page.get_by_role("button", name="上线接待").click()
    await expect(agent.page.locator("#presence-state")).to_have_text("在线")
    await agent.page.evaluate("window.__sameDocument = true")

    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say(f"/bind {BIND_CODE}")
    await expect(user.bot("小王水果店")).to_be_visible()
    await user.say(f"订单{FAILED_ORDER}为什么失败")
    await expect(user.bot("余额不足")).to_be_visible()
    await user.say("转人工")
    await expect(user.bot("排在第 1 位")).to_be_visible()

    # The request shows up in the queue by itself.
    entry = agent.waiting("转人工")
    await expect(entry).to_be_visible()
    await expect(entry.locator(".badge--channel")).to_have_text("网页")
    await expect(entry.locator(".entry__reason")).to_have_text("用户要求人工")
    assert await agent.page.evaluate("window.__sameDocument") is True
    web_chat = await agent.claim("转人工")
    await expect(
        user.page.locator("#messages > li.msg--system", has_text="客服 小张 已接入")
    ).to_be_visible()

    # The context card: the bound merchant and the live state of the order talked about.
    context = agent.page.locator("#context")
    await expect(context.locator(".context__merchant")).to_have_text("小王水果店")
    await expect(context.locator(".badge--m-active")).to_have_text("正常")
    order = context.locator(f'.order[data-order="{FAILED_ORDER}"]')
    await expect(order.locator(".order__status")).to_have_text("支付失败")
    await expect(order).to_contain_text("失败原因: 顾客的付款账户余额不足")
    await expect(context.locator("#context-summary")).to_contain_text(
        f"{FAILED_ORDER} 支付失败：顾客的付款账户余额不足"
    )
    await expect(context.locator(".facts")).not_to_contain_text("failure_code")
    await expect(agent.line("user", f"订单{FAILED_ORDER}为什么失败")).to_be_visible()
    await expect(agent.line("bot", "余额不足")).to_be_visible()
    await expect(agent.line("system", "客服 小张 已接入")).to_be_visible()

    # A canned reply, then a typed one: both reach the web chat live.
    await agent.page.locator('[data-canned-id="greeting"]').click()
    greeting = await agent.page.locator("#reply-text").input_value()
    assert greeting.startswith("您好，我是B特派客服")
    await agent.page.locator("#reply-send").click()
    await expect(user.page.locator("#messages > li.msg--agent", has_text=greeting)).to_be_visible()
    answer = "订单 BT2026112600000001 是顾客余额不足，钱没有扣，请让顾客换张卡再付一次。"
    await agent.reply(answer)
    await expect(user.page.locator("#messages > li.msg--agent", has_text=answer)).to_be_visible()

    # A Telegram user asks for a person too; the same console answers them on Telegram.
    await agent.page.get_by_role("link", name="← 返回队列").click()
    await expect(agent.page.locator("#list-mine > li.entry")).to_have_count(1)
    await agent.page.evaluate("window.__sameDocument = true")
    await telegram_says(server.base, 1, "转人工")
    await telegram_received(stub, "排在第 1 位")
    telegram_entry = agent.waiting("转人工")
    await expect(telegram_entry.locator(".badge--channel")).to_have_text("Telegram")
    assert await agent.page.evaluate("window.__sameDocument") is True
    await agent.claim("转人工")
    await telegram_received(stub, "客服 小张 已接入")
    await agent.reply("Telegram 这边也收到了，我是小张，请问有什么可以帮您？")
    await telegram_received(stub, "我是小张，请问有什么可以帮您")
    assert stub.calls_of("sendMessage")

    # Back to the web chat: an internal note, seen only in the console.
    await agent.page.goto(f"{server.base}/agent/chats/{web_chat}")
    note = "已核对：顾客余额不足，非平台问题"
    await agent.page.locator("#note-form textarea").fill(note)
    await agent.page.get_by_role("button", name="添加备注").click()
    await expect(agent.page.locator("#notes .note__text")).to_have_text([note])
    await expect(agent.page.locator("#notes .note__who")).to_have_text(["小张"])
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await agent.page.evaluate("window.scrollTo(0, 0)")
    await agent.page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Resolving asks first: dismissed, the chat stays open; confirmed, it ends.
    asked: list[str] = []

    async def respond(dialog: Dialog, accept: bool) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    agent.page.once("dialog", lambda dialog: respond(dialog, False))
    await agent.page.locator("#resolve").click()
    for _ in range(200):
        if asked:
            break
        await asyncio.sleep(0.05)
    await expect(agent.page.locator("#handoff-status")).to_have_text("处理中")
    agent.page.once("dialog", lambda dialog: respond(dialog, True))
    await agent.page.locator("#resolve").click()
    await expect(agent.page.locator("#handoff-status")).to_have_text("已结束")
    assert asked == ["确定结束这个对话吗？顾客将收到评价邀请，对话回到机器人。"] * 2
    await expect(agent.page.locator("#reply-form")).to_be_hidden()
    stars = user.page.get_by_role("button", name="5 分", exact=True)
    await expect(stars).to_be_visible()
    for n in range(1, 5):  # words on every rating button: no emoji font needed to read them
        await expect(user.page.get_by_role("button", name=f"{n} 分", exact=True)).to_be_visible()
    await user.page.screenshot(path=str(RATING_SCREENSHOT), full_page=True)
    await stars.click()
    await expect(user.bot("谢谢您的评价")).to_be_visible()
    assert note not in await user.page.locator("#messages").inner_text()

    boss = Console(await open_page(), server.base)
    await boss.login("老王")
    await boss.page.get_by_role("link", name="主管看板").click()
    await expect(boss.page).to_have_url(f"{server.base}/agent/supervisor")
    await expect(boss.page.locator("#satisfaction")).to_have_text("5.0")
    await expect(boss.page.locator('#ratings g[data-label="5星"]')).to_have_attribute(
        "data-count", "1"
    )
    await expect(boss.page.locator("#agents")).to_contain_text("小张")


async def test_markup_typed_by_a_user_stays_text_in_the_console(
    server: Server, open_page: OpenPage
) -> None:
    await server.add_agent("小张", capacity=0, online=True)
    agent = Console(await open_page(), server.base)
    await agent.login("小张")
    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say("转人工")
    preview = agent.page.locator("#list-waiting > li.entry .entry__preview")
    await expect(preview).to_have_text(["转人工"])
    for attack in ATTACKS:  # each arrives live as the newest line of the waiting chat
        await user.say(attack)
        await expect(preview).to_have_text([attack])
    for _ in range(2):  # as pushed live, and as the server renders it after a reload
        await expect(preview).to_have_text([ATTACKS[-1]])
        await expect(agent.page.locator("#list-waiting img, #list-waiting script")).to_have_count(0)
        assert await agent.page.evaluate("typeof window.__xss") == "undefined"
        await agent.page.reload()

    await agent.page.locator("#list-waiting > li.entry").get_by_role("link", name="查看").click()
    users = agent.page.locator("#transcript > li.line--user .line__text")
    await expect(users).to_have_text(["转人工", *ATTACKS])
    await expect(agent.page.locator("#transcript img, #transcript script")).to_have_count(0)
    await agent.claim_here()
    await user.say("<b>还在吗</b>")  # arrives live in the open conversation
    await expect(users).to_have_text(["转人工", *ATTACKS, "<b>还在吗</b>"])
    await expect(agent.page.locator("#transcript b")).to_have_count(0)
    assert await agent.page.evaluate("typeof window.__xss") == "undefined"
    assert await user.page.evaluate("typeof window.__xss") == "undefined"


async def test_the_supervisor_page_reads_on_a_phone(server: Server, open_page: OpenPage) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("老王", supervisor=True)
    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say("转人工")
    await expect(user.bot("排在第 1 位")).to_be_visible()

    boss = Console(await open_page(phone=True), server.base)
    await boss.login("老王")
    for language, reason in (("zh", "用户要求人工"), ("en", "Asked for a person")):
        await boss.page.goto(f"{server.base}/agent/supervisor?lang={language}")
        await expect(boss.page.locator(f'#reasons g[data-label="{reason}"]')).to_be_visible()
        # Every chart text is drawn at 11 px or more, and a bar's label ends before its bar.
        sizes = await boss.page.evaluate(
            """() => Array.from(document.querySelectorAll('svg.chart text')).map((node) =>
                node.getScreenCTM().a * parseFloat(getComputedStyle(node).fontSize))"""
        )
        assert sizes and min(sizes) >= 11, sizes
        ends = await boss.page.evaluate(
            """() => Array.from(document.querySelectorAll('.chart__label')).map((node) => {
                const box = node.getBBox(); return box.x + box.width; })"""
        )
        assert max(ends) < 170, ends
        page_width = await boss.page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390
        # The daily chart scrolls sideways on a phone and opens on the latest day.
        latest = boss.page.locator("#daily g.chart__day").last
        await expect(latest).to_be_in_viewport()
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await boss.page.screenshot(
            path=str(SCREENSHOT.with_name(f"console-supervisor-phone-{language}.png")),
            full_page=True,
        )


@pytest.mark.parametrize("width", ["desktop", "phone"])
async def test_every_page_is_shown_at_desktop_and_phone_width(
    server: Server, open_page: OpenPage, width: str
) -> None:
    """Screenshots of the web chat, the agent's queue and chat, and the supervisor page, at
    1440 and 390 px wide (kept under var/screens/ as CI artifacts); on a phone nothing spills
    past the screen's edge."""
    phone = width == "phone"
    shots = PROJECT_ROOT / "var" / "screens"
    shots.mkdir(parents=True, exist_ok=True)
    await server.add_agent("picker", capacity=0, online=True)  # online: the chat queues
    await server.add_agent("老王", supervisor=True)
    user = ChatPage(await open_page(phone=phone), server.base)
    await user.open()
    await user.say("帮我生成一个收款链接")
    await user.say("转人工")
    await expect(user.bot("排在第 1 位")).to_be_visible()
    await user.page.screenshot(path=str(shots / f"webchat-{width}.png"), full_page=True)

    boss = Console(await open_page(phone=phone), server.base)
    await boss.login("老王")
    pages = {
        "console-queue": "/agent",
        "console-supervisor": "/agent/supervisor",
    }
    for name, path in pages.items():
        await boss.page.goto(f"{server.base}{path}")
        await boss.page.wait_for_load_state("networkidle")
        if phone:
            page_width = await boss.page.evaluate("document.documentElement.scrollWidth")
            assert page_width <= 390, (name, page_width)
        await boss.page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    await boss.page.goto(f"{server.base}/agent")
    await boss.claim("转人工")  # the conversation page, with its context card
    if phone:
        page_width = await boss.page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, ("console-chat", page_width)
    await boss.page.screenshot(path=str(shots / f"console-chat-{width}.png"), full_page=True)
