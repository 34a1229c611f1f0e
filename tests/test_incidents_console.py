"""Incidents in the console over real HTTP: a supervisor opens one by hand (zh and en), the
bot says it first to a merchant asking about a failed payment, the agent sees it on the
context card, the supervisor page shows it, and the supervisor closes it."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
from sqlalchemy import select

from bot.storage.models import AuditEntry, Incident, IncidentAsker
from bot.types import IncidentKind, IncidentStatus
from tests.support import console
from tests.support.console import (
    BIND_CODE,
    FAILED_ORDER,
    Server,
    agent_session,
    asks_for_a_person,
    only,
)

# The console tests' fixtures (tests/support/console.py), used by name.
server, http = console.server, console.http


ZH = "扫码支付通道故障，预计 30 分钟内恢复。"
EN = "The QR code channel is down; back within 30 minutes."


async def test_a_supervisor_opens_an_incident_everyone_sees_and_closes_it(
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await server.add_agent("老王", supervisor=True)
    async with agent_session(server.base) as agent, agent_session(server.base) as boss:
        assert await agent.login("小张") == 303
        assert await boss.login("老王") == 303
        # Only a supervisor opens one, with both messages.
        status, body = await agent.post("/agent/api/incidents", message_zh=ZH, message_en=EN)
        assert status == 403, body
        status, body = await boss.post("/agent/api/incidents", message_zh=ZH, message_en="")
        assert status == 400, body
        status, body = await boss.post("/agent/api/incidents", message_zh=ZH, message_en=EN)
        assert status == 200, body
        incident_id = body["incident"]

        # A merchant asking about a failed payment hears of it first.
        merchant = await asks_for_a_person(
            http, server.base, f"/bind {BIND_CODE}", f"订单{FAILED_ORDER}为什么失败"
        )
        history = await merchant.history()
        said = [m["text"] for m in history["messages"] if m["sender"] == "bot"]
        diagnosis = next(text for text in said if "支付失败的原因" in text)
        assert diagnosis.startswith("⚠️") and "不是您这边的问题" in diagnosis and ZH in diagnosis
        await merchant.say("转人工")

        # The agent sees it on the context card, in the console's language.
        entry = only((await agent.queue())["waiting"])
        await agent.claim(entry["handoff_id"])
        context = (await agent.chat(entry["conversation_id"]))["context"]
        assert len(context["incidents"]) == 1 and ZH in context["incidents"][0]
        status, page = await agent.page(f"/agent/chats/{entry['conversation_id']}")
        assert status == 200 and 'class="context__incident"' in page and ZH in page

        # The supervisor page lists it, with its close button; an agent may not see the page.
        status, page = await boss.page("/agent/supervisor")
        assert status == 200
        assert f'id="incident-{incident_id}"' in page and ZH in page and EN in page
        assert f'action="/agent/api/incidents/{incident_id}/close"' in page
        status, _ = await agent.page("/agent/supervisor")
        assert status == 403
        status, body = await agent.post(f"/agent/api/incidents/{incident_id}/close")
        assert status == 403, body

        status, body = await boss.post(f"/agent/api/incidents/{incident_id}/close")
        assert status == 200, body
        status, body = await boss.post(f"/agent/api/incidents/{incident_id}/close")
        assert status == 404, body
        # The merchant who asked is told, once, that it is over.
        resolved = [m for m in (await merchant.history())["messages"] if "已经恢复" in m["text"]]
        assert len(resolved) == 1
        status, page = await boss.page("/agent/supervisor")
        assert 'id="no-incidents"' in page and f'id="incident-{incident_id}"' not in page

    async with server.sessions() as session:
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        assert (incident.kind, incident.status) == (IncidentKind.MANUAL, IncidentStatus.CLOSED)
        assert incident.opened_by == incident.closed_by == "老王"
        asked = (await session.scalars(select(IncidentAsker))).all()
        assert [a.incident_id for a in asked] == [incident_id]
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("incident_%"))
            )
        ).all()
        assert actions == ["incident_opened", "incident_closed"]


async def test_the_supervisor_page_draws_a_detected_incident_with_its_merchants(
    server: Server,
) -> None:
    await server.add_agent("老王", supervisor=True)
    async with server.sessions() as session, session.begin():
        session.add(
            Incident(
                kind=IncidentKind.CHANNEL,
                key="qr",
                status=IncidentStatus.OPEN,
                opened_at=datetime.now(UTC),
                opened_by="detector",
                failures=40,
                merchant_count=3,
                share=0.4,
                baseline=0.01,
                series=[0, 1, 2, 5, 9, 12, 11, 0, 0, 0],
                merchants=["M001", "M002", "M003"],
            )
        )
        session.add(
            Incident(
                kind=IncidentKind.FAILURE_CODE,
                key="network_timeout",
                status=IncidentStatus.OPEN,
                opened_at=datetime.now(UTC),
                opened_by="detector",
                failures=30,
                merchant_count=3,
                share=0.3,
                baseline=0.01,
                series=[],
                merchants=[],
            )
        )
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, page = await boss.page("/agent/supervisor?lang=en")
        assert status == 200
        assert "Payment channel: QR code" in page
        assert "Failure code: The payment request timed out" in page
        assert page.count('class="chart__bar chart__bar--incident"') == 10
        assert 'data-count="12"' in page
        for merchant in ("M001", "M002", "M003"):
            assert f'<span class="badge">{merchant}</span>' in page
        assert "40.0%" in page and "usually 1.0%" in page
