"""The agent console: login, the queue, one conversation, the supervisor's numbers, live updates.

HTTP and HTML only. Every decision about chats is the handoff service's (who may see or act on
what, claims, transfers, audit entries, events); the handlers read a request, call the service and
render the result. What belongs to the console itself lives here: agents' sessions (a random
cookie token and a CSRF token, stored as SHA-256 digests), logins (throttled by
`bot.escalation.login_guard`, which also knows the devices an agent logged in from), and pushing
bus events to open consoles over a WebSocket.

Routes (all under /agent): the login form, the queue page, a conversation page, the supervisor
page, `GET /agent/ws`, and the JSON/form API under /agent/api. Pages without a session redirect
to the login form; API calls without one get 401; every POST needs the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Bot
from bot.channels.body import read_json_object
from bot.channels.client import client_address
from bot.channels.errors import json_error
from bot.cleantext import clean_text
from bot.digests import matches_digest, token_digest
from bot.escalation import login_guard, stats
from bot.escalation.context_card import failure_words, findings_card
from bot.escalation.service import (
    ONLINE_WINDOW,
    ORDER_NO,
    ConversationDetail,
    HandoffError,
    HandoffService,
    QueueEntry,
)
from bot.nlu.values import read_amount
from bot.pageheaders import PAGE_HEADERS
from bot.platform.gateway import MerchantNotActive, PlatformRejected, PlatformUnavailable
from bot.platform.sql import RESET_TOKEN_LIFETIME
from bot.privacy import mask_pii
from bot.settings import Settings
from bot.sockets import answer_pings
from bot.storage.models import Agent, AgentSession, AuditEntry, Message
from bot.types import Label, Language

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COOKIE = "btp_agent"
LOGIN_COOKIE = "btp_agent_login"
LANG_COOKIE = "btp_agent_lang"
DEVICE_COOKIE = "btp_agent_device"
SESSION_LIFETIME = timedelta(hours=12)
HEARTBEAT_EVERY = 30.0
LANGUAGES = ("zh", "en")
PERIODS = (1, 7, 30)
DEFAULT_PERIOD = 7
MAX_NAME = 64
MAX_PASSWORD = 1024
MAX_DESCRIPTION = 200
# The pages' shared headers; an agent's pages are never kept by a browser or a proxy.
_HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store"}
_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "bad_request": 400}
_NEXT = re.compile(r"^/agent(?:/[A-Za-z0-9_-]+)*$")
_PNG = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$")
_ID = r"{%s:\d{1,18}}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Runtime(Protocol):
    """What `attach` needs of webhook_server's `Runtime`."""

    @property
    def bot(self) -> Bot: ...


