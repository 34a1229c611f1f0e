"""Attacks on the agent console from outside, over real HTTP, on SQLite and on PostgreSQL.

Each scene runs the app from `create_app` on 127.0.0.1 (two of them on one database where
several server processes matter) and plays the attacker's requests: bursts of logins, guesses
spread over addresses, a stranger behind the agents' own NAT, order numbers typed to make the
console show what the chat never proved.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from bot.cli import main as cli
from bot.escalation import login_guard
from bot.storage.models import Agent, AgentDevice, AgentSession, AuditEntry, RateEvent
from tests.support.common import FAST_HASHER, bot_app, listening
from tests.support.console import (
    BIND_CODE,
    FAILED_ORDER,
    PASSWORD,
    AgentClient,
    Server,
    agent_session,
    asks_for_a_person,
    console_settings,
    form_field,
    only,
    set_cookie,
)

OTHER_MERCHANTS_ORDER = "BT2026112600000021"  # M002's, paid, 12.00
M001_PAID = "BT2026112600000009"  # M001's, paid on the second try, 59.90, phone ...0009
M001_PENDING = "BT2026112600000010"  # M001's, pending, 128.00


@asynccontextmanager
async def serving(db: AsyncEngine, count: int = 1, **overrides: Any) -> AsyncIterator[list[Server]]:
    """`count` servers (as separate processes would be) on the test's database."""
    url = db.url.render_as_string(hide_password=False)
    settings = console_settings(Path("unused"), database_url=url, **overrides)
    servers: list[Server] = []
    async with AsyncExitStack() as stack:
        for _ in range(count):
            app = bot_app(settings)
            servers.append(Server(await stack.enter_async_context(listening(app)), app))
        yield servers


@pytest.fixture
async def server(db: AsyncEngine, world: None) -> AsyncIterator[Server]:
    async with serving(db) as (running,):
        yield running


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification the server runs, by the hash's own verifier."""
    seen: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        seen.append(str(password))
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return seen


