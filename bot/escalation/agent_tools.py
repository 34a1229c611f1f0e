"""Agent tools: the same platform calls the bot's flows make, made for an agent on the chat it
holds, and audited. A payment link goes to the user as the flow's own reply would."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.escalation.core import HandoffCore, HandoffError
from bot.qr import qr_png
from bot.storage.events import ChatChanged, OutboxFilled
from bot.storage.models import Conversation, Identity
from bot.storage.unit import joined
from bot.types import Language, Reply, SenderKind


class AgentTools(HandoffCore):
    async def send_payment_link(
        self, agent_id: int, conversation_id: int, amount: Decimal, description: str | None
    ) -> str:
        async with self._sessions() as session, session.begin():
            _, conversation = await self._held(session, agent_id, conversation_id)
            identity = await _identity_of(session, conversation)
            if identity is None or identity.merchant_id is None:
                raise HandoffError("conflict", "the chat is not bound to a merchant")
            low, high = self._link_limits
            if not low <= amount <= high:
                raise HandoffError("bad_request", f"the amount must be between {low} and {high}")
            with joined(session):
                link = await self._gateway.create_payment_link(
                    identity.merchant_id, amount, description
                )
            language = Language(conversation.language)
            reply = Reply(
                self._renderer.render(
                    language,
                    "flows/payment_link/created",
                    url=link.url,
                    amount=str(link.amount),
                    note=link.description or "",
                ),
                image=qr_png(link.url),
            )
            await self._send(session, conversation, reply, sender=SenderKind.AGENT)
            await self._audit(
                session,
                agent_id,
                "tool_payment_link",
                conversation_id,
                {"link": link.id, "amount": str(link.amount)},
            )
            await self.bus.emit(session, ChatChanged(conversation_id))
            await self.bus.emit(session, OutboxFilled())
            return link.url

    async def resync_order(self, agent_id: int, conversation_id: int, order_no: str) -> str:
        """Re-sync one of the chat merchant's orders (another merchant's reads as unknown)."""
        order_no = order_no.strip().upper()
        async with self._sessions() as session, session.begin():
            _, conversation = await self._held(session, agent_id, conversation_id)
            identity = await _identity_of(session, conversation)
            with joined(session):
                order = await self._gateway.get_order(order_no)
                if order is None or identity is None or order.merchant_id != identity.merchant_id:
                    raise HandoffError("not_found", "no such order for this chat's merchant")
                result = await self._gateway.resync_order(order_no)
            await self._audit(
                session,
                agent_id,
                "tool_resync",
                conversation_id,
                {"order_no": order_no, "before": result.before.value, "after": result.after.value},
            )
            await self.bus.emit(session, ChatChanged(conversation_id))
            return f"{result.before.value} -> {result.after.value}"

    async def start_password_reset(self, agent_id: int, conversation_id: int, login: str) -> None:
        async with self._sessions() as session, session.begin():
            await self._held(session, agent_id, conversation_id)
            with joined(session):
                await self._gateway.start_password_reset(login.strip())
            await self._audit(
                session, agent_id, "tool_password_reset", conversation_id, {"login": login}
            )


async def _identity_of(session: AsyncSession, conversation: Conversation) -> Identity | None:
    """Who writes in the chat, if known."""
    if not conversation.identity_id:
        return None
    return await session.get(Identity, conversation.identity_id)
