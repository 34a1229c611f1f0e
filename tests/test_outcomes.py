"""Verified resolution: what the bot did is recorded by the turn and settled by the checker.

A chat makes a payment link or starts a password reset through the real engine; the turn writes
an `outcome_checks` row; the platform's own data (a link paid, a login) is then changed the way
the platform would, and a pass of the checker, at a chosen moment, settles the check. Both
database tiers; the remote platform over real HTTP; the lock on PostgreSQL against a second
process's pass.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli import main
from bot.outcomes.checker import LOCK_KEY, check_pass
from bot.outcomes.expected import expected_from
from bot.outcomes.report import outcome_report, parse_period
from bot.platform.gateway import PlatformGateway
from bot.platform.http import HttpPlatform
from bot.platform.server import create_platform_app
from bot.platform.sql import SqlPlatform
from bot.platform.tables import AccountRow, AttemptRow, ChannelRecordRow, OrderRow, PaymentLinkRow
from bot.storage.db import session_factory
from bot.storage.models import OutcomeCheck
from bot.types import Label, OutcomeKind, OutcomeStatus
from tests.support.common import Chat, Clock

KEY = "test-platform-key"
ORDER = "BT20261126000000"


async def checks(db: AsyncEngine) -> list[OutcomeCheck]:
    async with session_factory(db)() as session:
        return list((await session.scalars(select(OutcomeCheck).order_by(OutcomeCheck.id))).all())


async def make_link(chat: Chat, amount: int) -> str:
    await chat.say(f"收款链接 {amount}元")
    await chat.press("flow:confirm:yes")
    assert "http" in chat.text
    return chat.text.split("/l/")[1].split()[0].rstrip(")。.")


async def pay(db: AsyncEngine, link_id: str, at: datetime) -> None:
    """The platform records a payer paying through the link."""
    async with db.begin() as connection:
        statement = update(PaymentLinkRow).where(PaymentLinkRow.id == link_id)
        await connection.execute(statement.values(paid_at=at))


async def log_in(db: AsyncEngine, login: str, at: datetime) -> None:
    """The platform records a successful login."""
    async with db.begin() as connection:
        statement = update(AccountRow).where(AccountRow.login == login)
        await connection.execute(statement.values(last_login_at=at))


def test_the_findings_of_a_link_and_a_reset_call_for_checks_and_others_do_not() -> None:
    assert [(e.kind, e.topic, e.subject) for e in expected_from({"payment_link": "PL1"})] == [
        (OutcomeKind.PAYMENT_LINK, "payment_link", "PL1")
    ]
    assert [e.kind for e in expected_from({"password_reset_for": "wang"})] == [
        OutcomeKind.PASSWORD_RESET
    ]
    assert expected_from({"order_no": "BT1", "status": "paid"}) == []
    assert expected_from({"payment_link": ""}) == []
    assert expected_from({"payment_link": "x" * 65}) == []


async def test_a_link_paid_in_time_is_verified_and_one_never_paid_is_not(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    paid = await make_link(chat, 50)
    unpaid = await make_link(chat, 60)
    first, second = await checks(db)
    assert (first.kind, first.subject, first.topic) == (
        OutcomeKind.PAYMENT_LINK,
        paid,
        "payment_link",
    )
    assert second.subject == unpaid
    assert first.status is OutcomeStatus.PENDING
    assert first.due_at - first.started_at == timedelta(hours=24)

    # Nothing happened yet: both stay pending.
    result = await check_pass(db, gateway, now=first.started_at + timedelta(minutes=5))
    assert result.looked == 2 and not result.settled
    await pay(db, paid, first.started_at + timedelta(hours=3))
    result = await check_pass(db, gateway, now=first.started_at + timedelta(hours=4))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}
    first, second = await checks(db)
    assert first.status is OutcomeStatus.VERIFIED
    assert first.evidence_at == first.started_at + timedelta(hours=3)
    assert second.status is OutcomeStatus.PENDING
    # The window passes for the other: not verified, and a settled check is not looked at again.
    result = await check_pass(db, gateway, now=second.due_at)
    assert result.looked == 1 and result.settled == {OutcomeStatus.NOT_VERIFIED: 1}
    assert [c.status for c in await checks(db)] == [
        OutcomeStatus.VERIFIED,
        OutcomeStatus.NOT_VERIFIED,
    ]
    assert (await check_pass(db, gateway, now=second.due_at)).looked == 0


async def test_a_link_paid_after_its_window_is_not_verified(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    link = await make_link(chat, 70)
    (check,) = await checks(db)
    await pay(db, link, check.due_at + timedelta(minutes=1))
    result = await check_pass(db, gateway, now=check.due_at + timedelta(minutes=2))
    assert result.settled == {OutcomeStatus.NOT_VERIFIED: 1}
    (check,) = await checks(db)
    assert check.evidence_at == check.due_at + timedelta(minutes=1)  # shown to the reviewer


async def test_a_link_declined_at_the_confirmation_records_nothing(
    chat: Chat, db: AsyncEngine
) -> None:
    await chat.bind("M001")
    await chat.say("收款链接 50元")
    await chat.press("flow:confirm:no")
    assert await checks(db) == []


async def test_a_reset_followed_by_a_login_is_verified_and_an_earlier_login_does_not_count(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.say("忘记密码了")
    await chat.say("wang")
    await chat.say("是")
    (check,) = await checks(db)
    assert (check.kind, check.subject, check.topic) == (
        OutcomeKind.PASSWORD_RESET,
        "wang",
        "password_reset",
    )
    await log_in(db, "wang", check.started_at - timedelta(minutes=1))
    assert not (await check_pass(db, gateway, now=check.started_at + timedelta(hours=1))).settled
    await log_in(db, "wang", check.started_at + timedelta(minutes=20))
    result = await check_pass(db, gateway, now=check.started_at + timedelta(hours=1))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}


async def test_a_reset_for_a_login_the_platform_does_not_know_is_not_verified_at_once(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.say("我要重置密码")
    await chat.say("nobody_here")
    await chat.say("是")
    (check,) = await checks(db)
    result = await check_pass(db, gateway, now=check.started_at + timedelta(minutes=1))
    assert result.settled == {OutcomeStatus.NOT_VERIFIED: 1}


async def test_checks_are_read_in_batches(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    links = [await make_link(chat, 10 + n) for n in range(5)]
    started = (await checks(db))[0].started_at
    for link in links[::2]:
        await pay(db, link, started + timedelta(hours=1))
    result = await check_pass(db, gateway, now=started + timedelta(hours=2), batch=2)
    assert result.looked == 5 and result.settled == {OutcomeStatus.VERIFIED: 3}


async def test_a_resync_is_verified_where_the_statuses_agree_and_not_where_they_still_differ(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    await chat.say("后台和顾客那边订单状态不一致")
    await chat.press("flow:recent")
    found = {c.subject: c for c in await checks(db)}
    assert set(found) == {f"{ORDER}10", f"{ORDER}11"}
    assert {c.kind for c in found.values()} == {OutcomeKind.RESYNC}
    started = found[f"{ORDER}10"].started_at
    result = await check_pass(db, gateway, now=started + timedelta(minutes=5))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}  # the one the re-sync repaired
    # The channel comes round for the other one within the hour: verified then too.
    async with db.begin() as connection:
        await connection.execute(
            update(ChannelRecordRow)
            .where(ChannelRecordRow.order_no == f"{ORDER}11")
            .values(status="paid", synced_at=started + timedelta(minutes=20))
        )
    result = await check_pass(db, gateway, now=started + timedelta(minutes=30))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}
    assert (await checks(db))[1].evidence_at == started + timedelta(minutes=20)


async def test_a_resync_still_different_after_the_hour_is_not_verified(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    await chat.say("后台和顾客那边订单状态不一致")
    await chat.press("flow:recent")
    later = (await checks(db))[0].due_at
    result = await check_pass(db, gateway, now=later)
    assert result.settled == {OutcomeStatus.VERIFIED: 1, OutcomeStatus.NOT_VERIFIED: 1}
    assert {c.subject: c.status for c in await checks(db)}[f"{ORDER}11"] is (
        OutcomeStatus.NOT_VERIFIED
    )


async def succeed(db: AsyncEngine, order_no: str, at: datetime) -> None:
    """A payer pays the order (the platform records a successful attempt)."""
    async with db.begin() as connection:
        await connection.execute(
            insert(AttemptRow).values(order_no=order_no, status="succeeded", at=at)
        )
        await connection.execute(
            update(OrderRow).where(OrderRow.order_no == order_no).values(status="paid")
        )


async def test_a_failure_explained_is_verified_by_a_later_successful_payment(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}02支付失败了")
    (check,) = await checks(db)
    assert (check.kind, check.subject, check.topic) == (
        OutcomeKind.PAYMENT_FAILURE,
        f"{ORDER}02",
        "payment_failure",
    )
    # An order paid before the diagnosis is no evidence.
    assert not (await check_pass(db, gateway, now=check.started_at + timedelta(hours=1))).settled
    # A new order the payer paid after it is.
    async with db.begin() as connection:
        await connection.execute(
            insert(OrderRow).values(
                order_no=f"{ORDER}77",
                merchant_id="M001",
                amount_fen=3500,
                currency="CNY",
                method="qr",
                status="created",
                created_at=check.started_at + timedelta(minutes=10),
                updated_at=check.started_at + timedelta(minutes=10),
            )
        )
    await succeed(db, f"{ORDER}77", check.started_at + timedelta(minutes=12))
    result = await check_pass(db, gateway, now=check.started_at + timedelta(hours=1))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}
    assert (await checks(db))[0].evidence_at == check.started_at + timedelta(minutes=12)


async def test_a_failure_explained_and_never_paid_again_is_not_verified(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}05支付失败了")
    (check,) = await checks(db)
    result = await check_pass(db, gateway, now=check.due_at)
    assert result.settled == {OutcomeStatus.NOT_VERIFIED: 1}


async def test_an_faq_answer_holds_without_a_repeat_and_fails_with_one(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    await chat.say("手续费怎么收")
    (first,) = await checks(db)
    assert first.kind is OutcomeKind.FAQ and Label(first.topic).is_faq
    assert first.due_at - first.started_at == timedelta(hours=72)
    # Within the window and no repeat: still pending.
    assert not (await check_pass(db, gateway, now=first.started_at + timedelta(hours=1))).settled
    other = Chat(chat.engine)
    await other.say("手续费怎么收")
    await chat.say("手续费是多少")  # the same chat, the same entry again
    rows = await checks(db)
    assert [r.topic for r in rows] == [first.topic] * 3
    result = await check_pass(db, gateway, now=first.started_at + timedelta(hours=2))
    assert result.settled == {OutcomeStatus.NOT_VERIFIED: 1}
    # The other chat's answer and the repeat itself hold once their windows close.
    result = await check_pass(db, gateway, now=rows[2].due_at)
    assert result.settled == {OutcomeStatus.VERIFIED: 2}


# -- the figures ---------------------------------------------------------------------------


async def settled_world(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway, clock: Clock
) -> datetime:
    """Two links (one paid), an FAQ answer after which the chat asked for a person, and one
    FAQ answer alone; settled at the FAQ window's end. Returns that moment."""
    await chat.bind("M001")
    paid = await make_link(chat, 50)
    await make_link(chat, 60)
    started = (await checks(db))[0].started_at
    await pay(db, paid, started + timedelta(hours=1))
    asker = Chat(chat.engine)
    await asker.say("手续费怎么收")
    clock.now = (await checks(db))[-1].started_at + timedelta(minutes=1)  # the people side's
    await asker.say("转人工")
    await Chat(chat.engine).say("手续费怎么收")
    end = started + timedelta(hours=73)
    await check_pass(db, gateway, now=end)
    return end


