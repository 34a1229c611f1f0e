"""The queue and who gets which chat: the least loaded online agent with room, highest priority
and oldest first; a waiting user's place and estimated wait."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.escalation.core import ONLINE_WINDOW, HandoffCore
from bot.nlu.language import detect_language
from bot.nlu.normalize import fold
from bot.storage.events import ChatChanged, OutboxFilled, QueueChanged
from bot.storage.models import Agent, Conversation, Handoff, Message
from bot.types import ConversationState, Direction, HandoffStatus

DEFAULT_WAIT = timedelta(minutes=3)
PREVIEW = 120
_LISTED = (HandoffStatus.QUEUED, HandoffStatus.ASSIGNED, HandoffStatus.TICKET)
_QUEUE_ORDER = (Handoff.priority.desc(), Handoff.created_at, Handoff.id)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    handoff_id: int
    conversation_id: int
    channel: str
    language: str
    reason: str
    priority: int
    waiting_seconds: int
    agent_id: int | None
    status: HandoffStatus
    preview: str


def _language_of(ticket_text: str | None, conversation_language: str) -> str:
    """A ticket is tagged by the language it is written in, which the conversation's latest
    language need not be; anything else by the conversation's."""
    if ticket_text and (language := detect_language(fold(ticket_text[:200]))):
        return str(language)
    return conversation_language


# The last message the user wrote in the chat, for the queue's preview: a correlated subquery,
# so the whole queue is one statement (ix_messages_conversation_id_id serves it).
_LAST_WORDS = (
    select(Message.text)
    .where(Message.conversation_id == Conversation.id, Message.direction == Direction.IN)
    .order_by(Message.id.desc())
    .limit(1)
    .correlate(Conversation)
    .scalar_subquery()
)


