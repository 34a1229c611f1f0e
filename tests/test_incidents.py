"""Incident awareness: the detector's rules (pure), the job over a real database (both tiers)
fed by the platform's `recent_payment_attempts`, and what merchants and agents are told while
an incident is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.engine import Engine
from bot.incidents import store
from bot.incidents.closing import ClosingNotices
from bot.incidents.detector import (
    BaselineMoved,
    Closed,
    Opened,
    OpenState,
    Rules,
    Updated,
    decide,
    measure,
    observed_keys,
)
from bot.incidents.job import IncidentDetector
from bot.platform.gateway import PlatformGateway
from bot.platform.models import AttemptSeen, AttemptStatus, FailureCode, Method
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import session_factory
from bot.storage.models import (
    Conversation,
    Incident,
    IncidentAsker,
    IncidentBaseline,
    Message,
    OutboxItem,
)
from bot.types import IncidentKind, IncidentStatus
from tests.support.common import Chat, Clock

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
RULES = Rules(
    window=timedelta(minutes=10),
    ratio=5.0,
    floor=0.02,
    min_failures=10,
    min_merchants=3,
    quiet=timedelta(minutes=15),
    alpha=60 / 86400,
)
ORDER = "BT20261126000000"


def attempts(
    n: int,
    *,
    merchants: int,
    code: FailureCode | None = FailureCode.NETWORK_TIMEOUT,
    channel: Method = Method.QR,
    at: datetime = NOW - timedelta(minutes=2),
) -> list[AttemptSeen]:
    status = AttemptStatus.FAILED if code else AttemptStatus.SUCCEEDED
    return [AttemptSeen(f"M{i % merchants:04d}", channel, status, at, code) for i in range(n)]


# The rules, from numbers


def test_a_burst_across_merchants_opens_an_incident_for_its_code_and_channel() -> None:
    window = attempts(40, merchants=8) + attempts(60, merchants=20, code=None)
    signals = measure(window, NOW, RULES.window)
    verdict = decide(
        signals,
        {"code:network_timeout": 0.01, "channel:qr": 0.03},
        [],
        NOW,
        RULES,
        observed=observed_keys(window, NOW, RULES.window),
    )
    opened = {(c.signal.kind, c.signal.key) for c in verdict.of(Opened) if isinstance(c, Opened)}
    assert opened == {
        (IncidentKind.FAILURE_CODE, "network_timeout"),
        (IncidentKind.CHANNEL, "qr"),
    }
    code = next(s for s in signals if s.key == "network_timeout")
    assert code.failures == 40 and code.attempts == 100 and len(code.merchants) == 8
    assert sum(code.series) == 40 and len(code.series) == 10
    # An incident's key does not teach its baseline that this is normal.
    assert not [c for c in verdict.of(BaselineMoved) if isinstance(c, BaselineMoved)]


@pytest.mark.parametrize(
    ("failures", "merchants", "baseline"),
    [
        (9, 9, 0.01),  # too few failures
        (40, 2, 0.01),  # from too few merchants
        (40, 8, 0.2),  # the share (0.4) is under five times what it usually is (0.2)
    ],
)
def test_no_incident_without_enough_failures_merchants_or_rise(
    failures: int, merchants: int, baseline: float
) -> None:
    window = attempts(failures, merchants=merchants) + attempts(
        100 - failures, merchants=20, code=None
    )
    verdict = decide(
        measure(window, NOW, RULES.window),
        {"code:network_timeout": baseline, "channel:qr": 0.9},
        [],
        NOW,
        RULES,
        observed=observed_keys(window, NOW, RULES.window),
    )
    assert not verdict.of(Opened)


def test_the_baseline_floor_keeps_a_key_without_history_from_opening_on_a_few_failures() -> None:
    # 10 % of attempts failing, never seen before: under 5 × the 2 % floor.
    window = attempts(10, merchants=5) + attempts(100, merchants=20, code=None)
    verdict = decide(
        measure(window, NOW, RULES.window),
        {},
        [],
        NOW,
        RULES,
        observed=observed_keys(window, NOW, RULES.window),
    )
    assert not verdict.of(Opened)
    moved = {c.key: c.share for c in verdict.of(BaselineMoved) if isinstance(c, BaselineMoved)}
    assert moved["code:network_timeout"] == pytest.approx(10 / 110)


def test_an_open_incident_closes_only_after_the_quiet_time() -> None:
    quiet = attempts(100, merchants=20, code=None)
    state = OpenState(7, IncidentKind.FAILURE_CODE, "network_timeout", None)
    first = decide(measure(quiet, NOW, RULES.window), {}, [state], NOW, RULES)
    [update] = [c for c in first.of(Updated) if isinstance(c, Updated)]
    assert update.normal_since == NOW and not first.of(Closed)
    later = NOW + timedelta(minutes=14)
    state = OpenState(7, IncidentKind.FAILURE_CODE, "network_timeout", NOW)
    assert not decide([], {}, [state], later, RULES).of(Closed)
    assert decide([], {}, [state], NOW + timedelta(minutes=15), RULES).of(Closed) == [Closed(7)]


def test_a_rise_again_before_the_quiet_time_keeps_it_open() -> None:
    window = attempts(40, merchants=8) + attempts(60, merchants=20, code=None)
    state = OpenState(7, IncidentKind.FAILURE_CODE, "network_timeout", NOW - timedelta(minutes=14))
    verdict = decide(measure(window, NOW, RULES.window), {}, [state], NOW, RULES)
    [update] = [c for c in verdict.of(Updated) if isinstance(c, Updated)]
    assert update.normal_since is None and not verdict.of(Closed)


def test_a_window_without_attempts_teaches_the_baselines_nothing() -> None:
    verdict = decide([], {"code:network_timeout": 0.05}, [], NOW, RULES, observed=set())
    assert not verdict.changes


# The platform's side: recent attempts, and the job over a real database

from tests.support.incidents import platform_burst  # noqa: E402


def detector_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"incident_min_failures": 10, "incident_min_merchants": 3})


async def test_recent_payment_attempts_name_merchant_channel_code_and_time(
    db: AsyncEngine, gateway: PlatformGateway
) -> None:
    now = datetime.now(UTC)
    await platform_burst(
        session_factory(db), now - timedelta(minutes=3), merchants=3, failed=3, succeeded=1
    )
    await platform_burst(
        session_factory(db), now - timedelta(hours=2), merchants=3, failed=2, succeeded=0
    )

    seen = await gateway.recent_payment_attempts(now - timedelta(minutes=10))

    assert len(seen) == 4
    assert {a.merchant_id for a in seen} == {"X0000", "X0001", "X0002"}
    assert {a.channel for a in seen} == {Method.QR}
    assert sorted(a.failure_code or "" for a in seen) == ["", *["network_timeout"] * 3]
    assert all(a.at.tzinfo is not None and a.at >= now - timedelta(minutes=10) for a in seen)
    assert len(await gateway.recent_payment_attempts(now - timedelta(hours=3), limit=2)) == 2


async def test_the_job_opens_from_a_burst_skips_a_second_process_and_closes_when_quiet(
    db: AsyncEngine, gateway: PlatformGateway, settings: Settings
) -> None:
    now = datetime.now(UTC)
    clock = Clock(now)
    sessions = session_factory(db)
    job = IncidentDetector(sessions, gateway, detector_settings(settings), clock=clock)
    # A usual hour: few timeouts. Its baseline is learned from a normal window first.
    await platform_burst(
        session_factory(db), now - timedelta(minutes=30), merchants=10, failed=1, succeeded=99
    )
    clock.now = now - timedelta(minutes=25)
    assert (await job.run_once()).ran
    async with sessions() as session:
        baseline = await session.get(IncidentBaseline, "code:network_timeout")
        assert baseline is not None and baseline.share == pytest.approx(0.01)

    await platform_burst(
        session_factory(db), now - timedelta(minutes=2), merchants=8, failed=40, succeeded=60
    )
    clock.now = now
    result = await job.run_once()
    assert result.ran and result.opened == 2
    # Another server a moment later leaves the run to the first.
    other = IncidentDetector(sessions, gateway, detector_settings(settings), clock=clock)
    clock.advance(seconds=5)
    assert not (await other.run_once()).ran
    async with sessions() as session:
        rows = (await session.scalars(select(Incident).order_by(Incident.key))).all()
        assert [(r.kind, r.key, r.status) for r in rows] == [
            (IncidentKind.FAILURE_CODE, "network_timeout", IncidentStatus.OPEN),
            (IncidentKind.CHANNEL, "qr", IncidentStatus.OPEN),
        ]
        assert rows[0].failures == 40 and rows[0].merchant_count == 8
        assert len(rows[0].merchants) == 8 and sum(rows[0].series) == 40
        shown = await store.open_incidents(session)
        assert sorted(str(i.key) for i in shown) == ["network_timeout", "qr"]

    # The burst is over: the window empties, then stays normal for the quiet time.
    await platform_burst(
        session_factory(db), now + timedelta(minutes=14), merchants=10, failed=0, succeeded=50
    )
    clock.now = now + timedelta(minutes=15)
    assert (await job.run_once()).closed == ()
    clock.now = now + timedelta(minutes=31)
    await platform_burst(
        session_factory(db), now + timedelta(minutes=30), merchants=10, failed=0, succeeded=50
    )
    closed = (await job.run_once()).closed
    assert len(closed) == 2
    async with sessions() as session:
        assert await store.open_incidents(session) == ()


# What people are told while one is open


async def open_manual(db: AsyncEngine) -> int:
    async with session_factory(db)() as session, session.begin():
        return await store.open_by_hand(
            session,
            by="supervisor",
            message_zh="微信通道维护中，预计 30 分钟恢复。",
            message_en="The WeChat channel is under maintenance, back in 30 minutes.",
            now=datetime.now(UTC),
        )


async def open_channel(db: AsyncEngine, channel: str) -> int:
    async with session_factory(db)() as session, session.begin():
        incident = Incident(
            kind=IncidentKind.CHANNEL,
            key=channel,
            status=IncidentStatus.OPEN,
            opened_at=datetime.now(UTC),
            failures=40,
            merchant_count=8,
            share=0.4,
            baseline=0.01,
            series=[],
            merchants=[],
        )
        session.add(incident)
        await session.flush()
        return incident.id


async def test_the_diagnosis_says_first_it_is_a_known_problem_and_not_the_merchants_fault(
    chat: Chat, db: AsyncEngine
) -> None:
    incident = await open_channel(db, "qr")
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}01支付失败了，怎么回事")
    first = chat.text.splitlines()[0]
    assert "扫码支付渠道目前有已知故障" in first and "不是您这边的问题" in first
    assert "支付失败的原因" in chat.text  # the order's own explanation follows
    await chat.say(f"订单{ORDER}01支付失败了，怎么回事")
    async with session_factory(db)() as session:
        askers = (await session.scalars(select(IncidentAsker))).all()
        assert [a.incident_id for a in askers] == [incident]  # once per chat and incident


async def test_an_order_on_another_channel_is_explained_without_the_incident(
    chat: Chat, db: AsyncEngine
) -> None:
    await open_channel(db, "link")
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}01支付失败了，怎么回事")
    assert "已知故障" not in chat.text
    async with session_factory(db)() as session:
        assert await session.scalar(select(func.count()).select_from(IncidentAsker)) == 0


async def test_a_merchant_starting_a_chat_hears_one_line_of_it_in_english(
    engine: Engine, db: AsyncEngine
) -> None:
    await open_manual(db)
    chat = Chat(engine)
    await chat.bind("M001")
    await chat.say("hello")
    assert chat.text.startswith("⚠️ The WeChat channel is under maintenance")
    assert chat.last[0].preface == "incidents/notice"
    await chat.say("what are the fees?")
    assert "maintenance" not in chat.text  # one line, when the chat starts


async def test_a_customer_starting_a_chat_is_not_told(chat: Chat, db: AsyncEngine) -> None:
    await open_manual(db)
    await chat.say("你好")
    assert "维护" not in chat.text


async def test_no_line_when_nothing_is_open(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.bind("M001")
    await chat.say("你好")
    assert "⚠️" not in chat.text


async def test_when_it_closes_each_chat_that_asked_is_told_once_through_the_outbox(
    engine: Engine, db: AsyncEngine, renderer: Renderer
) -> None:
    code = await open_channel(db, "qr")
    channel = await open_manual(db)
    asked, english, other = Chat(engine), Chat(engine), Chat(engine)
    for chat in (asked, english, other):
        await chat.bind("M001")
    await asked.say(f"订单{ORDER}01支付失败了，怎么回事")
    await asked.say(f"订单{ORDER}02支付失败了，怎么回事")  # asked twice: told once
    await english.say(f"payment failed for order {ORDER}01, why?")
    await other.say("手续费是多少")  # did not ask about a failed payment
    sessions = session_factory(db)
    kicked: list[int] = []
    notices = ClosingNotices(
        sessions, renderer, frozenset({"test"}), on_queued=lambda: kicked.append(1)
    )
    async with sessions() as session, session.begin():
        for incident in (code, channel):
            assert await store.close_by_hand(session, incident, by="老王", now=datetime.now(UTC))

    async def outbox() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxItem)) or 0)

    before = await outbox()
    assert await notices.tell([code, channel]) == 2
    assert await notices.tell([code, channel]) == 0  # once each
    assert kicked == [1] and await outbox() == before + 2
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Conversation.chat_id, Message.text)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.text.like("✅%"))
            )
        ).all()
    told = dict(rows)
    assert set(told) == {asked.chat_id, english.chat_id}
    assert "已经恢复" in told[asked.chat_id] and "is resolved" in told[english.chat_id]
