"""The web chat channel: a page, a small JSON API, and a WebSocket for replies pushed later.

`POST /api/chat/sessions` opens a session and returns its bearer token (only a digest is
stored); `POST /api/chat/messages` hands `{"text"}` or `{"action"}` to the engine and returns the
replies; `GET /api/chat/history` lets the page rebuild the conversation after a reload;
`GET /api/chat/ws?token=...` receives what arrives later (a person's answer, a payment notice).
Everything a user types is data: the page renders it as text, never as HTML.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import uuid
from collections import defaultdict
from functools import partial
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.client import client_address
from bot.channels.errors import json_error
from bot.engine import Engine
from bot.escalation.bus import EventBus
from bot.platform.outside import in_unit
from bot.sockets import answer_pings
from bot.storage.models import Conversation, Message, WebChatSession
from bot.storage.unit import unit_of_work
from bot.types import IncomingMessage

log = logging.getLogger(__name__)

CHANNEL = "webchat"
MAX_ACTION = 128
MAX_CLIENT_ID = 64
MAX_ID = 2**63 - 1  # the largest id a database column holds
_AFTER = re.compile(r"[0-9]{1,19}")  # a message id, as many digits as MAX_ID has at most


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WebChatHub:
    """Live sockets per web chat session; also the outbox sender for the web chat channel."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

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
        await self._bus.publish(
            {"kind": "webchat", "chat_id": chat_id, "message_id": payload["message_id"]}
        )

    async def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("kind") != "webchat" or not self._hub.connected(str(event.get("chat_id"))):
            return
        async with self._sessions() as session:
            message = await session.get(Message, int(event["message_id"]))
        if message is None:
            return
        payload = message.payload or {}
        await self._hub.send(
            str(event["chat_id"]),
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

    def __init__(self, page: str) -> None:
        self._page = page
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
            headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"},
        )

    async def open_session(self, request: web.Request) -> web.Response:
        if request.body_exists and request.content_type == "application/json":
            # No options are defined yet, but a JSON body must still be the documented object.
            await _json_object(request)
        session_id = "wc_" + secrets.token_hex(10)
        token = secrets.token_urlsafe(32)
        async with self._sessions() as session, session.begin():
            session.add(WebChatSession(id=session_id, token_digest=_digest(token)))
        return web.json_response({"session_id": session_id, "token": token}, status=201)

    async def _session_id(self, token: str | None) -> str | None:
        if not token:
            return None
        async with unit_of_work(self._sessions) as session:
            return await session.scalar(
                select(WebChatSession.id).where(WebChatSession.token_digest == _digest(token))
            )

    async def _authorised(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        session_id = await self._session_id(token.strip() if scheme.lower() == "bearer" else None)
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
        body = await _json_object(request)
        # A field that is present must be valid: null is not a way to leave one out.
        text, action = body.get("text"), body.get("action")
        client_id = body.get("client_message_id")
        if ("text" in body) == ("action" in body):
            raise json_error(400, "bad_request", 'send exactly one of "text" or "action"')
        if "text" in body and not isinstance(text, str):
            raise json_error(400, "bad_request", '"text" must be a string')
        if "action" in body and (not isinstance(action, str) or not 0 < len(action) <= MAX_ACTION):
            raise json_error(
                400, "bad_request", f'"action" must be a string of 1-{MAX_ACTION} characters'
            )
        if "client_message_id" in body and (
            not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID
        ):
            raise json_error(
                400, "bad_request", f'"client_message_id" must be 1-{MAX_CLIENT_ID} characters'
            )
        message = IncomingMessage(
            channel=CHANNEL,
            chat_id=session_id,
            user_id=session_id,
            # Scoped to the session: one visitor's id never collides with another's.
            message_id=f"{session_id}:{client_id or uuid.uuid4().hex}",
            text=text or "",
            action=action,
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
        session_id = await self._session_id(request.query.get("token"))
        if session_id is None:
            raise json_error(401, "unauthorized", "a valid token query parameter is required")
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await socket.prepare(request)
        self._hub.add(session_id, socket)
        try:
            await answer_pings(socket)
        finally:
            self._hub.remove(session_id, socket)
        return socket


_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


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


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise json_error(415, "unsupported_media_type", "send application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise json_error(400, "bad_json", "the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise json_error(400, "bad_request", "the body must be a JSON object")
    return body
