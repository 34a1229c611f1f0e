"""Debian's Chromium driven by playwright, and the web chat page as a user sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import (
    Browser,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

CHROMIUM = Path("/usr/bin/chromium")


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


PHONE: ViewportSize = {"width": 390, "height": 844}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless /usr/bin/chromium (never a downloaded browser), closed on the way out."""
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class ChatPage:
    """The page as a user sees it: type, press, read the bubbles."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console: {message.text}")
                if message.type == "error"
                else None
            ),
        )

    @property
    def input(self) -> Locator:
        return self.page.locator("#input")

    @property
    def messages(self) -> Locator:
        return self.page.locator("#messages > li")

    def bot(self, text: str) -> Locator:
        return self.page.locator("#messages > li.msg--bot", has_text=text)

    def user(self, text: str) -> Locator:
        return self.page.locator("#messages > li.msg--user", has_text=text)

    async def open(self) -> None:
        await self.page.goto(self.base)
        await expect(self.input).to_be_enabled()

    async def say(self, text: str) -> None:
        await self.input.fill(text)
        await self.input.press("Enter")
        await expect(self.user(text).last).to_be_visible()

    async def press(self, label: str) -> None:
        await self.page.get_by_role("button", name=label).last.click()

    async def settled(self) -> None:
        """No reply is awaited any more."""
        await expect(self.page.locator("#typing")).to_be_hidden()
