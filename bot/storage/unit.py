"""The message's unit of work: the session of the transaction the engine has open, if any.

The embedded platform shares the bot's database; on SQLite a second connection writing while
the message's transaction holds the write lock would wait on it, so the platform joins the
message's transaction instead (as a savepoint), which also makes its effects atomic with the
conversation's.
"""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession

current_session: ContextVar[AsyncSession | None] = ContextVar("current_session", default=None)
