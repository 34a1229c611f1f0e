"""`Engine.handle`: the one entry point every channel calls.

One inbound message is one transaction: the inbound id is claimed (a redelivery finds it taken
and changes nothing), the conversation is loaded, the message stored with personal numbers
masked, the route chosen, and the replies stored before they are handed back to the channel.
Messages of one chat are handled one at a time, in order; different chats run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Context, ConversationView, Outcome
from bot.faq.knowledge import Knowledge
from bot.handlers import build_router
from bot.handlers.commands import language_word
from bot.handlers.fallback import fallback
from bot.nlu.language import detect_language
from bot.nlu.matcher import Matcher
from bot.nlu.normalize import fold, strip_punctuation
from bot.privacy import mask_pii
from bot.render import Renderer
from bot.routing import UNHANDLED, Handler, Router
from bot.settings import Settings
from bot.storage.models import (
    Conversation,
    FaqFeedback,
    Message,
    ProcessedInbound,
    UnansweredQuestion,
)
from bot.types import Direction, IncomingMessage, Language, Reply, SenderKind

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/([a-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)
_AFFIRMATIVE = {
    "是",
    "是的",
    "确认",
    "确定",
    "好",
    "好的",
    "对",
    "嗯",
    "yes",
    "y",
    "ok",
    "okay",
    "confirm",
    "sure",
}
_NEGATIVE = {"不", "不是", "否", "不用", "取消", "no", "n", "nope", "cancel"}
_CANCEL_WORDS = {"取消", "算了", "退出", "cancel", "stop", "quit"}
OFFERED = "_offered"


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    argument: str = ""


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
        router: Router | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.knowledge = knowledge
        self.matcher = matcher
        self.renderer = renderer
        self.router = router or build_router()
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _chat_lock(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def handle(self, message: IncomingMessage) -> list[Reply]:
        """Handle one inbound message once; a redelivered message returns no replies."""
        if len(message.text) > self.settings.max_text_length:
            language = detect_language(fold(message.text[:200])) or self.settings.default_language
            text = self.renderer.render(language, "too_long", limit=self.settings.max_text_length)
            return [Reply(text)]
        async with self._chat_lock((message.channel, message.chat_id)):
            try:
                async with self.sessions() as session, session.begin():
                    session.add(
                        ProcessedInbound(channel=message.channel, message_id=message.message_id)
                    )
                    await session.flush()
                    return await self._handle_in_transaction(session, message)
            except IntegrityError:
                if await self._already_processed(message):
                    log.info(
                        "duplicate delivery %s/%s ignored", message.channel, message.message_id
                    )
                    return []
                raise

    async def _already_processed(self, message: IncomingMessage) -> bool:
        async with self.sessions() as session:
            found = await session.scalar(
                select(ProcessedInbound.id).where(
                    ProcessedInbound.channel == message.channel,
                    ProcessedInbound.message_id == message.message_id,
                )
            )
            return found is not None

    async def _conversation(self, session: AsyncSession, message: IncomingMessage) -> Conversation:
        query = select(Conversation).where(
            Conversation.channel == message.channel, Conversation.chat_id == message.chat_id
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        conversation = await session.scalar(query)
        if conversation is None:
            conversation = Conversation(
                channel=message.channel,
                chat_id=message.chat_id,
                language=self.settings.default_language.value,
                slots={},
            )
            session.add(conversation)
            await session.flush()
        return conversation

    async def _handle_in_transaction(
        self, session: AsyncSession, message: IncomingMessage
    ) -> list[Reply]:
        conversation = await self._conversation(session, message)
        view = ConversationView(
            id=conversation.id,
            channel=conversation.channel,
            chat_id=conversation.chat_id,
            state=conversation.state,
            language=Language(conversation.language),
            language_pinned=conversation.language_pinned,
            flow=conversation.flow,
            slots=dict(conversation.slots or {}),
            failures=conversation.failures,
            last_label=conversation.last_label,
        )
        ctx = Context(
            message=message,
            conversation=view,
            language=view.language,
            knowledge=self.knowledge,
            renderer=self.renderer,
            settings=self.settings,
        )
        inbound = Message(
            conversation_id=conversation.id,
            direction=Direction.IN,
            sender_kind=SenderKind.USER,
            text=mask_pii(message.text),
            action=message.action[:128] if message.action else None,
            channel_message_id=message.message_id,
        )
        session.add(inbound)
        outcome = await self._route(ctx)
        if ctx.parse is not None:
            inbound.label, inbound.score = ctx.parse.label.value, ctx.parse.score
        self._apply(session, conversation, ctx, outcome)
        return outcome.replies

    async def _route(self, ctx: Context) -> Outcome:
        route = self._explicit_route(ctx)
        if route is None:
            text = ctx.message.text.strip()
            if not text:
                return Outcome([ctx.say("empty")])
            fallback_language = ctx.conversation.language
            ctx.parse = self.matcher.parse(text, fallback_language)
            if not ctx.conversation.language_pinned:
                ctx.language = ctx.parse.language
            handler = self.router.labels.get(ctx.parse.label)
            route = _Route(handler) if handler else None
        if route is not None:
            ctx.argument = route.argument
            result = await route.handler(ctx)
            if result is not UNHANDLED:
                return result
            if ctx.message.action:
                return Outcome([ctx.say("stale_action")])
        return fallback(ctx)

    def _explicit_route(self, ctx: Context) -> _Route | None:
        """Button presses, commands, language words, cancel words and typed button answers."""
        action = ctx.message.action or self._typed_button(ctx)
        if action:
            prefix, _, argument = action.partition(":")
            handler = self.router.actions.get(prefix)
            if handler is None:
                return _Route(_stale_action)
            return _Route(handler, argument)
        text = ctx.message.text.strip()
        if not ctx.conversation.language_pinned and (language := detect_language(fold(text))):
            ctx.language = language
        command = _COMMAND.match(text)
        if command:
            handler = self.router.commands.get(command.group(1).lower())
            return _Route(handler or _unknown_command, (command.group(2) or "").strip())
        if language_word(text) is not None:
            return _Route(self.router.commands["lang"], text)
        if strip_punctuation(fold(text)) in _CANCEL_WORDS:
            return _Route(self.router.commands["cancel"])
        return None

    def _typed_button(self, ctx: Context) -> str | None:
        """The offered button a typed answer means: its number, its label, or yes/no."""
        offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
        if not offered:
            return None
        answer = strip_punctuation(fold(ctx.message.text))
        if answer.isdigit() and 1 <= int(answer) <= len(offered):
            return offered[int(answer) - 1][1]
        for label, action in offered:
            if answer and answer == strip_punctuation(fold(label)):
                return action
        wanted = ":yes" if answer in _AFFIRMATIVE else ":no" if answer in _NEGATIVE else None
        if wanted:
            return next((action for _, action in offered if action.endswith(wanted)), None)
        return None

    def _apply(
        self, session: AsyncSession, conversation: Conversation, ctx: Context, outcome: Outcome
    ) -> None:
        if outcome.language is not None:
            conversation.language = outcome.language.value
            conversation.language_pinned = outcome.pin_language or conversation.language_pinned
        elif not conversation.language_pinned:
            conversation.language = ctx.language.value
        conversation.failures = 0 if outcome.solved else conversation.failures + 1
        slots = dict(ctx.conversation.slots)
        if outcome.end_flow:
            conversation.flow = None
            conversation.flow_step = None
            slots = {}
        offered = [[b.label, b.action] for reply in outcome.replies for b in reply.buttons]
        slots[OFFERED] = offered
        conversation.slots = slots
        if ctx.parse is not None:
            conversation.last_label = ctx.parse.label.value
        if outcome.feedback is not None:
            label, helpful = outcome.feedback
            session.add(
                FaqFeedback(conversation_id=conversation.id, entry_id=label.value, helpful=helpful)
            )
        if outcome.unanswered and ctx.parse is not None:
            best = ctx.parse.alternatives[0] if ctx.parse.alternatives else None
            session.add(
                UnansweredQuestion(
                    conversation_id=conversation.id,
                    text=mask_pii(ctx.message.text),
                    language=ctx.language.value,
                    best_label=best.label.value if best else None,
                    score=ctx.parse.score,
                    reason=ctx.parse.reason,
                )
            )
        for reply in outcome.replies:
            session.add(
                Message(
                    conversation_id=conversation.id,
                    direction=Direction.OUT,
                    sender_kind=SenderKind.BOT,
                    text=mask_pii(reply.text),
                )
            )


async def _stale_action(ctx: Context) -> Outcome:
    return Outcome([ctx.say("stale_action")])


async def _unknown_command(ctx: Context) -> Outcome:
    return Outcome([ctx.say("help", ctx.human_button())])
