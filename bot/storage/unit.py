"""The message's unit of work: the session of the transaction the engine has open, if any.

The embedded platform shares the bot's database; on SQLite a second connection writing while
the message's transaction holds the write lock would wait on it, so the platform joins the
message's transaction instead (as a savepoint), which also makes its effects atomic with the
conversation's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession

current_session: ContextVar[AsyncSession | None] = ContextVar("current_session", default=None)


@contextmanager
def joined(session: AsyncSession) -> Iterator[None]:
    """Within this block, the embedded platform works inside `session`'s transaction."""
    token = current_session.set(session)
    try:
        yield
    finally:
        current_session.reset(token)
