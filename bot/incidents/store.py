"""The incidents' SQL: the one module that reads and writes `incidents`, `incident_baselines`
and `incident_askers` (the detector's verdicts, a supervisor's open and close, the open
incidents a turn shows, the chats to tell when one closes), and reads the failed payments the
platform notified (`platform_events`, written by `bot.notifications`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.incidents.detector import (
    MERCHANTS_KEPT,
    BaselineMoved,
    Closed,
    Opened,
    OpenState,
    Updated,
    Verdict,
)
from bot.platform.models import AttemptSeen, AttemptStatus, FailureCode, Method
from bot.storage.models import Incident, IncidentAsker, IncidentBaseline, PlatformEvent
from bot.storage.unit import insert_once
from bot.types import IncidentKind, IncidentStatus, Language

# The rows the detector keeps in `incident_baselines` besides the keys: when it last ran.
LAST_RUN = "_last_run"


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An open incident as a turn, a context card or the supervisor page shows it."""

    id: int
    kind: IncidentKind
    key: str | None
    opened_at: datetime
    message_zh: str | None = None
    message_en: str | None = None

    def message(self, language: Language) -> str | None:
        """The supervisor's own words, in `language` (or the other one), when there are any."""
        first, second = (
            (self.message_zh, self.message_en)
            if language is Language.ZH
            else (self.message_en, self.message_zh)
        )
        return first or second or None

    def concerns(self, channel: str, failure_code: str | None) -> bool:
        """Whether an order paid on `channel` that failed with `failure_code` is caught in it;
        a supervisor's incident concerns every payment."""
        if self.kind is IncidentKind.CHANNEL:
            return self.key == channel
        if self.kind is IncidentKind.FAILURE_CODE:
            return failure_code is not None and self.key == failure_code
        return True


_OPEN = (
    select(
        Incident.id,
        Incident.kind,
        Incident.key,
        Incident.opened_at,
        Incident.message_zh,
        Incident.message_en,
    )
    .where(Incident.status == IncidentStatus.OPEN)
    .order_by(Incident.id)
)


# Whether any incident is open, as a column of the turn's one read (bot/turn_writer.py): almost
# always false, so the turn reads the incidents themselves only while one is open.
ANY_OPEN = (
    select(Incident.id).where(Incident.status == IncidentStatus.OPEN).exists().label("incident")
)


async def open_incidents(session: AsyncSession) -> tuple[OpenIncident, ...]:
    """Every open incident, oldest first (one indexed read, `ix_incidents_status`)."""
    rows = await session.execute(_OPEN)
    return tuple(OpenIncident(*row) for row in rows.all())


_NOTIFIED = (
    select(
        PlatformEvent.merchant_id,
        PlatformEvent.channel,
        PlatformEvent.received_at,
        PlatformEvent.failure_code,
        PlatformEvent.attempt_id,
        PlatformEvent.order_no,
    )
    # The partial index ix_platform_events_failed_at (migration 0040) holds exactly these; the
    # status is written out, not bound, so that a generic plan on PostgreSQL may read it.
    .where(
        PlatformEvent.status == literal_column("'failed'"),
        PlatformEvent.received_at >= bindparam("since"),
    )
    .order_by(PlatformEvent.received_at.desc())
    .limit(bindparam("limit"))
)


async def notified_failures(
    session: AsyncSession, since: datetime, limit: int
) -> list[AttemptSeen]:
    """The failed payments the platform's signed notifications reported since `since`, newest
    first, as attempts (at: when the event came). Events from before migration 0040, or past
    their order on the platform, carry no merchant and are left out."""
    rows = await session.execute(_NOTIFIED, {"since": since, "limit": limit})
    seen = []
    for merchant, channel, at, code, attempt_id, order_no in rows.all():
        if merchant is None or channel is None:
            continue
        seen.append(
            AttemptSeen(
                merchant,
                Method(channel),
                AttemptStatus.FAILED,
                at,
                FailureCode(code) if code else None,
                attempt_id,
                order_no,
            )
        )
    return seen