class Assignment(HandoffCore):
    async def queue(self, agent_id: int) -> list[QueueEntry]:
        """What the console lists for this agent: the waiting queue and the agent's own chats
        (a supervisor sees every open chat). One statement, however long the queue."""
        async with self._sessions() as session:
            agent = await session.get(Agent, agent_id)
            if agent is None:
                return []
            query = (
                select(
                    Handoff.id,
                    Handoff.conversation_id,
                    Handoff.reason,
                    Handoff.priority,
                    Handoff.created_at,
                    Handoff.agent_id,
                    Handoff.status,
                    Handoff.ticket_text,
                    Conversation.channel,
                    Conversation.language,
                    _LAST_WORDS.label("preview"),
                )
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Handoff.status.in_(_LISTED))
                .order_by(*_QUEUE_ORDER)
            )
            if not agent.is_supervisor:
                query = query.where(
                    or_(Handoff.status != HandoffStatus.ASSIGNED, Handoff.agent_id == agent_id)
                )
            rows = (await session.execute(query)).all()
        now = self._clock()
        return [
            QueueEntry(
                row.id,
                row.conversation_id,
                row.channel,
                _language_of(row.ticket_text, row.language),
                row.reason,
                row.priority,
                int((now - row.created_at).total_seconds()),
                row.agent_id,
                row.status,
                (row.ticket_text or row.preview or "")[:PREVIEW],
            )
            for row in rows
        ]

    async def auto_assign(self) -> int:
        """Give waiting chats to online agents with room, highest priority and oldest first."""
        assigned = 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            waiting = await _waiting(session)
            for handoff in waiting:
                if await self._assign_if_free(session, handoff, now) is None:
                    break
                assigned += 1
            if assigned:
                await self.bus.emit(session, QueueChanged())
                await self.bus.emit(session, OutboxFilled())
        if assigned:
            await self.update_positions()
        return assigned

    async def update_positions(self) -> None:
        """Tell waiting users their new place when it moved by a useful amount."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            waiting = await _waiting(session)
            told = False
            for handoff in waiting:
                position, wait = await self._position(session, handoff, now)
                last = handoff.last_told_position
                if last is not None and (last - position >= 2 or (position == 1 and last > 1)):
                    conversation = await session.get(Conversation, handoff.conversation_id)
                    assert conversation is not None
                    await self._tell(
                        session, conversation, "handoff/position", position=position, minutes=wait
                    )
                    handoff.last_told_position = position
                    told = True
            if told:
                await self.bus.emit(session, OutboxFilled())

    async def _assign_if_free(
        self, session: AsyncSession, handoff: Handoff, now: datetime, *, tell: bool = True
    ) -> Agent | None:
        """Give the handoff to the least loaded online agent with room; `tell` sends the user
        the "an agent joined" notice (False when the caller's reply says it)."""
        agents = await self._online_agents(session, now)
        loads = await self._loads(session, [agent.id for agent in agents])
        candidates = [
            (loads.get(agent.id, 0), agent.id, agent)
            for agent in agents
            if loads.get(agent.id, 0) < self.capacity_of(agent)
        ]
        if not candidates:
            return None
        _, _, agent = min(candidates, key=lambda c: (c[0], c[1]))
        claimed = await session.execute(
            update(Handoff)
            .where(Handoff.id == handoff.id, Handoff.status == HandoffStatus.QUEUED)
            .values(status=HandoffStatus.ASSIGNED, agent_id=agent.id, assigned_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        handoff.status, handoff.agent_id, handoff.assigned_at = (
            HandoffStatus.ASSIGNED,
            agent.id,
            now,
        )
        conversation = await session.get(Conversation, handoff.conversation_id)
        assert conversation is not None
        if tell and conversation.state == ConversationState.QUEUED:
            await self._tell(session, conversation, "handoff/assigned", agent=agent.name)
        conversation.state = ConversationState.AGENT
        await self._audit(
            session,
            None,
            "auto_assign",
            conversation.id,
            {"handoff": handoff.id, "agent": agent.name},
        )
        await self.bus.emit(session, ChatChanged(conversation.id))
        return agent

    async def _online_agents(self, session: AsyncSession, now: datetime) -> Sequence[Agent]:
        return (
            await session.scalars(
                select(Agent)
                .where(Agent.online.is_(True), Agent.last_seen_at > now - ONLINE_WINDOW)
                .order_by(Agent.id)
            )
        ).all()

    async def _loads(self, session: AsyncSession, agent_ids: Sequence[int]) -> dict[int, int]:
        """How many chats each agent holds now (an agent holding none is left out)."""
        if not agent_ids:
            return {}
        rows = await session.execute(
            select(Handoff.agent_id, func.count())
            .where(Handoff.agent_id.in_(agent_ids), Handoff.status == HandoffStatus.ASSIGNED)
            .group_by(Handoff.agent_id)
        )
        return {agent_id: int(count) for agent_id, count in rows.all() if agent_id is not None}

    async def _load(self, session: AsyncSession, agent_id: int) -> int:
        return (await self._loads(session, [agent_id])).get(agent_id, 0)

    async def _position(
        self, session: AsyncSession, handoff: Handoff, now: datetime
    ) -> tuple[int, int]:
        """Place in the queue (1 = next) and an estimated wait in minutes from recent waits."""
        ahead = int(
            await session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(
                    Handoff.status == HandoffStatus.QUEUED,
                    (Handoff.priority > handoff.priority)
                    | (
                        (Handoff.priority == handoff.priority)
                        & (Handoff.created_at < handoff.created_at)
                    )
                    | (
                        (Handoff.priority == handoff.priority)
                        & (Handoff.created_at == handoff.created_at)
                        & (Handoff.id < handoff.id)
                    ),
                )
            )
            or 0
        )
        recent = (
            await session.execute(
                select(Handoff.created_at, Handoff.assigned_at)
                .where(
                    Handoff.assigned_at.is_not(None), Handoff.assigned_at > now - timedelta(days=1)
                )
                .order_by(Handoff.assigned_at.desc())
                .limit(50)
            )
        ).all()
        waits = [
            (assigned - created).total_seconds()
            for created, assigned in recent
            if assigned and created
        ]
        typical = statistics.median(waits) if waits else DEFAULT_WAIT.total_seconds()
        agents = max(1, len(await self._online_agents(session, now)))
        minutes = max(1, round(typical * (ahead + 1) / agents / 60))
        return ahead + 1, minutes


async def _waiting(session: AsyncSession) -> Sequence[Handoff]:
    """The queued handoffs, in the order they are served."""
    query = select(Handoff).where(Handoff.status == HandoffStatus.QUEUED).order_by(*_QUEUE_ORDER)
    return (await session.scalars(query)).all()