async def login_form(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/agent/login") as response:
        return form_field(await response.text(), "csrf")


async def post_login(
    http: aiohttp.ClientSession, base: str, token: str, name: str, password: str
) -> tuple[int, dict[str, str], str]:
    """One login POST with the form token sent by hand (the jar would swap it mid-burst)."""
    async with http.post(
        f"{base}/agent/login",
        data={"csrf": token, "name": name, "password": password},
        headers={"Cookie": f"btp_agent_login={token}"},
        allow_redirects=False,
    ) as response:
        return response.status, dict(response.headers), await response.text()


async def fail_from(base: str, ip: str, name: str, times: int) -> list[int]:
    async with agent_session(base, ip) as stranger:
        return [await stranger.login(name, f"guess-{n}") for n in range(times)]


async def logout(agent: AgentClient) -> None:
    async with agent.http.post(
        f"{agent.base}/agent/logout", data={"csrf": agent.csrf}, allow_redirects=False
    ) as response:
        assert response.status == 303


async def run_cli(
    monkeypatch: pytest.MonkeyPatch, db: AsyncEngine, *argv: str, stdin: str = ""
) -> int:
    """`btp-bot ...` against the test's database, as an operator runs it."""
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return await asyncio.to_thread(cli, list(argv))


# -- item 4: a burst of logins checks no more passwords than the limit ----------------------


async def test_forty_concurrent_logins_check_at_most_five_passwords(
    db: AsyncEngine, world: None, verified: list[str]
) -> None:
    async with serving(db, count=2) as servers:
        await servers[0].add_agent("小张")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            tokens = [await login_form(http, s.base) for s in servers]
            guesses = [f"guess-{n}" for n in range(40)]
            results = await asyncio.gather(
                *(
                    post_login(http, servers[n % 2].base, tokens[n % 2], "小张", guess)
                    for n, guess in enumerate(guesses)
                )
            )
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [401] * 5 + [429] * 35
        assert len(verified) == 5
        refused = [headers for status, headers, _ in results if status == 429]
        assert all(int(h["Retry-After"]) > 0 for h in refused)
        # Five failures stand, per key; the refused attempts left nothing behind.
        key = login_guard.pair_key("小张", "127.0.0.1")
        assert await servers[0].count(RateEvent, RateEvent.key == key) == 5


async def test_a_burst_with_the_right_password_still_checks_at_most_five_wrong_ones(
    db: AsyncEngine, world: None, verified: list[str]
) -> None:
    async with serving(db, count=2) as servers:
        await servers[0].add_agent("小张")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            tokens = [await login_form(http, s.base) for s in servers]
            guesses = [f"guess-{n}" for n in range(39)]
            guesses.insert(2, PASSWORD)
            results = await asyncio.gather(
                *(
                    post_login(http, servers[n % 2].base, tokens[n % 2], "小张", guess)
                    for n, guess in enumerate(guesses)
                )
            )
        wrong = [password for password in verified if password != PASSWORD]
        assert len(wrong) <= 5
        assert len(verified) <= 6
        statuses = [status for status, _, _ in results]
        assert statuses.count(303) <= 1
        assert statuses.count(401) == len(wrong)


# -- item 5: nobody without the password keeps an agent out ----------------------------------


async def test_failures_from_other_addresses_do_not_lock_the_agent_out(server: Server) -> None:
    await server.add_agent("小张")
    # Four addresses, four failures each: every pair stays under its 5, the name reaches 16.
    for last in range(2, 6):
        assert await fail_from(server.base, f"127.0.0.{last}", "小张", 4) == [401] * 4
    async with agent_session(server.base, "127.0.0.1") as agent:
        assert await agent.login("小张") == 303


async def test_a_known_device_logs_in_while_strangers_hold_the_name_and_the_office_address(
    server: Server,
) -> None:
    await server.add_agent("小张")
    await server.add_agent("小李")
    async with agent_session(server.base, "127.0.0.1") as office_pc:
        assert await office_pc.login("小张") == 303
        device = office_pc.http.cookie_jar.filter_cookies(URL(server.base + "/agent/login"))
        token = device["btp_agent_device"].value
        await logout(office_pc)
        async with server.sessions() as session:
            stored = (await session.scalars(select(AgentDevice))).one()
        assert stored.token_digest == hashlib.sha256(token.encode()).hexdigest()
        assert token != stored.token_digest

        # Strangers spend the name's budget from outside (5 addresses, 21 failures) ...
        for last in range(2, 7):
            await fail_from(server.base, f"127.0.0.{last}", "小张", 5 if last < 6 else 1)
        # ... and one of them, behind the office's NAT, the address's and the pair's too.
        async with agent_session(server.base, "127.0.0.1") as colleague_of_nobody:
            for number in range(login_guard.PER_ADDRESS):
                await colleague_of_nobody.login(f"user{number}", "123456")
            assert await colleague_of_nobody.login("小张", "guess") == 429
            assert await colleague_of_nobody.login("小张") == 429  # unknown device: refused

        # The agent's own browser, known from its last login, is not held by any of it.
        assert await office_pc.login("小张") == 303
        await logout(office_pc)
        # The device vouches for its own agent only.
        assert await office_pc.login("小李") == 429


async def test_the_device_cookie_is_httponly_strict_and_long_lived(server: Server) -> None:
    await server.add_agent("小张")
    cookies: list[str] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        device = ""
        for _ in range(2):
            token = await login_form(http, server.base)
            async with http.post(
                f"{server.base}/agent/login",
                data={"csrf": token, "name": "小张", "password": PASSWORD},
                headers={"Cookie": f"btp_agent_login={token}; btp_agent_device={device}"},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                cookies.append(set_cookie(response, "btp_agent_device"))
                device = response.cookies["btp_agent_device"].value
    first, again = cookies
    assert "HttpOnly" in first and "SameSite=Strict" in first
    assert "Path=/agent/login" in first
    assert f"Max-Age={365 * 86400}" in first
    assert again == first  # the same device: its token again, for another year
    assert await server.count(AgentDevice) == 1


async def test_the_lock_for_a_name_from_one_address_grows_with_every_failure(
    server: Server,
) -> None:
    await server.add_agent("小张")

    async def back_in_time(minutes: int) -> None:
        async with server.sessions() as session, session.begin():
            for event in (await session.scalars(select(RateEvent))).all():
                event.at -= timedelta(minutes=minutes)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        token = await login_form(http, server.base)
        for _ in range(5):
            assert (await post_login(http, server.base, token, "小张", "guess"))[0] == 401
        for locked_minutes in (15, 30, 60):
            status, headers, page = await post_login(http, server.base, token, "小张", PASSWORD)
            assert status == 429
            assert int(headers["Retry-After"]) == locked_minutes * 60
            assert f"请 {locked_minutes} 分钟后再试" in page
            await back_in_time(locked_minutes - 1)
            assert (await post_login(http, server.base, token, "小张", PASSWORD))[0] == 429
            await back_in_time(2)
            assert (await post_login(http, server.base, token, "小张", "guess"))[0] == 401
    assert login_guard.backoff(12) == timedelta(hours=24)
    assert login_guard.backoff(40) == timedelta(hours=24)


async def test_a_supervisor_unlocks_an_agent_in_the_console(server: Server) -> None:
    agent_id = await server.add_agent("小张")
    await server.add_agent("小李")
    await server.add_agent("主管", supervisor=True)
    for last in range(2, 7):
        await fail_from(server.base, f"127.0.0.{last}", "小张", 5)
    async with agent_session(server.base, "127.0.0.7") as new_laptop:
        assert await new_laptop.login("小张") == 429  # 20 failures on the name (5 more refused)

    async with agent_session(server.base, "127.0.0.8") as colleague:
        assert await colleague.login("小李") == 303
        status, body = await colleague.post(f"/agent/api/agents/{agent_id}/unlock")
        assert (status, body["error"]["code"]) == (403, "forbidden")
    async with agent_session(server.base, "127.0.0.9") as supervisor:
        assert await supervisor.login("主管") == 303
        status, page = await supervisor.page("/agent/supervisor")
        assert status == 200 and f'action="/agent/api/agents/{agent_id}/unlock"' in page
        status, body = await supervisor.post(f"/agent/api/agents/{agent_id}/unlock", csrf="x")
        assert (status, body["error"]["code"]) == (403, "csrf")
        async with agent_session(server.base, "127.0.0.7") as new_laptop:
            assert await new_laptop.login("小张") == 429  # a forged unlock changed nothing
        status, body = await supervisor.post(f"/agent/api/agents/{agent_id}/unlock")
        assert status == 200 and body == {"ok": True, "cleared": 20}
    async with agent_session(server.base, "127.0.0.7") as new_laptop:
        assert await new_laptop.login("小张") == 303
    async with server.sessions() as session:
        entry = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "agent_unlocked"))
        ).one()
        supervisor_row = await session.scalar(select(Agent).where(Agent.name == "主管"))
    assert supervisor_row is not None and entry.agent_id == supervisor_row.id
    assert entry.detail == {"agent": "小张", "cleared": 20}