async def test_the_report_gives_verified_resolution_beside_containment_per_topic(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway, clock: Clock
) -> None:
    end = await settled_world(chat, db, gateway, clock)
    report = await outcome_report(session_factory(db), timedelta(days=7), now=end)
    by_topic = {t.topic: t for t in report.topics}
    link = by_topic["payment_link"]
    assert (link.kind, link.checks, link.verified, link.not_verified) == ("flow", 2, 1, 1)
    assert link.verified_rate == 0.5 and link.containment_rate == 1.0
    (faq,) = [t for t in report.topics if t.kind == "faq"]
    assert (faq.checks, faq.verified, faq.contained) == (2, 2, 1)
    assert faq.containment_rate == 0.5
    assert report.total.checks == 4 and report.total.verified == 3
    (unverified,) = report.unverified
    assert unverified.topic == "payment_link" and unverified.channel == "test"
    # Outside the period, nothing.
    empty = await outcome_report(
        session_factory(db), timedelta(hours=1), now=end + timedelta(days=8)
    )
    assert empty.topics == [] and empty.total.verified_rate is None


async def test_the_command_prints_the_same_figures_as_json(
    chat: Chat,
    db: AsyncEngine,
    gateway: PlatformGateway,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await settled_world(chat, db, gateway, clock)
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    capsys.readouterr()
    # The checks began just now, so a report over the last 7 days from now holds them all.
    assert await asyncio.to_thread(main, ["report", "outcomes", "--since", "7d", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = (await outcome_report(session_factory(db), timedelta(days=7))).as_json()
    assert printed["since"] == "7d"
    assert printed["topics"] == expected["topics"] and printed["total"] == expected["total"]
    assert printed["total"]["checks"] == 4
    assert await asyncio.to_thread(main, ["report", "outcomes", "--since", "24h"]) == 0
    assert "payment_link" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["report", "outcomes", "--since", "7 weeks"]) == 2


def test_periods_read_as_minutes_hours_and_days() -> None:
    assert parse_period("90m") == timedelta(minutes=90)
    assert parse_period("24h") == timedelta(hours=24)
    assert parse_period("30d") == timedelta(days=30)
    for bad in ["", "7", "0d", "7w", "-1d", "99999d"]:
        with pytest.raises(ValueError):
            parse_period(bad)


# -- the remote platform: the same checks over HTTP ---------------------------------------


@pytest.fixture
async def remote(db: AsyncEngine, world: None) -> AsyncIterator[HttpPlatform]:
    platform = SqlPlatform(session_factory(db), shares_bot_database=False)
    runner = web.AppRunner(create_platform_app(platform, KEY), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with HttpPlatform(f"http://{host}:{port}", api_key=KEY, backoff=0.01) as client:
            yield client
    finally:
        await runner.cleanup()


async def test_links_and_logins_read_over_http_as_on_the_embedded_platform(
    remote: HttpPlatform, gateway: PlatformGateway, db: AsyncEngine
) -> None:
    link = await gateway.create_payment_link("M001", Decimal("12.00"), None)
    assert (await remote.get_payment_link(link.id)) == link
    assert link.paid_at is None
    moment = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    await pay(db, link.id, moment)
    await log_in(db, "wang", moment)
    over_http = await remote.get_payment_link(link.id)
    assert over_http is not None and over_http.paid_at == moment
    assert over_http == await gateway.get_payment_link(link.id)
    account = await remote.get_account("wang")
    assert account is not None and account.last_login_at == moment
    assert await remote.get_payment_link("PL_NONE") is None
    assert await remote.get_payment_link("a/b") is None


async def test_the_checker_settles_through_the_remote_platform(
    chat: Chat, db: AsyncEngine, remote: HttpPlatform
) -> None:
    await chat.bind("M001")
    link = await make_link(chat, 80)
    (check,) = await checks(db)
    await pay(db, link, check.started_at + timedelta(minutes=30))
    result = await check_pass(db, remote, now=check.started_at + timedelta(hours=1))
    assert result.settled == {OutcomeStatus.VERIFIED: 1}


async def test_a_platform_that_cannot_answer_leaves_the_checks_pending(
    chat: Chat, db: AsyncEngine
) -> None:
    await chat.bind("M001")
    await make_link(chat, 90)
    (check,) = await checks(db)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HttpPlatform(
        f"http://127.0.0.1:{port}", api_key=KEY, retries=1, backoff=0.01
    ) as down:
        result = await check_pass(db, down, now=check.due_at + timedelta(hours=1))
    assert result.interrupted and not result.settled
    assert (await checks(db))[0].status is OutcomeStatus.PENDING


# -- one process at a time on PostgreSQL ----------------------------------------------------


async def test_a_pass_is_skipped_while_another_process_holds_the_lock(
    chat: Chat, db: AsyncEngine, gateway: PlatformGateway
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite has one process: there is no lock to take")
    await chat.bind("M001")
    link = await make_link(chat, 99)
    (check,) = await checks(db)
    await pay(db, link, check.started_at + timedelta(minutes=1))
    later = check.started_at + timedelta(hours=1)
    async with db.connect() as other:
        await other.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": LOCK_KEY})
        await other.commit()
        assert (await check_pass(db, gateway, now=later)).skipped
        assert (await checks(db))[0].status is OutcomeStatus.PENDING
        await other.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": LOCK_KEY})
        await other.commit()
    result = await check_pass(db, gateway, now=later)
    assert not result.skipped and result.settled == {OutcomeStatus.VERIFIED: 1}
