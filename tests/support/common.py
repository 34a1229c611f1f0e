"""What most test modules share: the demo world, fast hashing, the test database, a clock,
a chat driver and the settings pointed at the Bot API stand-in."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bot.app import Prepared, prepare
from bot.engine import Engine
from bot.platform.breaker import BreakerState, CircuitBreaker
from bot.platform.world import load_world, read_world
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.types import Button, IncomingMessage, Reply
from tests.botapi import BotApiStub
from webhook_server import create_app

DATA = Path(__file__).parent.parent / "data"


def _worker_database_url(base: str | None) -> str | None:
    """Each pytest-xdist worker gets its own PostgreSQL database beside TEST_DATABASE_URL's:
    the `db` fixture truncates every table, which must not happen under another worker's test.
    Without xdist (or without PostgreSQL) the URL is used as given."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not base or not worker:
        return base
    url = make_url(base)
    return url.set(database=f"{url.database}_{worker}").render_as_string(hide_password=False)


TEST_DATABASE_URL = _worker_database_url(os.environ.get("TEST_DATABASE_URL"))
# The database tiers a test runs on: SQLite always, PostgreSQL when TEST_DATABASE_URL is set.
TIERS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not TEST_DATABASE_URL,
            reason="PostgreSQL tier: set TEST_DATABASE_URL=postgresql+asyncpg://... to run it",
        ),
    ),
]
if TEST_DATABASE_URL:
    # Subprocesses a test starts (and modules that read the environment) see the same database.
    os.environ["TEST_DATABASE_URL"] = TEST_DATABASE_URL


async def create_database(url: str) -> None:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", parsed.database
        )
        if not exists:
            await connection.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await connection.close()


@dataclass
class Faults:
    """What a fault-injecting middleware does to every request: wait, fail, and count."""

    delay: float = 0.0
    # Set: every request waits until the test sets the event (a slow platform, no clock).
    gate: asyncio.Event | None = None
    status: int | None = None
    requests: int = 0

    @property
    def middleware(self) -> Any:
        @web.middleware
        async def inject(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests += 1
            if self.gate is not None:
                await self.gate.wait()
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
        telegram_bot_token=SecretStr(stub.token),
        telegram_api_url=stub.url,
        telegram_webhook_secret=SecretStr(secret),
        platform_webhook_secret=SecretStr(notify_secret),
        demo_world=None,
        **extra,
    )


_TEMPLATE: list[Path] = []


async def migrated_sqlite(factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; each test gets a copy of it."""
    if not _TEMPLATE:
        path = factory.mktemp("template") / "bot.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


DEMO_WORLD = PROJECT_ROOT / "bot" / "platform" / "demo_world.yaml"

# The demo world's times are relative to its loading ("-20m"): a copy older than this is loaded
# afresh, so a test meets the world at most this much older than one loaded for it alone.
DEMO_MAX_AGE = 30.0
# A copy loaded before midnight in the platform's zone is loaded afresh too: "-1d" is
# "yesterday" only on the day it was loaded ("the one from yesterday" picks by the day).
_ZONE = ZoneInfo(Settings.model_fields["timezone"].default)
_DEMO: list[tuple[float, date, Path]] = []


def _today() -> date:
    return datetime.now(_ZONE).date()


async def demo_sqlite(factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated and loaded with the demo world; each test gets a copy of it."""
    if not _DEMO or time.monotonic() - _DEMO[-1][0] > DEMO_MAX_AGE or _DEMO[-1][1] != _today():
        path = factory.mktemp("demo") / "bot.db"
        shutil.copyfile(await migrated_sqlite(factory), path)
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await load_world(session_factory(engine), read_world(DEMO_WORLD), FAST_HASHER)
        finally:
            await engine.dispose()
        _DEMO.append((time.monotonic(), _today(), path))
    return _DEMO[-1][2]


_PREPARED: dict[tuple[object, ...], Prepared] = {}


def prepared(settings: Settings) -> Prepared:
    """The knowledge, matcher and templates for `settings`, read once per test process: every
    app and engine a test starts on the same knowledge and NLU thresholds shares them."""
    key = (
        settings.knowledge_dir,
        settings.nlu_min_score,
        settings.nlu_min_margin,
        settings.nlu_min_coverage,
        settings.nlu_max_foreign,
    )
    if key not in _PREPARED:
        _PREPARED[key] = prepare(settings)
    return _PREPARED[key]


def bot_app(settings: Settings, **options: Any) -> web.Application:
    """`create_app(settings)` with the knowledge and templates prepared once per process."""
    return create_app(settings, prepared=prepared(settings), **options)


# Real argon2id, with the cost turned down: the tests hash and check passwords hundreds of
# times, and one hash at the default cost takes about 0.1 s of CPU. Every Settings of the test
# process (and of the `btp-bot` processes it starts, which inherit the environment) hashes at
# this cost too, so a demo password hashed here is not hashed again at its first login.
_FAST_COST = {"PASSWORD_TIME_COST": 1, "PASSWORD_MEMORY_KIB": 1024, "PASSWORD_PARALLELISM": 1}
for _name, _value in _FAST_COST.items():
    os.environ.setdefault(_name, str(_value))
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Seconds:
    """A monotonic clock (seconds, as `time.monotonic`) that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
    def templates(self) -> list[str | None]:
        """The template ids of the last replies, in order."""
        return [reply.template for reply in self.last]

    @property
    def buttons(self) -> list[Button]:
        return [button for reply in self.last for button in reply.buttons]

    def button(self, label_part: str) -> Button:
        return next(b for b in self.buttons if label_part in b.label)


FUZZ_FACTOR = 20


def examples(count: int) -> int:
    """A property test's number of examples: `count`, or FUZZ_FACTOR times as many under
    `make fuzz` (a test's own `max_examples` wins over any profile, so it is scaled here)."""
    return count * FUZZ_FACTOR if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else count


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, step: float = 0.05
) -> None:
    """Wait for `condition`, failing with `what` after `timeout` seconds (a guard against a
    hang, never a measure of speed: make it generous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state read afresh (mypy keeps an attribute narrowed by an earlier assert,
    though the awaited calls in between changed it)."""
    return breaker.state


@asynccontextmanager
async def listening(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free port of 127.0.0.1 until the block ends: its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
