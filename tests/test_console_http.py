"""The agent console over real HTTP: the app from `create_app`, listening on 127.0.0.1.

Agents are rows written straight into the database (argon2id hashes from `FAST_HASHER`); users
are web chat visitors talking through the real web chat API. An agent here is an aiohttp client
with its own cookie jar, logging in through the login form like a browser would.

Most scenes have a "picker" on duty: an online agent with capacity 0, so no chat is ever
auto-assigned and every request waits in the queue to be claimed by hand.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, select, update
from yarl import URL

from bot.console.views import AgentConsole
from bot.escalation import login_guard, stats
from bot.escalation.canned import load_canned
from bot.escalation.context_card import findings_card
from bot.faq.knowledge import load_valid_knowledge
from bot.platform.tables import OrderRow, PasswordResetRow, PaymentLinkRow
from bot.settings import PROJECT_ROOT
from bot.storage.models import (
    Agent,
    AgentNote,
    AgentSession,
    AuditEntry,
    Conversation,
    Handoff,
    Message,
    OutboxItem,
    RateEvent,
)
from bot.types import Label, Language
from tests.support import console
from tests.support.console import (
    BIND_CODE,
    FAILED_ORDER,
    PASSWORD,
    STUCK_ORDER,
    AgentClient,
    Server,
    agent_session,
    asks_for_a_person,
    console_settings,
    form_field,
    only,
    serve_console,
    set_cookie,
    texts_seen_by,
)
from tests.support.webchat import CSP

# The console tests' fixtures (tests/support/console.py), used by name.
server, http = console.server, console.http


def _context_of(page: str) -> str:
    return page[page.index('id="context"') : page.index('id="tools-title"')]


# -- logging in and out ----------------------------------------------------------------------


async def test_login_opens_the_queue_and_logout_ends_the_session(server: Server) -> None:
    await server.add_agent("小张")
    async with agent_session(server.base) as agent:
        status, _ = await agent.page("/agent")
        assert status == 303  # to the login form
        assert await agent.login("小张") == 303
        status, page = await agent.page("/agent")
        assert status == 200
        assert "小张" in page and "等待接入" in page
        token = agent.http.cookie_jar.filter_cookies(URL(server.base + "/agent"))["btp_agent"].value

        async with server.sessions() as session:
            stored = (await session.scalars(select(AgentSession))).one()
        assert stored.token_digest == hashlib.sha256(token.encode()).hexdigest()
        assert stored.csrf_digest == hashlib.sha256(agent.csrf.encode()).hexdigest()
        assert token not in (stored.token_digest, stored.csrf_digest)
        assert timedelta(hours=11, minutes=59) < stored.expires_at - stored.created_at
        assert stored.expires_at - stored.created_at <= timedelta(hours=12)

        async with agent.http.post(
            f"{server.base}/agent/logout", data={"csrf": agent.csrf}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/agent/login"
        assert await server.count(AgentSession) == 0
        assert (await agent.page("/agent"))[0] == 303

    # The old cookie, replayed, opens nothing.
    async with (
        aiohttp.ClientSession() as replay,
        replay.get(
            f"{server.base}/agent", headers={"Cookie": f"btp_agent={token}"}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303
    assert [action for _, action in await server.audit()] == ["login", "logout"]


async def test_wrong_password_and_unknown_name_get_the_same_answer(server: Server) -> None:
    await server.add_agent("小张")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张", "wrong password") == 401
        assert await agent.login("nobody", "wrong password") == 401
        wrong_password = await _login_page_after(agent, "小张", "wrong password")
        unknown_name = await _login_page_after(agent, "nobody", "wrong password")
    assert "账号或密码不正确" in wrong_password
    assert _without_tokens(wrong_password).replace("小张", "X") == _without_tokens(
        unknown_name
    ).replace("nobody", "X")
    assert await server.count(AgentSession) == 0


async def _login_page_after(agent: AgentClient, name: str, password: str) -> str:
    async with agent.http.get(f"{agent.base}/agent/login") as response:
        token = form_field(await response.text(), "csrf")
    async with agent.http.post(
        f"{agent.base}/agent/login", data={"csrf": token, "name": name, "password": password}
    ) as response:
        return await response.text()


def _without_tokens(html: str) -> str:
    return re.sub(r'(value|data-csrf)="[A-Za-z0-9_-]{40,}"', "", html)


async def test_five_failures_lock_that_name_from_that_address_only(server: Server) -> None:
    await server.add_agent("小张")
    await server.add_agent("小李")
    async with agent_session(server.base, "127.0.0.1") as attacker:
        for _ in range(5):
            assert await attacker.login("小张", "guess") == 401
        assert await attacker.login("小张", "guess") == 429
        assert await attacker.login("小张") == 429  # the right password, still locked here
        assert await attacker.login("小李") == 303  # other names are not affected
    async with agent_session(server.base, "127.0.0.2") as elsewhere:
        assert await elsewhere.login("小张") == 303  # a stranger's failures lock nobody else out
    assert await server.count(AgentSession) == 2

    # Fifteen minutes after the last failure the address may try the name again.
    async with server.sessions() as session, session.begin():
        for event in (await session.scalars(select(RateEvent))).all():
            event.at -= timedelta(minutes=16)
    async with agent_session(server.base, "127.0.0.1") as later:
        assert await later.login("小张") == 303


async def test_fifty_attempts_from_an_address_lock_that_address(server: Server) -> None:
    await server.add_agent("小张")
    async with agent_session(server.base, "127.0.0.3") as sprayer:
        for number in range(login_guard.PER_ADDRESS):
            assert await sprayer.login(f"user{number}", "123456") == 401
        assert await sprayer.login("小张") == 429
        page = await _login_page_after(sprayer, "小张", PASSWORD)
        assert "15 分钟" in page
    async with agent_session(server.base, "127.0.0.1") as colleague:
        assert await colleague.login("小张") == 303
    async with server.sessions() as session:
        keys = set((await session.scalars(select(RateEvent.key))).all())
    assert "login:ip:127.0.0.3" in keys
    assert login_guard.name_key("user0") in keys
    assert login_guard.pair_key("user0", "127.0.0.3") in keys


async def test_the_session_cookie_is_httponly_strict_and_secure_behind_https(
    server: Server, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await server.add_agent("小张")
    for forwarded, secure in ((None, False), ("https", True)):
        async with agent_session(server.base) as agent:
            async with agent.http.get(f"{server.base}/agent/login") as response:
                token = form_field(await response.text(), "csrf")
                login_cookie = set_cookie(response, "btp_agent_login")
            assert "HttpOnly" in login_cookie and "SameSite=Strict" in login_cookie
            headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
            async with agent.http.post(
                f"{server.base}/agent/login",
                data={"csrf": token, "name": "小张", "password": PASSWORD},
                headers=headers,
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                cookie = set_cookie(response, "btp_agent")
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert "Path=/agent" in cookie
            assert "Max-Age=43200" in cookie
            assert ("Secure" in cookie) is secure

    # A deployment can insist on Secure even when its proxy says nothing.
    (tmp_path / "secure").mkdir()
    async with serve_console(
        tmp_path / "secure", tmp_path_factory, console_secure_cookies=True
    ) as strict:
        await strict.add_agent("小张")
        async with agent_session(strict.base) as agent:
            async with agent.http.get(f"{strict.base}/agent/login") as response:
                token = form_field(await response.text(), "csrf")
            # The login cookie is Secure too, so a plain-http client must send it by hand.
            async with agent.http.post(
                f"{strict.base}/agent/login",
                data={"csrf": token, "name": "小张", "password": PASSWORD},
                headers={"Cookie": f"btp_agent_login={token}"},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                assert "Secure" in set_cookie(response, "btp_agent")


# -- CSRF and logins are required ------------------------------------------------------------


async def test_posts_without_a_valid_csrf_token_are_refused_and_change_nothing(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    visitor = await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent:
        # The login form itself: no token, or one that does not match the cookie.
        async with agent.http.get(f"{server.base}/agent/login") as response:
            assert response.status == 200
        for token in ("", "forged-token"):
            async with agent.http.post(
                f"{server.base}/agent/login",
                data={"csrf": token, "name": "小张", "password": PASSWORD},
                allow_redirects=False,
            ) as response:
                assert response.status == 403
        assert await server.count(AgentSession) == 0

        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        handoff_id, conversation_id = entry["handoff_id"], entry["conversation_id"]
        messages, audit = await server.count(Message), await server.count(AuditEntry)
        attempts = [
            (f"/agent/api/handoffs/{handoff_id}/claim", {}),
            ("/agent/api/online", {"online": "1"}),
            (f"/agent/api/chats/{conversation_id}/notes", {"text": "偷偷记一笔"}),
            (f"/agent/api/chats/{conversation_id}/reply", {"text": "你好"}),
            ("/agent/logout", {}),
        ]
        for path, fields in attempts:
            for token in ("", "0" * 64):
                status, body = await agent.post(path, csrf=token, **fields)
                assert status == 403, path
                assert body["error"]["code"] == "csrf"

        assert (await server.handoff(handoff_id)).status == "queued"
        assert await server.count(Message) == messages
        assert await server.count(AuditEntry) == audit
        assert await server.count(AgentNote) == 0
        assert await server.count(AgentSession) == 1  # the logout did not happen either
        assert (await agent.queue())["online"] is False
        # With the token they work: in a JSON body's header, as the page's script sends it...
        async with agent.http.post(
            f"{server.base}/agent/api/handoffs/{handoff_id}/claim",
            json={},
            headers={"X-CSRF-Token": agent.csrf},
        ) as response:
            assert response.status == 200
            assert await response.json() == {"ok": True}
        # ...or in a plain form post (no script), answered by a redirect.
        async with agent.http.post(
            f"{server.base}/agent/api/online",
            data={"csrf": agent.csrf, "online": "1", "next": "/agent"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/agent"
    assert "客服 小张 已接入" in "\n".join(await texts_seen_by(visitor))


async def test_pages_need_a_login_and_the_api_answers_401(server: Server) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/agent", "/agent/chats/1", "/agent/supervisor"):
            async with anonymous.get(f"{server.base}{path}", allow_redirects=False) as response:
                assert response.status == 303, path
                assert response.headers["Location"] == "/agent/login"
        for path in ("/agent/api/queue", "/agent/api/chats/1"):
            async with anonymous.get(f"{server.base}{path}") as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "unauthorized"
        for path in (
            "/agent/api/online",
            "/agent/api/handoffs/1/claim",
            "/agent/api/chats/1/reply",
        ):
            async with anonymous.post(f"{server.base}{path}", data={"online": "1"}) as response:
                assert response.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect(f"{server.base}/agent/ws")
        assert refused.value.status == 401
    # An expired session is no session.
    await server.add_agent("小张")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        async with server.sessions() as session, session.begin():
            await session.execute(
                update(AgentSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert (await agent.page("/agent"))[0] == 303
        assert (await agent.get("/agent/api/queue"))[0] == 401


async def test_pages_carry_the_strict_content_security_policy(server: Server) -> None:
    await server.add_agent("老王", supervisor=True)
    async with agent_session(server.base) as agent:
        async with agent.http.get(f"{server.base}/agent/login") as response:
            assert response.headers["Content-Security-Policy"] == CSP
            assert response.headers["X-Frame-Options"] == "DENY"
        assert await agent.login("老王") == 303
        for path in ("/agent", "/agent/supervisor"):
            async with agent.http.get(f"{server.base}{path}") as response:
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                page = await response.text()
            assert "style=" not in page and "<style" not in page
            for tag in re.findall(r"<script[^>]*>", page):
                assert 'src="/agent/static/' in tag or 'type="application/json"' in tag, tag
        assets = [("/agent/static/console.js", "javascript")]
        sheets = re.findall(r'rel="stylesheet" href="([^"]+)"', page)
        assets += [(sheet, "text/css") for sheet in sheets]
        assert [path for path, _ in assets[1:]] == ["/static/base.css", "/agent/static/console.css"]
        for asset, kind in assets:
            async with agent.http.get(f"{server.base}{asset}") as response:
                assert response.status == 200
                assert kind in response.headers["Content-Type"]


# -- who sees and acts on what ---------------------------------------------------------------


async def test_the_queue_lists_priority_first_then_the_longest_waiting(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await asks_for_a_person(http, server.base, "转人工")
    await asks_for_a_person(http, server.base, "你好", "找人工客服")
    await asks_for_a_person(http, server.base, "我要投诉，转人工")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        waiting = (await agent.queue())["waiting"]
        assert [(e["priority"], e["preview"]) for e in waiting] == [
            (1, "我要投诉，转人工"),
            (0, "转人工"),
            (0, "找人工客服"),
        ]
        assert all(e["channel"] == "webchat" and e["language"] == "zh" for e in waiting)
        assert all(e["reason"] == "user_asked" for e in waiting)
        assert waiting[1]["waiting_seconds"] >= waiting[2]["waiting_seconds"]
        _, page = await agent.page("/agent")
    waiting_list = page[page.index('id="list-waiting"') : page.index('id="list-mine"')]
    assert [m for m in re.findall(r'entry__preview">([^<]*)<', waiting_list)] == [
        "我要投诉，转人工",
        "转人工",
        "找人工客服",
    ]
    assert waiting_list.count("entry--priority") == 1
    assert waiting_list.count("/claim") == 3


async def test_an_agent_cannot_open_or_act_on_another_agents_chat_but_a_supervisor_can(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await server.add_agent("小李")
    await server.add_agent("老王", supervisor=True)
    visitor = await asks_for_a_person(http, server.base)
    async with (
        agent_session(server.base) as zhang,
        agent_session(server.base) as li,
        agent_session(server.base) as boss,
    ):
        for client, name in ((zhang, "小张"), (li, "小李"), (boss, "老王")):
            assert await client.login(name) == 303
        entry = only((await zhang.queue())["waiting"])
        handoff_id, chat_id = entry["handoff_id"], entry["conversation_id"]
        await zhang.claim(handoff_id)
        messages = await server.count(Message)

        assert (await li.queue())["waiting"] == [] and (await li.queue())["mine"] == []
        assert (await li.page(f"/agent/chats/{chat_id}"))[0] == 404
        assert (await li.get(f"/agent/api/chats/{chat_id}"))[0] == 404
        refused = {
            f"/agent/api/chats/{chat_id}/reply": ({"text": "我来抢答"}, 403),
            f"/agent/api/chats/{chat_id}/notes": ({"text": "看看"}, 404),
            f"/agent/api/chats/{chat_id}/payment-link": ({"amount": "10"}, 403),
            f"/agent/api/chats/{chat_id}/resync": ({"order_no": FAILED_ORDER}, 403),
            f"/agent/api/chats/{chat_id}/password-reset": ({"login": "wang"}, 403),
            f"/agent/api/handoffs/{handoff_id}/resolve": ({}, 403),
            f"/agent/api/handoffs/{handoff_id}/transfer": ({"to_agent_id": "3"}, 403),
        }
        for path, (fields, expected) in refused.items():
            status, body = await li.post(path, **fields)
            assert status == expected, (path, body)
            assert set(body["error"]) == {"code", "message"}
        assert await server.count(Message) == messages
        assert (await server.handoff(handoff_id)).agent_id is not None
        assert (await server.handoff(handoff_id)).status == "assigned"

        # The supervisor sees it among the others' chats, opens it, and may step in.
        other = only((await boss.queue())["others"])
        assert other["agent"] == "小张"
        assert (await boss.page(f"/agent/chats/{chat_id}"))[0] == 200
        status, _ = await boss.post(f"/agent/api/chats/{chat_id}/reply", text="主管来看一下")
        assert status == 200
    await server.settle()
    assert "主管来看一下" in await texts_seen_by(visitor)


async def test_claiming_a_chat_someone_already_took_is_a_conflict(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await server.add_agent("小李")
    await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as zhang, agent_session(server.base) as li:
        assert await zhang.login("小张") == 303
        assert await li.login("小李") == 303
        handoff_id = only((await li.queue())["waiting"])["handoff_id"]
        await zhang.claim(handoff_id)
        status, body = await li.post(f"/agent/api/handoffs/{handoff_id}/claim")
        assert status == 409
        assert body["error"]["code"] == "conflict"
    assert [action for name, action in await server.audit() if action == "claim"] == ["claim"]


async def test_auto_assignment_never_goes_over_an_agents_capacity(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张", capacity=1, online=True)
    await server.add_agent("小李", capacity=1, online=True)
    first = await asks_for_a_person(http, server.base)
    second = await asks_for_a_person(http, server.base)
    third = await asks_for_a_person(http, server.base)
    assert "客服 小张 已接入" in "\n".join(await texts_seen_by(first))
    assert "客服 小李 已接入" in "\n".join(await texts_seen_by(second))
    assert "排在第 1 位" in "\n".join(await texts_seen_by(third))
    async with agent_session(server.base) as zhang, agent_session(server.base) as li:
        assert await zhang.login("小张") == 303
        assert await li.login("小李") == 303
        mine = only((await zhang.queue())["mine"])
        assert only((await li.queue())["mine"])["conversation_id"] != mine["conversation_id"]
        waiting = only((await zhang.queue())["waiting"])

        # 小张 finishes a chat: the one waiting is theirs now, still one at a time.
        status, _ = await zhang.post(f"/agent/api/handoffs/{mine['handoff_id']}/resolve")
        assert status == 200
        queue = await zhang.queue()
        assert queue["waiting"] == []
        assert only(queue["mine"])["handoff_id"] == waiting["handoff_id"]
    async with server.sessions() as session:
        loads = (
            await session.execute(
                select(Handoff.agent_id, func.count())
                .where(Handoff.status == "assigned")
                .group_by(Handoff.agent_id)
            )
        ).all()
    assert sorted(n for _, n in loads) == [1, 1]
    assert "客服 小张 已接入" in "\n".join(await texts_seen_by(third))


async def test_a_chat_is_transferred_to_a_colleague_with_room(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    li = await server.add_agent("小李")
    full = await server.add_agent("小赵", capacity=0)
    visitor = await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as zhang, agent_session(server.base) as li_client:
        assert await zhang.login("小张") == 303
        assert await li_client.login("小李") == 303
        entry = only((await zhang.queue())["waiting"])
        await zhang.claim(entry["handoff_id"])
        _, page = await zhang.page(f"/agent/chats/{entry['conversation_id']}")
        assert f'<option value="{li}">小李' in page and "小张 (" not in page

        transfer = f"/agent/api/handoffs/{entry['handoff_id']}/transfer"
        status, body = await zhang.post(transfer, to_agent_id=full)
        assert status == 409 and body["error"]["code"] == "conflict"
        status, body = await zhang.post(transfer, to_agent_id="abc")
        assert status == 400
        status, _ = await zhang.post(transfer, to_agent_id=li)
        assert status == 200

        assert (await zhang.queue())["mine"] == []
        assert (await zhang.get(f"/agent/api/chats/{entry['conversation_id']}"))[0] == 404
        assert only((await li_client.queue())["mine"])["handoff_id"] == entry["handoff_id"]
    await server.settle()
    assert "您的对话已转给客服 小李 继续处理。" in await texts_seen_by(visitor)
    assert ("小张", "transfer") in await server.audit()


# -- what reaches the user, and what never does --------------------------------------------


async def test_resolving_gives_the_user_rating_buttons_and_the_rating_is_kept(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    visitor = await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        await agent.claim(entry["handoff_id"])
        status, _ = await agent.post(
            f"/agent/api/chats/{entry['conversation_id']}/reply", text="问题已经处理好了"
        )
        assert status == 200
        status, _ = await agent.post(f"/agent/api/handoffs/{entry['handoff_id']}/resolve")
        assert status == 200
        chat = await agent.chat(entry["conversation_id"])
        assert chat["handoff"]["status"] == "resolved"
        assert chat["can"] == {"claim": False, "act": False, "answer": False}
    await server.settle()
    history = (await visitor.history())["messages"]
    said = [m for m in history if m["text"] == "问题已经处理好了"]
    assert only(said)["sender"] == "agent"
    closing = history[-1]
    assert closing["sender"] == "system"
    assert sorted(b["action"] for b in closing["buttons"]) == [
        f"rate:{entry['handoff_id']}:{n}" for n in (1, 2, 3, 4, 5)
    ]
    # Words, not only emoji: a device without a colour-emoji font shows stars as empty boxes.
    assert [b["label"] for b in closing["buttons"]] == ["1 分", "2 分", "3 分", "4 分", "5 分"]
    replies = await visitor.press(f"rate:{entry['handoff_id']}:5")
    assert "谢谢您的评价" in replies[0]["text"]
    assert (await server.handoff(entry["handoff_id"])).rating == 5


async def test_a_ticket_answered_in_the_console_reaches_the_user(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张")  # offline: nobody can take the chat now
    visitor = await asks_for_a_person(http, server.base, "转人工")
    assert "没有客服在线" in (await texts_seen_by(visitor))[-1]
    await visitor.say("提现三天了还没到账，请帮我查一下")
    await visitor.say("确认")  # read back first, left once confirmed
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        ticket = only((await agent.queue())["tickets"])
        assert ticket["preview"] == "提现三天了还没到账，请帮我查一下"
        status, page = await agent.page(f"/agent/chats/{ticket['conversation_id']}")
        assert status == 200 and 'id="answer-form"' in page
        answer = f"/agent/api/handoffs/{ticket['handoff_id']}/answer"
        assert (await agent.post(answer, text="   "))[0] == 400
        status, _ = await agent.post(answer, text="已帮您催办，今天内到账。")
        assert status == 200
        assert (await agent.queue())["tickets"] == []
        assert (await agent.post(answer, text="再答一次"))[0] == 409
    await server.settle()
    last = (await visitor.history())["messages"][-1]
    assert last["sender"] == "agent"
    assert last["text"] == "客服回复了您的留言：已帮您催办，今天内到账。"
    assert ("小张", "answer_ticket") in await server.audit()


async def test_notes_stay_inside_the_console(server: Server, http: aiohttp.ClientSession) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    visitor = await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        chat_id = entry["conversation_id"]
        before = await texts_seen_by(visitor)
        outbox = await server.count(OutboxItem)
        # A note on a chat still in the queue, and one after claiming it.
        status, _ = await agent.post(f"/agent/api/chats/{chat_id}/notes", text="先看看订单")
        assert status == 200
        await agent.claim(entry["handoff_id"])
        outbox = await server.count(OutboxItem)
        status, _ = await agent.post(
            f"/agent/api/chats/{chat_id}/notes", text="用户说手机号 13800138000，内部备忘"
        )
        assert status == 200
        assert (await agent.post(f"/agent/api/chats/{chat_id}/notes", text=""))[0] == 400
        notes = (await agent.chat(chat_id))["notes"]
        assert [n["agent"] for n in notes] == ["小张", "小张"]
        assert notes[0]["text"] == "先看看订单"
        assert "13800138000" not in notes[1]["text"]  # personal numbers are masked
        _, page = await agent.page(f"/agent/chats/{chat_id}")
        assert "先看看订单" in page
    await server.settle()
    after = await texts_seen_by(visitor)
    assert after[: len(before)] == before
    assert not any("备忘" in text or "先看看订单" in text for text in after)
    assert await server.count(OutboxItem) == outbox
    assert await server.count(Message, Message.text.contains("先看看订单")) == 0


async def test_the_agent_tools_call_the_platform_and_are_audited(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    merchant = await asks_for_a_person(http, server.base, f"/bind {BIND_CODE}", "转人工")
    await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        bound, unbound = (await agent.queue())["waiting"]
        for entry in (bound, unbound):
            await agent.claim(entry["handoff_id"])
        tools = f"/agent/api/chats/{bound['conversation_id']}"

        for amount in ("abc", "0", "-5", "1.234", "999999", "NaN"):
            status, body = await agent.post(f"{tools}/payment-link", amount=amount)
            assert status == 400, amount
        status, body = await agent.post(
            f"/agent/api/chats/{unbound['conversation_id']}/payment-link", amount="10"
        )
        assert status == 409  # an anonymous customer has no merchant to collect for
        status, body = await agent.post(f"{tools}/payment-link", amount="66.50", description="水果")
        assert status == 200
        assert body["result"].startswith("https://pay.btp.example/l/PL")

        status, body = await agent.post(f"{tools}/resync", order_no=STUCK_ORDER.lower())
        assert (status, body["result"]) == (200, "pending -> paid")
        assert (await agent.post(f"{tools}/resync", order_no="BT0000000000000000"))[0] == 404
        assert (await agent.post(f"{tools}/resync", order_no="12345"))[0] == 400

        status, _ = await agent.post(f"{tools}/password-reset", login="wang")
        assert status == 200
        assert (await agent.post(f"{tools}/password-reset", login=""))[0] == 400

        chat = await agent.chat(bound["conversation_id"])
        assert chat["context"]["merchant"]["name"] == "小王水果店"

    await server.settle()
    link_message = (await merchant.history())["messages"][-1]
    assert link_message["sender"] == "agent"
    assert "66.50" in link_message["text"]
    assert link_message["image"].startswith("data:image/png;base64,")
    assert await server.count(PaymentLinkRow) == 1
    assert await server.count(PasswordResetRow, PasswordResetRow.login == "wang") == 1
    async with server.sessions() as session:
        order = await session.get(OrderRow, STUCK_ORDER)
        assert order is not None and order.status == "paid"
        tools_used = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.detail)
                .where(AuditEntry.action.startswith("tool_"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [action for action, _ in tools_used] == [
        "tool_payment_link",
        "tool_resync",
        "tool_password_reset",
    ]
    assert tools_used[0][1]["amount"] == "66.50"
    assert tools_used[1][1] == {"order_no": STUCK_ORDER, "before": "pending", "after": "paid"}


async def test_every_console_action_leaves_an_audit_entry(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张", capacity=0)
    boss = await server.add_agent("老王", supervisor=True)
    # Nobody online yet: this user leaves a message (a ticket).
    ticket_user = await asks_for_a_person(http, server.base)
    await ticket_user.say("我的账户被冻结了")
    await ticket_user.say("确认")
    async with agent_session(server.base) as agent, agent_session(server.base) as supervisor:
        assert await agent.login("小张") == 303
        assert (await agent.post("/agent/api/online", online="1"))[0] == 200
        assert (await agent.queue())["online"] is True
        await asks_for_a_person(http, server.base, f"/bind {BIND_CODE}", "转人工")
        queue = await agent.queue()
        chat, ticket = only(queue["waiting"]), only(queue["tickets"])
        cid = chat["conversation_id"]
        await agent.claim(chat["handoff_id"])
        for path, fields in (
            (f"/agent/api/chats/{cid}/reply", {"text": "您好"}),
            (f"/agent/api/chats/{cid}/notes", {"text": "已核实身份"}),
            (f"/agent/api/chats/{cid}/payment-link", {"amount": "12"}),
            (f"/agent/api/chats/{cid}/resync", {"order_no": FAILED_ORDER}),
            (f"/agent/api/chats/{cid}/password-reset", {"login": "wang"}),
            (f"/agent/api/handoffs/{ticket['handoff_id']}/answer", {"text": "已解冻"}),
            (f"/agent/api/handoffs/{chat['handoff_id']}/transfer", {"to_agent_id": boss}),
            ("/agent/api/online", {"online": "0"}),
        ):
            status, body = await agent.post(path, **fields)
            assert status == 200, (path, body)
        assert await supervisor.login("老王") == 303
        status, _ = await supervisor.post(f"/agent/api/handoffs/{chat['handoff_id']}/resolve")
        assert status == 200
        async with agent.http.post(
            f"{server.base}/agent/logout", data={"csrf": agent.csrf}, allow_redirects=False
        ) as response:
            assert response.status == 303
    assert [entry for entry in await server.audit() if entry[0] is not None] == [
        ("小张", "login"),
        ("小张", "online"),
        ("小张", "claim"),
        ("小张", "reply"),
        ("小张", "note"),
        ("小张", "tool_payment_link"),
        ("小张", "tool_resync"),
        ("小张", "tool_password_reset"),
        ("小张", "answer_ticket"),
        ("小张", "transfer"),
        ("小张", "offline"),
        ("老王", "login"),
        ("老王", "resolve"),
        ("小张", "logout"),
    ]


# -- the pages -------------------------------------------------------------------------------


async def test_the_conversation_page_shows_the_transcript_context_and_canned_replies(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await asks_for_a_person(
        http, server.base, f"/bind {BIND_CODE}", f"订单{FAILED_ORDER}为什么失败", "转人工"
    )
    await asks_for_a_person(http, server.base, "I want to talk to a human")
    canned = load_canned(PROJECT_ROOT / "knowledge" / "canned.yaml")
    assert 8 <= len(canned) <= 12
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        zh_chat, en_chat = (await agent.queue())["waiting"]
        await agent.claim(zh_chat["handoff_id"])
        status, page = await agent.page(f"/agent/chats/{zh_chat['conversation_id']}")
        assert status == 200
        for sender in ("user", "bot", "system"):
            assert f'class="line line--{sender}"' in page
        assert "小王水果店" in page and "badge--m-active" in page
        assert f'data-order="{FAILED_ORDER}"' in page and "支付失败" in page
        card = _context_of(page)
        assert "<dt>失败原因</dt><dd>顾客的付款账户余额不足" in card
        assert "insufficient_balance" not in card and "failure_code" not in card
        assert page.count('data-canned-id="') == len(canned)
        assert canned[0].zh in page and canned[0].en not in page

        status, page = await agent.page(f"/agent/chats/{en_chat['conversation_id']}")
        assert status == 200
        assert canned[0].en in page and canned[0].zh not in page
        assert "匿名客户" in page
        assert re.search(r'<form class="composer" id="reply-form"[^>]* hidden>', page)

        detail = await agent.chat(zh_chat["conversation_id"])
        order = only(detail["context"]["orders"])
        assert (order["order_no"], order["status"], order["amount"]) == (
            FAILED_ORDER,
            "failed",
            "88.50",
        )
        assert detail["context"]["merchant"] == {
            "id": "M001",
            "name": "小王水果店",
            "status": "active",
        }
        assert detail["can"] == {"claim": False, "act": True, "answer": False}


async def test_user_text_is_escaped_in_the_queue_and_the_conversation(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    attack = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    await asks_for_a_person(http, server.base, "转人工", attack)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        assert entry["preview"] == attack
        for path in ("/agent", f"/agent/chats/{entry['conversation_id']}"):
            _, page = await agent.page(path)
            assert attack not in page and "<script>alert" not in page
            assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page


async def test_the_interface_speaks_chinese_by_default_and_english_on_request(
    server: Server,
) -> None:
    await server.add_agent("小张")
    async with agent_session(server.base) as agent:
        _, page = await agent.page("/agent/login")
        assert 'lang="zh-CN"' in page and "客服登录" in page
        _, page = await agent.page("/agent/login?lang=en")
        assert 'lang="en"' in page and "Agent login" in page
        assert await agent.login("小张") == 303
        _, page = await agent.page("/agent")  # the choice is remembered
        assert "Waiting" in page and "Go online" in page and "等待接入" not in page
        _, page = await agent.page("/agent?lang=zh")
        assert "等待接入" in page


async def test_the_supervisor_page_is_for_supervisors_only(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张", capacity=1, online=True)
    await server.add_agent("老王", supervisor=True)
    visitor = await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent, agent_session(server.base) as boss:
        assert await agent.login("小张") == 303
        assert await boss.login("老王") == 303
        status, page = await agent.page("/agent/supervisor")
        assert status == 403 and "您没有权限" in page
        assert "/agent/supervisor" not in (await agent.page("/agent"))[1]

        handoff_id = only((await agent.queue())["mine"])["handoff_id"]
        await agent.post(f"/agent/api/handoffs/{handoff_id}/resolve")
        await visitor.press(f"rate:{handoff_id}:4")
        for days in ("", "?days=1", "?days=30", "?days=12"):
            status, page = await boss.page(f"/agent/supervisor{days}")
            assert status == 200
            assert '<span class="tile__value" id="satisfaction">4.0</span>' in page
            assert 'data-label="4★"' not in page  # Chinese by default
            assert re.search(r'<g class="chart__row" data-label="4星" data-count="1">', page)
            assert "<svg" in page and 'class="chart__bar chart__bar--conversations"' in page
        current = re.findall(r'days=(\d+)" aria-current="true"', page)
        assert current == ["7"]  # an unknown period falls back to a week
        _, page = await boss.page("/agent/supervisor?days=30")
        assert page.count('class="chart__day"') == 30
        assert "小张" in page  # the agents' table


async def test_the_live_socket_tells_the_console_what_changed(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    zhang = await server.add_agent("小张")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await agent.http.ws_connect(
                f"{server.base}/agent/ws", headers={"Origin": "https://evil.example"}
            )
        assert refused.value.status == 403
        async with agent.http.ws_connect(f"{server.base}/agent/ws") as socket:
            visitor = await asks_for_a_person(http, server.base)
            assert await socket.receive_json(timeout=5) == {"type": "queue"}
            entry = only((await agent.queue())["waiting"])
            await visitor.say("还在吗？")
            assert await socket.receive_json(timeout=5) == {
                "type": "chat",
                "conversation_id": entry["conversation_id"],
            }
            await socket.send_str("ping")
            assert await socket.receive_json(timeout=5) == {"type": "pong"}
    async with server.sessions() as session:
        agent_row = await session.get(Agent, zhang)
        assert agent_row is not None and agent_row.last_seen_at is not None  # heartbeat


# -- the first hour (issue 18) ---------------------------------------------------------------


async def test_an_automatic_assignment_says_who_joined_once(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张", online=True)
    visitor = await asks_for_a_person(http, server.base)
    await server.settle()
    joined = [t for t in await texts_seen_by(visitor) if "客服 小张 已接入" in t]
    assert len(joined) == 1, await texts_seen_by(visitor)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["mine"])
        transcript = (await agent.chat(entry["conversation_id"]))["messages"]
        assert len([m for m in transcript if "已接入" in (m["text"] or "")]) == 1


async def test_a_pressed_button_shows_the_label_the_user_saw(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    visitor = await asks_for_a_person(
        http, server.base, f"/bind {BIND_CODE}", f"订单{FAILED_ORDER}为什么失败"
    )
    offered = (await visitor.history())["messages"][-1]["buttons"]
    human = next(b for b in offered if b["action"] == "human")
    await visitor.press("human")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        await agent.claim(entry["handoff_id"])
        transcript = (await agent.chat(entry["conversation_id"]))["messages"]
        press = only([m for m in transcript if m["action"] == "human"])
        assert press["pressed"] == human["label"]
        _, page = await agent.page(f"/agent/chats/{entry['conversation_id']}")
        assert f'点击了按钮: <span class="line__pressed">{human["label"]}</span>' in page
        assert "<code>human</code>" not in page


async def test_the_reset_canned_reply_states_the_links_real_lifetime(
    server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    await asks_for_a_person(http, server.base)
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        _, page = await agent.page(f"/agent/chats/{entry['conversation_id']}")
    assert "30 分钟内有效" in page and "1 小时" not in page and "{reset_minutes}" not in page
    reset = next(
        r
        for r in load_canned(PROJECT_ROOT / "knowledge" / "canned.yaml")
        if r.id == "password_reset_sent"
    )
    assert "valid for 30 minutes" in reset.en

    # A placeholder the console does not know stops the start; nothing else is evaluated.
    broken = tmp_path / "canned.yaml"
    broken.write_text("replies:\n  - {id: x, zh: '{reset_minutes.__class__}', en: ok}\n")
    with pytest.raises(ValueError):
        load_canned(broken)
    broken.write_text("replies:\n  - {id: x, zh: '{lifetime}', en: ok}\n")
    with pytest.raises(ValueError, match="unknown placeholder"):
        load_canned(broken)


async def test_a_ticket_is_tagged_by_the_language_it_is_written_in(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("小张")  # offline: the user leaves a message
    visitor = await asks_for_a_person(http, server.base, "I want to talk to a human")
    await visitor.say("提现三天了还没到账，请帮我查一下")
    await visitor.press("flow:confirm:yes")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        ticket = only((await agent.queue())["tickets"])
        async with server.sessions() as session, session.begin():
            await session.execute(  # the user went on in English after leaving the message
                update(Conversation)
                .where(Conversation.id == ticket["conversation_id"])
                .values(language="en")
            )
        ticket = only((await agent.queue())["tickets"])
        assert ticket["language"] == "zh"
        _, page = await agent.page("/agent")
        assert '<span class="badge">中文</span>' in page


async def test_an_agent_without_capacity_is_not_told_chats_will_come(server: Server) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张", online=True)
    async with agent_session(server.base) as agent:
        assert await agent.login("picker") == 303
        queue = await agent.queue()
        assert queue["online"] and queue["capacity"] == 0
        _, page = await agent.page("/agent")
        assert "接待上限是 0" in page and "新的对话会自动分配给您" not in page
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        _, page = await agent.page("/agent")
        assert "新的对话会自动分配给您" in page


async def test_the_context_card_says_what_the_bot_found_and_did_in_the_consoles_language(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    visitor = await asks_for_a_person(
        http, server.base, f"/bind {BIND_CODE}", f"订单{FAILED_ORDER}为什么失败"
    )
    await visitor.press("flow:newlink:yes")  # the merchant takes the offered new link
    await visitor.say("转人工")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        _, page = await agent.page(f"/agent/chats/{entry['conversation_id']}")
        card = _context_of(page)
        summary = re.search(r'id="context-summary">(.*?)</p>', card)
        assert summary and summary.group(1).endswith(
            f"{FAILED_ORDER} 支付失败：顾客的付款账户余额不足，银行或钱包拒绝了扣款；"
            "已提供 ¥88.50 新收款链接"
        )
        assert "<dt>新收款链接</dt>" in card
        for internal in ("order_no", "failure_code", "payment_link", "null", "insufficient"):
            assert internal not in card

        # The same card in an English console, live over the JSON the page re-reads.
        _, page = await agent.page(f"/agent/chats/{entry['conversation_id']}?lang=en")
        context = (await agent.chat(entry["conversation_id"]))["context"]
        assert context["summary"] == (
            f"{FAILED_ORDER} failed: The customer's payment account did not have enough balance,"
            " so the deduction was refused; a new ¥88.50 payment link was sent"
        )
        assert ["Why it failed", context["orders"][0]["failure"]] in context["findings"]


def test_findings_read_as_words_with_beijing_times() -> None:
    """The other flows' findings: a locked login, a re-sync, a failed withdrawal."""
    knowledge = load_valid_knowledge(PROJECT_ROOT / "knowledge")
    console = AgentConsole(console_settings(Path("unused.db")))
    zh = console._strings["zh"]
    card = findings_card(
        {
            "login": "wang01",
            "account_status": "active",
            "failed_attempts": 5,
            "locked_until": "2026-11-30T20:30:00.123456+00:00",
        },
        knowledge=knowledge,
        language=Language.ZH,
        t=zh,
        time=console._time,
    )
    assert card["summary"] == "账号 wang01 锁定至 12-01 04:30"
    assert ["锁定至", "12-01 04:30"] in card["findings"]
    assert ["账号状态", "正常"] in card["findings"]

    resync = findings_card(
        {
            "checked": 1,
            "resynced": [
                {"order_no": STUCK_ORDER, "before": "pending", "after": "paid", "channel": "paid"}
            ],
            "still_different": [],
        },
        knowledge=knowledge,
        language=Language.ZH,
        t=zh,
        time=console._time,
    )
    assert resync["summary"] == "已重新同步 1 笔订单"
    assert ["已重新同步", f"{STUCK_ORDER} 待支付 → 已支付"] in resync["findings"]
    assert ["同步后仍不一致", "无"] in resync["findings"]

    reason = next(iter(knowledge.withdrawal_failures))
    withdrawal = findings_card(
        {"withdrawal": "W0001", "status": "failed", "overdue": False, "failure_reason": reason},
        knowledge=knowledge,
        language=Language.EN,
        t=console._strings["en"],
        time=console._time,
    )
    words = knowledge.withdrawal_failures[reason].cause[Language.EN].rstrip(".")
    assert withdrawal["summary"] == f"withdrawal W0001 failed: {words}"
    assert ["Status", "Failed"] in withdrawal["findings"]
    assert ["Later than expected", "No"] in withdrawal["findings"]


