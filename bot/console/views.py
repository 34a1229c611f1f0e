"""The agent console's views: login, the queue, one conversation, the supervisor's numbers.

HTTP and HTML only. Every decision about chats is the handoff service's (who may see or act on
what, claims, transfers, audit entries, events), every decision about logins and sessions is
`bot.escalation.agent_sessions`'s (throttled by `bot.escalation.login_guard`); a view reads a
request, calls one of them and renders the result (`bot/console/shaping.py` for the JSON).

Routes (all under /agent): the login form, the queue page, a conversation page, the supervisor
page, `GET /agent/ws` (`bot/console/live.py`), and the JSON/form API under /agent/api. Pages
without a session redirect to the login form; API calls without one get 401; every POST needs
the session's CSRF token.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from argon2 import PasswordHasher
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.client import client_address
from bot.channels.errors import json_error
from bot.console.http import HEADERS, STATUS, done, fields, flag, path_id, set_cookie
from bot.console.live import HEARTBEAT_EVERY, LiveUpdates
from bot.console.shaping import Shaper, local_time
from bot.escalation import login_guard, stats
from bot.escalation.agent_sessions import MAX_NAME, SESSION_LIFETIME, AgentSessions, Viewer
from bot.escalation.canned import load_canned
from bot.escalation.service import ORDER_NO, HandoffError, HandoffService
from bot.faq.knowledge import Knowledge
from bot.platform.gateway import MerchantNotActive, PlatformRejected, PlatformUnavailable
from bot.settings import Settings
from bot.storage.events import EventBus
from bot.types import Label, Language

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COOKIE = "btp_agent"
LOGIN_COOKIE = "btp_agent_login"
LANG_COOKIE = "btp_agent_lang"
DEVICE_COOKIE = "btp_agent_device"
LANGUAGES = ("zh", "en")
PERIODS = (1, 7, 30)
DEFAULT_PERIOD = 7
MAX_DESCRIPTION = 200
_ID = r"{%s:\d{1,18}}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Attached:
    """What the console works with once the bot is open."""

    handoffs: HandoffService
    agents: AgentSessions
    knowledge: Knowledge
    shaper: Shaper
    sessions: async_sessionmaker[AsyncSession]


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
        self._live = LiveUpdates(heartbeat_every=heartbeat_every)
        self._attached: _Attached | None = None

    # -- wiring --------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        chat = "/agent/api/chats/" + _ID % "conversation_id"
        handoff = "/agent/api/handoffs/" + _ID % "handoff_id"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/agent/login", self.login_page),
            ("POST", "/agent/login", self.login),
            ("POST", "/agent/logout", self.logout),
            ("GET", "/agent", self.queue_page),
            ("GET", "/agent/chats/" + _ID % "conversation_id", self.chat_page),
            ("GET", "/agent/supervisor", self.supervisor_page),
            ("GET", "/agent/api/queue", self.queue_json),
            ("GET", chat, self.chat_json),
            ("POST", "/agent/api/online", self.set_online),
            ("POST", "/agent/api/agents/" + _ID % "agent_id" + "/unlock", self.unlock),
            ("POST", handoff + "/claim", self.claim),
            ("POST", handoff + "/transfer", self.transfer),
            ("POST", handoff + "/resolve", self.resolve),
            ("POST", handoff + "/answer", self.answer),
            ("POST", chat + "/reply", self.reply),
            ("POST", chat + "/notes", self.note),
            ("POST", chat + "/payment-link", self.payment_link),
            ("POST", chat + "/resync", self.resync),
            ("POST", chat + "/password-reset", self.password_reset),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))
        app.router.add_get("/agent/ws", self.websocket)
        app.router.add_static("/agent/static", STATIC, show_index=False)
        app.on_shutdown.append(self._on_shutdown)

    def attach(
        self,
        *,
        handoffs: HandoffService,
        sessions: async_sessionmaker[AsyncSession],
        knowledge: Knowledge,
        bus: EventBus,
    ) -> None:
        """Called once the bot is open: the console gets its services and hears the bus."""
        self._attached = _Attached(
            handoffs,
            AgentSessions(sessions, hasher=self._hasher, clock=self._clock),
            knowledge,
            Shaper(knowledge, self._strings, self._zone),
            sessions,
        )
        bus.subscribe(self._live.on_event)

    async def close(self) -> None:
        await self._live.close()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Open sockets would otherwise hold a graceful shutdown for its whole timeout.
        await self.close()

    @property
    def _parts(self) -> _Attached:
        assert self._attached is not None, "AgentConsole used before attach()"
        return self._attached

    @property
    def _service(self) -> HandoffService:
        return self._parts.handoffs

    @property
    def _agents(self) -> AgentSessions:
        return self._parts.agents

    @property
    def _shaper(self) -> Shaper:
        return self._parts.shaper

    def _time(self, moment: datetime | None) -> str:
        return local_time(self._zone, moment)

    def _guarded(self, handler: Handler) -> Handler:
        """Service and platform errors in the JSON error shape; security headers on everything."""

        async def run(request: web.Request) -> web.StreamResponse:
            try:
                try:
                    response = await handler(request)
                except HandoffError as exc:
                    raise json_error(STATUS.get(exc.code, 400), exc.code, str(exc)) from exc
                except MerchantNotActive as exc:
                    raise json_error(409, "merchant_not_active", str(exc)) from exc
                except PlatformRejected as exc:
                    raise json_error(400, "bad_request", str(exc) or "rejected") from exc
                except PlatformUnavailable as exc:
                    raise json_error(503, "unavailable", "the platform is unavailable") from exc
            except web.HTTPException as exc:
                exc.headers.update(HEADERS)
                raise
            response.headers.update(HEADERS)
            return response

        return run

    # -- who is asking -------------------------------------------------------------------------

    async def _viewer(self, request: web.Request) -> Viewer | None:
        return await self._agents.viewer(request.cookies.get(COOKIE))

    async def _page_viewer(self, request: web.Request) -> Viewer:
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther("/agent/login")
        return viewer

    async def _api_viewer(self, request: web.Request) -> Viewer:
        viewer = await self._viewer(request)
        if viewer is None:
            raise json_error(401, "unauthorized", "log in to the console first")
        return viewer

    async def _action(self, request: web.Request) -> tuple[Viewer, dict[str, str]]:
        """A console POST: a session, then a valid CSRF token, then the fields."""
        viewer = await self._api_viewer(request)
        values = await fields(request)
        given = values.get("csrf") or request.headers.get("X-CSRF-Token") or ""
        if not viewer.csrf_matches(given):
            raise json_error(403, "csrf", "a valid CSRF token is required")
        return viewer, values

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
        set_cookie(
            request,
            response,
            name,
            value,
            always_secure=self._settings.console_secure_cookies,
            path=path,
            max_age=max_age,
        )

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
        result = await self._agents.login(
            name,
            values.get("password", ""),
            address=client_address(request),
            device_token=request.cookies.get(DEVICE_COOKIE),
        )
        if result.retry_after is not None:
            minutes = max(1, math.ceil(result.retry_after.total_seconds() / 60))
            response = self._login_form(
                request, status=429, error="login_locked", name=name, minutes=minutes
            )
            response.headers["Retry-After"] = str(minutes * 60)
            return response
        if result.session_token is None:
            return self._login_form(
                request, status=401, error="login_invalid", name=name[:MAX_NAME]
            )
        # A known device keeps its token; its cookie's year starts again with its row's.
        device_token = result.device_token or request.cookies.get(DEVICE_COOKIE)
        redirect = web.HTTPSeeOther("/agent")
        self._set_cookie(
            request,
            redirect,
            COOKIE,
            result.session_token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
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
        await self._agents.logout(viewer)
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
        conversation_id = path_id(request, "conversation_id")
        try:
            detail = await self._service.detail(viewer.agent_id, conversation_id)
        except HandoffError as exc:
            status = STATUS.get(exc.code, 400)
            return self._render(
                request, "error.html", page="error", viewer=viewer, status=status, code=exc.code
            )
        agents = await self._service.agents()
        chat = self._shaper.chat(viewer, detail, self._language(request)[0], agents)
        language = detail.conversation.language
        canned = [(reply.id, reply.text(language)) for reply in self._canned]
        others = [
            {"id": a.id, "name": a.name, "online": a.online}
            for a in agents
            if a.id != viewer.agent_id
        ]
        return self._render(
            request,
            "chat.html",
            page="chat",
            viewer=viewer,
            chat=chat,
            canned=canned,
            agents=others,
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
            self._parts.sessions,
            now=self._clock(),
            days=period,
            default_capacity=self._settings.agent_capacity,
            zone=self._zone,
        )
        language = self._language(request)[0]
        entries = self._parts.knowledge.entries
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

    def _language(self, request: web.Request) -> tuple[Language, bool]:
        """The UI language and whether it was chosen just now (`?lang=`)."""
        chosen = request.query.get("lang", "")
        if chosen in LANGUAGES:
            return Language(chosen), True
        stored = request.cookies.get(LANG_COOKIE, "")
        return Language(stored if stored in LANGUAGES else "zh"), False

    def _render(
        self,
        request: web.Request,
        template: str,
        *,
        page: str,
        viewer: Viewer | None,
        status: int = 200,
        csrf: str | None = None,
        **values: Any,
    ) -> web.Response:
        language, chosen = self._language(request)
        links = {code: str(request.rel_url.update_query(lang=code)) for code in LANGUAGES}
        html = self._env.get_template(template).render(
            t=self._strings[language],
            strings=self._strings[language],
            lang=str(language),
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
        conversation_id = path_id(request, "conversation_id")
        detail = await self._service.detail(viewer.agent_id, conversation_id)
        agents = await self._service.agents()
        return web.json_response(
            self._shaper.chat(viewer, detail, self._language(request)[0], agents)
        )

    async def _queue(self, viewer: Viewer) -> dict[str, Any]:
        entries = await self._service.queue(viewer.agent_id)
        agent = await self._service.agent(viewer.agent_id)
        capacity = self._service.capacity_of(agent) if agent is not None else 0
        return self._shaper.queue(viewer, entries, agent, capacity, await self._service.agents())

    # -- actions -------------------------------------------------------------------------------

    async def set_online(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        await self._service.set_online(viewer.agent_id, flag(values, "online"))
        return done(request, values, "/agent")

    async def unlock(self, request: web.Request) -> web.StreamResponse:
        """A supervisor forgets the failed logins counted against an agent's name."""
        viewer, values = await self._action(request)
        cleared = await self._agents.unlock(viewer, path_id(request, "agent_id"))
        return done(request, values, "/agent/supervisor", cleared=cleared)

    async def claim(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        await self._service.claim(viewer.agent_id, path_id(request, "handoff_id"))
        return done(request, values, "/agent")

    async def transfer(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        target = values.get("to_agent_id", "")
        if not target.isdigit() or len(target) > 18:
            raise json_error(400, "bad_request", "choose an agent to transfer to")
        await self._service.transfer(viewer.agent_id, path_id(request, "handoff_id"), int(target))
        return done(request, values, "/agent")

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        await self._service.resolve(viewer.agent_id, path_id(request, "handoff_id"))
        return done(request, values, "/agent")

    async def answer(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        handoff_id = path_id(request, "handoff_id")
        await self._service.answer_ticket(viewer.agent_id, handoff_id, values.get("text", ""))
        return done(request, values, "/agent")

    async def reply(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        conversation_id = path_id(request, "conversation_id")
        await self._service.reply(viewer.agent_id, conversation_id, values.get("text", ""))
        return done(request, values, f"/agent/chats/{conversation_id}")

    async def note(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        conversation_id = path_id(request, "conversation_id")
        await self._service.note(viewer.agent_id, conversation_id, values.get("text", ""))
        return done(request, values, f"/agent/chats/{conversation_id}")

    async def payment_link(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        conversation_id = path_id(request, "conversation_id")
        amount = self._amount(values.get("amount", ""))
        description = values.get("description", "").strip()
        if len(description) > MAX_DESCRIPTION:
            raise json_error(400, "bad_request", f"a description has at most {MAX_DESCRIPTION}")
        url = await self._service.send_payment_link(
            viewer.agent_id, conversation_id, amount, description or None
        )
        return done(request, values, f"/agent/chats/{conversation_id}", result=url)

    async def resync(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        conversation_id = path_id(request, "conversation_id")
        order_no = values.get("order_no", "").strip().upper()
        if not ORDER_NO.fullmatch(order_no):
            raise json_error(400, "bad_request", "an order number is BT and 16 digits")
        try:
            change = await self._service.resync_order(viewer.agent_id, conversation_id, order_no)
        except LookupError as exc:  # the platform does not know the order
            raise json_error(404, "not_found", "no such order") from exc
        return done(request, values, f"/agent/chats/{conversation_id}", result=change)

    async def password_reset(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        conversation_id = path_id(request, "conversation_id")
        login = values.get("login", "").strip()
        if not login or len(login) > MAX_NAME:
            raise json_error(400, "bad_request", "give the merchant's login")
        await self._service.start_password_reset(viewer.agent_id, conversation_id, login)
        return done(request, values, f"/agent/chats/{conversation_id}", result="")

    def _amount(self, text: str) -> Decimal:
        try:
            amount = Decimal(text.strip())
        except InvalidOperation as exc:
            raise json_error(400, "bad_request", "the amount is not a number") from exc
        low, high = self._settings.payment_link_min, self._settings.payment_link_max
        exponent = amount.as_tuple().exponent
        if (
            not amount.is_finite()
            or not isinstance(exponent, int)
            or exponent < -2
            or not low <= amount <= high
        ):
            raise json_error(400, "bad_request", f"the amount is {low} to {high}, in yuan and fen")
        return amount

    # -- live updates --------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        return await self._live.serve(
            request, await self._viewer(request), self._agents, self._service
        )
