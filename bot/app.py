"""Assembling the bot from settings: knowledge, matcher, templates, database, engine.

Resources are opened and closed in one place (`open_bot`), as the channels and CLI need them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.engine import Engine, EngineMetrics
from bot.escalation.hours import BusinessHours
from bot.escalation.service import HandoffService
from bot.faq.files import digest, read_folder
from bot.faq.knowledge import Knowledge, load_valid_knowledge_files
from bot.faq.live import LiveKnowledge
from bot.nlu.matcher import Matcher, MatcherConfig
from bot.platform.gateway import PlatformGateway
from bot.platform.http import HttpPlatform
from bot.platform.notifier import Notifier, OutboxNotifier, SmtpNotifier, SmtpSettings
from bot.platform.outside import OutsideTransactions
from bot.platform.sql import SqlPlatform
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.events import EventBus
from bot.types import Language


def build_matcher(settings: Settings, knowledge: Knowledge) -> Matcher:
    config = MatcherConfig(
        min_score=settings.nlu_min_score,
        min_margin=settings.nlu_min_margin,
        min_coverage=settings.nlu_min_coverage,
        max_foreign=settings.nlu_max_foreign,
    )
    return Matcher(knowledge, config)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a bot reads before it opens a database: the knowledge, the matcher built over it
    and the reply templates. `open_bot` prepares them from the settings; a process that starts
    many bots on the same knowledge (the test suite) prepares them once and hands them in."""

    knowledge: Knowledge
    matcher: Matcher
    renderer: Renderer
    # The digest of the folder's files the knowledge was read from (bot/faq/files.py).
    digest: str


def prepare(settings: Settings) -> Prepared:
    files = read_folder(settings.knowledge_dir)
    knowledge = load_valid_knowledge_files(files)
    return Prepared(knowledge, build_matcher(settings, knowledge), Renderer(), digest(files))


@dataclass(slots=True)
class Bot:
    settings: Settings
    db: AsyncEngine
    engine: Engine
    gateway: PlatformGateway
    renderer: Renderer
    sessions: async_sessionmaker[AsyncSession]
    handoffs: HandoffService
    bus: EventBus
    knowledge: LiveKnowledge


def build_notifier(settings: Settings) -> Notifier:
    if not settings.smtp_host:
        return OutboxNotifier()
    return SmtpNotifier(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sender=settings.smtp_sender,
            start_tls=settings.smtp_starttls,
        )
    )


def build_gateway(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], renderer: Renderer
) -> PlatformGateway:
    if settings.platform_api_url:
        key = settings.platform_api_key.get_secret_value() if settings.platform_api_key else None
        return OutsideTransactions(
            HttpPlatform(settings.platform_api_url, api_key=key, timeout=settings.platform_timeout)
        )
    return build_sql_gateway(settings, sessions, renderer)


def remote_platform(gateway: PlatformGateway) -> HttpPlatform | None:
    """The HTTP client under `gateway` when the platform is remote (PLATFORM_API_URL)."""
    remote = gateway.remote if isinstance(gateway, OutsideTransactions) else gateway
    return remote if isinstance(remote, HttpPlatform) else None


def build_sql_gateway(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], renderer: Renderer
) -> SqlPlatform:
    """The embedded platform on the bot's database; PLATFORM_API_URL selects the remote one."""

    def reset_message(link: str) -> tuple[str, str]:
        subject = renderer.render(Language.ZH, "notices/password_reset_subject")
        body = "\n\n".join(
            renderer.render(language, "notices/password_reset", link=link) for language in Language
        )
        return subject, body

    return SqlPlatform(
        sessions,
        shares_bot_database=True,
        notifier=build_notifier(settings),
        public_url=settings.platform_public_url,
        reset_message=reset_message,
        bind_code_secret=settings.bind_code_key,
        bind_limit=settings.bind_limit,
    )


def build_handoffs(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    renderer: Renderer,
    gateway: PlatformGateway,
    bus: EventBus,
    pushed_channels: frozenset[str],
) -> HandoffService:
    hours = BusinessHours.parse(settings.timezone, settings.business_hours, settings.business_days)
    return HandoffService(
        sessions=sessions,
        renderer=renderer,
        gateway=gateway,
        bus=bus,
        hours=hours,
        pushed_channels=pushed_channels,
        capacity=settings.agent_capacity,
        link_limits=(settings.payment_link_min, settings.payment_link_max),
    )


@asynccontextmanager
async def open_bot(
    settings: Settings,
    *,
    migrate: bool = True,
    relay_channels: frozenset[str] = frozenset(),
    pushed_channels: frozenset[str] = frozenset(),
    metrics: EngineMetrics | None = None,
    prepared: Prepared | None = None,
) -> AsyncIterator[Bot]:
    """The ready engine on an upgraded database, answering from the published knowledge
    (`knowledge/` imported as its first version on the first start); the database is closed
    on exit. `prepared` must come from `prepare` with the same settings (else they are
    prepared here); its knowledge and matcher are used while the published version is the
    folder it was read from, and no version is built twice for that."""
    prepared = prepared or prepare(settings)
    renderer = prepared.renderer
    db = create_engine(settings.database_url, settings)
    try:
        if migrate:
            await upgrade(db)
        sessions = session_factory(db)
        live = LiveKnowledge(
            sessions,
            partial(build_matcher, settings),
            built=(prepared.digest, prepared.knowledge, prepared.matcher),
        )
        published = await live.start(settings.knowledge_dir)
        gateway = build_gateway(settings, sessions, renderer)
        bus = EventBus(settings.database_url)
        await bus.start()
        bus.subscribe(live.on_event)
        handoffs = build_handoffs(settings, sessions, renderer, gateway, bus, pushed_channels)
        engine = Engine(
            settings=settings,
            sessions=sessions,
            knowledge=published.knowledge,
            matcher=published.matcher,
            renderer=renderer,
            gateway=gateway,
            relay_channels=relay_channels,
            metrics=metrics,
            handoffs=handoffs,
        )
        live.on_swap(lambda version: engine.use_knowledge(version.knowledge, version.matcher))
        try:
            yield Bot(settings, db, engine, gateway, renderer, sessions, handoffs, bus, live)
        finally:
            await bus.close()
            remote = remote_platform(gateway)
            if remote is not None:
                await remote.close()
    finally:
        await db.dispose()
