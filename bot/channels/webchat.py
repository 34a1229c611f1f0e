"""The web chat channel: a page, a small JSON API, and a WebSocket for replies pushed later.

`POST /api/chat/sessions` opens a session and returns its bearer token (only a digest is
stored); `POST /api/chat/messages` hands `{"text"}` or `{"action"}` to the engine and returns the
replies; `GET /api/chat/history` lets the page rebuild the conversation after a reload;
`GET /api/chat/ws` receives what arrives later (a person's answer, a payment notice), with the
token in `Sec-WebSocket-Protocol` (a browser cannot set headers on a WebSocket, and a URL ends up
in access logs). Everything a user types is data: the page renders it as text, never as HTML.

What a visitor gets without an account is bounded: sessions opened per client address, sockets
per session and per address, and a token that goes unused for `WEBCHAT_IDLE_TIMEOUT` stops
working (docs/SECURITY.md).

Over 400 lines: the channel's routes, its socket hub and its cross-process fan-out share the
session and token rules above; split apart, each would import the others' private helpers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import re
import secrets
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any, Self, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.body import read_model
from bot.channels.client import client_address
from bot.channels.errors import json_error
from bot.cleantext import clean_text
from bot.digests import token_digest
from bot.engine import Engine
from bot.pageheaders import PAGE_HEADERS
from bot.settings import Settings
from bot.sockets import answer_pings
from bot.storage.events import Event, EventBus, WebChatPush
from bot.storage.models import Conversation, Message, RateEvent, WebChatSession, utcnow
from bot.storage.runner import in_unit
from bot.storage.unit import unit_of_work
from bot.types import IncomingMessage

log = logging.getLogger(__name__)

CHANNEL = "webchat"
MAX_ACTION = 128
MAX_CLIENT_ID = 64
M = TypeVar("M", bound=BaseModel)


class SessionOptions(BaseModel):
    """`POST /api/chat/sessions`: no options are defined yet; a body must be an object."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ChatMessage(BaseModel):
    """`POST /api/chat/messages`: exactly one of `text` (typed) or `action` (a button's data).
    A field that is present must be valid: null is not a way to leave one out."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: StrictStr = ""
    action: Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_ACTION)] = ""
    client_message_id: Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=MAX_CLIENT_ID)
    ] = ""

    @model_validator(mode="after")
    def _one_of_text_or_action(self) -> Self:
        if ("text" in self.model_fields_set) == ("action" in self.model_fields_set):
            raise ValueError('send exactly one of "text" or "action"')
        return self


MAX_ID = 2**63 - 1  # the largest id a database column holds
_AFTER = re.compile(r"[0-9]{1,19}")  # a message id, as many digits as MAX_ID has at most
# Sessions opened per client address are counted over this sliding window.
SESSION_WINDOW = timedelta(minutes=10)
# A token's last use is written when the stored one is older than this, not on every request.
TOUCH_EVERY = timedelta(minutes=5)
# The page offers both in Sec-WebSocket-Protocol; the server answers with the first.
SUBPROTOCOL = "btp.chat"
TOKEN_PROTOCOL = "btp.token."


@dataclass(frozen=True)
class Limits:
    """What one visitor may take: read once from the settings."""

    sessions_per_address: int
    sockets_per_session: int
    sockets_per_address: int
    idle_timeout: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            sessions_per_address=settings.webchat_sessions_per_address,
            sockets_per_session=settings.webchat_sockets_per_session,
            sockets_per_address=settings.webchat_sockets_per_address,
            idle_timeout=timedelta(seconds=settings.webchat_idle_timeout),
        )


class _OneAtATime:
    """A lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    @asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] <= 0:
                del self._users[key], self._locks[key]


