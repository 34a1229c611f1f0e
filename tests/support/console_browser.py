"""The agent console driven in Chromium: pages for several people, and the console's moves."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from tests.botapi import BotApiStub
from tests.support.browser import PHONE
from tests.support.console import PASSWORD, Server, serve_console

WEBHOOK_SECRET = "console-webhook-secret-0123456789"

DESKTOP: ViewportSize = {"width": 1440, "height": 900}


@pytest.fixture
async def stub() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as api:
        yield api


@pytest.fixture
async def server(
    stub: BotApiStub, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async with serve_console(
        tmp_path,
        tmp_path_factory,
        telegram_bot_token=stub.token,
        telegram_api_url=stub.url,
        telegram_webhook_secret=WEBHOOK_SECRET,
        telegram_webhook_url="https://bot.example.com/telegram/webhook",
    ) as running:
        yield running


OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(server: Server, browser: Browser) -> AsyncIterator[OpenPage]:
    """New browser contexts, all closed before the server stops (their sockets would hold it)."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    async def new_page(phone: bool = False) -> Page:
        if phone:
            context = await browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
            )
        else:
            context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        return page

    try:
        yield new_page
    finally:
        for context in contexts:
            await context.close()
    assert problems == []


class Console:
    """The console as an agent uses it: log in, go online, claim, reply, note, resolve."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base

    async def login(self, name: str) -> None:
        await self.page.goto(f"{self.base}/agent")
        await expect(self.page).to_have_url(f"{self.base}/agent/login")
        await self.page.get_by_label("账号").fill(name)
        await self.page.get_by_label("密码").fill(PASSWORD)
        await self.page.get_by_role("button", name="登录").click()
        await expect(self.page).to_have_url(f"{self.base}/agent")

    def waiting(self, text: str) -> Locator:
        return self.page.locator("#list-waiting > li.entry", has_text=text)

    async def claim(self, text: str) -> int:
        await self.waiting(text).get_by_role("button", name="接入").click()
        await expect(self.page).to_have_url(re.compile(r"/agent/chats/\d+$"))
        await expect(self.page.locator("#handoff-status")).to_have_text("处理中")
        return int(self.page.url.rsplit("/", 1)[1])

    async def claim_here(self) -> None:
        """Claim from the open conversation instead of the queue."""
        await (
            self.page.locator("#chat-facts + .chat__actions")
            .get_by_role("button", name="接入")
            .click()
        )
        await expect(self.page.locator("#handoff-status")).to_have_text("处理中")

    def line(self, sender: str, text: str) -> Locator:
        return self.page.locator(f"#transcript > li.line--{sender}", has_text=text)

    async def reply(self, text: str) -> None:
        await self.page.locator("#reply-text").fill(text)
        await self.page.locator("#reply-send").click()
        await expect(self.line("agent", text)).to_be_visible()
        await expect(self.page.locator("#reply-text")).to_have_value("")
