"""What a supervisor sees: the queue now, and how the bot and the team did over a period."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.nlu.normalize import fold, strip_punctuation
from bot.storage.models import Agent, Conversation, Handoff, Message, UnansweredQuestion
from bot.types import FAQ_TOPICS, HandoffStatus

ONLINE_WINDOW = timedelta(minutes=2)
SIMILAR = 60  # rapidfuzz score from which two unanswered questions are the same question


@dataclass(frozen=True, slots=True)
class AgentLoad:
    id: int
    name: str
    online: bool
    open_chats: int
    capacity: int


@dataclass(slots=True)
class UnansweredGroup:
    example: str
    count: int
    texts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DayStats:
    day: str
    conversations: int
    handoffs: int


@dataclass(slots=True)
class SupervisorStats:
    queue_length: int
    longest_wait_seconds: int
    agents: list[AgentLoad]
    conversations: int
    containment_rate: float
    handoff_rate: float
    handoff_reasons: list[tuple[str, int]]
    median_first_reply_seconds: float | None
    satisfaction: float | None
    ratings: list[tuple[int, int]]
    top_faq: list[tuple[str, int]]
    unanswered: list[UnansweredGroup]
    daily: list[DayStats]


def _similar(a: str, b: str) -> bool:
    return fuzz.ratio(a, b) >= SIMILAR or fuzz.partial_ratio(a, b) >= 90


def _typical(group: UnansweredGroup) -> str:
    """The group's most typical question: the wording closest to all the others (ties go to
    the longer, more telling one), not whichever came first."""
    keys = [strip_punctuation(fold(text)).replace(" ", "") for text in group.texts]
    scores = [
        (sum(fuzz.ratio(key, other) for other in keys), len(key), -index)
        for index, key in enumerate(keys)
    ]
    return group.texts[-max(scores)[2]]


def group_similar(texts: list[str], limit: int = 10) -> list[UnansweredGroup]:
    """Greedy grouping: each text joins the first group whose first wording it resembles; the
    group is then titled by its most typical question."""
    groups: list[tuple[str, UnansweredGroup]] = []
    for text in texts:
        key = strip_punctuation(fold(text)).replace(" ", "")
        for example_key, group in groups:
            if _similar(key, example_key):
                group.count += 1
                group.texts.append(text)
                break
        else:
            groups.append((key, UnansweredGroup(text, 1, [text])))
    ranked = sorted((g for _, g in groups), key=lambda g: -g.count)[:limit]
    for group in ranked:
        group.example = _typical(group)
    return ranked


async def collect(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    days: int,
    default_capacity: int,
    zone: ZoneInfo,
) -> SupervisorStats:
    """The numbers for the last `days` calendar days in `zone` (settings.timezone), today
    included: a chat at 04:00 Beijing time counts on that Beijing day, not the UTC one before."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=zone)
    async with sessions() as session:
        queued = (
            await session.scalars(
                select(Handoff.created_at).where(Handoff.status == HandoffStatus.QUEUED)
            )
        ).all()
        agents = []
        for agent in (await session.scalars(select(Agent).order_by(Agent.name))).all():
            open_chats = await session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.agent_id == agent.id, Handoff.status == HandoffStatus.ASSIGNED)
            )
            online = (
                agent.online
                and agent.last_seen_at is not None
                and agent.last_seen_at > now - ONLINE_WINDOW
            )
            capacity = agent.capacity if agent.capacity is not None else default_capacity
            agents.append(AgentLoad(agent.id, agent.name, online, int(open_chats or 0), capacity))

        conversations = (
            await session.execute(
                select(Conversation.id, Conversation.created_at).where(
                    Conversation.created_at >= since
                )
            )
        ).all()
        handoffs = (await session.scalars(select(Handoff).where(Handoff.created_at >= since))).all()
        handed = {h.conversation_id for h in handoffs}
        total = len(conversations)
        with_people = sum(1 for cid, _ in conversations if cid in handed)

        waits = [
            (h.first_reply_at - h.created_at).total_seconds()
            for h in handoffs
            if h.first_reply_at is not None
        ]
        ratings = Counter(h.rating for h in handoffs if h.rating is not None)
        faq = (
            await session.execute(
                select(Message.label, func.count())
                .where(
                    Message.direction == "in",
                    Message.created_at >= since,
                    or_(*(Message.label.startswith(f"{topic}.") for topic in sorted(FAQ_TOPICS))),
                )
                .group_by(Message.label)
                .order_by(func.count().desc())
                .limit(10)
            )
        ).all()
        unanswered = (
            await session.scalars(
                select(UnansweredQuestion.text)
                .where(UnansweredQuestion.created_at >= since)
                .order_by(UnansweredQuestion.id)
            )
        ).all()

    conversations_on = Counter(created.astimezone(zone).date() for _, created in conversations)
    handoffs_on = Counter(h.created_at.astimezone(zone).date() for h in handoffs)
    daily = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        daily.append(DayStats(day.isoformat(), conversations_on[day], handoffs_on[day]))
    rated = sum(ratings.values())
    return SupervisorStats(
        queue_length=len(queued),
        longest_wait_seconds=int(max(((now - c).total_seconds() for c in queued), default=0)),
        agents=agents,
        conversations=total,
        containment_rate=(total - with_people) / total if total else 1.0,
        handoff_rate=with_people / total if total else 0.0,
        handoff_reasons=Counter(h.reason for h in handoffs).most_common(),
        median_first_reply_seconds=statistics.median(waits) if waits else None,
        satisfaction=sum(score * n for score, n in ratings.items()) / rated if rated else None,
        ratings=sorted(ratings.items(), reverse=True),
        top_faq=[(str(label), int(n)) for label, n in faq],
        unanswered=group_similar(list(unanswered)),
        daily=daily,
    )
