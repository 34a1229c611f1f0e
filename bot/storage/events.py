"""Events between server processes: "a chat got a message", "the queue changed", "push this".

On PostgreSQL, events travel by NOTIFY on one channel and every process LISTENs, so a user's
message handled by process A shows up live in an agent's console connected to process B. An
event emitted inside a transaction is sent by PostgreSQL only when it commits. On SQLite (one
process) events are delivered in-process after the commit.

Events are small frozen dataclasses. Each is encoded once, by `encode`, into the JSON text
that NOTIFY carries and that in-process delivery decodes as well: a listener on SQLite meets
exactly what a listener on PostgreSQL meets, and an event that would not survive the trip
(a field that is no JSON) fails on both at `emit`. PostgreSQL limits a NOTIFY payload to
8,000 bytes: events carry ids, never text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import asyncpg
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "btp_events"
_PENDING = "_bus_pending"


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """The handoff queue changed (a chat joined or left it, an agent came or went)."""

    kind: ClassVar[str] = "queue"


@dataclass(frozen=True, slots=True)
class ChatChanged:
    """A conversation an agent may have open got a message, a note or a new state."""

    kind: ClassVar[str] = "chat"
    conversation_id: int
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxFilled:
    """Rows were added to the outbox outside a turn: every process's relay looks again."""

    kind: ClassVar[str] = "outbox"


@dataclass(frozen=True, slots=True)
class WebChatPush:
    """A stored message for a web chat's socket, which may be open in any process."""

    kind: ClassVar[str] = "webchat"
    chat_id: str
    message_id: int


@dataclass(frozen=True, slots=True)
class KnowledgePublished:
    """A knowledge version was published (or published again: a rollback): every process
    builds its matcher from it and swaps it in (`bot/faq/live.py`)."""

    kind: ClassVar[str] = "knowledge"
    version_id: int


Event = QueueChanged | ChatChanged | OutboxFilled | WebChatPush | KnowledgePublished
_KINDS: dict[str, type[Event]] = {
    kind.kind: kind
    for kind in (QueueChanged, ChatChanged, OutboxFilled, WebChatPush, KnowledgePublished)
}
Listener = Callable[[Event], Awaitable[None]]


def encode(event: Event) -> str:
    """The event as NOTIFY's payload: `{"kind": ..., fields...}`, compact JSON."""
    return json.dumps(
        {"kind": event.kind, **asdict(event)}, ensure_ascii=False, separators=(",", ":")
    )


def decode(payload: str) -> Event | None:
    """The event `encode` wrote; None for a payload that is no event this code knows (a
    process of a newer release may speak of kinds this one has never heard of)."""
    try:
        fields: dict[str, Any] = json.loads(payload)
        kind = _KINDS[fields.pop("kind")]
        return kind(**fields)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("an event that is not one of ours was ignored")
        return None


class EventBus:
    """`emit(session, event)` inside a transaction; `subscribe(listener)` to hear every event."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._postgres = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._listeners: list[Listener] = []
        self._connection: asyncpg.Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def distributed(self) -> bool:
        return self._postgres

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._postgres:
            self._connection = await asyncpg.connect(self._dsn)
            await self._connection.add_listener(CHANNEL, self._on_notify)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        for task in list(self._tasks):
            task.cancel()

    async def emit(self, session: AsyncSession, event: Event) -> None:
        """Send `event` when the session's transaction commits (never if it rolls back)."""
        payload = encode(event)
        if self._postgres:
            await session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": payload},
            )
            return
        pending = session.sync_session.info.setdefault(_PENDING, [])
        if not pending:
            sa_event.listen(session.sync_session, "after_commit", self._after_commit, once=True)
            sa_event.listen(session.sync_session, "after_rollback", _discard, once=True)
        pending.append(payload)

    async def publish(self, event: Event) -> None:
        """Send `event` now, outside any transaction."""
        payload = encode(event)
        if self._postgres and self._connection is not None:
            await self._connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        else:
            self._deliver(payload)

    def _after_commit(self, session: Session) -> None:
        for payload in session.info.pop(_PENDING, []):
            self._deliver(payload)

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self._deliver(payload)

    def _deliver(self, payload: str) -> None:
        event = decode(payload)
        if event is None:
            return
        for listener in self._listeners:
            task = asyncio.get_running_loop().create_task(self._call(listener, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _call(listener: Listener, event: Event) -> None:
        try:
            await listener(event)
        except Exception:
            log.exception("event listener failed for %s", event.kind)


def _discard(session: Session) -> None:
    session.info.pop(_PENDING, None)
