"""Typed state and events (issue 19): states read back as enum members, events travel as
dataclasses with one encoding, and the console's queue is one statement however long it is."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.escalation.service import HandoffService
from bot.storage.db import session_factory
from bot.storage.events import (
    ChatChanged,
    Event,
    EventBus,
    OutboxFilled,
    QueueChanged,
    WebChatPush,
    decode,
    encode,
)
from bot.storage.models import Agent, Conversation, Handoff
from bot.types import ConversationState, HandoffStatus
from tests.support.common import FAST_HASHER, Chat, Clock

EVENTS: list[Event] = [
    QueueChanged(),
    OutboxFilled(),
    ChatChanged(7),
    ChatChanged(7, 42),
    WebChatPush("visitor-1", 9),
]


@pytest.mark.parametrize("sent", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_survives_its_encoding(sent: Event) -> None:
    payload = encode(sent)
    assert decode(payload) == sent
    assert f'"kind":"{sent.kind}"' in payload


@pytest.mark.parametrize(
    "payload", ['{"kind":"future"}', '{"kind":"chat"}', "not json", "[]", '{"x":1}']
)
def test_a_payload_that_is_no_event_of_ours_is_ignored(payload: str) -> None:
    assert decode(payload) is None


async def test_an_event_is_heard_as_the_dataclass_once_its_transaction_commits(
    db: AsyncEngine, bus: EventBus
) -> None:
    heard: list[Event] = []
    arrived = asyncio.Event()

    async def listener(event: Event) -> None:
        heard.append(event)
        arrived.set()

    bus.subscribe(listener)
    async with session_factory(db)() as session:
        await session.begin()
        await bus.emit(session, ChatChanged(3, 5))
        await bus.emit(session, QueueChanged())
        await session.rollback()
        async with session.begin():
            await bus.emit(session, ChatChanged(4))
    await asyncio.wait_for(arrived.wait(), timeout=30)
    await asyncio.sleep(0)
    assert heard == [ChatChanged(4)]


async def test_states_are_read_back_as_members_and_unknown_ones_are_refused(
    db: AsyncEngine, chat: Chat
) -> None:
    await chat.say("你好")
    sessions = session_factory(db)
    async with sessions() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.chat_id == chat.chat_id)
        )
        assert conversation is not None
        assert conversation.state is ConversationState.BOT
        stored = await session.scalar(
            text("SELECT state FROM conversations WHERE id = :id"), {"id": conversation.id}
        )
        assert stored == "bot"  # the value in the table is the string it always was
    with pytest.raises(StatementError):
        async with sessions() as session, session.begin():
            conversation = await session.get(Conversation, conversation.id)
            assert conversation is not None
            conversation.state = "closed"  # type: ignore[assignment]


async def test_the_queue_is_one_statement_however_long_it_is(
    db: AsyncEngine, handoffs: HandoffService, clock: Clock
) -> None:
    sessions = session_factory(db)
    async with sessions() as session, session.begin():
        supervisor = Agent(
            name="sup",
            password_hash=FAST_HASHER.hash("pw"),
            online=False,
            last_seen_at=clock.now,
            is_supervisor=True,
        )
        session.add(supervisor)
        await session.flush()
        agent_id = supervisor.id

    async def statements_for_queue() -> tuple[int, int]:
        seen: list[str] = []

        def count(*args: object) -> None:
            seen.append(str(args[2]))  # the statement

        event.listen(db.sync_engine, "before_cursor_execute", count)
        try:
            entries = await handoffs.queue(agent_id)
        finally:
            event.remove(db.sync_engine, "before_cursor_execute", count)
        return len(entries), len(seen)

    for number in range(1, 6):
        async with sessions() as session, session.begin():
            conversation = Conversation(channel="test", chat_id=f"queued-{number}")
            session.add(conversation)
            await session.flush()
            session.add(
                Handoff(
                    conversation_id=conversation.id,
                    status=HandoffStatus.QUEUED,
                    reason="asked",
                    findings={},
                    created_at=clock.now,
                )
            )
        listed, queries = await statements_for_queue()
        # The agent, then the queue with each chat's last words: two, for one chat or five.
        assert (listed, queries) == (number, 2)
