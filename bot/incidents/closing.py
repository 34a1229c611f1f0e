"""When an incident closes: one message to each chat that asked about a payment failure while
it was open, through the outbox.

The chats are claimed and told in one transaction: `incident_askers.notified_at` is set by one
UPDATE ... RETURNING (a chat is claimed by one process only, once: the row is unique per
incident and chat) and the notice is written to the transcript and the outbox beside it. A chat
caught in several incidents that close together is told once. The outbox relay sends the rows
at the channel's pace (Telegram's limits are the relay's, bot/channels/outbox.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import record_outgoing
from bot.render import Renderer
from bot.storage.models import Conversation, IncidentAsker
from bot.types import Language, Reply, SenderKind


def _now() -> datetime:
    return datetime.now(UTC)


class ClosingNotices:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        renderer: Renderer,
        relay_channels: frozenset[str],
        *,
        on_queued: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._relay_channels = relay_channels
        self._on_queued = on_queued
        self._clock = clock

    async def tell(self, incident_ids: Sequence[int]) -> int:
        """Tell the chats that asked during these incidents that it is over; how many."""
        if not incident_ids:
            return 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            claimed = await session.execute(
                update(IncidentAsker)
                .where(
                    IncidentAsker.incident_id.in_(list(incident_ids)),
                    IncidentAsker.notified_at.is_(None),
                )
                .values(notified_at=now)
                .returning(IncidentAsker.conversation_id)
            )
            chats = sorted({int(row[0]) for row in claimed.all()})
            if not chats:
                return 0
            conversations = await session.scalars(
                select(Conversation).where(Conversation.id.in_(chats)).order_by(Conversation.id)
            )
            queued = False
            for conversation in conversations.all():
                text = self._renderer.render(Language(conversation.language), "incidents/resolved")
                queue = conversation.channel in self._relay_channels
                await record_outgoing(
                    session, conversation, [Reply(text)], sender=SenderKind.SYSTEM, queue=queue
                )
                queued = queued or queue
        if queued and self._on_queued is not None:
            self._on_queued()
        return len(chats)