async def test_the_unlock_command_lets_the_agent_in_again(
    server: Server, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await server.add_agent("小张")
    for last in range(2, 7):
        await fail_from(server.base, f"127.0.0.{last}", "小张", 5)
    async with agent_session(server.base, "127.0.0.7") as agent:
        assert await agent.login("小张") == 429
        assert await run_cli(monkeypatch, db, "agent", "unlock", "小张") == 0
        assert await agent.login("小张") == 303
    assert await run_cli(monkeypatch, db, "agent", "unlock", "nobody") == 2
    assert [action for _, action in await server.audit()][-2:] == ["agent_unlocked", "login"]


async def test_a_new_password_ends_every_session_of_the_agent(
    server: Server, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await server.add_agent("小张")
    async with (
        agent_session(server.base, "127.0.0.1") as desk,
        agent_session(server.base, "127.0.0.2") as phone,
    ):
        assert await desk.login("小张") == 303
        assert await phone.login("小张") == 303
        assert (await desk.page("/agent"))[0] == 200
        new = "a much longer new password"
        assert await run_cli(monkeypatch, db, "agent", "passwd", "小张", stdin=new + "\n") == 0
        for browser in (desk, phone):
            assert (await browser.page("/agent"))[0] == 303  # to the login form
            status, _ = await browser.get("/agent/api/queue")
            assert status == 401
        assert await server.count(AgentSession) == 0
        assert await desk.login("小张") == 401  # the old password
        assert await desk.login("小张", new) == 303
    assert await run_cli(monkeypatch, db, "agent", "passwd", "小张", stdin="short\n") == 2
    async with server.sessions() as session:
        entry = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "agent_password_changed")
            )
        ).one()
    assert entry.detail == {"name": "小张", "sessions_ended": 2}
    assert new not in str(entry.detail)


# -- item 6: the context card shows only what the chat is entitled to ------------------------


