"""Agent assist over real HTTP, on both tiers: for the user's latest message the chat page
offers the two best knowledge-base answers in the conversation's language (entry ids and
scores from the bot's own matcher) and the incident notice while one is open; a new user
message, announced on the console's socket, changes them; a chat's drafts never carry
anything from another chat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.escalation.assist import SUGGESTED
from bot.types import Label, Language
from tests.support import console as support_console
from tests.support.console import (
    BIND_CODE,
    AgentClient,
    Server,
    agent_session,
    asks_for_a_person,
    only,
    texts_seen_by,
)
from tests.support.webchat import Visitor
from webhook_server import RUNTIME

# The fixture, by name: a console on the demo world on the test's database tier.
console = support_console.console


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def answer(console: Server, entry_id: str, language: Language) -> str:
    return console.app[RUNTIME].bot.engine.knowledge.entries[Label(entry_id)].answer[language]


def faq(assist: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in assist["suggestions"] if s["kind"] == "faq"]


async def claimed(agent: AgentClient) -> int:
    entry = only((await agent.queue())["waiting"])
    await agent.claim(entry["handoff_id"])
    return int(entry["conversation_id"])


async def next_chat_event(socket: aiohttp.ClientWebSocketResponse, conversation_id: int) -> None:
    """Read the console's socket until it says this chat changed."""
    async with asyncio.timeout(10):
        while True:
            message = await socket.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = json.loads(message.data)
            if event.get("type") == "chat" and event.get("conversation_id") == conversation_id:
                return


async def test_the_agent_gets_two_answers_that_follow_the_latest_message(
    console: Server, http: aiohttp.ClientSession
) -> None:
    await console.add_agent("picker", capacity=0, online=True)
    await console.add_agent("小张")
    async with agent_session(console.base) as agent:
        assert await agent.login("小张") == 303
        visitor = await asks_for_a_person(http, console.base, f"/bind {BIND_CODE}", "转人工")
        conversation_id = await claimed(agent)
        # Before the user asks anything the agent can answer from the knowledge, nothing fits.
        before = (await agent.chat(conversation_id))["assist"]
        assert before["language"] == "zh"

        async with agent.http.ws_connect(f"{console.base}/agent/ws") as socket:
            await visitor.say("提现要多久到账，怎么提现")
            await next_chat_event(socket, conversation_id)
            first = (await agent.chat(conversation_id))["assist"]
            await visitor.say("你们的手续费是怎么收的")
            await next_chat_event(socket, conversation_id)
            second = (await agent.chat(conversation_id))["assist"]

        messages = (await agent.chat(conversation_id))["messages"]
        user_ids = [m["id"] for m in messages if m["sender"] == "user"]
        assert first["message_id"] == user_ids[-2] and second["message_id"] == user_ids[-1]
        for assist, expected in ((first, "withdraw.how"), (second, "fees.rates")):
            found = faq(assist)
            assert 1 <= len(found) <= SUGGESTED
            assert found[0]["entry_id"] == expected
            scores = [s["score"] for s in found]
            assert scores == sorted(scores, reverse=True) and scores[0] > 0
            for suggestion in found:
                assert suggestion["text"] == answer(console, suggestion["entry_id"], Language.ZH)
            # The same scores as the bot's matcher gives the message.
            parse = console.app[RUNTIME].bot.engine.matcher.parse(
                next(m["text"] for m in messages if m["id"] == assist["message_id"])
            )
            scored = {parse.label.value: parse.score} | {
                a.label.value: a.score for a in parse.alternatives
            }
            assert found[0]["score"] == round(scored[expected], 3)

        # The page draws them as drafts, each naming its entry.
        status, page = await agent.page(f"/agent/chats/{conversation_id}")
        assert status == 200
        assert 'data-entry="fees.rates"' in page and 'id="assist"' in page

        # The agent sends an edited draft; the user receives the edited words.
        edited = second["suggestions"][0]["text"] + "\n如还有疑问请随时告诉我。"
        status, body = await agent.post(f"/agent/api/chats/{conversation_id}/reply", text=edited)
        assert status == 200, body
        await console.settle()
        assert edited in await texts_seen_by(visitor)


async def test_an_english_chat_gets_english_answers_and_the_incident_notice(
    console: Server, http: aiohttp.ClientSession
) -> None:
    await console.add_agent("picker", capacity=0, online=True)
    await console.add_agent("agent")
    await console.add_agent("boss", supervisor=True)
    notice_zh, notice_en = "扫码通道故障，正在处理。", "The QR channel is down; we are on it."
    async with agent_session(console.base) as agent, agent_session(console.base) as boss:
        assert await agent.login("agent") == 303
        assert await boss.login("boss") == 303
        visitor = await asks_for_a_person(http, console.base, "hello", "I want to talk to a person")
        conversation_id = await claimed(agent)
        await visitor.say("how much are your fees")
        assist = (await agent.chat(conversation_id))["assist"]
        assert assist["language"] == "en"
        assert [s["kind"] for s in assist["suggestions"]] == ["faq"] * len(faq(assist))
        assert faq(assist)[0]["entry_id"] == "fees.rates"
        assert faq(assist)[0]["text"] == answer(console, "fees.rates", Language.EN)

        status, body = await boss.post(
            "/agent/api/incidents", message_zh=notice_zh, message_en=notice_en
        )
        assert status == 200, body
        assist = (await agent.chat(conversation_id))["assist"]
        incident = [s for s in assist["suggestions"] if s["kind"] == "incident"]
        assert len(incident) == 1 and notice_en in incident[0]["text"]
        assert notice_zh not in incident[0]["text"]
        # The console's own language does not change the drafts' language.
        status, zh_view = await agent.get(f"/agent/api/chats/{conversation_id}?lang=zh")
        assert status == 200 and zh_view["assist"] == assist


async def test_a_chat_s_drafts_come_from_that_chat_alone(
    console: Server, http: aiohttp.ClientSession
) -> None:
    await console.add_agent("picker", capacity=0, online=True)
    await console.add_agent("小张", capacity=5)
    async with agent_session(console.base) as agent:
        assert await agent.login("小张") == 303
        fees = await Visitor(http, console.base).open()
        await fees.say("转人工")
        fees_chat = await claimed(agent)
        withdraw = await Visitor(http, console.base).open()
        await withdraw.say("转人工")
        withdraw_chat = await claimed(agent)
        await fees.say("手续费多少，我的店叫甜橙小铺")
        await withdraw.say("怎么提现，我的店叫青柠杂货")

        fees_view = await agent.chat(fees_chat)
        withdraw_view = await agent.chat(withdraw_chat)
    own = {m["id"] for m in fees_view["messages"]}
    other = {m["id"] for m in withdraw_view["messages"]}
    assert fees_view["assist"]["message_id"] in own
    assert withdraw_view["assist"]["message_id"] in other
    assert faq(fees_view["assist"])[0]["entry_id"] == "fees.rates"
    assert faq(withdraw_view["assist"])[0]["entry_id"] == "withdraw.how"
    drafts = json.dumps(fees_view["assist"], ensure_ascii=False)
    assert "青柠" not in drafts and "甜橙" not in drafts