@dataclass(frozen=True, slots=True)
class CannedReply:
    id: str
    zh: str
    en: str

    def text(self, language: str) -> str:
        return self.en if language == "en" else self.zh


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def canned_facts() -> dict[str, str]:
    """The facts canned replies may name as `{placeholder}`, from the constants the bot keeps."""
    return {"reset_minutes": str(int(RESET_TOKEN_LIFETIME.total_seconds()) // 60)}


def _filled(text: str, facts: Mapping[str, str], where: str) -> str:
    """`{name}` replaced by its fact, nothing else: no attribute or index lookups as in
    `str.format`, and an unknown name stops the start instead of reaching an agent."""

    def fact(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in facts:
            raise ValueError(f"{where}: unknown placeholder {{{name}}}")
        return facts[name]

    return _PLACEHOLDER.sub(fact, text)


def load_canned(path: Path, facts: Mapping[str, str] | None = None) -> list[CannedReply]:
    """`knowledge/canned.yaml`: `replies:` with an `id` and the `zh` and `en` text of each.

    A fact a reply states (how long a reset link lasts) is a `{placeholder}` filled from
    `canned_facts()`, so the reply cannot drift from what the bot does. A knowledge folder
    without the file gives a console without canned replies (and a warning); a file that is
    there but malformed stops the start, like the other knowledge files."""
    facts = canned_facts() if facts is None else facts
    if not path.exists():
        log.warning("%s is missing: the console offers no canned replies", path)
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("replies") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a `replies:` list")
    replies: list[CannedReply] = []
    for number, item in enumerate(items, 1):
        fields = item if isinstance(item, dict) else {}
        values = [fields.get(key) for key in ("id", "zh", "en")]
        if not all(isinstance(value, str) and value.strip() for value in values):
            raise ValueError(f"{path}: reply {number} needs non-empty id, zh and en")
        reply_id, zh, en = (str(value).strip() for value in values)
        where = f"{path}: reply {reply_id}"
        replies.append(CannedReply(reply_id, _filled(zh, facts, where), _filled(en, facts, where)))
    ids = [reply.id for reply in replies]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: reply ids must be unique")
    return replies


@dataclass(frozen=True, slots=True)
class _Viewer:
    """The agent behind a request, from a live session."""

    agent_id: int
    name: str
    is_supervisor: bool
    session_id: int
    csrf: str
    csrf_digest: str


def _csrf_for(token: str) -> str:
    """The session's CSRF token: derived from the cookie token, so only its digest is stored."""
    return hmac.new(token.encode(), b"btp-agent-csrf", hashlib.sha256).hexdigest()


class AgentConsole:
    """The console's routes; registered when the app is built, attached when it starts."""

    def __init__(
        self,
        settings: Settings,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
        heartbeat_every: float = HEARTBEAT_EVERY,
    ) -> None:
        self._settings = settings
        self._hasher = hasher or PasswordHasher()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._heartbeat_every = heartbeat_every
        self._zone = ZoneInfo(settings.timezone)
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"], default_for_string=True),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.do"],
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # as the bot's replies (bot/render.py): changed by a deploy
        )
        module = self._env.get_template("_i18n.html").module
        self._strings: dict[str, dict[str, str]] = module.STRINGS  # type: ignore[attr-defined]
        self._canned = load_canned(settings.knowledge_dir / "canned.yaml")
        self._bot: Bot | None = None
        self._dummy_hash: str | None = None
        self._sockets: dict[web.WebSocketResponse, _Viewer] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- wiring --------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/agent/login", self.login_page),
            ("POST", "/agent/login", self.login),
            ("POST", "/agent/logout", self.logout),
            ("GET", "/agent", self.queue_page),
            ("GET", "/agent/chats/" + _ID % "conversation_id", self.chat_page),
            ("GET", "/agent/supervisor", self.supervisor_page),
            ("GET", "/agent/api/queue", self.queue_json),
            ("GET", "/agent/api/chats/" + _ID % "conversation_id", self.chat_json),
            ("POST", "/agent/api/online", self.set_online),
            ("POST", "/agent/api/agents/" + _ID % "agent_id" + "/unlock", self.unlock),
            ("POST", "/agent/api/handoffs/" + _ID % "handoff_id" + "/claim", self.claim),
            ("POST", "/agent/api/handoffs/" + _ID % "handoff_id" + "/transfer", self.transfer),
            ("POST", "/agent/api/handoffs/" + _ID % "handoff_id" + "/resolve", self.resolve),
            ("POST", "/agent/api/handoffs/" + _ID % "handoff_id" + "/answer", self.answer),
            ("POST", "/agent/api/chats/" + _ID % "conversation_id" + "/reply", self.reply),
            ("POST", "/agent/api/chats/" + _ID % "conversation_id" + "/notes", self.note),
            (
                "POST",
                "/agent/api/chats/" + _ID % "conversation_id" + "/payment-link",
                self.payment_link,
            ),
            ("POST", "/agent/api/chats/" + _ID % "conversation_id" + "/resync", self.resync),
            (
                "POST",
                "/agent/api/chats/" + _ID % "conversation_id" + "/password-reset",
                self.password_reset,
            ),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))
        app.router.add_get("/agent/ws", self.websocket)
        app.router.add_static("/agent/static", STATIC, show_index=False)
        app.on_shutdown.append(self._on_shutdown)

    def attach(self, runtime: _Runtime) -> None:
        """Called once the bot is open: the console starts hearing the bus."""
        self._bot = runtime.bot
        runtime.bot.bus.subscribe(self._on_event)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for socket in list(self._sockets):
            await socket.close()
        self._sockets.clear()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Open sockets would otherwise hold a graceful shutdown for its whole timeout.
        await self.close()

    @property
    def _service(self) -> HandoffService:
        return self._runtime_bot.handoffs

    @property
    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._runtime_bot.sessions

    @property
    def _runtime_bot(self) -> Bot:
        assert self._bot is not None, "AgentConsole used before attach()"
        return self._bot

    def _guarded(self, handler: Handler) -> Handler:
        """Service and platform errors in the JSON error shape; security headers on everything."""

        async def run(request: web.Request) -> web.StreamResponse:
            try:
                try:
                    response = await handler(request)
                except HandoffError as exc:
                    raise json_error(_STATUS.get(exc.code, 400), exc.code, str(exc)) from exc
                except MerchantNotActive as exc:
                    raise json_error(409, "merchant_not_active", str(exc)) from exc
                except PlatformRejected as exc:
                    raise json_error(400, "bad_request", str(exc) or "rejected") from exc
                except PlatformUnavailable as exc:
                    raise json_error(503, "unavailable", "the platform is unavailable") from exc
            except web.HTTPException as exc:
                exc.headers.update(_HEADERS)
                raise
            response.headers.update(_HEADERS)
            return response

        return run

    # -- sessions ------------------------------------------------------------------------------

    async def _viewer(self, request: web.Request) -> _Viewer | None:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(AgentSession, Agent)
                    .join(Agent, Agent.id == AgentSession.agent_id)
                    .where(
                        AgentSession.token_digest == token_digest(token),
                        AgentSession.expires_at > self._clock(),
                    )
                )
            ).first()
        if row is None:
            return None
        agent_session, agent = row
        return _Viewer(
            agent.id,
            agent.name,
            agent.is_supervisor,
            agent_session.id,
            _csrf_for(token),
            agent_session.csrf_digest,
        )

    async def _page_viewer(self, request: web.Request) -> _Viewer:
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther("/agent/login")
        return viewer

    async def _api_viewer(self, request: web.Request) -> _Viewer:
        viewer = await self._viewer(request)
        if viewer is None:
            raise json_error(401, "unauthorized", "log in to the console first")
        return viewer

    async def _action(self, request: web.Request) -> tuple[_Viewer, dict[str, str]]:
        """A console POST: a session, then a valid CSRF token, then the fields."""
        viewer = await self._api_viewer(request)
        fields = await _fields(request)
        given = fields.get("csrf") or request.headers.get("X-CSRF-Token", "")
        if not given or not matches_digest(given, viewer.csrf_digest):
            raise json_error(403, "csrf", "a valid CSRF token is required")
        return viewer, fields

    def _secure(self, request: web.Request) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return self._settings.console_secure_cookies or request.secure or forwarded == "https"

    def _set_cookie(
        self,
        request: web.Request,
        response: web.StreamResponse,
        name: str,
        value: str,
        *,
        path: str = "/agent",
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            path=path,
            max_age=max_age,
            httponly=True,
            samesite="Strict",
            secure=self._secure(request),
        )

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(16))
        return self._dummy_hash

    async def _verify(self, stored: str | None, password: str) -> bool:
        """argon2id verification off the event loop; an unknown name costs the same time."""
        target = stored or await self._dummy()
        try:
            await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    # -- login and logout ----------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if await self._viewer(request) is not None:
            raise web.HTTPSeeOther("/agent")
        return self._login_form(request)

    def _login_form(
        self,
        request: web.Request,
        *,
        status: int = 200,
        error: str | None = None,
        name: str = "",
        minutes: int = 0,
    ) -> web.Response:
        token = secrets.token_urlsafe(32)
        response = self._render(
            request,
            "login.html",
            page="login",
            viewer=None,
            csrf=token,
            status=status,
            error=error,
            name=name,
            minutes=minutes,
        )
        self._set_cookie(request, response, LOGIN_COOKIE, token, path="/agent/login")
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values = {key: value for key, value in form.items() if isinstance(value, str)}
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        given = values.get("csrf", "")
        if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
            return self._login_form(request, status=403, error="login_expired")
        name = values.get("name", "").strip()
        password = values.get("password", "")
        if not name or not password or len(name) > MAX_NAME or len(password) > MAX_PASSWORD:
            return self._login_form(request, status=401, error="login_invalid", name=name[:64])
        now = self._clock()
        async with self._sessions() as session:
            agent = await session.scalar(select(Agent).where(Agent.name == name))
            device_id = await login_guard.known_device(
                session, request.cookies.get(DEVICE_COOKIE), name, now
            )
        async with self._sessions() as session:
            reservation = await login_guard.reserve(
                session, name, client_address(request), device_id, now
            )
        if reservation.retry_after is not None:
            minutes = max(1, math.ceil(reservation.retry_after.total_seconds() / 60))
            response = self._login_form(
                request, status=429, error="login_locked", name=name, minutes=minutes
            )
            response.headers["Retry-After"] = str(minutes * 60)
            return response
        if not await self._verify(agent.password_hash if agent else None, password):
            return self._login_form(request, status=401, error="login_invalid", name=name)
        assert agent is not None
        token = secrets.token_urlsafe(32)
        rehashed = None
        if self._hasher.check_needs_rehash(agent.password_hash):
            rehashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._sessions() as session, session.begin():
            await login_guard.release(session, reservation)
            if rehashed is not None:
                stored = await session.get(Agent, agent.id)
                if stored is not None:
                    stored.password_hash = rehashed
            await session.execute(
                delete(AgentSession).where(
                    AgentSession.agent_id == agent.id, AgentSession.expires_at <= now
                )
            )
            session.add(
                AgentSession(
                    agent_id=agent.id,
                    token_digest=token_digest(token),
                    csrf_digest=token_digest(_csrf_for(token)),
                    created_at=now,
                    expires_at=now + SESSION_LIFETIME,
                )
            )
            device_token = await login_guard.remember_device(session, agent.id, device_id, now)
            session.add(AuditEntry(agent_id=agent.id, action="login", detail={}, at=now))
        # A known device keeps its token; its cookie's year starts again with its row's.
        device_token = device_token or request.cookies.get(DEVICE_COOKIE)
        redirect = web.HTTPSeeOther("/agent")
        self._set_cookie(
            request, redirect, COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds())
        )
        redirect.del_cookie(LOGIN_COOKIE, path="/agent/login")
        if device_token is not None:
            lifetime = int(login_guard.DEVICE_LIFETIME.total_seconds())
            self._set_cookie(
                request,
                redirect,
                DEVICE_COOKIE,
                device_token,
                path="/agent/login",
                max_age=lifetime,
            )
        raise redirect

    async def logout(self, request: web.Request) -> web.StreamResponse:
        viewer, _ = await self._action(request)
        async with self._sessions() as session, session.begin():
            await session.execute(delete(AgentSession).where(AgentSession.id == viewer.session_id))
            session.add(
                AuditEntry(agent_id=viewer.agent_id, action="logout", detail={}, at=self._clock())
            )
        redirect = web.HTTPSeeOther("/agent/login")
        redirect.del_cookie(COOKIE, path="/agent")
        raise redirect

    # -- pages ---------------------------------------------------------------------------------

    async def queue_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._page_viewer(request)
        queue = await self._queue(viewer)
        return self._render(request, "queue.html", page="queue", viewer=viewer, queue=queue)

    async def chat_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._page_viewer(request)
        conversation_id = _path_id(request, "conversation_id")
        try:
            detail = await self._service.detail(viewer.agent_id, conversation_id)
        except HandoffError as exc:
            status = _STATUS.get(exc.code, 400)
            return self._render(
                request, "error.html", page="error", viewer=viewer, status=status, code=exc.code
            )
        chat = await self._chat(viewer, detail, self._language(request)[0])
        language = detail.conversation.language
        canned = [(reply.id, reply.text(language)) for reply in self._canned]
        agents = [a for a in await self._agents() if a["id"] != viewer.agent_id]
        return self._render(
            request,
            "chat.html",
            page="chat",
            viewer=viewer,
            chat=chat,
            canned=canned,
            agents=agents,
        )

    async def supervisor_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._page_viewer(request)
        if not viewer.is_supervisor:
            return self._render(
                request, "error.html", page="error", viewer=viewer, status=403, code="forbidden"
            )
        days = request.query.get("days", "")
        period = int(days) if days.isdigit() and int(days) in PERIODS else DEFAULT_PERIOD
        numbers = await stats.collect(
            self._sessions,
            now=self._clock(),
            days=period,
            default_capacity=self._settings.agent_capacity,
            zone=self._zone,
        )
        language = Language(self._language(request)[0])
        entries = self._runtime_bot.engine.knowledge.entries
        topics = [
            (entry.title[language] if (entry := entries.get(Label(label))) else label, n)
            for label, n in numbers.top_faq
        ]
        return self._render(
            request,
            "supervisor.html",
            page="supervisor",
            viewer=viewer,
            stats=numbers,
            topics=topics,
            period=period,
            periods=PERIODS,
        )

    def _language(self, request: web.Request) -> tuple[str, bool]:
        """The UI language and whether it was chosen just now (`?lang=`)."""
        chosen = request.query.get("lang", "")
        if chosen in LANGUAGES:
            return chosen, True
        stored = request.cookies.get(LANG_COOKIE, "")
        return (stored if stored in LANGUAGES else "zh"), False

    def _render(
        self,
        request: web.Request,
        template: str,
        *,
        page: str,
        viewer: _Viewer | None,
        status: int = 200,
        csrf: str | None = None,
        **values: Any,
    ) -> web.Response:
        language, chosen = self._language(request)
        links = {code: str(request.rel_url.update_query(lang=code)) for code in LANGUAGES}
        html = self._env.get_template(template).render(
            t=self._strings[language],
            strings=self._strings[language],
            lang=language,
            lang_links=links,
            page=page,
            viewer=viewer,
            csrf=csrf if csrf is not None else (viewer.csrf if viewer else ""),
            **values,
        )
        response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        if chosen:
            self._set_cookie(request, response, LANG_COOKIE, language, max_age=365 * 86400)
        return response

    # -- JSON views ----------------------------------------------------------------------------

    async def queue_json(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._api_viewer(request)
        return web.json_response(await self._queue(viewer))

    async def chat_json(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._api_viewer(request)
        conversation_id = _path_id(request, "conversation_id")
        detail = await self._service.detail(viewer.agent_id, conversation_id)
        language = self._language(request)[0]
        return web.json_response(await self._chat(viewer, detail, language))

    async def _queue(self, viewer: _Viewer) -> dict[str, Any]:
        """The service's queue, split the way the page shows it."""
        entries = await self._service.queue(viewer.agent_id)
        agent = await self._service.agent(viewer.agent_id)
        names = {a["id"]: a["name"] for a in await self._agents()}
        sections: dict[str, list[dict[str, Any]]] = {
            "waiting": [],
            "mine": [],
            "others": [],
            "tickets": [],
        }
        for entry in entries:
            section = _section(entry, viewer.agent_id)
            item = asdict(entry)
            item["agent"] = names.get(entry.agent_id) if entry.agent_id is not None else None
            item["preview"] = mask_pii(entry.preview)  # rows kept from before the mask's rules
            sections[section].append(item)
        capacity = self._service.capacity_of(agent) if agent is not None else 0
        return {"online": bool(agent and agent.online), "capacity": capacity, **sections}

    async def _chat(
        self, viewer: _Viewer, detail: ConversationDetail, language: str
    ) -> dict[str, Any]:
        """One conversation for the page, its context card in the console's `language`."""
        conversation, handoff = detail.conversation, detail.handoff
        names = {a["id"]: a["name"] for a in await self._agents()}
        status = handoff.status if handoff else None
        mine = handoff is not None and handoff.agent_id == viewer.agent_id
        return {
            "conversation": {
                "id": conversation.id,
                "channel": conversation.channel,
                "language": conversation.language,
                "state": conversation.state,
            },
            "handoff": None
            if handoff is None
            else {
                "id": handoff.id,
                "status": handoff.status,
                "reason": handoff.reason,
                "priority": handoff.priority,
                "agent": names.get(handoff.agent_id) if handoff.agent_id else None,
                "since": self._time(handoff.created_at),
                "rating": handoff.rating,
                "ticket_text": mask_pii(handoff.ticket_text) if handoff.ticket_text else None,
            },
            "can": {
                "claim": status == "queued",
                "act": status == "assigned" and (mine or viewer.is_supervisor),
                "answer": status == "ticket",
            },
            "messages": self._transcript(detail.messages),
            "notes": [
                {"agent": name, "text": mask_pii(note.text), "time": self._time(note.created_at)}
                for name, note in detail.notes
            ],
            "context": self._context(detail, Language(language)),
        }

    def _transcript(self, messages: list[Message]) -> list[dict[str, Any]]:
        """The messages for the page; a button press shows the label the user saw, taken from
        the buttons the last message before it offered."""
        offered: dict[str, str] = {}
        shown = []
        for message in messages:
            line = self._message(message)
            if message.direction == "in":
                line["pressed"] = offered.get(message.action or "")
            elif line["buttons"]:
                offered = {
                    str(b.get("action", "")): mask_pii(str(b.get("label", "")))
                    for b in (message.payload or {}).get("buttons") or []
                    if isinstance(b, dict)
                }
            shown.append(line)
        return shown

    def _message(self, message: Message) -> dict[str, Any]:
        payload = message.payload or {}
        image = payload.get("image")
        buttons = payload.get("buttons") or []
        return {
            "pressed": None,
            "id": message.id,
            "sender": "user" if message.direction == "in" else message.sender_kind,
            # Masked when shown as well: rows stored before a rule of the mask was added.
            "text": mask_pii(message.text),
            "action": mask_pii(message.action) if message.action else message.action,
            "buttons": [mask_pii(str(b.get("label", ""))) for b in buttons if isinstance(b, dict)],
            "image": image if isinstance(image, str) and _PNG.match(image) else None,
            "time": self._time(message.created_at),
        }

    def _context(self, detail: ConversationDetail, language: Language) -> dict[str, Any]:
        """The service's context (merchant, findings, orders) as plain JSON for the page, in
        the console's language."""
        context = detail.context
        knowledge = self._runtime_bot.engine.knowledge
        merchant = context.get("merchant")
        identity = detail.identity
        orders = []
        for order_no, order in context.get("orders", []):
            if order is None:
                orders.append({"order_no": order_no, "visible": False})
                continue
            failure = order.last_failure
            orders.append(
                {
                    "order_no": order_no,
                    "visible": True,
                    "amount": str(order.amount),
                    "currency": order.currency,
                    "method": str(order.method),
                    "status": str(order.status),
                    "channel_status": str(order.channel.status) if order.channel else None,
                    "in_sync": order.in_sync,
                    "failure": failure_words(knowledge, failure, language) if failure else None,
                    "created": self._time(order.created_at),
                }
            )
        card = findings_card(
            context.get("findings") or {},
            knowledge=knowledge,
            language=language,
            t=self._strings[str(language)],
            time=self._time,
        )
        return {
            "kind": identity.kind if identity is not None else "customer",
            "merchant_id": identity.merchant_id if identity is not None else None,
            "merchant": None
            if merchant is None
            else {"id": merchant.id, "name": merchant.name, "status": str(merchant.status)},
            **card,
            "orders": orders,
        }

    def _time(self, moment: datetime | None) -> str:
        return moment.astimezone(self._zone).strftime("%m-%d %H:%M") if moment else ""

    async def _agents(self) -> list[dict[str, Any]]:
        """Every agent with presence, for names and the transfer list."""
        now = self._clock()
        async with self._sessions() as session:
            rows = (await session.scalars(select(Agent).order_by(Agent.name))).all()
        return [
            {
                "id": agent.id,
                "name": agent.name,
                "online": bool(
                    agent.online and agent.last_seen_at and agent.last_seen_at > now - ONLINE_WINDOW
                ),
            }
            for agent in rows
        ]

    # -- actions -------------------------------------------------------------------------------

    async def set_online(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        await self._service.set_online(viewer.agent_id, _flag(fields, "online"))
        return _done(request, fields, "/agent")

    async def unlock(self, request: web.Request) -> web.StreamResponse:
        """A supervisor forgets the failed logins counted against an agent's name."""
        viewer, fields = await self._action(request)
        if not viewer.is_supervisor:
            raise json_error(403, "forbidden", "only a supervisor unlocks agents")
        agent_id = _path_id(request, "agent_id")
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise json_error(404, "not_found", "no such agent")
            cleared = await login_guard.unlock(session, agent)
            session.add(
                AuditEntry(
                    agent_id=viewer.agent_id,
                    action="agent_unlocked",
                    detail={"agent": agent.name, "cleared": cleared},
                    at=self._clock(),
                )
            )
        return _done(request, fields, "/agent/supervisor", cleared=cleared)

    async def claim(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        await self._service.claim(viewer.agent_id, _path_id(request, "handoff_id"))
        return _done(request, fields, "/agent")

    async def transfer(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        target = fields.get("to_agent_id", "")
        if not target.isdigit() or len(target) > 18:
            raise json_error(400, "bad_request", "choose an agent to transfer to")
        await self._service.transfer(viewer.agent_id, _path_id(request, "handoff_id"), int(target))
        return _done(request, fields, "/agent")

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        await self._service.resolve(viewer.agent_id, _path_id(request, "handoff_id"))
        return _done(request, fields, "/agent")

    async def answer(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        handoff_id = _path_id(request, "handoff_id")
        await self._service.answer_ticket(viewer.agent_id, handoff_id, fields.get("text", ""))
        return _done(request, fields, "/agent")

    async def reply(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        conversation_id = _path_id(request, "conversation_id")
        await self._service.reply(viewer.agent_id, conversation_id, fields.get("text", ""))
        return _done(request, fields, f"/agent/chats/{conversation_id}")

    async def note(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        conversation_id = _path_id(request, "conversation_id")
        await self._service.note(viewer.agent_id, conversation_id, fields.get("text", ""))
        return _done(request, fields, f"/agent/chats/{conversation_id}")

    async def payment_link(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        conversation_id = _path_id(request, "conversation_id")
        amount = self._amount(fields.get("amount", ""))
        description = fields.get("description", "").strip()
        if len(description) > MAX_DESCRIPTION:
            raise json_error(400, "bad_request", f"a description has at most {MAX_DESCRIPTION}")
        url = await self._service.send_payment_link(
            viewer.agent_id, conversation_id, amount, description or None
        )
        return _done(request, fields, f"/agent/chats/{conversation_id}", result=url)

    async def resync(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        conversation_id = _path_id(request, "conversation_id")
        order_no = fields.get("order_no", "").strip().upper()
        if not ORDER_NO.fullmatch(order_no):
            raise json_error(400, "bad_request", "an order number is BT and 16 digits")
        try:
            change = await self._service.resync_order(viewer.agent_id, conversation_id, order_no)
        except LookupError as exc:  # the platform does not know the order
            raise json_error(404, "not_found", "no such order") from exc
        return _done(request, fields, f"/agent/chats/{conversation_id}", result=change)

    async def password_reset(self, request: web.Request) -> web.StreamResponse:
        viewer, fields = await self._action(request)
        conversation_id = _path_id(request, "conversation_id")
        login = fields.get("login", "").strip()
        if not login or len(login) > MAX_NAME:
            raise json_error(400, "bad_request", "give the merchant's login")
        await self._service.start_password_reset(viewer.agent_id, conversation_id, login)
        return _done(request, fields, f"/agent/chats/{conversation_id}", result="")

    def _amount(self, text: str) -> Decimal:
        """The amount an agent typed, read like every amount (`read_amount`), within limits."""
        amount = read_amount(text)
        low, high = self._settings.payment_link_min, self._settings.payment_link_max
        if amount is None or not low <= amount <= high:
            raise json_error(400, "bad_request", f"the amount is {low} to {high}, in yuan and fen")
        return amount

    # -- live updates --------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._viewer(request)
        if viewer is None:
            raise json_error(401, "unauthorized", "log in to the console first")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise json_error(403, "forbidden", "cross-origin console sockets are refused")
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await socket.prepare(request)
        self._sockets[socket] = viewer
        beat = asyncio.create_task(self._beat(socket, viewer), name="console-heartbeat")
        self._tasks.add(beat)
        beat.add_done_callback(self._tasks.discard)
        try:
            await answer_pings(socket)
        finally:
            beat.cancel()
            self._sockets.pop(socket, None)
        return socket

    async def _beat(self, socket: web.WebSocketResponse, viewer: _Viewer) -> None:
        """While a console is open its agent counts as present; a dead session ends the socket."""
        while not socket.closed:
            try:
                async with self._sessions() as session:
                    alive = await session.scalar(
                        select(AgentSession.id).where(
                            AgentSession.id == viewer.session_id,
                            AgentSession.expires_at > self._clock(),
                        )
                    )
                if alive is None:
                    await socket.close(code=4401, message=b"session ended")
                    return
                await self._service.heartbeat(viewer.agent_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console heartbeat failed for agent %s", viewer.agent_id)
            await asyncio.sleep(self._heartbeat_every)

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind not in ("queue", "chat"):
            return
        message: dict[str, Any] = {"type": kind}
        if isinstance(event.get("conversation_id"), int):
            message["conversation_id"] = event["conversation_id"]
        text = json.dumps(message)
        for socket in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(text)


def _section(entry: QueueEntry, agent_id: int) -> str:
    if entry.status == "queued":
        return "waiting"
    if entry.status == "ticket":
        return "tickets"
    return "mine" if entry.agent_id == agent_id else "others"


async def _fields(request: web.Request) -> dict[str, str]:
    """A POST body, JSON object or form, as text fields."""
    if request.content_type == "application/json":
        body = await read_json_object(request)
        fields = {}
        for key, value in body.items():
            if isinstance(value, bool):
                fields[key] = "1" if value else "0"
            elif isinstance(value, str | int):
                fields[key] = str(value)
            elif value is not None:
                raise json_error(400, "bad_request", f'"{key}" must be text or a number')
        return fields
    form = await request.post()
    return {key: clean_text(value) for key, value in form.items() if isinstance(value, str)}


def _flag(fields: Mapping[str, str], name: str) -> bool:
    value = fields.get(name, "").lower()
    if value in ("1", "true", "on"):
        return True
    if value in ("0", "false", "off"):
        return False
    raise json_error(400, "bad_request", f'"{name}" must be true or false')


def _path_id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


def _done(
    request: web.Request, fields: Mapping[str, str], default: str, **result: Any
) -> web.StreamResponse:
    """JSON for the page's script; a redirect for a plain form post (no script)."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept or request.content_type == "application/json":
        return web.json_response({"ok": True, **result})
    target = fields.get("next", "")
    raise web.HTTPSeeOther(target if _NEXT.fullmatch(target) else default)
