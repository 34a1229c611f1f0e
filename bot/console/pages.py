"""The console's pages and JSON reads: login and logout, the queue, one conversation, the
supervisor's numbers, and the live socket."""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Any

from aiohttp import web

from bot.channels.client import client_address
from bot.console.base import COOKIE, DEVICE_COOKIE, LOGIN_COOKIE, ConsoleBase
from bot.console.http import STATUS, path_id
from bot.escalation import login_guard, stats
from bot.escalation.agent_sessions import MAX_NAME, SESSION_LIFETIME, Viewer
from bot.escalation.context_card import failure_words
from bot.escalation.service import HandoffError
from bot.outcomes.report import PERIODS as OUTCOME_PERIODS
from bot.outcomes.report import outcome_report
from bot.platform.models import FailureCode
from bot.types import Label, Language

PERIODS = (1, 7, 30)
DEFAULT_PERIOD = 7


class Pages(ConsoleBase):
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
        chat["assist"] = self._assist(detail)
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
        outcomes = await self._outcomes(language)
        return self._render(
            request,
            "supervisor.html",
            page="supervisor",
            viewer=viewer,
            stats=numbers,
            topics=topics,
            period=period,
            periods=PERIODS,
            outcomes=outcomes,
            incidents=await self._incidents.board(),
            local=self._time,
            codes={
                code.value: failure_words(self._parts.knowledge, code.value, language)
                for code in FailureCode
            },
        )

    async def _outcomes(self, language: Language) -> dict[str, Any]:
        """Verified resolution beside containment per flow and FAQ entry, over each of the
        report's periods (the same figures as `btp-bot report outcomes`), and the unverified
        conversations of the longest."""
        now = self._clock()
        reports = {
            name: await outcome_report(self._parts.sessions, since, now=now)
            for name, since in OUTCOME_PERIODS.items()
        }
        entries = self._parts.knowledge.entries
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for name, report in reports.items():
            for figures in [*report.topics, report.total]:
                key = (figures.kind, figures.topic)
                title = figures.topic
                if figures.kind == "faq" and (entry := entries.get(Label(figures.topic))):
                    title = entry.title[language]
                row = rows.setdefault(
                    key,
                    {"kind": figures.kind, "topic": figures.topic, "title": title, "periods": {}},
                )
                row["periods"][name] = figures
        total = rows.pop(("all", "all"))
        longest = reports[list(OUTCOME_PERIODS)[-1]]
        return {
            "periods": list(OUTCOME_PERIODS),
            "rows": list(rows.values()),
            "total": total,
            "unverified": longest.unverified,
        }

    # -- JSON views ----------------------------------------------------------------------------

    async def queue_json(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._api_viewer(request)
        return web.json_response(await self._queue(viewer))

    async def chat_json(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._api_viewer(request)
        conversation_id = path_id(request, "conversation_id")
        detail = await self._service.detail(viewer.agent_id, conversation_id)
        agents = await self._service.agents()
        chat = self._shaper.chat(viewer, detail, self._language(request)[0], agents)
        chat["assist"] = self._assist(detail)
        return web.json_response(chat)

    async def _queue(self, viewer: Viewer) -> dict[str, Any]:
        entries = await self._service.queue(viewer.agent_id)
        agent = await self._service.agent(viewer.agent_id)
        capacity = self._service.capacity_of(agent) if agent is not None else 0
        return self._shaper.queue(viewer, entries, agent, capacity, await self._service.agents())

    # -- live updates --------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        return await self._live.serve(
            request, await self._viewer(request), self._agents, self._service
        )
