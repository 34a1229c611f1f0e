"""Two `btp-bot serve` processes on one PostgreSQL behave as one.

A user's message that reaches process A shows up live in the console of an agent connected to
process B; two agents on different processes racing for one chat: one gets it, the other 409;
the agent's reply reaches the user's WebSocket on the other process. Needs TEST_DATABASE_URL
(PostgreSQL); the test makes and drops a database of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.settings import PROJECT_ROOT
from bot.types import Label
from tests.support.common import TEST_DATABASE_URL
from tests.support.knowledge import NEW_QUESTION, TARGET, answered_by, write_sets
from tests.support.serve import serving

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="two-process tier: set TEST_DATABASE_URL=postgresql+asyncpg://... to run it",
)
PASSWORD = "two-process-pass"


@pytest.fixture
async def database() -> AsyncIterator[str]:
    assert TEST_DATABASE_URL
    url = make_url(TEST_DATABASE_URL)
    name = f"btp_two_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    connection = await asyncpg.connect(admin)
    await connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "BUSINESS_HOURS": "00:00-24:00",
        "AGENT_CAPACITY": "0",
        "RATE_LIMIT_PER_MINUTE": "1000",
    }


@pytest.fixture
async def servers(database: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    env = _env(database)
    # Small NLU sets, so publishing a draft previews in a moment.
    env["KB_EVAL_DIR"] = str(
        write_sets(tmp_path / "sets", {"test": [("怎么提现", Label.WITHDRAW_HOW)]})
    )
    cli = [sys.executable, "-m", "bot.cli"]
    for name, *flags in (("alice",), ("bob",), ("boss", "--supervisor")):
        subprocess.run(
            [*cli, "agent", "add", name, *flags],
            input=PASSWORD + "\n",
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
            timeout=120,
        )
    async with (
        serving(tmp_path, env, ready_path="/readyz") as a,
        serving(tmp_path, env, ready_path="/readyz") as b,
    ):
        yield a.url, b.url


class Agent:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, name: str) -> None:
        async with self.http.get(f"{self.base}/agent/login") as response:
            token = re.search(r'name="csrf" value="([^"]*)"', await response.text())
        assert token
        async with self.http.post(
            f"{self.base}/agent/login",
            allow_redirects=False,
            data={"csrf": token.group(1), "name": name, "password": PASSWORD},
        ) as response:
            assert response.status == 303
        async with self.http.get(f"{self.base}/agent") as response:
            found = re.search(r'data-csrf="([^"]*)"', await response.text())
        assert found
        self.csrf = found.group(1)

    async def post(self, path: str, **fields: Any) -> tuple[int, Any]:
        data = {key: str(value) for key, value in fields.items()} | {"csrf": self.csrf}
        async with self.http.post(
            f"{self.base}{path}", data=data, headers={"Accept": "application/json"}
        ) as response:
            return response.status, await response.json()

    async def queue(self) -> dict[str, Any]:
        async with self.http.get(
            f"{self.base}/agent/api/queue", headers={"Accept": "application/json"}
        ) as r:
            assert r.status == 200
            result: dict[str, Any] = await r.json()
            return result

    async def close(self) -> None:
        await self.http.close()


async def _next_json(
    socket: aiohttp.ClientWebSocketResponse, timeout: float = 10.0
) -> dict[str, Any]:
    frame = await socket.receive(timeout=timeout)
    assert frame.type == aiohttp.WSMsgType.TEXT, frame
    result: dict[str, Any] = json.loads(frame.data)
    return result


async def _wait_for(
    socket: aiohttp.ClientWebSocketResponse, predicate: Any, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        event = await _next_json(socket, max(0.1, left))
        if predicate(event):
            return event


def _handoff_ids(queue: Any) -> list[int]:
    text = json.dumps(queue)
    return [int(n) for n in re.findall(r'"handoff_id":\s*(\d+)', text)]


async def test_two_processes_behave_as_one(servers: tuple[str, str]) -> None:
    a, b = servers
    async with aiohttp.ClientSession() as http:
        alice, bob = Agent(b), Agent(a)
        try:
            await alice.login("alice")
            await bob.login("bob")
            assert (await alice.post("/agent/api/online", online="true"))[0] == 200
            assert (await bob.post("/agent/api/online", online="true"))[0] == 200
            console = await alice.http.ws_connect(f"{b}/agent/ws")

            async with http.post(f"{a}/api/chat/sessions") as response:
                session = await response.json()
            auth = {"Authorization": f"Bearer {session['token']}"}
            async with http.post(
                f"{a}/api/chat/messages", json={"text": "转人工"}, headers=auth
            ) as response:
                replies = (await response.json())["replies"]
            assert "第 1 位" in replies[0]["text"]
            # Process A took the message; the agent connected to process B hears of it at once.
            await _wait_for(console, lambda e: True)
            async with http.post(
                f"{a}/api/chat/messages", json={"text": "我的订单一直没到账"}, headers=auth
            ) as response:
                assert (await response.json())["replies"] == []
            await _wait_for(console, lambda e: "chat" in json.dumps(e))

            handoff = _handoff_ids(await alice.queue())[0]
            results = await asyncio.gather(
                alice.post(f"/agent/api/handoffs/{handoff}/claim"),
                bob.post(f"/agent/api/handoffs/{handoff}/claim"),
            )
            statuses = sorted(status for status, _ in results)
            assert statuses == [200, 409]
            winner = alice if results[0][0] == 200 else bob

            # The user's socket is on the other process than the agent who answers.
            user_base = a if winner is alice else b
            user_socket = await http.ws_connect(f"{user_base}/api/chat/ws", headers=auth)
            conversation = await winner.queue()
            conversation_id = int(
                re.findall(r'"conversation_id":\s*(\d+)', json.dumps(conversation))[0]
            )
            status, _ = await winner.post(
                f"/agent/api/chats/{conversation_id}/reply", text="您好，我来处理"
            )
            assert status == 200
            pushed = await _wait_for(
                user_socket,
                lambda e: e.get("type") == "message" and "我来处理" in e["message"]["text"],
            )
            assert pushed["message"]["sender"] == "agent"
            await user_socket.close()
            await console.close()
        finally:
            await alice.close()
            await bob.close()


async def test_publishing_in_one_process_answers_in_the_other(servers: tuple[str, str]) -> None:
    a, b = servers
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{b}/api/chat/sessions") as response:
            auth = {"Authorization": f"Bearer {(await response.json())['token']}"}

        async def ask_b() -> str | None:
            async with http.post(
                f"{b}/api/chat/messages", json={"text": NEW_QUESTION}, headers=auth
            ) as response:
                return answered_by((await response.json())["replies"])

        assert await ask_b() is None
        boss = Agent(a)
        try:
            await boss.login("boss")
            status, body = await boss.post(
                "/agent/api/knowledge/drafts",
                kind="phrasings",
                label=TARGET.value,
                texts=NEW_QUESTION,
            )
            assert status == 200, body
            status, body = await boss.post(f"/agent/api/knowledge/versions/{body['draft']}/publish")
            assert status == 200, body
        finally:
            await boss.close()
        # Process B hears of the version by NOTIFY and swaps it in, without a restart.
        async with asyncio.timeout(10):
            while await ask_b() != TARGET.value:
                await asyncio.sleep(0.2)