async def detector_state(
    session: AsyncSession,
) -> tuple[dict[str, float], list[OpenState], datetime | None]:
    """The baselines, the open incidents the detector found, and when it last ran."""
    rows = (await session.scalars(select(IncidentBaseline))).all()
    baselines = {r.key: r.share for r in rows if r.key != LAST_RUN}
    last = next((r.updated_at for r in rows if r.key == LAST_RUN), None)
    found = await session.scalars(
        select(Incident).where(
            Incident.status == IncidentStatus.OPEN, Incident.kind != IncidentKind.MANUAL
        )
    )
    states = [OpenState(i.id, i.kind, i.key or "", i.normal_since) for i in found.all()]
    return baselines, states, last


async def write_verdict(session: AsyncSession, verdict: Verdict, now: datetime) -> list[int]:
    """Apply the detector's changes; the ids of the incidents it closed."""
    closed: list[int] = []
    baselines = {r.key: r for r in (await session.scalars(select(IncidentBaseline))).all()}
    for change in verdict.changes:
        if isinstance(change, Opened):
            signal = change.signal
            session.add(
                Incident(
                    kind=signal.kind,
                    key=signal.key,
                    status=IncidentStatus.OPEN,
                    opened_at=now,
                    opened_by="detector",
                    failures=signal.failures,
                    merchant_count=len(signal.merchants),
                    share=signal.share,
                    baseline=change.baseline,
                    series=list(signal.series),
                    merchants=list(signal.merchants[:MERCHANTS_KEPT]),
                )
            )
        elif isinstance(change, Updated):
            values: dict[str, object] = {"normal_since": change.normal_since}
            if change.signal is not None:
                values |= {
                    "failures": change.signal.failures,
                    "merchant_count": len(change.signal.merchants),
                    "share": change.signal.share,
                    "series": list(change.signal.series),
                }
                if change.normal_since is None:
                    values["merchants"] = list(change.signal.merchants[:MERCHANTS_KEPT])
            else:
                values |= {"failures": 0, "share": 0.0, "series": []}
            await session.execute(update(Incident).where(Incident.id == change.id).values(values))
        elif isinstance(change, Closed):
            await _close(session, change.id, now, "detector")
            closed.append(change.id)
        elif isinstance(change, BaselineMoved):
            row = baselines.get(change.key)
            if row is None:
                session.add(IncidentBaseline(key=change.key, share=change.share, updated_at=now))
            else:
                row.share, row.updated_at = change.share, now
    last = baselines.get(LAST_RUN)
    if last is None:
        session.add(IncidentBaseline(key=LAST_RUN, share=0.0, updated_at=now))
    else:
        last.updated_at = now
    await session.flush()
    return closed


async def _close(session: AsyncSession, incident_id: int, now: datetime, by: str) -> bool:
    result = await session.execute(
        update(Incident)
        .where(Incident.id == incident_id, Incident.status == IncidentStatus.OPEN)
        .values(status=IncidentStatus.CLOSED, closed_at=now, closed_by=by)
    )
    return bool(getattr(result, "rowcount", 0))


async def open_by_hand(
    session: AsyncSession, *, by: str, message_zh: str, message_en: str, now: datetime
) -> int:
    """A supervisor's incident, with the words the bot says about it."""
    incident = Incident(
        kind=IncidentKind.MANUAL,
        key=None,
        status=IncidentStatus.OPEN,
        opened_at=now,
        opened_by=by,
        message_zh=message_zh,
        message_en=message_en,
        failures=0,
        merchant_count=0,
        share=0.0,
        baseline=0.0,
        series=[],
        merchants=[],
    )
    session.add(incident)
    await session.flush()
    return incident.id


async def close_by_hand(session: AsyncSession, incident_id: int, *, by: str, now: datetime) -> bool:
    """Close an open incident; False when it is not open (closed already, or no such one)."""
    return await _close(session, incident_id, now, by)


async def note_askers(
    session: AsyncSession, incidents: Sequence[int], conversation_id: int, now: datetime
) -> None:
    """The chat asked about a payment failure while these incidents were open (once each)."""
    for incident_id in incidents:
        await insert_once(
            session,
            IncidentAsker,
            incident_id=incident_id,
            conversation_id=conversation_id,
            asked_at=now,
        )
