"""Shared fixtures: the real knowledge, a migrated database per test, and a chat driver.

Every database test runs on SQLite, and again on PostgreSQL when TEST_DATABASE_URL is set
(CI sets it); without it the PostgreSQL tier is skipped with the reason shown.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from argon2 import PasswordHasher
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.platform.tables  # noqa: F401  (the platform's tables are truncated too)
from bot.app import build_gateway, build_matcher
from bot.engine import Engine
from bot.escalation.hours import BusinessHours
from bot.escalation.service import HandoffService
from bot.faq.knowledge import Knowledge, load_valid_knowledge
from bot.nlu.matcher import Matcher
from bot.platform.gateway import PlatformGateway
from bot.platform.world import load_world, read_world
from bot.render import Renderer
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.events import EventBus
from bot.storage.models import Base
from bot.types import Button, IncomingMessage, Reply
from tests.botapi import BotApiStub

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
DATA = Path(__file__).parent / "data"

# CI runs the property tests derandomized: the same examples on every run, so a failure there
# is reproducible and a pass is not luck of the seed (a found example becomes an explicit case
# in the test). Locally they keep exploring new examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@dataclass
class Faults:
    """What a fault-injecting middleware does to every request: wait, fail, and count."""

    delay: float = 0.0
    status: int | None = None
    requests: int = 0

    @property
    def middleware(self) -> Any:
        @web.middleware
        async def inject(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status is not None:
                body = {"error": {"code": "injected", "message": "injected fault"}}
                return web.json_response(body, status=self.status)
            response: web.StreamResponse = await handler(request)
            return response

        return inject


def stub_settings(
    database_url: str, stub: BotApiStub, secret: str, notify_secret: str, **extra: Any
) -> Settings:
    """The app's settings with Telegram pointed at the Bot API stand-in `stub`."""
    return Settings(
        database_url=database_url,
        telegram_bot_token=stub.token,
        telegram_api_url=stub.url,
        telegram_webhook_secret=secret,
        platform_webhook_secret=notify_secret,
        demo_world=None,
        **extra,
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(knowledge_dir=PROJECT_ROOT / "knowledge", database_url="sqlite+aiosqlite://")


@pytest.fixture(scope="session")
def knowledge(settings: Settings) -> Knowledge:
    return load_valid_knowledge(settings.knowledge_dir)


@pytest.fixture(scope="session")
def matcher(settings: Settings, knowledge: Knowledge) -> Matcher:
    return build_matcher(settings, knowledge)


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer()


_TEMPLATE: list[Path] = []


async def _migrated_sqlite(factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; each test gets a copy of it."""
    if not _TEMPLATE:
        path = factory.mktemp("template") / "bot.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not TEST_DATABASE_URL,
                reason="PostgreSQL tier: set TEST_DATABASE_URL=postgresql+asyncpg://... to run it",
            ),
        ),
    ]
)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database: a new SQLite file, or the shared PostgreSQL truncated."""
    if request.param == "sqlite":
        shutil.copyfile(await _migrated_sqlite(tmp_path_factory), tmp_path / "bot.db")
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    else:
        assert TEST_DATABASE_URL
        engine = create_engine(TEST_DATABASE_URL)
        await upgrade(engine)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    try:
        yield engine
    finally:
        await engine.dispose()


DEMO_WORLD = PROJECT_ROOT / "bot" / "platform" / "demo_world.yaml"
# Real argon2id, with the cost turned down: the tests hash demo passwords hundreds of times.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
async def world(db: AsyncEngine) -> None:
    """The demo world, loaded fresh (its times are relative to now)."""
    await load_world(session_factory(db), read_world(DEMO_WORLD), FAST_HASHER)


@pytest.fixture
def gateway(db: AsyncEngine, settings: Settings, renderer: Renderer) -> PlatformGateway:
    return build_gateway(settings, session_factory(db), renderer)


@pytest.fixture
def engine(
    db: AsyncEngine,
    world: None,
    settings: Settings,
    knowledge: Knowledge,
    matcher: Matcher,
    renderer: Renderer,
    gateway: PlatformGateway,
    handoffs: HandoffService,
) -> Engine:
    return Engine(
        settings=settings,
        sessions=session_factory(db),
        knowledge=knowledge,
        matcher=matcher,
        renderer=renderer,
        gateway=gateway,
        handoffs=handoffs,
    )


@pytest.fixture
async def bus(db: AsyncEngine) -> AsyncIterator[EventBus]:
    bus = EventBus(db.url.render_as_string(hide_password=False))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
def clock() -> Clock:
    """A clock the handoff tests can move; it starts on a weekday at 10:00 Beijing time."""
    return Clock(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def handoffs(
    db: AsyncEngine,
    settings: Settings,
    renderer: Renderer,
    gateway: PlatformGateway,
    bus: EventBus,
    clock: Clock,
) -> HandoffService:
    hours = BusinessHours.parse(settings.timezone, settings.business_hours, settings.business_days)
    return HandoffService(
        sessions=session_factory(db),
        renderer=renderer,
        gateway=gateway,
        bus=bus,
        hours=hours,
        pushed_channels=frozenset({"telegram", "webchat"}),
        clock=clock,
    )


class Chat:
    """One user talking to the engine, the way a channel would deliver their messages."""

    _ids = itertools.count(1)

    def __init__(self, engine: Engine, channel: str = "test", chat_id: str | None = None) -> None:
        self.engine = engine
        self.channel = channel
        self.chat_id = chat_id or f"chat-{next(self._ids)}"
        self.last: list[Reply] = []
        self._numbers = itertools.count(1)

    def message(self, text: str = "", action: str | None = None) -> IncomingMessage:
        return IncomingMessage(
            self.channel,
            self.chat_id,
            self.chat_id,
            f"{self.chat_id}:{next(self._numbers)}",
            text,
            action,
        )

    async def bind(self, merchant_id: str) -> None:
        assert await self.engine.bind(self.channel, self.chat_id, merchant_id)

    async def say(self, text: str) -> list[Reply]:
        self.last = await self.engine.handle(self.message(text))
        return self.last

    async def press(self, action: str) -> list[Reply]:
        self.last = await self.engine.handle(self.message(action=action))
        return self.last

    @property
    def text(self) -> str:
        return "\n".join(reply.text for reply in self.last)

    @property
    def buttons(self) -> list[Button]:
        return [button for reply in self.last for button in reply.buttons]

    def button(self, label_part: str) -> Button:
        return next(b for b in self.buttons if label_part in b.label)


@pytest.fixture
def chat(engine: Engine) -> Chat:
    return Chat(engine)
