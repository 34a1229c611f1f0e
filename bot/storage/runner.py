"""The transaction runner: a unit of work that may stop to make a slow call outside it.

A call that may take seconds (the remote platform over HTTP) must not be made inside a
message's transaction: it would hold a database connection that long (on SQLite the only
one), and every other chat would wait behind it. So inside a unit run by `in_unit`, such a
call is not made: the first time the work needs an answer it does not have yet,
`answer_outside` stops it (`CallNeeded`, which rolls the transaction back), `in_unit` makes
the call with no connection held, keeps the answer (or the error), and runs the work again
from the start, where the answer is now at hand. Work needing two answers runs three times:
a few milliseconds of database work each, against the call's seconds.

Each call is made once per unit, so a payment link is not created twice by a rerun. Outside
`in_unit` the call is made straight away. Which calls go through here is the caller's
business (`bot.platform.outside` wraps the remote platform); this module knows only keys and
awaitables, so every channel can run its work here without knowing the platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.unit import current_session, joined

T = TypeVar("T")
_answers: ContextVar[dict[Hashable, tuple[bool, Any]] | None] = ContextVar(
    "outside_answers", default=None
)


class CallNeeded(BaseException):
    """Stops a unit of work to make a call outside its transaction.

    A BaseException, like cancellation: no handler's `except Exception` may swallow it."""

    def __init__(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> None:
        super().__init__(key)
        self.key, self.call = key, call


async def answer_outside(key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`'s answer: made now outside `in_unit`; inside it, taken from an earlier run of
    the unit, or made between two runs (the current one stops here)."""
    answers = _answers.get()
    if answers is None:
        return await call()
    if key not in answers:
        raise CallNeeded(key, call)
    ok, value = answers[key]
    if not ok:
        raise value
    result: T = value
    return result


async def in_unit(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run `work` in one transaction (joined, see bot.storage.unit), again from the start
    after each outside call it needed, which is made in between, outside any transaction.

    Inside a transaction that is already open, `work` joins it: restarting is then the
    business of whoever opened it."""
    outer = current_session.get()
    if outer is not None:
        return await work(outer)
    answers: dict[Hashable, tuple[bool, Any]] = {}
    token = _answers.set(answers)
    try:
        while True:
            try:
                async with sessions() as session, session.begin():
                    with joined(session):
                        return await work(session)
            except CallNeeded as needed:
                try:
                    answers[needed.key] = (True, await needed.call())
                except Exception as exc:
                    answers[needed.key] = (False, exc)
    finally:
        _answers.reset(token)
