"""The outcome figures: verified resolution beside containment, per flow and per FAQ entry.

One function (`outcome_report`) computes them for both readers: `btp-bot report outcomes`
and the supervisor's page in the console. Over the checks that began within the period:

- verified resolution: verified / settled (verified + not verified); pending ones are counted
  apart, never as either;
- containment ("bot answered, no person"): the share of checks whose conversation got no
  handoff (queue, agent or ticket) from the check's start to its deadline;
- the unverified conversations, newest first, for a person to review.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Conversation, Handoff, OutcomeCheck, table_of
from bot.types import OutcomeKind, OutcomeStatus

# The periods the supervisor's page shows.
PERIODS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
UNVERIFIED_SHOWN = 50
_PERIOD = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_period(text: str) -> timedelta:
    """`90m`, `24h`, `7d`: a period back from now (at most 3650 days)."""
    found = _PERIOD.match(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"a period is a number and m, h or d (such as 7d), not {text!r}")
    period = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if period > timedelta(days=3650):
        raise ValueError("a period is at most 3650 days")
    return period


@dataclass(frozen=True, slots=True)
class TopicFigures:
    kind: str  # "flow" or "faq"
    topic: str
    checks: int
    verified: int
    not_verified: int
    pending: int
    contained: int

    @property
    def settled(self) -> int:
        return self.verified + self.not_verified

    @property
    def verified_rate(self) -> float | None:
        return self.verified / self.settled if self.settled else None

    @property
    def containment_rate(self) -> float | None:
        return self.contained / self.checks if self.checks else None

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "verified_rate": _rounded(self.verified_rate),
            "containment_rate": _rounded(self.containment_rate),
        }


@dataclass(frozen=True, slots=True)
class Unverified:
    check_id: int
    conversation_id: int
    channel: str
    kind: str
    topic: str
    subject: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class OutcomeReport:
    since: timedelta
    start: datetime
    end: datetime
    topics: list[TopicFigures]
    unverified: list[Unverified] = field(default_factory=list)

    @property
    def total(self) -> TopicFigures:
        def add(name: str) -> int:
            return sum(getattr(t, name) for t in self.topics)

        return TopicFigures(
            "all",
            "all",
            add("checks"),
            add("verified"),
            add("not_verified"),
            add("pending"),
            add("contained"),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "since_seconds": int(self.since.total_seconds()),
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "total": self.total.as_json(),
            "topics": [t.as_json() for t in self.topics],
            "unverified": [
                {**asdict(u), "started_at": u.started_at.isoformat()} for u in self.unverified
            ],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_CHECKS = table_of(OutcomeCheck)
_HANDOFFS = table_of(Handoff)
_CONVERSATIONS = table_of(Conversation)
_PERSON = exists().where(
    _HANDOFFS.c.conversation_id == _CHECKS.c.conversation_id,
    _HANDOFFS.c.created_at >= _CHECKS.c.started_at,
    _HANDOFFS.c.created_at <= _CHECKS.c.due_at,
)


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def outcome_report(
    sessions: async_sessionmaker[AsyncSession], since: timedelta, *, now: datetime | None = None
) -> OutcomeReport:
    """The figures over the checks that began within `since` before `now`."""
    end = now or datetime.now(UTC)
    start = end - since
    within = and_(_CHECKS.c.started_at >= start, _CHECKS.c.started_at <= end)
    grouped = (
        select(
            _CHECKS.c.kind,
            _CHECKS.c.topic,
            func.count(),
            _count(_CHECKS.c.status == OutcomeStatus.VERIFIED),
            _count(_CHECKS.c.status == OutcomeStatus.NOT_VERIFIED),
            _count(_CHECKS.c.status == OutcomeStatus.PENDING),
            _count(~_PERSON),
        )
        .where(within)
        .group_by(_CHECKS.c.kind, _CHECKS.c.topic)
    )
    unverified = (
        select(
            _CHECKS.c.id,
            _CHECKS.c.conversation_id,
            _CONVERSATIONS.c.channel,
            _CHECKS.c.kind,
            _CHECKS.c.topic,
            _CHECKS.c.subject,
            _CHECKS.c.started_at,
        )
        .join(_CONVERSATIONS, _CONVERSATIONS.c.id == _CHECKS.c.conversation_id)
        .where(within, _CHECKS.c.status == OutcomeStatus.NOT_VERIFIED)
        .order_by(_CHECKS.c.started_at.desc(), _CHECKS.c.id.desc())
        .limit(UNVERIFIED_SHOWN)
    )
    async with sessions() as session:
        rows = (await session.execute(grouped)).all()
        listed = (await session.execute(unverified)).all()
    topics = sorted(
        (
            TopicFigures(
                "faq" if kind is OutcomeKind.FAQ else "flow",
                topic,
                int(n),
                int(ok),
                int(no),
                int(wait),
                int(alone),
            )
            for kind, topic, n, ok, no, wait, alone in rows
        ),
        key=lambda t: (t.kind != "flow", -t.checks, t.topic),
    )
    return OutcomeReport(
        since,
        start,
        end,
        topics,
        [Unverified(r[0], r[1], r[2], OutcomeKind(r[3]).value, r[4], r[5], r[6]) for r in listed],
    )


def format_report(report: OutcomeReport) -> str:
    """The figures as a plain table, for a terminal."""

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    lines = [
        f"outcomes from {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC",
        f"{'kind':<5} {'topic':<28} {'checks':>6} {'verified':>8} {'not':>5} {'pending':>7}"
        f" {'verified%':>9} {'contained%':>10}",
    ]
    for t in [*report.topics, report.total]:
        lines.append(
            f"{t.kind:<5} {t.topic:<28} {t.checks:>6} {t.verified:>8} {t.not_verified:>5}"
            f" {t.pending:>7} {rate(t.verified_rate):>9} {rate(t.containment_rate):>10}"
        )
    if report.unverified:
        lines.append("not verified (newest first):")
        lines += [
            f"  conversation {u.conversation_id} ({u.channel}) {u.topic} {u.subject}"
            f" {u.started_at:%Y-%m-%d %H:%M}"
            for u in report.unverified
        ]
    return "\n".join(lines)
