"""Verified resolution in a real headless Chromium: a merchant makes two payment links in the
web chat, a payer pays one, the server's own checker job verifies it, the other's window
passes unpaid, and the supervisor reads 50 % verified beside 100 % contained and opens the
unverified conversation from the list. Screenshots under var/screens/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select, update

from bot.outcomes.checker import check_pass
from bot.platform.tables import PaymentLinkRow
from bot.settings import PROJECT_ROOT
from bot.storage.models import OutcomeCheck
from bot.types import OutcomeStatus
from tests.support.browser import ChatPage
from tests.support.console import BIND_CODE, Server, serve_console
from tests.support.console_browser import Console, OpenPage
from webhook_server import RUNTIME

SHOTS = PROJECT_ROOT / "var" / "screens"


@pytest.fixture
async def server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    # The checker's pass every second, so that the server's own job settles the paid link.
    async with serve_console(tmp_path, tmp_path_factory, outcome_check_seconds=1.0) as running:
        yield running


async def outcome_checks(server: Server) -> list[OutcomeCheck]:
    async with server.sessions() as session:
        return list((await session.scalars(select(OutcomeCheck).order_by(OutcomeCheck.id))).all())


async def test_a_paid_link_is_verified_and_an_unpaid_one_is_listed_for_review(
    server: Server,
    open_page: OpenPage,
    browser: Browser,
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await server.add_agent("老王", supervisor=True)
    merchant = ChatPage(await open_page(phone=True), server.base)
    await merchant.open()
    await merchant.say(f"/bind {BIND_CODE}")
    await expect(merchant.bot("小王水果店")).to_be_visible()
    for amount in ("50", "60"):
        await merchant.say(f"收款链接 {amount}元")
        await expect(merchant.bot(f"¥{amount}.00").last).to_be_visible()
        await merchant.say("是")
        await expect(merchant.bot("pay.btp.example/l/PL")).to_have_count(1 if amount == "50" else 2)
    await merchant.page.screenshot(path=str(SHOTS / "outcomes-webchat-links.png"), full_page=True)
    paid, unpaid = await outcome_checks(server)
    assert paid.status is OutcomeStatus.PENDING and unpaid.status is OutcomeStatus.PENDING

    # A payer pays the first link; the server's checker job sees it within a pass or two.
    async with server.sessions() as session, session.begin():
        await session.execute(
            update(PaymentLinkRow)
            .where(PaymentLinkRow.id == paid.subject)
            .values(paid_at=datetime.now(UTC))
        )
    for _ in range(100):
        if (await outcome_checks(server))[0].status is OutcomeStatus.VERIFIED:
            break
        await asyncio.sleep(0.1)
    paid, unpaid = await outcome_checks(server)
    assert paid.status is OutcomeStatus.VERIFIED and unpaid.status is OutcomeStatus.PENDING

    # The second link's 24 hours pass without a payment: a pass at its deadline.
    bot = server.app[RUNTIME].bot
    await check_pass(bot.db, bot.gateway, now=unpaid.due_at)
    assert (await outcome_checks(server))[1].status is OutcomeStatus.NOT_VERIFIED

    boss = Console(await open_page(), server.base)
    await boss.login("老王")
    await boss.page.goto(f"{server.base}/agent/supervisor")
    row = boss.page.locator('#outcomes tr[data-topic="payment_link"]')
    await expect(row).to_contain_text("收款链接")
    await expect(row.locator('[data-rate="verified"]')).to_have_count(3)
    for cell in await row.locator('[data-rate="verified"]').all():
        await expect(cell).to_contain_text("50%")
    for cell in await row.locator('[data-rate="contained"]').all():
        await expect(cell).to_have_text("100%")
    listed = boss.page.locator("#unverified > li")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text(unpaid.subject)
    await boss.page.screenshot(path=str(SHOTS / "outcomes-supervisor-zh.png"), full_page=True)
    await boss.page.goto(f"{server.base}/agent/supervisor?lang=en")
    await expect(boss.page.locator("#outcomes-title")).to_have_text("Verified resolution")
    await boss.page.screenshot(path=str(SHOTS / "outcomes-supervisor-en.png"), full_page=True)

    await boss.page.locator("#unverified a").click()
    await expect(boss.page).to_have_url(f"{server.base}/agent/chats/{unpaid.conversation_id}")
    await expect(boss.page.locator("#transcript")).to_contain_text("收款链接 60元")
    await boss.page.screenshot(path=str(SHOTS / "outcomes-unverified-chat.png"), full_page=True)
