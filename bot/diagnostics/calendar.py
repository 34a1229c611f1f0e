"""Working days, as the platform counts them for withdrawals: in mainland China's calendar.

A working day is one the State Council's schedule has people work: Monday to Friday unless a
public holiday (春节, 国庆节, ...) falls on it, and the make-up Saturdays and Sundays (调休) that
are worked instead. The schedule is data published once a year, so it comes from the maintained
`chinesecalendar` package (import name `chinese_calendar`), which ships it: a new release
follows each announcement, usually in November or early December for the next year (1.11.0,
November 2025, covers 2004-2026). Keep the package current every December; the minimum version
in pyproject.toml names the last year it must cover.

For a year the package does not cover yet it raises NotImplementedError; here that year's days
count as Monday to Friday, and the answer says so (`Span.covered` is False), so the reply can
warn that the date may move with holidays not published yet, instead of failing the chat.
Why this package and not a table of our own: docs/decisions/0006-working-days-calendar.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from chinese_calendar import Holiday, get_holiday_detail


@dataclass(frozen=True, slots=True)
class Day:
    """One calendar day: whether it is worked, the public holiday that keeps it free (if one
    does), and whether the holiday data covers its year at all."""

    working: bool
    holiday: Holiday | None = None
    covered: bool = True


def day(on: date) -> Day:
    try:
        free, name = get_holiday_detail(on)
    except NotImplementedError:  # a year the package does not cover yet
        return Day(working=on.weekday() < 5, covered=False)
    holiday = Holiday(name) if free and name is not None else None
    return Day(working=not free, holiday=holiday)


@dataclass(frozen=True, slots=True)
class Span:
    """Working days counted from a start: the last day reached, the public holidays that were
    in the way (each once, in order), and whether every day on the way was in the data."""

    end: date
    holidays: tuple[Holiday, ...] = ()
    covered: bool = True


def add_working_days(start: date, days: int) -> Span:
    """The `days`-th working day after `start`, and what was in the way."""
    current, added = start, 0
    holidays: list[Holiday] = []
    covered = True
    while added < days:
        current += timedelta(days=1)
        today = day(current)
        covered = covered and today.covered
        if today.working:
            added += 1
        elif today.holiday is not None and today.holiday not in holidays:
            holidays.append(today.holiday)
    return Span(current, tuple(holidays), covered)


def working_days_between(start: date, end: date) -> int:
    """Working days after `start` up to and including `end`."""
    count, current = 0, start
    while current < end:
        current += timedelta(days=1)
        if day(current).working:
            count += 1
    return count
