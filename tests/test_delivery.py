"""The outbox relay and the inbound dispatcher on a real database.

The senders here record what they are given: they stand at the outer edge, where a channel's
API would be (the Telegram path is tested end to end against the Bot API stand-in elsewhere).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.channels.inbound import InboundDispatcher
from bot.channels.outbox import OutboxRelay, RetryLater, Undeliverable
from bot.delivery import LEASE
from bot.storage.db import session_factory
from bot.storage.models import Conversation, InboundUpdate, OutboxItem
from bot.types import OutboxStatus
from tests.support.common import Clock


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failures: list[Exception] = []

    async def send(self, chat_id: str, payload: dict[str, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((chat_id, str(payload["text"])))


async def queue(db: AsyncEngine, chat: str, *texts: str) -> None:
    async with session_factory(db)() as session, session.begin():
        conversation = await session.scalar(
            select(Conversation).where(Conversation.chat_id == chat)
        )
        if conversation is None:
            conversation = Conversation(channel="telegram", chat_id=chat, slots={}, findings={})
            session.add(conversation)
            await session.flush()
        for text in texts:
            session.add(
                OutboxItem(
                    conversation_id=conversation.id,
                    channel="telegram",
                    chat_id=chat,
                    payload={"text": text, "buttons": [], "image": None},
                )
            )


async def statuses(db: AsyncEngine) -> list[str]:
    async with session_factory(db)() as session:
        return list(
            (await session.scalars(select(OutboxItem.status).order_by(OutboxItem.id))).all()
        )


async def test_sent_once_in_order_per_chat(db: AsyncEngine) -> None:
    await queue(db, "1", "a1", "a2", "a3")
    await queue(db, "2", "b1")
    recorder = Recorder()
    relay = OutboxRelay(session_factory(db), {"telegram": recorder})
    assert await relay.flush() == 4
    assert await relay.flush() == 0
    assert [t for c, t in recorder.sent if c == "1"] == ["a1", "a2", "a3"]
    assert await statuses(db) == ["sent"] * 4


async def test_retry_after_holds_the_chat_and_keeps_its_order(db: AsyncEngine) -> None:
    await queue(db, "1", "first", "second")
    recorder = Recorder()
    recorder.failures.append(RetryLater(20))
    clock = Clock(datetime.now(UTC))
    relay = OutboxRelay(session_factory(db), {"telegram": recorder}, clock=clock)
    assert await relay.flush() == 0
    clock.advance(seconds=19)
    assert await relay.flush() == 0  # not due yet: retry_after is honoured
    clock.advance(seconds=2)
    assert await relay.flush() == 2
    assert recorder.sent == [("1", "first"), ("1", "second")]


async def test_undeliverable_is_marked_failed_and_the_rest_goes_on(db: AsyncEngine) -> None:
    await queue(db, "1", "blocked", "next")
    recorder = Recorder()
    recorder.failures.append(Undeliverable("bot blocked"))
    relay = OutboxRelay(session_factory(db), {"telegram": recorder})
    await relay.flush()
    assert await statuses(db) == ["failed", "sent"]


async def test_a_lease_left_by_a_dead_sender_is_picked_up(db: AsyncEngine) -> None:
    await queue(db, "1", "orphan")
    async with session_factory(db)() as session, session.begin():
        item = await session.scalar(select(OutboxItem))
        assert item is not None
        item.status, item.next_attempt_at = "sending", datetime(2020, 1, 1, tzinfo=UTC)
    recorder = Recorder()
    assert await OutboxRelay(session_factory(db), {"telegram": recorder}).flush() == 1


async def test_dispatcher_stores_once_and_processes_in_order_per_chat(db: AsyncEngine) -> None:
    seen: list[int] = []
    gate, other_chat_done = asyncio.Event(), asyncio.Event()

    async def process(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            await gate.wait()
        seen.append(payload["n"])
        if payload["n"] == 3:
            other_chat_done.set()

    dispatcher = InboundDispatcher(session_factory(db), "telegram", process)
    assert await dispatcher.accept(1, "chat-a", {"n": 1})
    assert await dispatcher.accept(2, "chat-a", {"n": 2})
    assert await dispatcher.accept(3, "chat-b", {"n": 3})
    assert not await dispatcher.accept(1, "chat-a", {"n": 1})
    async with asyncio.timeout(10):
        await other_chat_done.wait()
    assert seen == [3]  # chat-b is not held up by chat-a
    gate.set()
    await dispatcher.idle()
    assert seen == [3, 1, 2]


async def test_dispatcher_retries_a_failing_update_then_resumes_after_restart(
    db: AsyncEngine,
) -> None:
    attempts: list[int] = []

    async def flaky(payload: dict[str, Any]) -> None:
        attempts.append(payload["n"])
        if len(attempts) < 3:
            raise RuntimeError("database briefly away")

    dispatcher = InboundDispatcher(session_factory(db), "telegram", flaky, retry_base=0.01)
    await dispatcher.accept(7, "chat", {"n": 7})
    await dispatcher.idle()
    assert attempts == [7, 7, 7]
    async with session_factory(db)() as session:
        row = await session.scalar(select(InboundUpdate))
    assert row is not None and row.processed_at is not None and row.attempts == 2

    # An update stored by a process that died before processing it:
    async with session_factory(db)() as session, session.begin():
        session.add(
            InboundUpdate(source="telegram", update_id=8, chat_key="chat", payload={"n": 8})
        )
    done: list[int] = []

    async def record(payload: dict[str, Any]) -> None:
        done.append(payload["n"])

    restarted = InboundDispatcher(session_factory(db), "telegram", record)
    assert await restarted.resume_pending() == 1
    await restarted.idle()
    assert done == [8]


async def test_two_relays_never_send_the_same_row(db: AsyncEngine) -> None:
    await queue(db, "1", *(f"m{i}" for i in range(20)))
    await queue(db, "2", *(f"n{i}" for i in range(20)))
    recorder = Recorder()
    first = OutboxRelay(session_factory(db), {"telegram": recorder})
    second = OutboxRelay(session_factory(db), {"telegram": recorder})
    while sum(await asyncio.gather(first.flush(), second.flush())):
        pass
    assert len(recorder.sent) == 40
    assert len(set(recorder.sent)) == 40
    assert [t for c, t in recorder.sent if c == "1"] == [f"m{i}" for i in range(20)]


async def test_a_row_waiting_to_be_retried_holds_its_newer_rows(db: AsyncEngine) -> None:
    await queue(db, "1", "first")
    recorder = Recorder()
    recorder.failures.append(RetryLater(30))
    # A minute ahead of the rows' own timestamps, so the rows queued below are due at once.
    clock = Clock(datetime.now(UTC) + timedelta(minutes=1))
    relay = OutboxRelay(session_factory(db), {"telegram": recorder}, clock=clock)
    assert await relay.flush() == 0
    await queue(db, "1", "second")  # arrives while "first" waits for its retry_after
    await queue(db, "2", "other chat")
    assert await relay.flush() == 1  # only the other chat goes
    clock.advance(seconds=31)
    assert await relay.flush() == 2
    assert [t for c, t in recorder.sent if c == "1"] == ["first", "second"]


async def test_a_reply_handed_over_goes_after_every_row_of_its_chat_that_waits(
    db: AsyncEngine,
) -> None:
    """A load run sent a chat's 5th reply before its 4th: the 4th had gone back to the queue
    (its lease went stale while it waited to go out) after an older row of the chat was
    claimed, and sending that older row let the chat go. The chat waits until every row that
    went back to the queue has gone out."""
    await queue(db, "1", "z", "a", "b")
    async with session_factory(db)() as session, session.begin():
        rows = list((await session.scalars(select(OutboxItem).order_by(OutboxItem.id))).all())
        later = datetime.now(UTC) + LEASE
        for row in rows[1:]:  # a and b: written leased to this process by their turns
            row.status, row.next_attempt_at = OutboxStatus.SENDING, later
    z, a, b = rows
    recorder = Recorder()
    relay = OutboxRelay(session_factory(db), {"telegram": recorder})
    claimed = await relay._claim()  # z, due
    assert [item.id for item in claimed] == [z.id]
    await relay._queue([a])  # a's lease went stale before it could go out: back to the queue
    await relay._send_chat(claimed)  # z goes out; a still waits
    relay.deliver([b])  # b, fresh, is handed over by its turn
    await asyncio.gather(*relay._inflight)
    await relay.flush()
    assert [text for _, text in recorder.sent] == ["z", "a", "b"]
