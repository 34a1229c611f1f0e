"""Incident detection from the platform's signed payment notifications as well as its attempts
(both tiers): a burst of notified failures opens an incident, and an attempt both sources
report counts once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.incidents.detector import unreported
from bot.incidents.job import IncidentDetector
from bot.notifications import Applied, EventError, PaymentEvent, PaymentNotifier
from bot.platform.gateway import PlatformGateway
from bot.platform.models import AttemptSeen, AttemptStatus, FailureCode, Method, OrderStatus
from bot.platform.tables import AttemptRow, OrderRow
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import session_factory
from bot.storage.models import Incident, PlatformEvent
from bot.types import IncidentKind
from tests.support.common import Clock
from tests.support.incidents import ensure_merchants, platform_burst

_events = itertools.count(1)
_orders = itertools.count(1)
AT = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def seen(
    order_no: str, attempt_id: str | None, status: AttemptStatus = AttemptStatus.FAILED
) -> AttemptSeen:
    code = FailureCode.NETWORK_TIMEOUT if status is AttemptStatus.FAILED else None
    return AttemptSeen("M0001", Method.QR, status, AT, code, attempt_id, order_no)


def test_an_attempt_both_sources_report_counts_once() -> None:
    listed = [
        seen("BT1", "a1"),
        seen("BT2", None),  # a platform that does not name its attempts
        seen("BT3", "a3", AttemptStatus.SUCCEEDED),
    ]
    notified = [
        seen("BT1", "a1"),  # listed by id
        seen("BT2", "a2"),  # its order's failure is listed without an id
        seen("BT1", None),  # no id, and its order's failure is listed
        seen("BT3", "a4"),  # a failure the platform has not listed (it lists a success)
        seen("BT4", None),
        seen("BT4", None),  # the same order again, no id: once
        seen("BT5", "a5"),
        seen("BT5", "a5"),  # the same attempt in two events: once
        seen("BT5", "a6"),  # another attempt of that order
    ]
    kept = unreported(listed, notified)
    assert [(a.order_no, a.attempt_id) for a in kept] == [
        ("BT3", "a4"),
        ("BT4", None),
        ("BT5", "a5"),
        ("BT5", "a6"),
    ]


def test_a_payment_event_may_say_why_it_failed_and_which_attempt_it_was() -> None:
    raw = {
        "id": "evt-1",
        "type": "payment.status",
        "order_no": "BT2026112600000001",
        "status": "failed",
        "amount": "10.00",
        "failure_code": "network_timeout",
        "attempt_id": "att-9",
    }
    event = PaymentEvent.parse(raw)
    assert (event.failure_code, event.attempt_id) == (FailureCode.NETWORK_TIMEOUT, "att-9")
    assert PaymentEvent.parse({**raw, "failure_code": None, "attempt_id": None}).attempt_id is None
    with pytest.raises(EventError) as refused:
        PaymentEvent.parse({**raw, "failure_code": "the bank is on fire"})
    assert refused.value.status == 400


async def pending_orders(db: AsyncEngine, count: int, merchants: int) -> list[str]:
    """Orders waiting for their payment (no attempt on the platform yet), merchants in turn."""
    numbers = []
    async with session_factory(db)() as session, session.begin():
        await ensure_merchants(session, merchants)
        for i in range(count):
            order_no = f"BT8{next(_orders):015d}"
            now = datetime.now(UTC)
            session.add(
                OrderRow(
                    order_no=order_no,
                    merchant_id=f"X{i % merchants:04d}",
                    amount_fen=1000,
                    method="qr",
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
            numbers.append(order_no)
    return numbers


async def notify_failed(
    notifier: PaymentNotifier, order_no: str, attempt_id: str | None = None
) -> Applied:
    event = PaymentEvent(
        id=f"evt-{next(_events)}",
        order_no=order_no,
        status=OrderStatus.FAILED,
        amount=Decimal("10.00"),
        failure_code=FailureCode.NETWORK_TIMEOUT,
        attempt_id=attempt_id,
    )
    applied, _ = await notifier.apply(event)
    return applied


def detector_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"incident_min_failures": 10, "incident_min_merchants": 3})


async def a_usual_hour_learned(db: AsyncEngine, job: IncidentDetector, clock: Clock) -> None:
    """A normal window (1 % timeouts) teaches the baselines first, 25 minutes back."""
    await platform_burst(
        session_factory(db), clock.now - timedelta(minutes=30), merchants=10, failed=1, succeeded=99
    )
    now = clock.now
    clock.now = now - timedelta(minutes=25)
    assert (await job.run_once()).ran
    clock.now = now


async def incidents(db: AsyncEngine) -> list[Incident]:
    async with session_factory(db)() as session:
        return list((await session.scalars(select(Incident).order_by(Incident.key))).all())


async def test_a_burst_of_notified_failures_opens_an_incident(
    db: AsyncEngine, gateway: PlatformGateway, settings: Settings, renderer: Renderer
) -> None:
    clock = Clock(datetime.now(UTC))
    job = IncidentDetector(session_factory(db), gateway, detector_settings(settings), clock=clock)
    await a_usual_hour_learned(db, job, clock)
    # The platform lists only successes in the window; the failures come as notifications.
    await platform_burst(
        session_factory(db), clock.now - timedelta(minutes=2), merchants=8, failed=0, succeeded=60
    )
    notifier = PaymentNotifier(session_factory(db), gateway, renderer, frozenset())
    for order_no in await pending_orders(db, 40, merchants=8):
        assert await notify_failed(notifier, order_no) is Applied.APPLIED
    clock.now = datetime.now(UTC)

    result = await job.run_once()

    assert result.ran and result.opened == 2 and result.attempts == 100
    code, channel = await incidents(db)
    assert (code.kind, code.key, code.failures, code.merchant_count) == (
        IncidentKind.FAILURE_CODE,
        "network_timeout",
        40,
        8,
    )
    assert (channel.kind, channel.key, channel.failures) == (IncidentKind.CHANNEL, "qr", 40)
    async with session_factory(db)() as session:
        stored = (await session.scalars(select(PlatformEvent))).all()
    assert {(e.channel, e.failure_code) for e in stored} == {("qr", "network_timeout")}
    assert len({e.merchant_id for e in stored}) == 8


async def test_failures_the_platform_lists_and_notifies_are_counted_once(
    db: AsyncEngine, gateway: PlatformGateway, settings: Settings, renderer: Renderer
) -> None:
    clock = Clock(datetime.now(UTC))
    job = IncidentDetector(session_factory(db), gateway, detector_settings(settings), clock=clock)
    await a_usual_hour_learned(db, job, clock)
    start = clock.now - timedelta(minutes=2)
    await platform_burst(session_factory(db), start, merchants=8, failed=40, succeeded=60)
    async with session_factory(db)() as session:
        failed = (
            await session.execute(
                select(AttemptRow.id, AttemptRow.order_no).where(
                    AttemptRow.status == "failed", AttemptRow.at == start
                )
            )
        ).all()
    assert len(failed) == 40
    notifier = PaymentNotifier(session_factory(db), gateway, renderer, frozenset())
    # Every failure is notified as well: half naming the attempt, half naming only the order,
    # and one of them twice.
    for i, (attempt_id, order_no) in enumerate(failed):
        await notify_failed(notifier, order_no, str(attempt_id) if i % 2 else None)
    await notify_failed(notifier, failed[1].order_no, str(failed[1].id))
    clock.now = datetime.now(UTC)

    result = await job.run_once()

    assert result.ran and result.attempts == 100
    code, _ = await incidents(db)
    assert code.failures == 40 and code.merchant_count == 8
