"""Assembling the bot from settings: knowledge, matcher, templates, database, engine.

Resources are opened and closed in one place (`open_bot`), as the channels and CLI need them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.engine import Engine
from bot.faq.knowledge import Knowledge, load_valid_knowledge
from bot.nlu.matcher import Matcher, MatcherConfig
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade


def build_matcher(settings: Settings, knowledge: Knowledge) -> Matcher:
    config = MatcherConfig(
        min_score=settings.nlu_min_score,
        min_margin=settings.nlu_min_margin,
        min_coverage=settings.nlu_min_coverage,
        max_foreign=settings.nlu_max_foreign,
    )
    return Matcher(knowledge, config)


@dataclass(slots=True)
class Bot:
    settings: Settings
    db: AsyncEngine
    engine: Engine


@asynccontextmanager
async def open_bot(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Bot]:
    """The ready engine on an upgraded database; the database is closed on exit."""
    knowledge = load_valid_knowledge(settings.knowledge_dir)
    matcher = build_matcher(settings, knowledge)
    db = create_engine(settings.database_url)
    try:
        if migrate:
            await upgrade(db)
        engine = Engine(
            settings=settings,
            sessions=session_factory(db),
            knowledge=knowledge,
            matcher=matcher,
            renderer=Renderer(),
        )
        yield Bot(settings, db, engine)
    finally:
        await db.dispose()
