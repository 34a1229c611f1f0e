"""What every console view shares: the settings and services, who is asking, cookies, the
security headers, rendering a page in the agent's language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from argon2 import PasswordHasher
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.errors import json_error
from bot.console.http import HEADERS, STATUS, fields, set_cookie
from bot.console.live import HEARTBEAT_EVERY, LiveUpdates
from bot.console.shaping import Shaper, local_time
from bot.escalation.agent_actions import ConversationDetail
from bot.escalation.agent_sessions import AgentSessions, Viewer
from bot.escalation.assist import Assist, Assistant
from bot.escalation.canned import load_canned
from bot.escalation.incident_desk import IncidentDesk
from bot.escalation.knowledge_desk import KnowledgeDesk
from bot.escalation.service import HandoffError, HandoffService
from bot.faq.knowledge import Knowledge
from bot.faq.live import LiveKnowledge
from bot.platform.gateway import MerchantNotActive, PlatformRejected, PlatformUnavailable
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.events import EventBus
from bot.types import Language

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COOKIE = "btp_agent"
LOGIN_COOKIE = "btp_agent_login"
LANG_COOKIE = "btp_agent_lang"
DEVICE_COOKIE = "btp_agent_device"
LANGUAGES = ("zh", "en")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Attached:
    """What the console works with once the bot is open."""

    handoffs: HandoffService
    agents: AgentSessions
    live: LiveKnowledge
    shaper: Shaper
    sessions: async_sessionmaker[AsyncSession]
    assistant: Assistant | None = None

    @property
    def knowledge(self) -> Knowledge:
        """The published knowledge, as the bot in this process answers from it now."""
        return self.live.knowledge


class ConsoleBase:
    """The console's state; `AgentConsole` (bot/console/views.py) adds the views."""

    def __init__(
        self,
        settings: Settings,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
        heartbeat_every: float = HEARTBEAT_EVERY,
        renderer: Renderer | None = None,
    ) -> None:
        self._settings = settings
        self._hasher = hasher or settings.password_hasher()
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
        # The console's words are the bot's mechanism: macros in the per-language tree.
        renderer = renderer or Renderer()
        self._strings = {
            str(language): renderer.strings(language, "console") for language in Language
        }
        self._canned = load_canned(settings.knowledge_dir / "canned.yaml")
        self._live = LiveUpdates(heartbeat_every=heartbeat_every)
        self._attached: _Attached | None = None

    # -- wiring --------------------------------------------------------------------------------

    def attach(
        self,
        *,
        handoffs: HandoffService,
        sessions: async_sessionmaker[AsyncSession],
        knowledge: LiveKnowledge,
        bus: EventBus,
        on_incident_closed: Callable[[list[int]], Awaitable[int]] | None = None,
        assistant: Assistant | None = None,
    ) -> None:
        """Called once the bot is open: the console gets its services and hears the bus;
        `on_incident_closed`: who tells the chats when a supervisor closes an incident;
        `assistant`: who drafts answers on the chat page (none: no drafts)."""
        self._attached = _Attached(
            handoffs,
            AgentSessions(sessions, hasher=self._hasher, clock=self._clock),
            knowledge,
            Shaper(lambda: knowledge.knowledge, self._strings, self._zone),
            sessions,
            assistant,
        )
        bus.subscribe(self._live.on_event)
        self._incident_desk = IncidentDesk(
            sessions, clock=self._clock, on_closed=on_incident_closed
        )
        self._knowledge_desk = KnowledgeDesk(
            sessions, knowledge, bus, self._settings.kb_eval_dir, clock=self._clock
        )

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
    def _incidents(self) -> IncidentDesk:
        assert self._attached is not None, "AgentConsole used before attach()"
        return self._incident_desk

    @property
    def _desk(self) -> KnowledgeDesk:
        assert self._attached is not None, "AgentConsole used before attach()"
        return self._knowledge_desk

    @property
    def _shaper(self) -> Shaper:
        return self._parts.shaper

    def _assist(self, detail: ConversationDetail) -> dict[str, object]:
        """The drafts for the chat's latest user message, as the chat page reads them."""
        assistant = self._parts.assistant
        if assistant is None:
            return Assist(None, Language(detail.conversation.language)).to_json()
        return assistant.suggest(detail).to_json()

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
