"""Working days in mainland China's calendar, and the withdrawal reply that names a holiday.

The dates are real: the 2026 schedule as `chinesecalendar` ships it (国庆节 from 1 to 7 October,
Saturday 10 October worked instead, 春节 from 15 to 23 February). The year after the last one
in the package's data shows what a year it does not cover looks like (2027 for 1.11.0; the
test follows the installed version, so a newer release does not break it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from chinese_calendar import Holiday, holidays
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.diagnostics.calendar import add_working_days, day, working_days_between
from bot.engine import Engine
from bot.platform.tables import WithdrawalRow
from bot.storage.db import session_factory
from tests.support.common import Chat


def test_an_ordinary_week_skips_the_weekend_only() -> None:
    span = add_working_days(date(2026, 11, 25), 3)  # a Wednesday
    assert (span.end, span.holidays, span.covered) == (date(2026, 11, 30), (), True)


def test_national_day_is_skipped_and_named_and_its_make_up_saturday_counts() -> None:
    span = add_working_days(date(2026, 9, 30), 3)
    assert span.holidays == (Holiday.national_day,) and span.covered
    assert span.end == date(2026, 10, 10)  # a Saturday, worked in exchange for the holiday
    assert day(date(2026, 10, 10)).working and not day(date(2026, 10, 11)).working
    assert working_days_between(date(2026, 9, 30), date(2026, 10, 9)) == 2


def test_the_spring_festival_week_is_not_working_days() -> None:
    span = add_working_days(date(2026, 2, 12), 3)
    assert span.holidays == (Holiday.spring_festival,)
    assert span.end > date(2026, 2, 23)
    assert working_days_between(date(2026, 2, 14), date(2026, 2, 23)) == 0
    assert day(date(2026, 2, 14)).working  # the Saturday before it is worked


def test_a_year_the_package_does_not_cover_counts_weekdays_and_says_so() -> None:
    uncovered = max(holidays).year + 1
    new_year = date(uncovered, 1, 1)
    assert not day(new_year).covered
    assert day(new_year).working == (new_year.weekday() < 5)
    span = add_working_days(date(uncovered - 1, 12, 28), 5)  # into the uncovered year
    assert span.end.year == uncovered and not span.covered
    assert add_working_days(date(uncovered - 1, 12, 1), 3).covered


@pytest.fixture
async def withdrawal_on_30_september(db: AsyncEngine, engine: Engine) -> None:
    """A withdrawal of M001 requested on the day before National Day, at 10:00 in Beijing."""
    async with session_factory(db)() as session, session.begin():
        session.add(
            WithdrawalRow(
                id="W0930",
                merchant_id="M001",
                amount_fen=120000,
                status="processing",
                requested_at=datetime(2026, 9, 30, 2, 0, tzinfo=UTC),
            )
        )


@pytest.mark.parametrize(
    ("question", "said"),
    [
        ("W0930 提现怎么还没到账", ["预计最晚 2026-10-10 到账", "国庆节假期"]),
        ("where is my withdrawal W0930", ["Expected by 2026-10-10", "National Day holiday is"]),
    ],
)
async def test_the_reply_names_the_holiday_in_the_way(
    withdrawal_on_30_september: None, engine: Engine, question: str, said: list[str]
) -> None:
    engine.clock = lambda: datetime(2026, 9, 30, 6, 0, tzinfo=UTC)  # 14:00 in Beijing
    chat = Chat(engine)
    await chat.bind("M001")
    await chat.say(question)
    for words in said:
        assert words in chat.text, chat.text
    assert "处理中" in chat.text or "processing" in chat.text.lower()
