"""An incident in a real headless Chromium: a burst of timeouts in a loaded world opens it
(the detector's run over the platform's recent attempts), a merchant hears of it first in the
web chat, the agent sees it on the context card, the supervisor sees its chart and affected
merchants and closes it, and the merchant is told it is over. Screenshots in var/screens/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from bot.incidents.job import IncidentDetector
from bot.settings import PROJECT_ROOT
from tests.support import console_browser
from tests.support.browser import ChatPage
from tests.support.console import BIND_CODE, FAILED_ORDER, Server
from tests.support.console_browser import Console, OpenPage
from tests.support.incidents import platform_burst
from webhook_server import RUNTIME

# The console's browser fixtures (tests/support/console_browser.py), used by name.
server, stub = console_browser.server, console_browser.stub

SCREENS = PROJECT_ROOT / "var" / "screens"


async def test_an_incident_opens_from_a_burst_is_shown_to_everyone_and_closes(
    server: Server,
    open_page: OpenPage,
) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await server.add_agent("老王", supervisor=True)
    bot = server.app[RUNTIME].bot
    now = datetime.now(UTC)
    await platform_burst(
        server.sessions, now - timedelta(minutes=2), merchants=12, failed=60, succeeded=60
    )
    settings = bot.settings.model_copy(
        update={"incident_min_failures": 20, "incident_min_merchants": 5}
    )
    result = await IncidentDetector(server.sessions, bot.gateway, settings).run_once()
    assert result.ran and result.opened == 2  # network_timeout, and the QR channel

    user = ChatPage(await open_page(phone=True), server.base)
    await user.open()
    await user.say(f"/bind {BIND_CODE}")
    await user.say(f"订单{FAILED_ORDER}为什么失败")
    diagnosis = user.bot("支付失败的原因").last
    await expect(diagnosis).to_contain_text("目前有已知故障")
    await expect(diagnosis).to_contain_text("不是您这边的问题")
    await user.page.screenshot(path=str(SCREENS / "incident-merchant.png"), full_page=True)
    await user.say("转人工")

    agent = Console(await open_page(), server.base)
    await agent.login("小张")
    await agent.claim("转人工")
    card = agent.page.locator("#context .context__incident").first
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("不是商户的问题")
    await agent.page.screenshot(path=str(SCREENS / "incident-agent.png"), full_page=True)

    boss = Console(await open_page(), server.base)
    await boss.login("老王")
    await boss.page.goto(f"{server.base}/agent/supervisor")
    incidents = boss.page.locator("#incidents article.incident")
    await expect(incidents).to_have_count(2)
    await expect(boss.page.locator("svg.chart--incident").first).to_be_visible()
    await expect(incidents.first.locator(".incident__merchants .badge")).to_have_count(12)
    await boss.page.locator("#incidents").screenshot(path=str(SCREENS / "incident-supervisor.png"))
    for _ in range(2):
        await incidents.first.get_by_role("button", name="结束故障").click()
        await expect(boss.page).to_have_url(f"{server.base}/agent/supervisor")
    await expect(boss.page.locator("#no-incidents")).to_be_visible()

    await expect(user.messages.filter(has_text="已经恢复")).to_have_count(1)
    await user.page.screenshot(path=str(SCREENS / "incident-resolved.png"), full_page=True)
