"""The supervisor's page over HTTP: verified resolution beside containment, and the
unverified conversations, from the same figures as `btp-bot report outcomes`. Both tiers: the
console served by the real app over SQLite, or over the shared PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from bot.outcomes.checker import check_pass
from bot.outcomes.report import outcome_report
from bot.platform.tables import PaymentLinkRow
from bot.storage.models import OutcomeCheck
from tests.support import console as support_console
from tests.support.common import Chat
from tests.support.console import Server, agent_session
from webhook_server import RUNTIME

# The fixture, by name: a console on the demo world on the test's database tier.
console = support_console.console


async def two_links_one_paid(console: Server) -> tuple[int, int]:
    """A merchant makes two links; a payer pays the first; the checker runs past the window.
    Returns the conversations of the paid link's chat and of the unpaid one's."""
    bot = console.app[RUNTIME].bot
    paid_chat, unpaid_chat = Chat(bot.engine), Chat(bot.engine)
    for chat, amount in ((paid_chat, 50), (unpaid_chat, 60)):
        await chat.bind("M001")
        await chat.say(f"收款链接 {amount}元")
        await chat.press("flow:confirm:yes")
    async with console.sessions() as session:
        paid, unpaid = (await session.scalars(select(OutcomeCheck).order_by(OutcomeCheck.id))).all()
        await session.execute(
            update(PaymentLinkRow)
            .where(PaymentLinkRow.id == paid.subject)
            .values(paid_at=paid.started_at + timedelta(hours=2))
        )
        await session.commit()
    await check_pass(bot.db, bot.gateway, now=unpaid.due_at)
    return paid.conversation_id, unpaid.conversation_id


async def test_the_supervisor_sees_verified_resolution_beside_containment(
    console: Server,
) -> None:
    _, unpaid = await two_links_one_paid(console)
    await console.add_agent("老王", supervisor=True)
    await console.add_agent("小李")
    async with agent_session(console.base) as boss:
        assert await boss.login("老王") == 303
        status, page = await boss.page("/agent/supervisor")
    assert status == 200
    row = re.search(r'<tr data-topic="payment_link" data-kind="flow">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r'data-rate="(verified|contained)">([^<]*)<', row.group(1))
    # 24 h, 7 d, 30 d alike: one of two verified, both without a person.
    assert cells == [("verified", "50%"), ("contained", "100%")] * 3
    assert "收款链接" in row.group(1) and "核实的解决率" in page
    unverified = re.findall(r'<a href="/agent/chats/(\d+)">', page.split('id="unverified"')[1])
    assert unverified == [str(unpaid)]
    # The figures are the report's.
    report = await outcome_report(console.sessions, timedelta(days=7))
    assert report.total.verified == 1 and report.total.not_verified == 1
    # The link opens the conversation for the supervisor.
    async with agent_session(console.base) as boss:
        await boss.login("老王")
        status, chat_page = await boss.page(f"/agent/chats/{unpaid}")
    assert status == 200 and "收款链接" in chat_page


async def test_the_page_speaks_english_when_chosen_and_is_closed_to_agents(
    console: Server,
) -> None:
    await two_links_one_paid(console)
    await console.add_agent("boss", supervisor=True)
    await console.add_agent("agent")
    async with agent_session(console.base) as boss:
        await boss.login("boss")
        status, page = await boss.page("/agent/supervisor?lang=en")
    assert status == 200
    assert "Verified resolution" in page and "Payment link" in page
    assert "Not verified: to review" in page
    async with agent_session(console.base) as agent:
        await agent.login("agent")
        status, _ = await agent.page("/agent/supervisor")
    assert status == 403