async def test_the_supervisor_counts_beijing_days_and_names_topics_and_clusters(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("老王", supervisor=True)
    await asks_for_a_person(http, server.base, "手续费是多少", "转人工")
    # The chat began at 04:30 Beijing time on 12-01, which is 20:30 UTC on 11-30.
    early = datetime(2026, 11, 30, 20, 30, tzinfo=UTC)
    async with server.sessions() as session, session.begin():
        await session.execute(update(Conversation).values(created_at=early))
        await session.execute(update(Handoff).values(created_at=early))
        label = await session.scalar(select(Message.label).where(Message.text == "手续费是多少"))
    numbers = await stats.collect(
        server.sessions,
        now=early + timedelta(hours=1),
        days=2,
        default_capacity=3,
        zone=ZoneInfo("Asia/Shanghai"),
    )
    assert [(d.day, d.conversations, d.handoffs) for d in numbers.daily] == [
        ("2026-11-30", 0, 0),
        ("2026-12-01", 1, 1),
    ]

    knowledge = load_valid_knowledge(PROJECT_ROOT / "knowledge")
    assert label is not None and label in knowledge.entries
    title = knowledge.entries[Label(label)].title
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        _, page = await boss.page("/agent/supervisor")
        topics = page[page.index('id="top-faq"') : page.index('id="unanswered-title"')]
        assert f"<td>{title[Language.ZH]}</td>" in topics and label not in topics
        _, page = await boss.page("/agent/supervisor?lang=en")
        assert f"<td>{title[Language.EN]}</td>" in page

    groups = stats.group_similar(
        ["提现怎么还没到", "我的提现怎么还没有到账呢", "提现还没到账", "提现还没到账怎么办"]
    )
    assert [(g.example, g.count) for g in groups] == [("提现还没到账", 4)]
