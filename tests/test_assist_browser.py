"""Agent assist in a real headless Chromium: the agent opens a chat, the user's question
brings two suggested answers (and the incident notice while one is open) live over the
console's socket; the agent clicks one, edits it and sends it, and the user receives the
edited words. A new question changes the suggestions. Screenshots in var/screens/."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import expect

from bot.incidents import store
from bot.settings import PROJECT_ROOT
from bot.types import Label, Language
from tests.support import console_browser
from tests.support.browser import ChatPage
from tests.support.console import Server
from tests.support.console_browser import Console, OpenPage
from webhook_server import RUNTIME

# The console's browser fixtures (tests/support/console_browser.py), used by name.
server, stub = console_browser.server, console_browser.stub

SCREENS = PROJECT_ROOT / "var" / "screens"
NOTICE_ZH = "扫码支付通道维护中，预计 30 分钟恢复。"


async def test_the_agent_sends_an_edited_suggestion_and_the_user_receives_it(
    server: Server,
    open_page: OpenPage,
) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    knowledge = server.app[RUNTIME].bot.engine.knowledge
    async with server.sessions() as session, session.begin():
        await store.open_by_hand(
            session,
            by="supervisor",
            message_zh=NOTICE_ZH,
            message_en="The QR channel is under maintenance, back in 30 minutes.",
            now=datetime.now(UTC),
        )

    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say("转人工")
    agent = Console(await open_page(), server.base)
    await agent.login("小张")
    await agent.claim("转人工")

    # The user asks; the suggestions arrive over the socket, without a reload.
    await user.say("你们的手续费是怎么收的")
    assist = agent.page.locator("#assist")
    fees = assist.locator('[data-entry="fees.rates"]')
    await expect(fees).to_be_visible()
    await expect(assist.locator('[data-kind="faq"]')).to_have_count(2)
    await expect(assist.locator('[data-kind="incident"]')).to_have_count(1)
    await agent.page.screenshot(path=str(SCREENS / "assist-suggestions.png"), full_page=True)

    # One click makes it the draft; the agent edits it and sends it.
    await fees.click()
    draft = agent.page.locator("#reply-text")
    answer = knowledge.entries[Label("fees.rates")].answer[Language.ZH]
    await expect(draft).to_have_value(answer)
    await draft.press("End")
    await draft.press_sequentially("（小张补充：本月有优惠）")
    edited = answer + "（小张补充：本月有优惠）"
    await expect(draft).to_have_value(edited)
    await agent.page.screenshot(path=str(SCREENS / "assist-edited.png"), full_page=True)
    await agent.page.locator("#reply-send").click()
    await expect(agent.line("agent", "小张补充")).to_be_visible()
    await expect(user.messages.filter(has_text="小张补充：本月有优惠")).to_have_count(1)
    await expect(user.messages.filter(has_text="小张补充：本月有优惠")).to_contain_text(
        answer.splitlines()[0]
    )
    await user.page.screenshot(path=str(SCREENS / "assist-user-received.png"), full_page=True)

    # The incident notice is a draft as well, in the user's language.
    await assist.locator('[data-kind="incident"]').click()
    await expect(draft).to_have_value(f"⚠️ {NOTICE_ZH}")
    await draft.fill("")

    # A new question changes the suggestions.
    await user.say("怎么提现到银行卡")
    await expect(assist.locator('[data-entry="withdraw.how"]')).to_be_visible()
    await expect(fees).to_have_count(0)
    await agent.page.goto(agent.page.url + "?lang=en")
    await expect(agent.page.locator("#assist-title")).to_have_text("Suggested answers")
    await expect(assist.locator('[data-entry="withdraw.how"]')).to_be_visible()
    await agent.page.screenshot(path=str(SCREENS / "assist-console-en.png"), full_page=True)
