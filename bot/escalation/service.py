"""The handoff service: everything that moves a conversation between the bot and people.

Engine-side calls (`request`, `cancel`, `leave_ticket`, `rate`) run inside the message's
transaction. Console-side calls open their own transaction, check that the agent may act on the
conversation, write an audit entry, and emit events so every console and chat page updates live.
Claims are a single conditional UPDATE, so a chat is never taken by two agents, in one process or
several.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cleantext import clean_text
from bot.delivery import record_outgoing
from bot.diagnostics.access import chat_may_see
from bot.escalation.bus import EventBus
from bot.escalation.hours import BusinessHours
from bot.nlu.language import detect_language
from bot.nlu.normalize import fold
from bot.platform.gateway import PlatformGateway
from bot.privacy import mask_data, mask_pii
from bot.qr import qr_png
from bot.render import Renderer
from bot.storage.models import (
    Agent,
    AgentNote,
    AuditEntry,
    Conversation,
    Handoff,
    Identity,
    Message,
    OrderWatch,
)
from bot.storage.unit import joined
from bot.types import Button, Language, Reply, SenderKind

ONLINE_WINDOW = timedelta(minutes=2)
DEFAULT_WAIT = timedelta(minutes=3)
PRIORITY_WORDS = re.compile(
    r"投诉|举报|被骗|诈骗|盗刷|被盗|complain|fraud|scam|stolen|unauthori[sz]ed", re.I
)
ORDER_NO = re.compile(r"BT\d{16}")
OPEN = ("queued", "assigned")


class HandoffError(Exception):
    """The console asked for something it may not do (not its chat, already claimed, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _checked(text: str, what: str) -> str:
    """Text an agent sends or keeps: 1 to 4,000 characters after trimming."""
    text = clean_text(text).strip()
    if not text or len(text) > 4000:
        raise HandoffError("bad_request", f"a {what} has 1 to 4,000 characters")
    return text


def priority_of(text: str) -> int:
    """Complaints and fraud jump the queue."""
    return 1 if PRIORITY_WORDS.search(text) else 0


def _language_of(handoff: Handoff, conversation: Conversation) -> str:
    """A ticket is tagged by the language it is written in, which the conversation's latest
    language need not be; anything else by the conversation's."""
    if handoff.ticket_text and (language := detect_language(fold(handoff.ticket_text[:200]))):
        return str(language)
    return conversation.language


@dataclass(frozen=True, slots=True)
class QueueEntry:
    handoff_id: int
    conversation_id: int
    channel: str
    language: str
    reason: str
    priority: int
    waiting_seconds: int
    agent_id: int | None
    status: str
    preview: str


@dataclass(slots=True)
class ConversationDetail:
    conversation: Conversation
    handoff: Handoff | None
    messages: list[Message]
    notes: list[tuple[str, AgentNote]]
    identity: Identity | None
    context: dict[str, Any] = field(default_factory=dict)
    verified_orders: frozenset[str] = frozenset()


class HandoffService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        renderer: Renderer,
        gateway: PlatformGateway,
        bus: EventBus,
        hours: BusinessHours,
        pushed_channels: frozenset[str],
        capacity: int = 3,
        clock: Callable[[], datetime] | None = None,
        link_limits: tuple[Decimal, Decimal] = (Decimal("0.01"), Decimal("50000.00")),
    ) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._gateway = gateway
        self.bus = bus
        self._hours = hours
        self._pushed = pushed_channels
        self._capacity = capacity
        self._clock = clock or (lambda: datetime.now(UTC))
        self._link_limits = link_limits

    # -- the user's side, inside the engine's transaction -------------------------------------

    async def request(
        self,
        session: AsyncSession,
        conversation: Conversation,
        *,
        reason: str,
        priority: int,
        findings: dict[str, Any],
    ) -> list[Reply]:
        """Open a handoff and say what happens next: a place in the queue, an agent, or a ticket."""
        now = self._clock()
        language = Language(conversation.language)
        existing = await self._open_handoff(session, conversation.id)
        if existing is not None:
            if priority > existing.priority:
                existing.priority = priority
            position, wait = await self._position(session, existing, now)
            return [self._say(language, "handoff/already", position=position, minutes=wait)]
        open_now = self._hours.open_at(now)
        ticket = not open_now or not await self._online_agents(session, now)
        handoff = Handoff(
            conversation_id=conversation.id,
            status="ticket_pending" if ticket else "queued",
            reason=reason,
            priority=priority,
            findings=mask_data(findings),
            created_at=now,
        )
        session.add(handoff)
        if ticket:
            conversation.flow, conversation.flow_step = "ticket", "message"
            return [
                self._say(
                    language, "handoff/leave_message", closed=not open_now, hours=self._hours_text()
                )
            ]
        conversation.state = "queued"
        await session.flush()
        # The turn's own reply says who took the chat; a notice as well would say it twice.
        agent = await self._assign_if_free(session, handoff, now, tell=False)
        await self.bus.emit(session, {"kind": "queue"})
        if agent is not None:
            return [self._say(language, "handoff/assigned", agent=agent.name)]
        position, wait = await self._position(session, handoff, now)
        handoff.last_told_position = position
        return [self._say(language, "handoff/queued", position=position, minutes=wait)]

    async def cancel(self, session: AsyncSession, conversation: Conversation) -> bool:
        """The user went back to the bot; False when there was nothing to cancel."""
        handoff = await self._open_handoff(session, conversation.id)
        conversation.state = "bot"
        if handoff is None:
            return False
        handoff.status = "returned"
        handoff.resolved_at = self._clock()
        await self._audit(
            session, None, "user_returned_to_bot", conversation.id, {"handoff": handoff.id}
        )
        await self.bus.emit(session, {"kind": "queue"})
        await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation.id})
        return True

    async def leave_ticket(
        self, session: AsyncSession, conversation: Conversation, text: str
    ) -> None:
        handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation.id, Handoff.status == "ticket_pending")
            .order_by(Handoff.id.desc())
        )
        if handoff is None:
            handoff = Handoff(
                conversation_id=conversation.id,
                reason="ticket",
                findings={},
                created_at=self._clock(),
            )
            session.add(handoff)
        handoff.status = "ticket"
        handoff.ticket_text = mask_pii(text)
        await self.bus.emit(session, {"kind": "queue"})

    async def rate(
        self, session: AsyncSession, conversation: Conversation, handoff_id: int, score: int
    ) -> bool:
        handoff = await session.get(Handoff, handoff_id)
        if (
            handoff is None
            or handoff.conversation_id != conversation.id
            or handoff.status != "resolved"
            or handoff.rating is not None
            or not 1 <= score <= 5
        ):
            return False
        handoff.rating = score
        await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation.id})
        return True

    async def on_user_message(
        self, session: AsyncSession, conversation: Conversation, message_id: int | None
    ) -> None:
        """A user wrote while people hold the chat (their message is stored as `message_id`):
        the console shows it live."""
        await self.bus.emit(
            session, {"kind": "chat", "conversation_id": conversation.id, "message_id": message_id}
        )

    # -- the console's side ------------------------------------------------------------------

    def capacity_of(self, agent: Agent) -> int:
        """The most chats assigned to the agent at once: its own capacity when one was set
        (`btp-bot agent set NAME --capacity N`), else AGENT_CAPACITY."""
        return agent.capacity if agent.capacity is not None else self._capacity

    async def agent(self, agent_id: int) -> Agent | None:
        async with self._sessions() as session:
            return await session.get(Agent, agent_id)

    async def set_online(self, agent_id: int, online: bool) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise HandoffError("not_found", "no such agent")
            agent.online, agent.last_seen_at = online, now
            await self._audit(session, agent_id, "online" if online else "offline", None, {})
            await self.bus.emit(session, {"kind": "queue"})
        if online:
            await self.auto_assign()

    async def heartbeat(self, agent_id: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_seen_at=self._clock())
            )

    async def queue(self, agent_id: int) -> list[QueueEntry]:
        """What the console lists for this agent: the waiting queue and the agent's own chats
        (a supervisor sees every open chat)."""
        async with self._sessions() as session:
            agent = await session.get(Agent, agent_id)
            if agent is None:
                return []
            query = (
                select(Handoff, Conversation)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Handoff.status.in_(("queued", "assigned", "ticket")))
                .order_by(Handoff.priority.desc(), Handoff.created_at, Handoff.id)
            )
            rows = (await session.execute(query)).all()
            now = self._clock()
            entries = []
            for handoff, conversation in rows:
                if (
                    handoff.status == "assigned"
                    and handoff.agent_id != agent_id
                    and not agent.is_supervisor
                ):
                    continue
                preview = await session.scalar(
                    select(Message.text)
                    .where(Message.conversation_id == conversation.id, Message.direction == "in")
                    .order_by(Message.id.desc())
                    .limit(1)
                )
                entries.append(
                    QueueEntry(
                        handoff.id,
                        conversation.id,
                        conversation.channel,
                        _language_of(handoff, conversation),
                        handoff.reason,
                        handoff.priority,
                        int((now - handoff.created_at).total_seconds()),
                        handoff.agent_id,
                        handoff.status,
                        (handoff.ticket_text or preview or "")[:120],
                    )
                )
            return entries

    async def claim(self, agent_id: int, handoff_id: int) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            agent = await session.get(Agent, agent_id)
            if agent is None:
                raise HandoffError("forbidden", "unknown agent")
            claimed = await session.scalar(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == "queued")
                .values(status="assigned", agent_id=agent_id, assigned_at=now)
                .returning(Handoff.conversation_id)
            )
            if claimed is None:
                raise HandoffError("conflict", "this chat was already taken or left the queue")
            conversation = await session.get(Conversation, claimed)
            assert conversation is not None
            conversation.state = "agent"
            await self._tell(session, conversation, "handoff/assigned", agent=agent.name)
            await self._audit(session, agent_id, "claim", claimed, {"handoff": handoff_id})
            await self.bus.emit(session, {"kind": "queue"})
            await self.bus.emit(session, {"kind": "chat", "conversation_id": claimed})
        await self.update_positions()

    async def reply(self, agent_id: int, conversation_id: int, text: str) -> None:
        text = _checked(text, "reply")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff, conversation = await self._held(
                session, agent_id, conversation_id, ("assigned",)
            )
            await record_outgoing(
                session,
                conversation,
                [Reply(text)],
                sender=SenderKind.AGENT,
                queue=conversation.channel in self._pushed,
            )
            if handoff.first_reply_at is None:
                handoff.first_reply_at = now
            await self._audit(session, agent_id, "reply", conversation_id, {"length": len(text)})
            await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation_id})
            await self.bus.emit(session, {"kind": "outbox"})

    async def note(self, agent_id: int, conversation_id: int, text: str) -> None:
        text = _checked(text, "note")
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
            await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation_id})

    async def transfer(self, agent_id: int, handoff_id: int, to_agent_id: int) -> None:
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            agent = await session.get(Agent, agent_id)
            target = await session.get(Agent, to_agent_id)
            if handoff is None or agent is None or target is None or handoff.status != "assigned":
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
            await self.bus.emit(session, {"kind": "queue"})
            await self.bus.emit(
                session, {"kind": "chat", "conversation_id": handoff.conversation_id}
            )

    async def resolve(self, agent_id: int, handoff_id: int) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            if handoff is None:
                raise HandoffError("not_found", "no such chat")
            await self._held(session, agent_id, handoff.conversation_id, ("assigned",))
            conversation = await session.get(Conversation, handoff.conversation_id)
            assert conversation is not None
            handoff.status, handoff.resolved_at = "resolved", now
            conversation.state = "bot"
            conversation.failures = 0
            language = Language(conversation.language)
            buttons = tuple(
                Button(self._renderer.ui(language, "rating", stars=n), f"rate:{handoff.id}:{n}")
                for n in range(1, 6)
            )
            reply = self._renderer.reply(language, "handoff/resolved", *buttons)
            await record_outgoing(
                session,
                conversation,
                [reply],
                sender=SenderKind.SYSTEM,
                queue=conversation.channel in self._pushed,
            )
            conversation.slots = {
                **(conversation.slots or {}),
                "_offered": [[b.label, b.action] for b in buttons],
            }
            await self._audit(
                session, agent_id, "resolve", handoff.conversation_id, {"handoff": handoff_id}
            )
            await self.bus.emit(session, {"kind": "queue"})
            await self.bus.emit(
                session, {"kind": "chat", "conversation_id": handoff.conversation_id}
            )
            await self.bus.emit(session, {"kind": "outbox"})
        await self.auto_assign()

    async def answer_ticket(self, agent_id: int, handoff_id: int, text: str) -> None:
        text = _checked(text, "answer")
        now = self._clock()
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id, with_for_update=True)
            if handoff is None or handoff.status != "ticket":
                raise HandoffError("conflict", "no open ticket")
            conversation = await session.get(Conversation, handoff.conversation_id)
            assert conversation is not None
            language = Language(conversation.language)
            answer = Reply(self._renderer.render(language, "handoff/ticket_answer", text=text))
            await record_outgoing(
                session,
                conversation,
                [answer],
                sender=SenderKind.AGENT,
                queue=conversation.channel in self._pushed,
            )
            handoff.status, handoff.agent_id = "resolved", agent_id
            handoff.assigned_at = handoff.assigned_at or now
            handoff.first_reply_at, handoff.resolved_at = now, now
            await self._audit(
                session, agent_id, "answer_ticket", conversation.id, {"handoff": handoff_id}
            )
            await self.bus.emit(session, {"kind": "queue"})
            await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation.id})
            await self.bus.emit(session, {"kind": "outbox"})

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
        detail = ConversationDetail(
            conversation, handoff, messages, notes, identity, verified_orders=verified
        )
        detail.context = await self._context(detail)
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
        for order_no in mentioned[:10]:
            order = await self._gateway.get_order(order_no)
            visible = order is not None and chat_may_see(order, merchant_id, detail.verified_orders)
            orders.append((order_no, order if visible else None))
        context["orders"] = orders
        return context

    # -- agent tools: the same gateway calls as the bot, audited ------------------------------

    async def send_payment_link(
        self, agent_id: int, conversation_id: int, amount: Decimal, description: str | None
    ) -> str:
        async with self._sessions() as session, session.begin():
            _, conversation = await self._held(session, agent_id, conversation_id, ("assigned",))
            identity = (
                await session.get(Identity, conversation.identity_id)
                if conversation.identity_id
                else None
            )
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
            await record_outgoing(
                session,
                conversation,
                [reply],
                sender=SenderKind.AGENT,
                queue=conversation.channel in self._pushed,
            )
            await self._audit(
                session,
                agent_id,
                "tool_payment_link",
                conversation_id,
                {"link": link.id, "amount": str(link.amount)},
            )
            await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation_id})
            await self.bus.emit(session, {"kind": "outbox"})
            return link.url

    async def resync_order(self, agent_id: int, conversation_id: int, order_no: str) -> str:
        """Re-sync one of the chat merchant's orders (another merchant's reads as unknown)."""
        order_no = order_no.strip().upper()
        async with self._sessions() as session, session.begin():
            _, conversation = await self._held(session, agent_id, conversation_id, ("assigned",))
            identity = (
                await session.get(Identity, conversation.identity_id)
                if conversation.identity_id
                else None
            )
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
            await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation_id})
            return f"{result.before.value} -> {result.after.value}"

    async def start_password_reset(self, agent_id: int, conversation_id: int, login: str) -> None:
        async with self._sessions() as session, session.begin():
            await self._held(session, agent_id, conversation_id, ("assigned",))
            with joined(session):
                await self._gateway.start_password_reset(login.strip())
            await self._audit(
                session, agent_id, "tool_password_reset", conversation_id, {"login": login}
            )

    # -- assignment and the queue ------------------------------------------------------------

    async def auto_assign(self) -> int:
        """Give waiting chats to online agents with room, highest priority and oldest first."""
        assigned = 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            waiting = (
                await session.scalars(
                    select(Handoff)
                    .where(Handoff.status == "queued")
                    .order_by(Handoff.priority.desc(), Handoff.created_at, Handoff.id)
                )
            ).all()
            for handoff in waiting:
                if await self._assign_if_free(session, handoff, now) is None:
                    break
                assigned += 1
            if assigned:
                await self.bus.emit(session, {"kind": "queue"})
                await self.bus.emit(session, {"kind": "outbox"})
        if assigned:
            await self.update_positions()
        return assigned

    async def update_positions(self) -> None:
        """Tell waiting users their new place when it moved by a useful amount."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            waiting = (
                await session.scalars(
                    select(Handoff)
                    .where(Handoff.status == "queued")
                    .order_by(Handoff.priority.desc(), Handoff.created_at, Handoff.id)
                )
            ).all()
            told = False
            for handoff in waiting:
                position, wait = await self._position(session, handoff, now)
                last = handoff.last_told_position
                if last is not None and (last - position >= 2 or (position == 1 and last > 1)):
                    conversation = await session.get(Conversation, handoff.conversation_id)
                    assert conversation is not None
                    await self._tell(
                        session, conversation, "handoff/position", position=position, minutes=wait
                    )
                    handoff.last_told_position = position
                    told = True
            if told:
                await self.bus.emit(session, {"kind": "outbox"})

    async def _assign_if_free(
        self, session: AsyncSession, handoff: Handoff, now: datetime, *, tell: bool = True
    ) -> Agent | None:
        """Give the handoff to the least loaded online agent with room; `tell` sends the user
        the "an agent joined" notice (False when the caller's reply says it)."""
        candidates = []
        for agent in await self._online_agents(session, now):
            load = await self._load(session, agent.id)
            if load < self.capacity_of(agent):
                candidates.append((load, agent.id, agent))
        if not candidates:
            return None
        _, _, agent = min(candidates, key=lambda c: (c[0], c[1]))
        claimed = await session.execute(
            update(Handoff)
            .where(Handoff.id == handoff.id, Handoff.status == "queued")
            .values(status="assigned", agent_id=agent.id, assigned_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        handoff.status, handoff.agent_id, handoff.assigned_at = "assigned", agent.id, now
        conversation = await session.get(Conversation, handoff.conversation_id)
        assert conversation is not None
        if tell and conversation.state == "queued":
            await self._tell(session, conversation, "handoff/assigned", agent=agent.name)
        conversation.state = "agent"
        await self._audit(
            session,
            None,
            "auto_assign",
            conversation.id,
            {"handoff": handoff.id, "agent": agent.name},
        )
        await self.bus.emit(session, {"kind": "chat", "conversation_id": conversation.id})
        return agent

    async def _online_agents(self, session: AsyncSession, now: datetime) -> Sequence[Agent]:
        return (
            await session.scalars(
                select(Agent)
                .where(Agent.online.is_(True), Agent.last_seen_at > now - ONLINE_WINDOW)
                .order_by(Agent.id)
            )
        ).all()

    async def _load(self, session: AsyncSession, agent_id: int) -> int:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.agent_id == agent_id, Handoff.status == "assigned")
            )
            or 0
        )

    async def _position(
        self, session: AsyncSession, handoff: Handoff, now: datetime
    ) -> tuple[int, int]:
        """Place in the queue (1 = next) and an estimated wait in minutes from recent waits."""
        ahead = int(
            await session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(
                    Handoff.status == "queued",
                    (Handoff.priority > handoff.priority)
                    | (
                        (Handoff.priority == handoff.priority)
                        & (Handoff.created_at < handoff.created_at)
                    )
                    | (
                        (Handoff.priority == handoff.priority)
                        & (Handoff.created_at == handoff.created_at)
                        & (Handoff.id < handoff.id)
                    ),
                )
            )
            or 0
        )
        recent = (
            await session.execute(
                select(Handoff.created_at, Handoff.assigned_at)
                .where(
                    Handoff.assigned_at.is_not(None), Handoff.assigned_at > now - timedelta(days=1)
                )
                .order_by(Handoff.assigned_at.desc())
                .limit(50)
            )
        ).all()
        waits = [
            (assigned - created).total_seconds()
            for created, assigned in recent
            if assigned and created
        ]
        typical = statistics.median(waits) if waits else DEFAULT_WAIT.total_seconds()
        agents = max(1, len(await self._online_agents(session, now)))
        minutes = max(1, round(typical * (ahead + 1) / agents / 60))
        return ahead + 1, minutes

    async def _open_handoff(self, session: AsyncSession, conversation_id: int) -> Handoff | None:
        return await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN))
            .order_by(Handoff.id.desc())
        )

    async def _visible(
        self, session: AsyncSession, agent_id: int, conversation_id: int
    ) -> tuple[Conversation, Handoff | None]:
        """The conversation, if the console lists it for this agent; otherwise 'not found'."""
        agent = await session.get(Agent, agent_id)
        conversation = await session.get(Conversation, conversation_id)
        if agent is None or conversation is None:
            raise HandoffError("not_found", "no such chat")
        handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id)
            .order_by(Handoff.id.desc())
        )
        if agent.is_supervisor:
            return conversation, handoff
        if handoff is None or not (
            handoff.status in ("queued", "ticket") or handoff.agent_id == agent_id
        ):
            raise HandoffError("not_found", "no such chat")
        return conversation, handoff

    async def _held(
        self, session: AsyncSession, agent_id: int, conversation_id: int, statuses: tuple[str, ...]
    ) -> tuple[Handoff, Conversation]:
        """The agent's own open handoff on this conversation (a supervisor may act on any)."""
        agent = await session.get(Agent, agent_id)
        conversation = await session.get(Conversation, conversation_id)
        handoff = await self._open_handoff(session, conversation_id)
        if (
            agent is None
            or conversation is None
            or handoff is None
            or handoff.status not in statuses
        ):
            raise HandoffError("not_found", "no such open chat")
        if handoff.agent_id != agent_id and not agent.is_supervisor:
            raise HandoffError("forbidden", "not your chat")
        return handoff, conversation

    async def _tell(
        self, session: AsyncSession, conversation: Conversation, template: str, **values: Any
    ) -> None:
        language = Language(conversation.language)
        await record_outgoing(
            session,
            conversation,
            [self._say(language, template, **values)],
            sender=SenderKind.SYSTEM,
            queue=conversation.channel in self._pushed,
        )

    def _say(self, language: Language, template: str, **values: Any) -> Reply:
        return self._renderer.reply(language, template, **values)

    def _hours_text(self) -> str:
        return f"{self._hours.opens:%H:%M}-{self._hours.closes:%H:%M}"

    async def _audit(
        self,
        session: AsyncSession,
        agent_id: int | None,
        action: str,
        conversation_id: int | None,
        detail: dict[str, Any],
    ) -> None:
        session.add(
            AuditEntry(
                agent_id=agent_id,
                action=action,
                conversation_id=conversation_id,
                detail=mask_data(detail),
                at=self._clock(),
            )
        )
