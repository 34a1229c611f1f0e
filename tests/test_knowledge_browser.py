"""The knowledge loop in a real headless Chromium: a question the bot cannot answer shows up
as a cluster, the supervisor adds it as a phrasing of an entry, previews the draft, publishes
it, and the next web chat message with that wording is answered by the entry, without a
restart. Screenshots in var/screens/."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from bot.settings import PROJECT_ROOT
from bot.types import Language
from tests.support import knowledge
from tests.support.browser import ChatPage
from tests.support.console import Server
from tests.support.console_browser import Console, OpenPage
from tests.support.knowledge import NEW_QUESTION, TARGET, in_use
from webhook_server import RUNTIME

SCREENS = PROJECT_ROOT / "var" / "screens"
kb_server = knowledge.kb_server


@pytest.fixture
async def server(kb_server: Server) -> Server:
    """The console the pages open (`open_page` asks for `server`)."""
    return kb_server


async def _unanswered_then_supervisor(
    server: Server, open_page: OpenPage, question: str, answer: str
) -> tuple[ChatPage, Console]:
    """A user's question the bot cannot answer yet (`answer` is not said), then a supervisor
    logged in to the console."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    await server.add_agent("老王", supervisor=True)
    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say(question)
    await user.settled()
    await expect(user.bot(answer)).to_have_count(0)
    boss = Console(await open_page(), server.base)
    await boss.login("老王")
    return user, boss


async def test_a_supervisor_adds_a_phrasing_from_a_cluster_and_the_next_chat_is_answered(
    server: Server, open_page: OpenPage
) -> None:
    live = server.app[RUNTIME].bot.knowledge
    answer = live.knowledge.entries[TARGET].answer[Language.ZH].splitlines()[0]
    user, boss = await _unanswered_then_supervisor(server, open_page, NEW_QUESTION, answer)
    await boss.page.locator("#nav-knowledge").click()
    await expect(boss.page).to_have_url(f"{server.base}/agent/knowledge")
    cluster = boss.page.locator(".kb-cluster", has_text=NEW_QUESTION).first
    await expect(cluster).to_be_visible()
    await cluster.locator("select[name=label]").select_option(TARGET.value)
    await boss.page.screenshot(path=str(SCREENS / "knowledge-cluster.png"), full_page=True)
    await cluster.get_by_role("button", name="加为这个条目的问法").click()

    await expect(boss.page.locator("#preview")).to_be_visible()
    await expect(boss.page.locator("#preview-sets tr[data-set=nlu_dev]")).to_be_visible()
    await expect(boss.page.locator("#test-drop")).to_have_count(0)
    await boss.page.screenshot(path=str(SCREENS / "knowledge-preview.png"), full_page=True)
    draft = int(boss.page.url.rsplit("/", 1)[1])
    await boss.page.locator("#publish-button").click()
    await expect(boss.page).to_have_url(f"{server.base}/agent/knowledge")
    await expect(boss.page.locator(f"tr[data-version='{draft}']")).to_have_attribute(
        "data-published", "true"
    )
    await boss.page.locator("#versions").screenshot(path=str(SCREENS / "knowledge-versions.png"))

    await in_use(live, draft)
    await user.say(NEW_QUESTION)
    await expect(user.bot(answer).last).to_be_visible()
    await user.page.screenshot(path=str(SCREENS / "knowledge-answered.png"), full_page=True)


async def test_a_supervisor_writes_a_new_entry_for_a_cluster_and_the_next_chat_is_answered(
    server: Server, open_page: OpenPage
) -> None:
    live = server.app[RUNTIME].bot.knowledge
    question, answer = "鲸鱼积分怎么兑换", "满 100 分可以兑换一次。"
    user, boss = await _unanswered_then_supervisor(server, open_page, question, answer)
    await boss.page.goto(f"{server.base}/agent/knowledge")
    cluster = boss.page.locator(".kb-cluster", has_text=question).first
    await cluster.locator(".kb-new-entry summary").click()
    form = cluster.locator(".kb-new-entry__form")
    await form.locator("select[name=topic]").select_option("tips")
    await form.locator("input[name=name]").fill("whale_points")
    await form.locator("input[name=title_zh]").fill("鲸鱼积分怎么用")
    await form.locator("input[name=title_en]").fill("Using whale points")
    await form.locator("textarea[name=answer_zh]").fill(f"鲸鱼积分在“我的-积分”里查看。\n{answer}")
    await form.locator("textarea[name=answer_en]").fill("Every 100 points can be redeemed once.")
    texts = form.locator("textarea[name=texts]")
    await texts.fill(await texts.input_value() + "\nhow do i redeem whale points")
    await boss.page.screenshot(path=str(SCREENS / "knowledge-new-entry.png"), full_page=True)
    await form.get_by_role("button", name="生成条目草稿").click()

    await expect(boss.page.locator("#preview")).to_be_visible()
    draft = int(boss.page.url.rsplit("/", 1)[1])
    await boss.page.locator("#publish-button").click()
    await expect(boss.page).to_have_url(f"{server.base}/agent/knowledge")
    await in_use(live, draft)

    await user.say("鲸鱼积分咋兑换")
    await expect(user.bot(answer)).to_be_visible()
    await user.page.screenshot(path=str(SCREENS / "knowledge-new-entry-answered.png"))
