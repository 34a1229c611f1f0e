"""The agent console's views: login, the queue, one conversation, the supervisor's numbers.

HTTP and HTML only. Every decision about chats is the handoff service's (who may see or act on
what, claims, transfers, audit entries, events), every decision about logins and sessions is
`bot.escalation.agent_sessions`'s (throttled by `bot.escalation.login_guard`); a view reads a
request, calls one of them and renders the result (`bot/console/shaping.py` for the JSON).

Routes (all under /agent): the login form, the queue page, a conversation page, the supervisor
page, the knowledge pages (`bot/console/knowledge.py`), `GET /agent/ws`
(`bot/console/live.py`), and the JSON/form API under /agent/api. Pages without a session
redirect to the login form; API calls without one get 401; every POST needs
the session's CSRF token.
"""

from __future__ import annotations

from aiohttp import web

from bot.console.actions import Actions
from bot.console.base import STATIC, Handler
from bot.console.knowledge import KnowledgeViews
from bot.console.pages import Pages

_ID = r"{%s:\d{1,18}}"


class AgentConsole(Pages, Actions, KnowledgeViews):
    """The console's routes; registered when the app is built, attached when it starts."""

    def add_routes(self, app: web.Application) -> None:
        chat = "/agent/api/chats/" + _ID % "conversation_id"
        handoff = "/agent/api/handoffs/" + _ID % "handoff_id"
        version = "/agent/api/knowledge/versions/" + _ID % "version_id"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/agent/login", self.login_page),
            ("POST", "/agent/login", self.login),
            ("POST", "/agent/logout", self.logout),
            ("GET", "/agent", self.queue_page),
            ("GET", "/agent/chats/" + _ID % "conversation_id", self.chat_page),
            ("GET", "/agent/supervisor", self.supervisor_page),
            ("GET", "/agent/knowledge", self.knowledge_page),
            ("GET", "/agent/knowledge/versions/" + _ID % "version_id", self.draft_page),
            ("POST", "/agent/api/knowledge/drafts", self.create_draft),
            ("POST", version + "/publish", self.publish_version),
            ("GET", "/agent/api/queue", self.queue_json),
            ("GET", chat, self.chat_json),
            ("POST", "/agent/api/online", self.set_online),
            ("POST", "/agent/api/agents/" + _ID % "agent_id" + "/unlock", self.unlock),
            ("POST", "/agent/api/incidents", self.open_incident),
            ("POST", "/agent/api/incidents/" + _ID % "incident_id" + "/close", self.close_incident),
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
