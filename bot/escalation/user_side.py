"""The user's side of a handoff, run inside the engine's transaction for the user's message:
ask for a person, go back to the bot, leave a ticket, rate the agent."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.escalation.assignment import Assignment
from bot.privacy import mask_data, mask_pii
from bot.storage.events import ChatChanged, QueueChanged
from bot.storage.models import Conversation, Handoff
from bot.types import ConversationState, HandoffStatus, Language, Reply

# What going back to the bot cancels: a hand-over waiting or taken, and a ticket being written
# or left and not answered yet.
_CANCELLABLE = (
    HandoffStatus.QUEUED,
    HandoffStatus.ASSIGNED,
    HandoffStatus.TICKET_PENDING,
    HandoffStatus.TICKET,
)
PRIORITY_WORDS = re.compile(
    r"投诉|举报|被骗|诈骗|盗刷|被盗|complain|fraud|scam|stolen|unauthori[sz]ed", re.I
)


def priority_of(text: str) -> int:
    """Complaints and fraud jump the queue."""
    return 1 if PRIORITY_WORDS.search(text) else 0


class UserSide(Assignment):
    async def request(
        self,
        session: AsyncSession,
        conversation: Conversation,
        *,
        reason: str,
        priority: int,
        findings: dict[str, Any],
    ) -> list[Reply]:
        """Open a handoff and say what happens next: a place in the queue, an agent, or a ticket."""
        now = self._clock()
        language = Language(conversation.language)
        existing = await self._open_handoff(session, conversation.id)
        if existing is not None:
            if priority > existing.priority:
                existing.priority = priority
            position, wait = await self._position(session, existing, now)
            return [self._say(language, "handoff/already", position=position, minutes=wait)]
        open_now = self._hours.open_at(now)
        ticket = not open_now or not await self._online_agents(session, now)
        handoff = Handoff(
            conversation_id=conversation.id,
            status=HandoffStatus.TICKET_PENDING if ticket else HandoffStatus.QUEUED,
            reason=reason,
            priority=priority,
            findings=mask_data(findings),
            created_at=now,
        )
        session.add(handoff)
        if ticket:
            conversation.flow, conversation.flow_step = "ticket", "message"
            return [
                self._say(
                    language, "handoff/leave_message", closed=not open_now, hours=self._hours_text()
                )
            ]
        conversation.state = ConversationState.QUEUED
        await session.flush()
        # The turn's own reply says who took the chat; a notice as well would say it twice.
        agent = await self._assign_if_free(session, handoff, now, tell=False)
        await self.bus.emit(session, QueueChanged())
        if agent is not None:
            return [self._say(language, "handoff/assigned", agent=agent.name)]
        position, wait = await self._position(session, handoff, now)
        handoff.last_told_position = position
        return [self._say(language, "handoff/queued", position=position, minutes=wait)]

    async def cancel(self, session: AsyncSession, conversation: Conversation) -> bool:
        """The user went back to the bot ("返回机器人"): the queued or assigned hand-over, or the
        ticket left out of hours that no one has answered yet, is cancelled; False when there
        was nothing to cancel."""
        handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation.id, Handoff.status.in_(_CANCELLABLE))
            .order_by(Handoff.id.desc())
        )
        conversation.state = ConversationState.BOT
        if handoff is None:
            return False
        handoff.status = HandoffStatus.RETURNED
        handoff.resolved_at = self._clock()
        await self._audit(
            session, None, "user_returned_to_bot", conversation.id, {"handoff": handoff.id}
        )
        await self.bus.emit(session, QueueChanged())
        await self.bus.emit(session, ChatChanged(conversation.id))
        return True

    async def leave_ticket(
        self, session: AsyncSession, conversation: Conversation, text: str
    ) -> None:
        handoff = await session.scalar(
            select(Handoff)
            .where(
                Handoff.conversation_id == conversation.id,
                Handoff.status == HandoffStatus.TICKET_PENDING,
            )
            .order_by(Handoff.id.desc())
        )
        if handoff is None:
            handoff = Handoff(
                conversation_id=conversation.id,
                reason="ticket",
                findings={},
                created_at=self._clock(),
            )
            session.add(handoff)
        handoff.status = HandoffStatus.TICKET
        handoff.ticket_text = mask_pii(text)
        await self.bus.emit(session, QueueChanged())

    async def rate(
        self, session: AsyncSession, conversation: Conversation, handoff_id: int, score: int
    ) -> bool:
        handoff = await session.get(Handoff, handoff_id)
        if (
            handoff is None
            or handoff.conversation_id != conversation.id
            or handoff.status != HandoffStatus.RESOLVED
            or handoff.rating is not None
            or not 1 <= score <= 5
        ):
            return False
        handoff.rating = score
        await self.bus.emit(session, ChatChanged(conversation.id))
        return True

    async def on_user_message(
        self, session: AsyncSession, conversation: Conversation, message_id: int | None
    ) -> None:
        """A user wrote while people hold the chat (their message is stored as `message_id`):
        the console shows it live."""
        await self.bus.emit(session, ChatChanged(conversation.id, message_id))
