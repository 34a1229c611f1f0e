"""Shared fixtures: the real knowledge, a migrated database per test, and a chat driver.

Every database test runs on SQLite, and again on PostgreSQL when TEST_DATABASE_URL is set
(CI sets it); without it the PostgreSQL tier is skipped with the reason shown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.platform.tables  # noqa: F401  (the platform's tables are truncated too)
from bot.app import build_gateway
from bot.engine import Engine
from bot.escalation.hours import BusinessHours
from bot.escalation.service import HandoffService
from bot.faq.knowledge import Knowledge
from bot.nlu.matcher import Matcher
from bot.platform.gateway import PlatformGateway
from bot.platform.world import load_world, read_world
from bot.render import Renderer
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.events import EventBus
from bot.storage.models import Base
from tests.support.common import (
    DEMO_WORLD,
    FAST_HASHER,
    TEST_DATABASE_URL,
    TIERS,
    Chat,
    Clock,
    create_database,
    demo_sqlite,
    migrated_sqlite,
    prepared,
)

# The console pages fixture, for every browser test module that defines a `server`.
from tests.support.console_browser import open_page  # noqa: F401

if TYPE_CHECKING:
    from playwright.async_api import Browser

# Hypothesis profiles (chosen by HYPOTHESIS_PROFILE, else "ci" when CI is set, else "dev"):
# - ci: derandomized, so CI runs the same examples every time: a failure there is reproducible
#   (its blob is printed for @reproduce_failure) and a pass is not luck of the seed. Hypothesis
#   itself turns the example database off when derandomized, so what a run found is kept by
#   making it an explicit @example in the test.
# - dev: random, with the example database kept in the work tree's .hypothesis/examples, so a
#   failure found once (by hand or by `make fuzz`) is replayed first by every later run.
# - fuzz (`make fuzz`): random, no deadline, the same database, and FUZZ_FACTOR times the
#   examples (tests/support/common.py `examples`): for hunting, not for CI.
_EXAMPLES = DirectoryBasedExampleDatabase(PROJECT_ROOT / ".hypothesis" / "examples")
hypothesis_settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, deadline=None
)
hypothesis_settings.register_profile("dev", database=_EXAMPLES)
hypothesis_settings.register_profile(
    "fuzz",
    deadline=None,
    database=_EXAMPLES,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


# ---------------------------------------------------------------------------------------------
# Tiers. Every test gets its markers here, from its module and the fixtures it uses, so a test
# file needs no marker lines of its own (a module may still add `slow` to a test it knows is).
# `make test-fast` runs `-m "not browser and not postgres and not slow"`.

# Modules that drive Chromium (every `test_*_browser` module); so is any test that uses the
# `browser` fixture (directly, or through `open_page`).
BROWSER_MODULES = frozenset({"test_console_browser", "test_webchat_browser"})
# Modules whose tests talk over sockets: an aiohttp server, the Bot API stand-in, a subprocess.
HTTP_MODULES = frozenset(
    {
        "test_api_properties",
        "test_assist_console",
        "test_attacks_console",
        "test_attacks_guess",
        "test_attacks_mask",
        "test_attacks_robust",
        "test_attacks_webchat",
        "test_benchmarks_smoke",
        "test_bot_over_http",
        "test_botapi_stub",
        "test_cli",
        "test_client_address",
        "test_console_http",
        "test_knowledge_console",
        "test_contract",
        "test_faults",
        "test_load",
        "test_notify",
        "test_platform_http",
        "test_retention",
        "test_telegram",
        "test_telegram_http",
        "test_telegram_setup",
        "test_terminal",
        "test_two_processes",
        "test_webchat_api",
    }
)
CONVERSATION_MODULES = frozenset(
    {"test_conversation_suite", "test_conversations", "test_flows", "test_handoff", "test_replies"}
)
# Modules that need PostgreSQL whatever their parameters.
POSTGRES_MODULES = frozenset({"test_two_processes"})
# Whole modules, and single tests (module::name, parameters left off), that take seconds each:
# real `btp-bot serve` processes and other subprocesses (a fresh interpreter loads the
# knowledge: about 2.5 s), outages waited out, load. Measured with --durations.
SLOW_MODULES = frozenset(
    {
        "test_benchmarks_smoke",  # the benchmark scripts, quick mode
        "test_contract",  # schemathesis over both OpenAPI files
        "test_faults",  # real serve processes killed and restarted, outages waited out
        "test_load",
        "test_telegram_setup",  # the README's steps with real serve processes
        "test_two_processes",
    }
)
SLOW_TESTS = frozenset(
    {
        "test_attacks_console::test_a_known_device_logs_in_while_strangers_hold_the_name_and_the_office_address",
        "test_attacks_robust::test_a_chat_id_that_is_no_id_is_acknowledged_and_not_stored",
        "test_attacks_robust::test_a_send_slower_than_the_lease_keeps_its_row_from_a_second_relay",
        "test_attacks_robust::test_an_amount_not_written_plainly_is_a_422",
        "test_attacks_robust::test_an_amount_out_of_range_or_past_the_cent_is_a_422",
        "test_attacks_robust::test_an_update_id_that_is_no_id_is_acknowledged_and_not_stored",
        "test_cli::test_migrations_run_quietly_unless_verbose",
        "test_cli::test_serve_says_where_the_console_is",
        "test_console_http::test_a_ticket_answered_in_the_console_reaches_the_user",
        "test_console_http::test_fifty_attempts_from_an_address_lock_that_address",
        "test_nlu::test_eval_command_json_lists_every_prediction",
        "test_nlu::test_parse_command_prints_json",
        "test_nlu_generalise::test_eval_help_says_how_each_set_was_made_and_which_is_the_test_set",
        "test_notify::test_health_readiness_and_metrics",
        "test_replies::test_merchant_order_replies_read_like_words",
        "test_telegram::test_updates_of_one_chat_are_answered_in_order",
        "test_terminal::test_interactive_chat_shows_numbered_buttons",
        "test_terminal::test_json_chat_answers_presses_buttons_and_takes_typed_answers",
        "test_webchat_api::test_a_malformed_message_is_a_400",
    }
)


def _tiers(item: pytest.Item) -> list[str]:
    module = item.path.stem
    fixtures = set(getattr(item, "fixturenames", ()))
    if module in BROWSER_MODULES or module.endswith("_browser") or "browser" in fixtures:
        tiers = ["browser"]
    elif module in HTTP_MODULES:
        tiers = ["http"]
    elif module in CONVERSATION_MODULES or fixtures & {"chat", "engine"}:
        tiers = ["conversation"]
    else:
        tiers = ["unit"]
    callspec = getattr(item, "callspec", None)
    params = list(callspec.params.values()) if callspec is not None else []
    if module in POSTGRES_MODULES or "postgresql" in params:
        tiers.append("postgres")
    name = item.name.split("[", 1)[0]
    if module in SLOW_MODULES or f"{module}::{name}" in SLOW_TESTS:
        tiers.append("slow")
    return tiers


def pytest_configure(config: pytest.Config) -> None:
    if TEST_DATABASE_URL and os.environ.get("PYTEST_XDIST_WORKER"):
        asyncio.run(create_database(TEST_DATABASE_URL))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in _tiers(item):
            item.add_marker(tier)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(knowledge_dir=PROJECT_ROOT / "knowledge", database_url="sqlite+aiosqlite://")


# The same knowledge, matcher and templates that every app a test starts is given.
@pytest.fixture(scope="session")
def knowledge(settings: Settings) -> Knowledge:
    return prepared(settings).knowledge


@pytest.fixture(scope="session")
def matcher(settings: Settings) -> Matcher:
    return prepared(settings).matcher


@pytest.fixture(scope="session")
def renderer(settings: Settings) -> Renderer:
    return prepared(settings).renderer


@pytest.fixture(params=TIERS)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database: a new SQLite file, or the shared PostgreSQL truncated. A
    SQLite test that asks for the `world` too gets it already loaded (copied, not loaded again)."""
    if request.param == "sqlite":
        demo = "world" in request.fixturenames
        template = demo_sqlite if demo else migrated_sqlite
        shutil.copyfile(await template(tmp_path_factory), tmp_path / "bot.db")
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


@pytest.fixture
async def world(db: AsyncEngine) -> None:
    """The demo world, its times relative to at most DEMO_MAX_AGE ago: on SQLite the `db`
    fixture copied it in; PostgreSQL loads it here."""
    if db.dialect.name != "sqlite":
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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium for the browser tier (imported here only when a test asks for it)."""
    from tests.support.browser import chromium

    async with chromium() as launched:
        yield launched


@pytest.fixture
def chat(engine: Engine) -> Chat:
    return Chat(engine)
