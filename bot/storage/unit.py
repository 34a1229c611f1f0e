"""The message's unit of work: the session of the transaction the engine has open, if any.

The embedded platform shares the bot's database; on SQLite a second connection writing while
the message's transaction holds the write lock would wait on it, so the platform joins the
message's transaction instead (as a savepoint), which also makes its effects atomic with the
conversation's. The Telegram webhook opens the transaction itself (storing the update and
handling it commit together), and the engine joins it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Column, ColumnDefault, Table, event, insert, inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, make_transient_to_detached

from bot.storage.models import table_of

current_session: ContextVar[AsyncSession | None] = ContextVar("current_session", default=None)
# True while the message being handled was claimed already in this transaction, by a unique
# row of the caller's (the Telegram webhook's (source, update_id)): the engine's own claim of
# the message id would be a second statement deciding the same thing.
inbound_claimed: ContextVar[bool] = ContextVar("inbound_claimed", default=False)


@contextmanager
def joined(session: AsyncSession) -> Iterator[None]:
    """Within this block, the embedded platform works inside `session`'s transaction."""
    token = current_session.set(session)
    try:
        yield
    finally:
        current_session.reset(token)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The transaction already open in this task (joined), or a new one committed at the end."""
    outer = current_session.get()
    if outer is not None:
        yield outer
        return
    async with sessions() as session, session.begin():
        with joined(session):
            yield session


_AFTER_COMMIT = "btp_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call `callback` once the session's transaction committed (never if it rolls back).

    The callbacks wait in `session.info`, read by two listeners registered once for every
    Session: adding and removing listeners per transaction cost more than the commit."""
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


_INSERTS: dict[tuple[str, str, bool], Any] = {}


def _insert(table: Table, dialect: str, *, unless_taken: bool) -> Any:
    """INSERT ... RETURNING the key, with ON CONFLICT DO NOTHING when `unless_taken`: built
    once per table and dialect, the values travel as parameters. These run for every inbound
    message, and building the statement each time cost more than SQLite's work."""
    statement = _INSERTS.get((table.name, dialect, unless_taken))
    if statement is None:
        if unless_taken:
            build = postgresql_insert if dialect == "postgresql" else sqlite_insert
            statement = build(table).on_conflict_do_nothing()
        else:
            statement = insert(table)
        statement = statement.returning(*table.primary_key.columns)
        _INSERTS[table.name, dialect, unless_taken] = statement
    return statement


async def insert_once(session: AsyncSession, model: Any, **values: Any) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: the new row's id, or None when the key was taken.

    One statement, and a taken key neither raises nor spoils the transaction around it. Core:
    none of the ORM's per-row bookkeeping."""
    statement = _insert(table_of(model), session.get_bind().dialect.name, unless_taken=True)
    result = await session.execute(statement, values)
    return result.scalar_one_or_none()


async def add_new(session: AsyncSession, instance: Any, *, unless_taken: bool = False) -> bool:
    """INSERT a new object with one Core statement built once, and put it in the session as
    if it had been loaded; True when inserted. With `unless_taken`, a row holding the same
    unique key makes it a no-op (False, and the object stays out of the session).

    The ORM's flush of a new object (its unit of work, sorted by dependency, then the INSERT
    and the fetch of the new key) cost several times the statement itself, and every chat's
    first message creates two rows. Columns left unset get their defaults here, so the object
    holds every value it was stored with and nothing is ever loaded lazily."""
    mapper = inspect(type(instance))
    state = inspect(instance)
    values = {}
    for attribute in mapper.column_attrs:
        column = attribute.columns[0]
        if column.primary_key:
            continue
        if attribute.key not in state.dict:
            setattr(instance, attribute.key, _default(column))
        values[column.name] = state.dict[attribute.key]
    statement = _insert(
        mapper.local_table, session.get_bind().dialect.name, unless_taken=unless_taken
    )
    key = (await session.execute(statement, values)).first()
    if key is None:
        return False
    for column, value in zip(mapper.primary_key, key, strict=True):
        setattr(instance, mapper.get_property_by_column(column).key, value)
    make_transient_to_detached(instance)
    session.add(instance)
    return True


def _default(column: Column[Any]) -> Any:
    """The value an INSERT would give a column left out: its Python-side default, or NULL."""
    if column.server_default is not None:
        # The database would choose it, and the object could only learn it with a query.
        raise ValueError(f"add_new: set {column.name}, its default is the database's")
    default = column.default
    if default is None:
        return None
    if isinstance(default, ColumnDefault) and default.is_scalar:
        return default.arg
    if isinstance(default, ColumnDefault) and default.is_callable:
        return default.arg(None)  # SQLAlchemy wraps a default() to take the execution context
    # A SQL expression or a sequence: the database computes it.
    raise ValueError(f"add_new: set {column.name}, its default is computed by the database")