async def test_order_numbers_typed_as_an_answer_show_nothing_on_the_card(
    server: Server,
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    typed = f"{OTHER_MERCHANTS_ORDER}.{FAILED_ORDER}.{M001_PENDING}"
    async with aiohttp.ClientSession() as http:
        # The reset flow keeps the "login" the user answered as a finding: three order numbers.
        await asks_for_a_person(http, server.base, "忘记密码了", typed, "确认", "转人工")
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        entry = only((await agent.queue())["waiting"])
        detail = await agent.chat(entry["conversation_id"])
        assert typed in str(detail["context"]["findings"])
        orders = detail["context"]["orders"]
        assert {o["order_no"] for o in orders} == {
            OTHER_MERCHANTS_ORDER,
            FAILED_ORDER,
            M001_PENDING,
        }
        assert all(order == {"order_no": order["order_no"], "visible": False} for order in orders)
        _, page = await agent.page(f"/agent/chats/{entry['conversation_id']}")
        assert page.count('data-order="') == 3
        assert 'class="order__amount"' not in page and "order__status" not in page


async def test_the_card_shows_the_order_a_customer_verified_and_a_merchants_own(
    server: Server,
) -> None:
    await server.add_agent("picker", capacity=0, online=True)
    await server.add_agent("小张")
    async with aiohttp.ClientSession() as http:
        # A customer proves M001_PAID (the payer's phone ends 0009), then names two more.
        await asks_for_a_person(
            http,
            server.base,
            f"订单{M001_PAID}付款了吗",
            "0009",
            f"还有{M001_PENDING}和{OTHER_MERCHANTS_ORDER}",
            "转人工",
        )
        # A merchant asks about its own order and names another merchant's.
        await asks_for_a_person(
            http,
            server.base,
            f"/bind {BIND_CODE}",
            f"订单{FAILED_ORDER}为什么失败",
            f"还有{OTHER_MERCHANTS_ORDER}",
            "转人工",
        )
    async with agent_session(server.base) as agent:
        assert await agent.login("小张") == 303
        customer, merchant = (await agent.queue())["waiting"]
        shown = {
            o["order_no"]: o
            for o in (await agent.chat(customer["conversation_id"]))["context"]["orders"]
        }
        assert shown[M001_PAID]["visible"] and shown[M001_PAID]["amount"] == "59.90"
        assert shown[M001_PENDING] == {"order_no": M001_PENDING, "visible": False}
        assert shown[OTHER_MERCHANTS_ORDER] == {"order_no": OTHER_MERCHANTS_ORDER, "visible": False}
        shown = {
            o["order_no"]: o
            for o in (await agent.chat(merchant["conversation_id"]))["context"]["orders"]
        }
        assert shown[FAILED_ORDER]["visible"] and shown[FAILED_ORDER]["amount"] == "88.50"
        assert shown[OTHER_MERCHANTS_ORDER] == {"order_no": OTHER_MERCHANTS_ORDER, "visible": False}


# -- item 14: AGENT_CAPACITY applies, and an agent's own capacity overrides it ----------------


async def test_agent_capacity_applies_and_agent_set_changes_an_existing_agent(
    db: AsyncEngine, world: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(db, agent_capacity=1) as (server,):
        async with server.sessions() as session, session.begin():
            session.add(
                Agent(
                    name="小张",
                    password_hash=FAST_HASHER.hash(PASSWORD),
                    online=True,
                    last_seen_at=datetime.now(UTC),
                )
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                await asks_for_a_person(http, server.base)
        async with agent_session(server.base) as agent:
            assert await agent.login("小张") == 303
            queue = await agent.queue()
            assert (len(queue["mine"]), len(queue["waiting"])) == (1, 2)  # AGENT_CAPACITY=1

            assert await run_cli(monkeypatch, db, "agent", "set", "小张", "--capacity", "2") == 0
            status, _ = await agent.post("/agent/api/online", online="true")
            assert status == 200
            queue = await agent.queue()
            assert (len(queue["mine"]), len(queue["waiting"])) == (2, 1)  # its own capacity

            assert (
                await run_cli(monkeypatch, db, "agent", "set", "小张", "--capacity", "default") == 0
            )
            async with server.sessions() as session:
                stored = await session.scalar(select(Agent).where(Agent.name == "小张"))
            assert stored is not None and stored.capacity is None
        assert await run_cli(monkeypatch, db, "agent", "set", "nobody", "--capacity", "1") == 2
        with pytest.raises(SystemExit):
            await run_cli(monkeypatch, db, "agent", "set", "小张", "--capacity", "-1")


async def test_the_supervisor_page_shows_the_capacity_that_applies(
    db: AsyncEngine, world: None
) -> None:
    async with serving(db, agent_capacity=4) as (server,):
        await server.add_agent("主管", supervisor=True)
        async with server.sessions() as session, session.begin():
            await session.execute(update(Agent).values(capacity=None))
        async with agent_session(server.base) as supervisor:
            assert await supervisor.login("主管") == 303
            _, page = await supervisor.page("/agent/supervisor")
        assert '<td class="num">4</td>' in page
