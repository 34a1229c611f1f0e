"""What supervisors do with incidents (bot/incidents/): see them, open one by hand with the
words the bot says (zh and en), close one. Each action is a supervisor's only and writes an
audit entry; the SQL is `bot.incidents.store`'s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cleantext import clean_text
from bot.escalation.agent_sessions import Viewer
from bot.escalation.core import HandoffError
from bot.incidents import store
from bot.storage.models import AuditEntry, Incident
from bot.types import IncidentKind, IncidentStatus

# A supervisor's message, in each language: one or two sentences the bot says first.
MAX_MESSAGE = 300
# Closed incidents the page lists under the open ones.
RECENT_CLOSED = 5


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident as the supervisor page shows it."""

    id: int
    kind: IncidentKind
    key: str | None
    status: IncidentStatus
    opened_at: datetime
    closed_at: datetime | None
    opened_by: str | None
    message_zh: str | None
    message_en: str | None
    failures: int
    merchant_count: int
    share: float
    baseline: float
    series: list[int] = field(default_factory=list)
    merchants: list[str] = field(default_factory=list)


def _row(incident: Incident) -> IncidentRow:
    return IncidentRow(
        incident.id,
        incident.kind,
        incident.key,
        incident.status,
        incident.opened_at,
        incident.closed_at,
        incident.opened_by,
        incident.message_zh,
        incident.message_en,
        incident.failures,
        incident.merchant_count,
        incident.share,
        incident.baseline,
        [int(n) for n in incident.series or [] if isinstance(n, int)],
        [str(m) for m in incident.merchants or []],
    )


def _message(text: str, what: str) -> str:
    text = clean_text(text).strip()
    if not text or len(text) > MAX_MESSAGE:
        raise HandoffError("bad_request", f"the {what} message has 1 to {MAX_MESSAGE} characters")
    return text


class IncidentDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_closed: Callable[[list[int]], Awaitable[int]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_closed = on_closed

    async def board(self) -> dict[str, list[IncidentRow]]:
        """The open incidents, oldest first, and the last few closed."""
        async with self._sessions() as session:
            opened = await session.scalars(
                select(Incident).where(Incident.status == IncidentStatus.OPEN).order_by(Incident.id)
            )
            closed = await session.scalars(
                select(Incident)
                .where(Incident.status == IncidentStatus.CLOSED)
                .order_by(Incident.id.desc())
                .limit(RECENT_CLOSED)
            )
            return {
                "open": [_row(i) for i in opened.all()],
                "closed": [_row(i) for i in closed.all()],
            }

    async def open(self, viewer: Viewer, message_zh: str, message_en: str) -> int:
        if not viewer.is_supervisor:
            raise HandoffError("forbidden", "only a supervisor opens an incident")
        zh, en = _message(message_zh, "Chinese"), _message(message_en, "English")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            incident_id = await store.open_by_hand(
                session, by=viewer.name, message_zh=zh, message_en=en, now=now
            )
            session.add(self._audit(viewer, "incident_opened", {"incident": incident_id}, now))
        return incident_id

    async def close(self, viewer: Viewer, incident_id: int) -> None:
        if not viewer.is_supervisor:
            raise HandoffError("forbidden", "only a supervisor closes an incident")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            if not await store.close_by_hand(session, incident_id, by=viewer.name, now=now):
                raise HandoffError("not_found", "no such open incident")
            session.add(self._audit(viewer, "incident_closed", {"incident": incident_id}, now))
        if self._on_closed is not None:
            await self._on_closed([incident_id])

    @staticmethod
    def _audit(viewer: Viewer, action: str, detail: dict[str, Any], now: datetime) -> AuditEntry:
        return AuditEntry(agent_id=viewer.agent_id, action=action, detail=detail, at=now)
