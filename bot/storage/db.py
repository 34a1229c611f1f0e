"""The async engine, the session factory, and schema upgrades through Alembic."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.settings import Settings
from bot.storage.sqlite_inline import connector

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _sqlite_pragmas(busy_timeout: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
    cursor.close()


def create_engine(url: str, settings: Settings | None = None, **kwargs: Any) -> AsyncEngine:
    """An engine for `url`; SQLite gets WAL and a busy timeout, and its folder is created.

    Every wait on the database is bounded by `settings` (their defaults when left out): for a
    pooled connection, for SQLite's write lock, for a PostgreSQL lock or statement. A request
    that meets a locked database then fails in seconds, and the webhook answers 503 so that
    Telegram delivers again, instead of hanging until Telegram gives up on it.
    """
    limits = settings if settings is not None else Settings.model_construct()
    parsed = make_url(url)
    # A failed statement's error (logged, kept in `last_error` columns) names the statement,
    # not its values: those are message texts, payloads, tokens.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer. Many pooled connections would wait on its lock in the busy
        # handler's growing sleeps (p99 in seconds under load); one connection makes them queue
        # in order at the pool instead. Code never holds one session while opening another.
        # A request waits at most the pool timeout plus the busy timeout.
        busy_timeout = _milliseconds(limits.database_busy_timeout)
        if parsed.database not in (None, "", ":memory:"):
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
            kwargs.setdefault("pool_timeout", limits.database_pool_timeout)
            # Statements run on the loop's thread, not aiosqlite's (see sqlite_inline.py);
            # the connection waits for a lock itself, so SQLite's busy handler is off. A
            # caller may still ask for aiosqlite with async_creator=None (benchmarks do).
            inline = connector(parsed.database, limits.database_busy_timeout)
            if kwargs.setdefault("async_creator", inline) is inline:
                busy_timeout = 0
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, busy_timeout))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # A few connections per process, no overflow: with SQLAlchemy's default (5, and 10 more
    # under load) two processes ran up to 30 backends on a 2-core machine, and two processes
    # handled fewer messages than one (benchmarks/README.md).
    kwargs.setdefault("pool_size", limits.database_pool_size)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_timeout", limits.database_pool_timeout)
    if parsed.get_driver_name() == "asyncpg":
        connect_args = dict(kwargs.pop("connect_args", {}))
        server_settings = {
            "lock_timeout": str(_milliseconds(limits.database_lock_timeout)),
            "statement_timeout": str(_milliseconds(limits.database_statement_timeout)),
            **connect_args.get("server_settings", {}),
        }
        kwargs["connect_args"] = {**connect_args, "server_settings": server_settings}
    return create_async_engine(url, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` on the engine's database (run on every start).

    On PostgreSQL the migration is exempt from the request timeouts: it waits for the locks it
    needs (another process may be upgrading too) and runs as long as a large table takes."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SET LOCAL lock_timeout = 0"))
            await connection.execute(text("SET LOCAL statement_timeout = 0"))
        await connection.run_sync(
            _upgrade, engine.url.render_as_string(hide_password=False), revision
        )
