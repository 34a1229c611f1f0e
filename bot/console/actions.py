"""The console's actions: every POST under /agent/api, each a call to the handoff service
(or, for unlocking an agent, to the agents' sessions) behind a session and a CSRF token."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from bot.channels.errors import json_error
from bot.console.base import ConsoleBase
from bot.console.http import done, flag, path_id
from bot.escalation.agent_sessions import MAX_NAME
from bot.escalation.service import ORDER_NO
from bot.nlu.values import read_amount

MAX_DESCRIPTION = 200


class Actions(ConsoleBase):
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

    async def open_incident(self, request: web.Request) -> web.StreamResponse:
        """A supervisor opens an incident by hand, with what the bot says (zh and en)."""
        viewer, values = await self._action(request)
        incident_id = await self._incidents.open(
            viewer, values.get("message_zh", ""), values.get("message_en", "")
        )
        return done(request, values, "/agent/supervisor", incident=incident_id)

    async def close_incident(self, request: web.Request) -> web.StreamResponse:
        viewer, values = await self._action(request)
        await self._incidents.close(viewer, path_id(request, "incident_id"))
        return done(request, values, "/agent/supervisor")

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
        """The amount an agent typed, read like every amount (`read_amount`), within limits."""
        amount = read_amount(text)
        low, high = self._settings.payment_link_min, self._settings.payment_link_max
        if amount is None or not low <= amount <= high:
            raise json_error(400, "bad_request", f"the amount is {low} to {high}, in yuan and fen")
        return amount
