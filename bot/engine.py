"""`Engine.handle`: the one entry point every channel calls.

One inbound message is one transaction, in three steps: **read** (claim the inbound id, so a
redelivery changes nothing; load the conversation and the writer's identity in one
statement), **decide** (`bot/dialogue/turn.py`: the route, the flows, the platform's answers,
as a list of typed events) and **write** (`bot/turn_writer.py`: the one place the turn's
events become rows, with the transcript and the replies' outbox rows). Messages of one chat
are handled one at a time, in order; different chats run in parallel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import turn_writer
from bot.cleantext import clean_text
from bot.concurrency import KeyedLocks
from bot.context import Context, ConversationView, Identity, RecentCounter
from bot.delivery import LEASE, record_outgoing
from bot.dialogue.events import Decision, LimitTripped, PendingRequest, SuspendedFrame
from bot.dialogue.turn import Decider
from bot.escalation.service import HandoffService
from bot.faq.knowledge import Knowledge
from bot.handlers import build_router
from bot.nlu.language import detect_language
from bot.nlu.matcher import Matcher
from bot.nlu.normalize import fold
from bot.platform.gateway import PlatformGateway
from bot.render import Renderer
from bot.routing import Router
from bot.settings import Settings
from bot.storage.models import Conversation, OutboxItem
from bot.storage.runner import in_unit
from bot.storage.unit import after_commit
from bot.turn_writer import Loaded, TurnWriter
from bot.types import IncomingMessage, Language, Reply, SenderKind

log = logging.getLogger(__name__)

FLOW_TTL = timedelta(minutes=30)


class EngineMetrics(Protocol):
    def handled(self, channel: str, label: str | None, replies: int, seconds: float) -> None: ...

    def tripped(self, limit: str) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    """Channel-agnostic: takes an IncomingMessage, returns the replies to send."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        knowledge: Knowledge,
        matcher: Matcher,
        renderer: Renderer,
        gateway: PlatformGateway,
        router: Router | None = None,
        clock: Callable[[], datetime] = _utcnow,
        relay_channels: frozenset[str] = frozenset(),
        on_queued: Callable[[], None] | None = None,
        deliver: Callable[[list[OutboxItem]], None] | None = None,
        metrics: EngineMetrics | None = None,
        handoffs: HandoffService | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.knowledge = knowledge
        self.matcher = matcher
        self.renderer = renderer
        self.gateway = gateway
        self.router = router or build_router()
        self.clock = clock
        self.relay_channels = relay_channels
        self.on_queued = on_queued
        self.deliver = deliver
        self.metrics = metrics
        self.handoffs = handoffs
        self._chats = KeyedLocks()
        self.decider = Decider(
            knowledge=knowledge,
            matcher=matcher,
            router=self.router,
            people=handoffs is not None,
        )
        self.writer = TurnWriter(handoffs)

    def use_knowledge(self, knowledge: Knowledge, matcher: Matcher) -> None:
        """Answer from another knowledge version from the next turn on (`bot/faq/live.py`).
        Synchronous, so no turn sees the new knowledge with the old matcher: a turn reads
        both between two awaits."""
        decider = Decider(
            knowledge=knowledge,
            matcher=matcher,
            router=self.router,
            people=self.handoffs is not None,
        )
        self.knowledge, self.matcher, self.decider = knowledge, matcher, decider

    async def handle(self, message: IncomingMessage) -> list[Reply]:
        """Handle one inbound message once; a redelivered message returns no replies.

        Joins the transaction the caller has open (the Telegram webhook stores the update in
        it), or opens its own."""
        message = _cleaned(message)
        if len(message.text) > self.settings.max_text_length:
            language = detect_language(fold(message.text[:200])) or self.settings.default_language
            text = self.renderer.render(language, "too_long", limit=self.settings.max_text_length)
            return [Reply(text)]
        started = time.perf_counter()
        async with self._chats.hold((message.channel, message.chat_id)):
            handled = await in_unit(self.sessions, partial(self._handle_once, message))
        if handled is None:
            return []
        replies, label = handled
        if self.metrics is not None:
            self.metrics.handled(
                message.channel, label, len(replies), time.perf_counter() - started
            )
        return replies

    async def decide(
        self, message: IncomingMessage, session: AsyncSession
    ) -> tuple[Loaded, Context, Decision]:
        """Read and decide, writing nothing but a first message's new conversation row."""
        now = self.clock()
        loaded = await turn_writer.load(
            session,
            message,
            now,
            self.settings.default_language,
            self.settings.rate_limit_per_minute,
        )
        ctx = self._context(message, loaded, now, turn_writer.recent_counter(session, now))
        return loaded, ctx, await self.decider.decide(ctx, loaded.recent_messages)

    async def _handle_once(
        self, message: IncomingMessage, session: AsyncSession
    ) -> tuple[list[Reply], str | None] | None:
        if not await turn_writer.claim(session, message):
            log.info("duplicate delivery %s/%s ignored", message.channel, message.message_id)
            return None
        loaded, ctx, decision = await self.decide(message, session)
        for event in decision.of(LimitTripped):
            log.warning(
                "limit %s reached (%s chat %s)", event.limit, message.channel, ctx.conversation.id
            )
            if self.metrics is not None:
                self.metrics.tripped(event.limit)
        # A channel delivered later gets outbox rows, leased to this process when it sends
        # them itself as soon as the transaction commits.
        queue = message.channel in self.relay_channels
        replies, queued = await self.writer.write(
            session,
            loaded,
            ctx,
            decision,
            now=ctx.now,
            queue=queue,
            leased=queue and self.deliver is not None,
        )
        if queued:
            after_commit(session, partial(self._queued, queued))
        return replies, decision.label

    def _context(
        self,
        message: IncomingMessage,
        loaded: Loaded,
        now: datetime,
        recent: RecentCounter,
    ) -> Context:
        conversation, known = loaded.conversation, loaded.identity
        expired = now - conversation.updated_at > FLOW_TTL
        flow = conversation.flow if not expired else None
        view = ConversationView(
            id=conversation.id,
            channel=conversation.channel,
            chat_id=conversation.chat_id,
            state=conversation.state,
            language=Language(conversation.language),
            language_pinned=conversation.language_pinned,
            flow=flow,
            flow_step=conversation.flow_step if flow else None,
            slots=dict(conversation.slots or {}),
            failures=conversation.failures,
            last_label=conversation.last_label,
            # The stored JSON has the shapes the writer gave it.
            suspended=cast(list[SuspendedFrame], list(conversation.suspended or []))
            if not expired
            else [],
            pending=cast(PendingRequest | None, conversation.pending),
        )
        # Over the rate limit, an account never seen is not stored: it counts as a customer.
        identity = Identity(known.kind, known.merchant_id) if known else Identity()
        return Context(
            message=message,
            conversation=view,
            language=view.language,
            knowledge=self.knowledge,
            renderer=self.renderer,
            settings=self.settings,
            gateway=self.gateway,
            identity=identity,
            now=now,
            recent=recent,
            incidents=loaded.incidents,
            chat_started=loaded.created or expired,
        )

    def _queued(self, items: list[OutboxItem]) -> None:
        if self.deliver is not None:
            self.deliver(items)
        elif self.on_queued is not None:
            self.on_queued()

    async def tell(self, channel: str, chat_id: str, template: str) -> None:
        """Say one templated line to a chat outside any turn (a message the channel gave up on
        for good, see bot/channels/inbound.py), in the chat's language; the chat's first
        contact creates its conversation, as a message would."""
        async with (
            self._chats.hold((channel, chat_id)),
            self.sessions() as session,
            session.begin(),
        ):
            conversation = await session.scalar(
                select(Conversation).where(
                    Conversation.channel == channel, Conversation.chat_id == chat_id
                )
            )
            if conversation is None:
                conversation = await turn_writer.new_conversation(
                    session, channel, chat_id, self.clock(), self.settings.default_language
                )
            text = self.renderer.render(Language(conversation.language), template)
            queue = channel in self.relay_channels
            items = await record_outgoing(
                session,
                conversation,
                [Reply(text)],
                sender=SenderKind.SYSTEM,
                queue=queue,
                leased_until=_utcnow() + LEASE if queue and self.deliver else None,
            )
        if items:
            self._queued(items)

    async def bind(self, channel: str, user_id: str, merchant_id: str) -> bool:
        """Bind a chat account to a merchant directly (support staff trying things out)."""
        if await self.gateway.get_merchant(merchant_id) is None:
            return False
        async with self.sessions() as session, session.begin():
            identity = await turn_writer.identity_of(session, channel, user_id)
            identity.kind, identity.merchant_id = "merchant", merchant_id
        return True


def _cleaned(message: IncomingMessage) -> IncomingMessage:
    """The message with what no database stores alike (NUL, other C0 controls, lone
    surrogates) taken out of every text a channel passed on; the message itself when clean."""
    chat_id, user_id = clean_text(message.chat_id), clean_text(message.user_id)
    message_id, text = clean_text(message.message_id), clean_text(message.text)
    action = clean_text(message.action) if message.action is not None else None
    fields = (chat_id, user_id, message_id, text, action)
    if fields == (
        message.chat_id,
        message.user_id,
        message.message_id,
        message.text,
        message.action,
    ):
        return message
    return replace(
        message, chat_id=chat_id, user_id=user_id, message_id=message_id, text=text, action=action
    )
