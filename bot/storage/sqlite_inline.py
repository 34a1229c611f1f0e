"""SQLite for SQLAlchemy's aiosqlite dialect, run on the event loop's own thread.

aiosqlite hands every driver call to a thread of its own and waits for the answer: opening a
cursor, executing, fetching, closing and committing are each a round trip through a queue, the
thread, `call_soon_threadsafe` and the loop's self-pipe, four or five per statement. On these
machines that cost more CPU than SQLite's work itself (a Telegram update spent more time in the
hand-offs than in its six statements). This connection has aiosqlite's interface but makes the
calls directly: a statement costs what SQLite costs.

What the thread was for, and how it is kept:
- Waiting for another connection's write lock must not stop the loop. SQLite's own busy
  handler would sleep inside the call, so the connection runs with a busy timeout of 0 and
  waits here instead, with `asyncio.sleep` between tries, until the same deadline
  (`DATABASE_BUSY_TIMEOUT`); then it raises "database is locked" as SQLite would have.
- The rest is short: with WAL and `synchronous=NORMAL` a commit writes to the WAL without
  an fsync, and the database has one pooled connection (bot/storage/db.py), so the statements
  ran one after another anyway.

SQLAlchemy's adapter (`sqlalchemy.dialects.sqlite.aiosqlite`) stays in place: it is handed this
object through `create_async_engine(async_creator=...)`, and it uses the part of aiosqlite's
interface implemented here.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_FIRST_WAIT = 0.001
_LONGEST_WAIT = 0.05


async def _patiently(deadline_after: float, call: Callable[[], T]) -> T:
    """`call()`, tried again while another connection holds the lock, for up to
    `deadline_after` seconds."""
    deadline = time.monotonic() + deadline_after
    wait = _FIRST_WAIT
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            # Only plain SQLITE_BUSY passes with time; BUSY_SNAPSHOT (a read snapshot too old
            # to write from) and the rest do not.
            if getattr(exc, "sqlite_errorname", None) != "SQLITE_BUSY":
                raise
            if time.monotonic() + wait > deadline:
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, _LONGEST_WAIT)


class InlineCursor:
    """An aiosqlite-like cursor whose coroutines finish without leaving the thread."""

    __slots__ = ("_cursor", "_patience")

    def __init__(self, cursor: sqlite3.Cursor, patience: float) -> None:
        self._cursor = cursor
        self._patience = patience

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        arguments = () if parameters is None else parameters
        await _patiently(self._patience, lambda: self._cursor.execute(sql, arguments))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # a generator could not be read a second time
        await _patiently(self._patience, lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """Stands in for aiosqlite's queue to its thread: SQLAlchemy's adapter sets the isolation
    level by putting `(future, function)` on it."""

    __slots__ = ()

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the waiting future, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """The part of `aiosqlite.Connection` SQLAlchemy's aiosqlite adapter uses."""

    def __init__(self, connection: sqlite3.Connection, patience: float) -> None:
        # aiosqlite's names: `_connection` is None once closed, `_conn` the open connection.
        self._connection: sqlite3.Connection | None = connection
        self._patience = patience
        self._tx = _Immediate()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._patience)

    async def commit(self) -> None:
        connection = self._conn
        await _patiently(self._patience, connection.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate); closing twice is harmless."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def connector(path: str, busy_timeout: float) -> Callable[[], Any]:
    """The `async_creator` for `create_async_engine`: a new inline connection to `path`."""

    async def connect() -> InlineConnection:
        # timeout=0: SQLite's busy handler would sleep on the loop's thread; the waiting is
        # done by `_patiently` instead, up to `busy_timeout` seconds.
        connection = sqlite3.connect(path, timeout=0, check_same_thread=False)
        return InlineConnection(connection, busy_timeout)

    return connect
