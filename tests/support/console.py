"""The agent console served in-process, and an agent's browser driving it over HTTP."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.console.views import AgentConsole
from bot.platform.world import load_world, read_world
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory
from bot.storage.models import (
    Agent,
    AuditEntry,
    Handoff,
)
from bot.types import Language
from tests.support.common import DEMO_WORLD, FAST_HASHER, bot_app, demo_sqlite, listening
from tests.support.webchat import Visitor
from webhook_server import RUNTIME

PASSWORD = "correct horse battery staple"


# Open every minute of every day, so a test never meets "outside business hours".
ALL_DAY = "00:00-23:59:59.999999"


BIND_CODE = "482913"  # M001, 小王水果店


FAILED_ORDER = "BT2026112600000001"  # M001's, failed: insufficient balance


STUCK_ORDER = "BT2026112600000010"  # M001's, pending on the platform, paid at the channel


def console_settings(path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{path}",
        "platform_webhook_secret": SecretStr("test-platform-webhook-secret"),
        "telegram_bot_token": None,
        "default_language": Language.ZH,
        "business_hours": ALL_DAY,
        "business_days": "0123456",
        "demo_world": None,
        **overrides,
    }
    return Settings(**values)


def with_console(app: web.Application, settings: Settings) -> web.Application:
    """The console wired as webhook_server wires it; done here only while it does not yet."""
    if any(r.canonical == "/agent/login" for r in app.router.resources()):
        return app
    console = AgentConsole(settings)
    console.add_routes(app)

    async def attached(app: web.Application) -> AsyncIterator[None]:
        bot = app[RUNTIME].bot
        console.attach(
            handoffs=bot.handoffs,
            sessions=bot.sessions,
            knowledge=bot.knowledge,
            bus=bot.bus,
        )
        yield
        await console.close()

    app.cleanup_ctx.append(attached)
    return app


@dataclass
class Server:
    base: str
    app: web.Application

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.app[RUNTIME].bot.sessions

    async def add_agent(
        self,
        name: str,
        *,
        supervisor: bool = False,
        capacity: int = 3,
        online: bool = False,
        password: str = PASSWORD,
    ) -> int:
        async with self.sessions() as session, session.begin():
            agent = Agent(
                name=name,
                password_hash=FAST_HASHER.hash(password),
                is_supervisor=supervisor,
                capacity=capacity,
                online=online,
                last_seen_at=datetime.now(UTC) if online else None,
            )
            session.add(agent)
            await session.flush()
            return agent.id

    async def count(self, model: type, *where: Any) -> int:
        async with self.sessions() as session:
            query = select(func.count()).select_from(model)
            if where:
                query = query.where(*where)
            return int(await session.scalar(query) or 0)

    async def handoff(self, handoff_id: int) -> Handoff:
        async with self.sessions() as session:
            handoff = await session.get(Handoff, handoff_id)
            assert handoff is not None
            return handoff

    async def audit(self) -> list[tuple[str | None, str]]:
        """(agent name or None, action), oldest first."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Agent.name, AuditEntry.action)
                .outerjoin(Agent, Agent.id == AuditEntry.agent_id)
                .order_by(AuditEntry.id)
            )
            return [(name, action) for name, action in rows.all()]

    async def settle(self) -> None:
        """Everything queued for delivery has been handed to its channel."""
        await self.app[RUNTIME].relay.flush()


@asynccontextmanager
async def serve_console(
    directory: Path, factory: pytest.TempPathFactory, **overrides: Any
) -> AsyncIterator[Server]:
    path = directory / "console.db"
    shutil.copyfile(await demo_sqlite(factory), path)
    settings = console_settings(path, **overrides)
    if not settings.database_url.startswith("sqlite"):
        # Another database (PostgreSQL, migrated and emptied by the `db` fixture): the demo
        # world is loaded into it, as the SQLite copy has it already.
        db = create_engine(settings.database_url)
        try:
            await load_world(session_factory(db), read_world(DEMO_WORLD), FAST_HASHER)
        finally:
            await db.dispose()
    app = with_console(bot_app(settings), settings)
    async with listening(app) as base:
        yield Server(base, app)


# A console on the demo world, on the test's database tier (the `db` fixture's).
@pytest.fixture
async def console(
    db: AsyncEngine, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    overrides = {}
    if db.dialect.name == "postgresql":
        overrides["database_url"] = db.url.render_as_string(hide_password=False)
    async with serve_console(tmp_path, tmp_path_factory, **overrides) as running:
        yield running


class AgentClient:
    """One agent's browser: its own cookies, the login form, the pages and the API."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.csrf = ""

    async def login(self, name: str, password: str = PASSWORD, **headers: str) -> int:
        async with self.http.get(f"{self.base}/agent/login") as response:
            form_token = form_field(await response.text(), "csrf")
        async with self.http.post(
            f"{self.base}/agent/login",
            data={"csrf": form_token, "name": name, "password": password},
            headers=headers,
            allow_redirects=False,
        ) as response:
            if response.status == 303:
                assert response.headers["Location"] == "/agent"
                status, page = await self.page("/agent")
                assert status == 200
                self.csrf = data_attribute(page, "csrf")
            return response.status

    async def page(self, path: str) -> tuple[int, str]:
        async with self.http.get(f"{self.base}{path}", allow_redirects=False) as response:
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(
            f"{self.base}{path}", headers={"Accept": "application/json"}
        ) as response:
            return response.status, await response.json()

    async def post(self, path: str, csrf: str | None = None, **fields: Any) -> tuple[int, Any]:
        data = {key: str(value) for key, value in fields.items()}
        data["csrf"] = self.csrf if csrf is None else csrf
        async with self.http.post(
            f"{self.base}{path}",
            data=data,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        ) as response:
            return response.status, await response.json()

    async def queue(self) -> dict[str, Any]:
        status, body = await self.get("/agent/api/queue")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def chat(self, conversation_id: int) -> dict[str, Any]:
        status, body = await self.get(f"/agent/api/chats/{conversation_id}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def claim(self, handoff_id: int) -> None:
        status, body = await self.post(f"/agent/api/handoffs/{handoff_id}/claim")
        assert status == 200, body


@asynccontextmanager
async def agent_session(base: str, local_ip: str | None = None) -> AsyncIterator[AgentClient]:
    """A fresh browser for one agent; `local_ip` makes it connect from another 127.x address."""
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0)) if local_ip else None
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP address
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as http:
        yield AgentClient(http, base)


def form_field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in the page"
    return match.group(1)


def data_attribute(html: str, name: str) -> str:
    match = re.search(rf'data-{name}="([^"]*)"', html)
    assert match, f"no data-{name} in the page"
    return match.group(1)


def set_cookie(response: aiohttp.ClientResponse, name: str) -> str:
    return next(h for h in response.headers.getall("Set-Cookie") if h.startswith(f"{name}="))


async def asks_for_a_person(http: aiohttp.ClientSession, base: str, *said: str) -> Visitor:
    """A web chat visitor who says `said` (default "转人工") and ends up in the queue."""
    visitor = await Visitor(http, base).open()
    for text in said or ("转人工",):
        await visitor.say(text)
    return visitor


def only(entries: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(entries) == 1, entries
    return entries[0]


async def texts_seen_by(visitor: Visitor) -> list[str]:
    return [m["text"] for m in (await visitor.history())["messages"]]


# The fixtures of a console test module: one console on the demo world, and a client session.
@pytest.fixture
async def server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with serve_console(tmp_path, tmp_path_factory) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
