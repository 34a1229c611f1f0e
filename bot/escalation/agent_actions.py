"""What an agent does in the console: presence, claiming and transferring chats, replies and
notes, resolving, answering tickets, and reading one conversation with its context.

Each action opens its own transaction, checks that the agent may act on the conversation,
writes an audit entry, and emits events so every console and chat page updates live. A claim
is one conditional UPDATE, so a chat is never taken by two agents, in one process or several.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from bot.diagnostics.access import chat_may_see
from bot.escalation.assignment import Assignment
from bot.escalation.core import ONLINE_WINDOW, ORDER_NO, HandoffError, checked_text
from bot.incidents.store import open_incidents
from bot.privacy import mask_pii
from bot.storage.events import ChatChanged, OutboxFilled, QueueChanged
from bot.storage.models import (
    Agent,
    AgentNote,
    Conversation,
    Handoff,
    Identity,
    Message,
    OrderWatch,
)
from bot.types import Button, ConversationState, HandoffStatus, Language, Reply, SenderKind

CONTEXT_ORDERS = 10


@dataclass(slots=True)
class ConversationDetail:
    conversation: Conversation
    handoff: Handoff | None
    messages: list[Message]
    notes: list[tuple[str, AgentNote]]
    identity: Identity | None
    context: dict[str, Any] = field(default_factory=dict)
    verified_orders: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AgentPresence:
    id: int
    name: str
    online: bool


class AgentActions(Assignment):
    async def agent(self, agent_id: int) -> Agent | None:
        async with self._sessions() as session:
            return await session.get(Agent, agent_id)

    async def agents(self) -> list[AgentPresence]:
        """Every agent by name, online when seen within the presence window."""
        now = self._clock()
        async with self._sessions() as session:
            rows = (await session.scalars(select(Agent).order_by(Agent.name))).all()
        return [
            AgentPresence(
                agent.id,
                agent.name,
                bool(
                    agent.online and agent.last_seen_at and agent.last_seen_at > now - ONLINE_WINDOW
                ),
            )
            for agent in rows
        ]

    async def set_online(self, agent_id: int, online: bool) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise HandoffError("not_found", "no such agent")
            agent.online, agent.last_seen_at = online, now
            await self._audit(session, agent_id, "online" if online else "offline", None, {})
            await self.bus.emit(session, QueueChanged())
        if online:
            await self.auto_assign()

    async def heartbeat(self, agent_id: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_seen_at=self._clock())
            )

    async def claim(self, agent_id: int, handoff_id: int) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise HandoffError("forbidden", "unknown agent")
            claimed = await session.scalar(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == HandoffStatus.QUEUED)
                .values(status=HandoffStatus.ASSIGNED, agent_id=agent_id, assigned_at=now)
                .returning(Handoff.conversation_id)
            )
            if claimed is None:
                raise HandoffError("conflict", "this chat was already taken or left the queue")
            conversation = await session.get(Conversation, claimed)
            assert conversation is not None
            conversation.state = ConversationState.AGENT
            await self._tell(session, conversation, "handoff/assigned", agent=agent.name)
            await self._audit(session, agent_id, "claim", claimed, {"handoff": handoff_id})
            await self.bus.emit(session, QueueChanged())
            await self.bus.emit(session, ChatChanged(claimed))
        await self.update_positions()

    async def reply(self, agent_id: int, conversation_id: int, text: str) -> None:
        text = checked_text(text, "reply")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff, conversation = await self._held(session, agent_id, conversation_id)
            await self._send(session, conversation, Reply(text), sender=SenderKind.AGENT)
            if handoff.first_reply_at is None:
                handoff.first_reply_at = now
            await self._audit(session, agent_id, "reply", conversation_id, {"length": len(text)})
            await self.bus.emit(session, ChatChanged(conversation_id))
            await self.bus.emit(session, OutboxFilled())

    async def note(self, agent_id: int, conversation_id: int, text: str) -> None:
        text = checked_text(text, "note")
        async with self._sessions() as session, session.begin():
            await self._visible(session, agent_id, conversation_id)
            session.add(
                AgentNote(
                    conversation_id=conversation_id,
                    agent_id=agent_id,
                    text=mask_pii(text),
                    created_at=self._clock(),
                )
            )
            await self._audit(session, agent_id, "note", conversation_id, {})
            await self.bus.emit(session, ChatChanged(conversation_id))

    async def transfer(self, agent_id: int, handoff_id: int, to_agent_id: int) -> None:
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            agent = await session.get(Agent, agent_id)
            target = await session.get(Agent, to_agent_id)
            if (
                handoff is None
                or agent is None
                or target is None
                or handoff.status != HandoffStatus.ASSIGNED
            ):
                raise HandoffError("not_found", "no such open chat or agent")
            if handoff.agent_id != agent_id and not agent.is_supervisor:
                raise HandoffError("forbidden", "not your chat")
            if await self._load(session, to_agent_id) >= self.capacity_of(target):
                raise HandoffError("conflict", f"{target.name} is at capacity")
            handoff.agent_id = to_agent_id
            conversation = await session.get(Conversation, handoff.conversation_id)
            assert conversation is not None
            await self._tell(session, conversation, "handoff/transferred", agent=target.name)
            await self._audit(
                session,
                agent_id,
                "transfer",
                handoff.conversation_id,
                {"handoff": handoff_id, "to": target.name},
            )
            await self.bus.emit(session, QueueChanged())
            await self.bus.emit(session, ChatChanged(handoff.conversation_id))

    async def resolve(self, agent_id: int, handoff_id: int) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            if handoff is None:
                raise HandoffError("not_found", "no such chat")
            await self._held(session, agent_id, handoff.conversation_id)
            conversation = await session.get(Conversation, handoff.conversation_id)
            assert conversation is not None
            handoff.status, handoff.resolved_at = HandoffStatus.RESOLVED, now
            conversation.state = ConversationState.BOT
            conversation.failures = 0
            language = Language(conversation.language)
            buttons = tuple(
                Button(self._renderer.ui(language, "rating", stars=n), f"rate:{handoff.id}:{n}")
                for n in range(1, 6)
            )
            reply = self._renderer.reply(language, "handoff/resolved", *buttons)
            await self._send(session, conversation, reply)
            conversation.slots = {
                **(conversation.slots or {}),
                "_offered": [[b.label, b.action] for b in buttons],
            }
            await self._audit(
                session, agent_id, "resolve", handoff.conversation_id, {"handoff": handoff_id}
            )
            await self.bus.emit(session, QueueChanged())
            await self.bus.emit(session, ChatChanged(handoff.conversation_id))
            await self.bus.emit(session, OutboxFilled())
        await self.auto_assign()

    async def answer_ticket(self, agent_id: int, handoff_id: int, text: str) -> None:
        text = checked_text(text, "answer")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            if handoff is None or handoff.status != HandoffStatus.TICKET:
                raise HandoffError("conflict", "no open ticket")
            conversation = await session.get(Conversation, handoff.conversation_id)
            assert conversation is not None
            language = Language(conversation.language)
            answer = Reply(self._renderer.render(language, "handoff/ticket_answer", text=text))
            await self._send(session, conversation, answer, sender=SenderKind.AGENT)
            handoff.status, handoff.agent_id = HandoffStatus.RESOLVED, agent_id
            handoff.assigned_at = handoff.assigned_at or now
            handoff.first_reply_at, handoff.resolved_at = now, now
            await self._audit(
                session, agent_id, "answer_ticket", conversation.id, {"handoff": handoff_id}
            )
            await self.bus.emit(session, QueueChanged())
            await self.bus.emit(session, ChatChanged(conversation.id))
            await self.bus.emit(session, OutboxFilled())

    async def detail(self, agent_id: int, conversation_id: int) -> ConversationDetail:
        async with self._sessions() as session:
            conversation, handoff = await self._visible(session, agent_id, conversation_id)
            messages = list(
                (
                    await session.scalars(
                        select(Message)
                        .where(Message.conversation_id == conversation_id)
                        .order_by(Message.id)
                    )
                ).all()
            )
            notes = [
                (name, note)
                for note, name in (
                    await session.execute(
                        select(AgentNote, Agent.name)
                        .join(Agent, Agent.id == AgentNote.agent_id)
                        .where(AgentNote.conversation_id == conversation_id)
                        .order_by(AgentNote.id)
                    )
                ).all()
            ]
            identity = (
                await session.get(Identity, conversation.identity_id)
                if conversation.identity_id
                else None
            )
            verified = frozenset(
                (
                    await session.scalars(
                        select(OrderWatch.order_no).where(
                            OrderWatch.conversation_id == conversation_id
                        )
                    )
                ).all()
            )
            incidents = await open_incidents(session)
        detail = ConversationDetail(
            conversation, handoff, messages, notes, identity, verified_orders=verified
        )
        detail.context = await self._context(detail)
        detail.context["incidents"] = incidents
        return detail

    async def _context(self, detail: ConversationDetail) -> dict[str, Any]:
        """Who the user is and the live state of what they talked about (from the gateway)."""
        context: dict[str, Any] = {
            "findings": {
                **(detail.conversation.findings or {}),
                **((detail.handoff.findings or {}) if detail.handoff else {}),
            }
        }
        identity = detail.identity
        if identity is not None and identity.kind == "merchant" and identity.merchant_id:
            merchant = await self._gateway.get_merchant(identity.merchant_id)
            context["merchant"] = merchant
        # Order numbers the user wrote, and the orders this chat proved: the card shows an order
        # only when the chat is entitled to it, by the flows' own rule.
        mentioned: list[str] = sorted(detail.verified_orders)
        for message in detail.messages:
            for order_no in ORDER_NO.findall(message.text.upper()):
                if order_no not in mentioned:
                    mentioned.append(order_no)
        merchant_id = (
            identity.merchant_id if identity is not None and identity.kind == "merchant" else None
        )
        orders = []
        for order_no in mentioned[:CONTEXT_ORDERS]:
            order = await self._gateway.get_order(order_no)
            visible = order is not None and chat_may_see(order, merchant_id, detail.verified_orders)
            orders.append((order_no, order if visible else None))
        context["orders"] = orders
        return context