class WebChatHub:
    """Live sockets per web chat session; also the outbox sender for the web chat channel."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        # Sockets admitted (their handshake may not be done yet) per session and per address.
        self._held: Counter[str] = Counter()
        self._held_by: Counter[str] = Counter()

    def admit(self, session_id: str, address: str, limits: Limits) -> bool:
        """Reserve a socket for the session from the address, unless either has its limit.
        Nothing is awaited between the check and the reservation."""
        if (
            self._held[session_id] >= limits.sockets_per_session
            or self._held_by[address] >= limits.sockets_per_address
        ):
            return False
        self._held[session_id] += 1
        self._held_by[address] += 1
        return True

    def release(self, session_id: str, address: str) -> None:
        for counter, key in ((self._held, session_id), (self._held_by, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def add(self, session_id: str, socket: web.WebSocketResponse) -> None:
        self._sockets[session_id].add(socket)

    def remove(self, session_id: str, socket: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(session_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[session_id]

    def connected(self, session_id: str) -> bool:
        return bool(self._sockets.get(session_id))

    async def send(self, chat_id: str, payload: dict[str, Any]) -> None:
        """Push to every open socket of the session. With none open the message waits in the
        history, which the page reads when it (re)connects, so there is nothing to retry."""
        event = json.dumps({"type": "message", "message": payload}, ensure_ascii=False)
        for socket in list(self._sockets.get(chat_id, ())):
            try:
                await socket.send_str(event)
            except (ConnectionError, RuntimeError):
                self.remove(chat_id, socket)

    async def close(self) -> None:
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close()
        self._sockets.clear()


class WebChatFanout:
    """The web chat's outbox sender when several processes serve: the user's socket may be in
    any of them, so the push goes over the event bus and each process delivers to its sockets.
    The event carries the message id only (PostgreSQL limits NOTIFY payloads)."""

    def __init__(
        self, hub: WebChatHub, bus: EventBus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._hub = hub
        self._bus = bus
        self._sessions = sessions
        bus.subscribe(self._on_event)

    async def send(self, chat_id: str, payload: dict[str, Any]) -> None:
        if not self._bus.distributed or payload.get("message_id") is None:
            await self._hub.send(chat_id, payload)
            return
        await self._bus.publish(WebChatPush(chat_id, int(payload["message_id"])))

    async def _on_event(self, event: Event) -> None:
        if not isinstance(event, WebChatPush) or not self._hub.connected(event.chat_id):
            return
        async with self._sessions() as session:
            message = await session.get(Message, event.message_id)
        if message is None:
            return
        payload = message.payload or {}
        await self._hub.send(
            event.chat_id,
            {
                "text": message.text,
                "buttons": payload.get("buttons", []),
                "image": payload.get("image"),
                "message_id": message.id,
                "sender": message.sender_kind,
            },
        )


class WebChat:
    """The routes; registered when the app is built, attached to the engine when it starts."""

    def __init__(
        self, page: str, limits: Limits, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._page = page
        self._limits = limits
        self._clock = clock or utcnow
        self._opening = _OneAtATime()
        self._attached: tuple[Engine, async_sessionmaker[AsyncSession], WebChatHub] | None = None

    def attach(
        self, engine: Engine, sessions: async_sessionmaker[AsyncSession], hub: WebChatHub
    ) -> None:
        self._attached = (engine, sessions, hub)

    @property
    def _engine(self) -> Engine:
        assert self._attached is not None, "WebChat used before the app started"
        return self._attached[0]

    @property
    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._attached is not None, "WebChat used before the app started"
        return self._attached[1]

    @property
    def _hub(self) -> WebChatHub:
        assert self._attached is not None, "WebChat used before the app started"
        return self._attached[2]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_post("/api/chat/sessions", self.open_session)
        app.router.add_post("/api/chat/messages", self.post_message)
        app.router.add_get("/api/chat/history", self.history)
        app.router.add_get("/api/chat/ws", self.websocket)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self._page,
            content_type="text/html",
            charset="utf-8",
            headers=PAGE_HEADERS,
        )

    async def open_session(self, request: web.Request) -> web.Response:
        if request.body_exists and request.content_type == "application/json":
            # No options are defined yet, but a JSON body must still be the documented object.
            await _json_body(request, SessionOptions)
        key = f"webchat:session:{_counted_address(request)}"[:128]
        session_id = "wc_" + secrets.token_hex(10)
        token = secrets.token_urlsafe(32)
        # Counted per client address, one request at a time per address in this process. A
        # refusal writes nothing. An attempt that passes the count is recorded, then counted
        # again with what other processes committed meanwhile: racing requests never get
        # more sessions than the limit between them.
        async with self._opening.held(key):
            now = self._clock()
            limit = self._limits.sessions_per_address
            async with self._sessions() as session:
                await self._refuse_when_over(session, key, now, limit)
            async with self._sessions() as session, session.begin():
                session.add(RateEvent(key=key, at=now))
            async with self._sessions() as session, session.begin():
                await self._refuse_when_over(session, key, now, limit + 1)
                session.add(
                    WebChatSession(
                        id=session_id,
                        token_digest=token_digest(token),
                        created_at=now,
                        last_seen_at=now,
                    )
                )
        return web.json_response({"session_id": session_id, "token": token}, status=201)

    @staticmethod
    async def _refuse_when_over(session: AsyncSession, key: str, now: datetime, limit: int) -> None:
        """429, with the seconds until the oldest counted attempt leaves the window."""
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(RateEvent.at)).where(
                    RateEvent.key == key, RateEvent.at > now - SESSION_WINDOW
                )
            )
        ).one()
        if count < limit:
            return
        wait = (oldest + SESSION_WINDOW - now).total_seconds() if oldest is not None else 1.0
        error = json_error(
            429, "too_many_sessions", "too many new sessions from this address; try again later"
        )
        error.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        raise error

    async def _session_id(self, token: str | None) -> str | None:
        """The session a token opens, if it was used within the idle timeout. The use is
        recorded only when the stored one is older than `TOUCH_EVERY`: one write in minutes."""
        if not token:
            return None
        now = self._clock()
        async with unit_of_work(self._sessions) as session:
            row = (
                await session.execute(
                    select(WebChatSession.id, WebChatSession.last_seen_at).where(
                        WebChatSession.token_digest == token_digest(token)
                    )
                )
            ).first()
            if row is None or row.last_seen_at <= now - self._limits.idle_timeout:
                return None
            if row.last_seen_at <= now - TOUCH_EVERY:
                await session.execute(
                    update(WebChatSession)
                    .where(
                        WebChatSession.id == row.id,
                        WebChatSession.last_seen_at <= now - TOUCH_EVERY,
                    )
                    .values(last_seen_at=now)
                )
            session_id: str = row.id
            return session_id

    async def _authorised(self, request: web.Request) -> str:
        session_id = await self._session_id(_bearer(request))
        if session_id is None:
            raise json_error(
                401, "unauthorized", "a valid Authorization: Bearer <token> is required"
            )
        return session_id

    async def post_message(self, request: web.Request) -> web.Response:
        # The body is read before the database is touched, and the token is looked up in the
        # message's own transaction: one transaction per message.
        await request.read()
        return await in_unit(self._sessions, partial(self._post_message, request))

    async def _post_message(self, request: web.Request, _session: AsyncSession) -> web.Response:
        session_id = await self._authorised(request)
        body = await _json_body(request, ChatMessage)
        text, action, client_id = body.text, body.action, body.client_message_id
        message = IncomingMessage(
            channel=CHANNEL,
            chat_id=session_id,
            user_id=session_id,
            # Scoped to the session: one visitor's id never collides with another's.
            message_id=f"{session_id}:{client_id or uuid.uuid4().hex}",
            text=clean_text(text),
            action=clean_text(action) if "action" in body.model_fields_set else None,
            client=client_address(request),
        )
        replies = await self._engine.handle(message)
        return web.json_response({"replies": [reply.to_json() for reply in replies]})

    async def history(self, request: web.Request) -> web.Response:
        session_id = await self._authorised(request)
        text = request.query.get("after", "0")
        if not _AFTER.fullmatch(text):
            raise json_error(400, "bad_request", '"after" must be a message id')
        after = min(int(text), MAX_ID)  # no id is larger, so nothing comes after a larger one
        async with self._sessions() as session:
            conversation = await session.scalar(
                select(Conversation).where(
                    Conversation.channel == CHANNEL, Conversation.chat_id == session_id
                )
            )
            if conversation is None:
                return web.json_response({"messages": [], "language": None})
            rows = (
                await session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation.id, Message.id > after)
                    .order_by(Message.id)
                    .limit(500)
                )
            ).all()
        return web.json_response(
            {
                "language": conversation.language,
                "messages": [_history_item(row) for row in rows],
            }
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """Authenticated before the upgrade, so a refused client holds no socket. A token in
        the query string is not read: it would be in every access log on the way."""
        token = _socket_token(request)
        session_id = await self._session_id(token)
        if session_id is None:
            raise json_error(
                401,
                "unauthorized",
                f'a valid token is required: Sec-WebSocket-Protocol "{SUBPROTOCOL}, '
                f'{TOKEN_PROTOCOL}<token>" or Authorization: Bearer <token>',
            )
        socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=30, max_msg_size=4096)
        if not socket.can_prepare(request).ok:
            raise json_error(400, "bad_request", "a WebSocket upgrade is required")
        address = _counted_address(request)
        if not self._hub.admit(session_id, address, self._limits):
            raise json_error(
                429, "too_many_sockets", "too many open sockets for this session or address"
            )

        async def still_allowed() -> bool:
            # The page pings every 25 s: a use of the token while the tab is open, and the
            # moment a token that expired (or was replaced) closes the socket.
            return await self._session_id(token) == session_id

        try:
            await socket.prepare(request)
            self._hub.add(session_id, socket)
            try:
                await answer_pings(socket, still_allowed)
            finally:
                self._hub.remove(session_id, socket)
        finally:
            self._hub.release(session_id, address)
        return socket


def _counted_address(request: web.Request) -> str:
    """The client address a per-address limit counts: an IPv6 client by its /64, the network
    one subscriber gets (counting single IPv6 addresses, one host would have 2**64 of them)."""
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _socket_token(request: web.Request) -> str | None:
    """The token from the first Sec-WebSocket-Protocol header (the one aiohttp negotiates
    from), offered beside `SUBPROTOCOL`; or from an Authorization header (clients that are not
    browsers). None when the protocols do not include `SUBPROTOCOL`: aiohttp would log them."""
    offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL)
    if offered is not None:
        protocols = [protocol.strip() for protocol in offered.split(",")]
        tokens = [p[len(TOKEN_PROTOCOL) :] for p in protocols if p.startswith(TOKEN_PROTOCOL)]
        return tokens[0] if SUBPROTOCOL in protocols and len(tokens) == 1 else None
    return _bearer(request)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _history_item(row: Message) -> dict[str, Any]:
    payload = row.payload or {}
    return {
        "id": row.id,
        "direction": row.direction,
        "sender": row.sender_kind,
        "text": row.text,
        "action": row.action,
        "buttons": payload.get("buttons", []),
        "image": payload.get("image"),
        "at": row.created_at.isoformat(),
    }


async def _json_body(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise json_error(415, "unsupported_media_type", "send application/json")
    return await read_model(request, model)
