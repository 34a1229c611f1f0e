"""The knowledge loop's test helpers: a console on either database tier, a question no version
of the knowledge answers yet, small NLU sets, and waiting for a process to swap versions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

import bot.platform.tables  # noqa: F401  (the platform's tables are truncated too)
from bot.faq.live import LiveKnowledge
from bot.storage.db import create_engine, upgrade
from bot.storage.models import Base, Conversation, UnansweredQuestion
from bot.types import Label
from tests.support.common import TEST_DATABASE_URL, TIERS
from tests.support.console import Server, serve_console
from tests.support.webchat import Visitor

# Made-up words no knowledge version knows: refused today, answered once they are phrasings.
NEW_QUESTION = "蓝鲸套餐怎么开通"
NEW_QUESTION_EN = "how do i turn on the bluewhale plan"
TARGET = Label.FEES_PROMOTIONS


async def truncate_postgres() -> str:
    """The shared PostgreSQL, migrated and emptied: its URL."""
    assert TEST_DATABASE_URL
    engine = create_engine(TEST_DATABASE_URL)
    try:
        await upgrade(engine)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
    return TEST_DATABASE_URL


def write_sets(folder: Path, sets: dict[str, Iterable[tuple[str, Label]]]) -> Path:
    """Small NLU sets (`nlu_<name>.jsonl`) for a preview a test can afford."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in sets.items():
        lines = [
            json.dumps({"text": t, "expected": label.value}, ensure_ascii=False)
            for t, label in items
        ]
        (folder / f"nlu_{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(params=TIERS)
async def kb_server(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """The console on the demo world, on SQLite or PostgreSQL, previewing on small sets."""
    overrides: dict[str, Any] = {
        "kb_eval_dir": write_sets(
            tmp_path / "sets",
            {
                "dev": [(NEW_QUESTION, TARGET), ("手续费是多少", Label.FEES_RATES)],
                "test": [("怎么提现", Label.WITHDRAW_HOW), ("你好", Label.CHITCHAT_GREET)],
            },
        )
    }
    if request.param == "postgresql":
        overrides["database_url"] = await truncate_postgres()
    async with serve_console(tmp_path, tmp_path_factory, **overrides) as running:
        yield running


def answered_by(replies: list[dict[str, Any]]) -> str | None:
    """The FAQ entry that answered (its helpful-vote button names it), or None."""
    for reply in replies:
        for button in reply.get("buttons", []):
            action = str(button.get("action", ""))
            if action.startswith("fb:") and action.endswith(":yes"):
                return action.split(":")[1]
    return None


async def in_use(live: LiveKnowledge, version_id: int, seconds: float = 30.0) -> None:
    """Wait until the process answers from `version_id` (the swap runs off the request)."""
    async with asyncio.timeout(seconds):
        while live.current.version_id != version_id:
            await asyncio.sleep(0.05)


async def unanswered(server: Server, *texts: str) -> None:
    """Questions the bot could not answer, as the turn stores them (one seed chat per call)."""
    async with server.sessions() as session, session.begin():
        chat = f"kb-seed-{texts[0]}"
        conversation = Conversation(channel="webchat", chat_id=chat, language="zh")
        session.add(conversation)
        await session.flush()
        for text in texts:
            session.add(
                UnansweredQuestion(conversation_id=conversation.id, text=text, language="zh")
            )


async def asked_and_unanswered(
    server: Server, http: aiohttp.ClientSession, question: str, *texts: str
) -> Visitor:
    """A supervisor 老王, a web chat visitor whose `question` no version answers yet, and
    `texts` among the unanswered questions: the start of every knowledge-loop scenario."""
    await server.add_agent("老王", supervisor=True)
    visitor = await Visitor(http, server.base).open()
    assert answered_by(await visitor.say(question)) is None
    await unanswered(server, *texts)
    return visitor
