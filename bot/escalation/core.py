"""What every part of the handoff service shares: its dependencies, its errors, and the few
steps each part takes (find the open handoff, check the agent may act, tell the user, audit).

The service is split by who acts (`user_side`, `agent_actions`, `agent_tools`) over one queue
(`assignment`); `bot.escalation.service.HandoffService` puts the parts together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cleantext import clean_text
from bot.delivery import record_outgoing
from bot.escalation.hours import BusinessHours
from bot.platform.gateway import PlatformGateway
from bot.privacy import mask_data
from bot.render import Renderer
from bot.storage.events import EventBus
from bot.storage.models import Agent, AuditEntry, Conversation, Handoff
from bot.types import HandoffStatus, Language, Reply, SenderKind

ONLINE_WINDOW = timedelta(minutes=2)
ORDER_NO = re.compile(r"BT\d{16}")
# A handoff people still hold or will: the user's messages go to them, not to the bot.
OPEN = (HandoffStatus.QUEUED, HandoffStatus.ASSIGNED)
MAX_TEXT = 4000


class HandoffError(Exception):
    """The console asked for something it may not do (not its chat, already claimed, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def checked_text(text: str, what: str) -> str:
    """Text an agent sends or keeps: 1 to 4,000 characters after trimming."""
    text = clean_text(text).strip()
    if not text or len(text) > MAX_TEXT:
        raise HandoffError("bad_request", f"a {what} has 1 to 4,000 characters")
    return text


class HandoffCore:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        renderer: Renderer,
        gateway: PlatformGateway,
        bus: EventBus,
        hours: BusinessHours,
        pushed_channels: frozenset[str],
        capacity: int = 3,
        clock: Callable[[], datetime] | None = None,
        link_limits: tuple[Decimal, Decimal] = (Decimal("0.01"), Decimal("50000.00")),
    ) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._gateway = gateway
        self.bus = bus
        self._hours = hours
        self._pushed = pushed_channels
        self._capacity = capacity
        self._clock = clock or (lambda: datetime.now(UTC))
        self._link_limits = link_limits

    def capacity_of(self, agent: Agent) -> int:
        """The most chats assigned to the agent at once: its own capacity when one was set
        (`btp-bot agent set NAME --capacity N`), else AGENT_CAPACITY."""
        return agent.capacity if agent.capacity is not None else self._capacity

    async def _open_handoff(self, session: AsyncSession, conversation_id: int) -> Handoff | None:
        return await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN))
            .order_by(Handoff.id.desc())
        )

    async def _visible(
        self, session: AsyncSession, agent_id: int, conversation_id: int
    ) -> tuple[Conversation, Handoff | None]:
        """The conversation, if the console lists it for this agent; otherwise 'not found'."""
        agent = await session.get(Agent, agent_id)
        conversation = await session.get(Conversation, conversation_id)
        if agent is None or conversation is None:
            raise HandoffError("not_found", "no such chat")
        handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id)
            .order_by(Handoff.id.desc())
        )
        if agent.is_supervisor:
            return conversation, handoff
        if handoff is None or not (
            handoff.status in (HandoffStatus.QUEUED, HandoffStatus.TICKET)
            or handoff.agent_id == agent_id
        ):
            raise HandoffError("not_found", "no such chat")
        return conversation, handoff

    async def _held(
        self, session: AsyncSession, agent_id: int, conversation_id: int
    ) -> tuple[Handoff, Conversation]:
        """The agent's own assigned handoff on this conversation (a supervisor may act on any)."""
        agent = await session.get(Agent, agent_id)
        conversation = await session.get(Conversation, conversation_id)
        handoff = await self._open_handoff(session, conversation_id)
        if (
            agent is None
            or conversation is None
            or handoff is None
            or handoff.status != HandoffStatus.ASSIGNED
        ):
            raise HandoffError("not_found", "no such open chat")
        if handoff.agent_id != agent_id and not agent.is_supervisor:
            raise HandoffError("forbidden", "not your chat")
        return handoff, conversation

    async def _send(
        self,
        session: AsyncSession,
        conversation: Conversation,
        reply: Reply,
        *,
        sender: SenderKind = SenderKind.SYSTEM,
    ) -> None:
        """Store `reply` in the chat; channels that deliver later get an outbox row."""
        await record_outgoing(
            session,
            conversation,
            [reply],
            sender=sender,
            queue=conversation.channel in self._pushed,
        )

    async def _tell(
        self, session: AsyncSession, conversation: Conversation, template: str, **values: Any
    ) -> None:
        language = Language(conversation.language)
        await self._send(session, conversation, self._say(language, template, **values))

    def _say(self, language: Language, template: str, **values: Any) -> Reply:
        return self._renderer.reply(language, template, **values)

    def _hours_text(self) -> str:
        return f"{self._hours.opens:%H:%M}-{self._hours.closes:%H:%M}"

    async def _audit(
        self,
        session: AsyncSession,
        agent_id: int | None,
        action: str,
        conversation_id: int | None,
        detail: dict[str, Any],
    ) -> None:
        session.add(
            AuditEntry(
                agent_id=agent_id,
                action=action,
                conversation_id=conversation_id,
                detail=mask_data(detail),
                at=self._clock(),
            )
        )
