"""`Engine.handle`: the one entry point every channel calls.

One inbound message is one transaction: the inbound id is claimed (a redelivery finds it taken
and changes nothing), the conversation and the writer's identity are loaded, the message stored
with personal numbers masked, the route chosen, and the replies stored before they are handed
back to the channel. Messages of one chat are handled one at a time, in order; different chats
run in parallel. Platform outages become one polite reply here, whatever flow hit them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Connection, and_, bindparam, func, inspect, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.cleantext import clean_text
from bot.concurrency import KeyedLocks
from bot.context import Context, ConversationView, FlowState, Identity, Outcome
from bot.delivery import LEASE, Inbound, record_outgoing, record_turn
from bot.diagnostics.registry import FLOWS
from bot.dialogue.policy import DialoguePolicy
from bot.escalation.service import HandoffService, priority_of
from bot.faq.knowledge import Knowledge
from bot.handlers import build_router
from bot.handlers.binding import bind_code_in
from bot.handlers.commands import language_word
from bot.handlers.fallback import fallback
from bot.handlers.tone import acknowledgement
from bot.nlu.language import detect_language
from bot.nlu.matcher import Matcher
from bot.nlu.normalize import fold, strip_punctuation
from bot.nlu.values import read_amount, read_position, read_yes_no
from bot.platform.gateway import PlatformGateway, PlatformRejected, PlatformUnavailable
from bot.privacy import contains_password, mask_data, mask_pii
from bot.render import Renderer
from bot.routing import UNHANDLED, Handler, Result, Router
from bot.settings import Settings
from bot.storage.models import (
    Conversation,
    FaqFeedback,
    Message,
    OrderWatch,
    OutboxItem,
    ProcessedInbound,
    RateEvent,
    UnansweredQuestion,
    table_of,
)
from bot.storage.models import (
    Identity as IdentityRow,
)
from bot.storage.runner import in_unit
from bot.storage.unit import add_new, after_commit, inbound_claimed, insert_once
from bot.types import Button, Direction, IncomingMessage, Label, Language, Reply, SenderKind

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/([a-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)
OFFERED = "_offered"
UNHELPFUL = "_unhelpful"
_PLEASANTRIES = {Label.CHITCHAT_GREET, Label.CHITCHAT_THANKS, Label.CHITCHAT_BYE}
_FLOW_LABELS = frozenset(flow.label for flow in FLOWS.values())
FLOW_TTL = timedelta(minutes=30)
# Flows waiting below the open one; a deeper digression forgets the oldest.
MAX_SUSPENDED = 3
RATE_WINDOW = timedelta(minutes=1)


class EngineMetrics(Protocol):
    def handled(self, channel: str, label: str | None, replies: int, seconds: float) -> None: ...

    def tripped(self, limit: str) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    argument: str = ""


@dataclass(slots=True)
class _Turn:
    """What one message writes to the transcript and the outbox, in its transaction: the
    user's message and the replies together in the end, unless something must come between."""

    session: AsyncSession
    conversation: Conversation | None = None
    inbound: Inbound | None = None
    queue: bool = False
    # The replies' outbox rows are written leased to this process (which sends them itself).
    leased: bool = False
    inbound_id: int | None = None
    queued: list[OutboxItem] = field(default_factory=list)

    async def user_first(self) -> int | None:
        """Store the user's message now, before anything else is said in this turn."""
        if self.inbound is not None:
            await self.say([])
        return self.inbound_id

    async def say(self, replies: list[Reply], *, last: bool = False) -> None:
        """Store what is said; `last`: the turn's last writes, with the conversation's UPDATE
        in the same hop (see `_save`)."""
        assert self.conversation is not None
        inbound_id, items = await record_turn(
            self.session,
            self.conversation,
            self.inbound,
            replies,
            queue=self.queue,
            # The lease starts when the rows are written, not when the turn began: the relay
            # renews it from the commit on, and a slow turn must not hand over rows already
            # near its end (bot/channels/outbox.py).
            leased_until=_utcnow() + LEASE if self.leased else None,
            also=partial(_save, self.conversation) if last else None,
        )
        if self.inbound is not None:
            self.inbound, self.inbound_id = None, inbound_id
        self.queued += items


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
        self.policy = DialoguePolicy(FLOWS, matcher, self._route_label)

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

    async def _handle_once(
        self, message: IncomingMessage, session: AsyncSession
    ) -> tuple[list[Reply], str | None] | None:
        # A redelivery finds its inbound id taken and changes nothing. A Telegram update taken
        # by the webhook was claimed by its inbound row, in this same transaction.
        claimed = inbound_claimed.get() or (
            await insert_once(
                session, ProcessedInbound, channel=message.channel, message_id=message.message_id
            )
            is not None
        )
        if not claimed:
            log.info("duplicate delivery %s/%s ignored", message.channel, message.message_id)
            return None
        turn = _Turn(session)
        replies, label = await self._handle_in_transaction(session, message, turn)
        if turn.queued:
            after_commit(session, partial(self._queued, turn.queued))
        return replies, label

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
                now = self.clock()
                conversation = Conversation(
                    channel=channel,
                    chat_id=chat_id,
                    language=self.settings.default_language.value,
                    slots={},
                    findings={},
                    suspended=[],
                    created_at=now,
                    updated_at=now,
                )
                await add_new(session, conversation)
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
            identity = await self._identity(session, channel, user_id)
            identity.kind, identity.merchant_id = "merchant", merchant_id
        return True

    async def _identity(self, session: AsyncSession, channel: str, user_id: str) -> IdentityRow:
        """The chat account's identity; an account seen for the first time is a customer."""
        identity = IdentityRow(channel=channel, user_id=user_id, kind="customer")
        if await add_new(session, identity, unless_taken=True):
            return identity
        known = await session.scalar(
            select(IdentityRow).where(
                IdentityRow.channel == channel, IdentityRow.user_id == user_id
            )
        )
        assert known is not None  # the key was taken, in this transaction's view
        return known

    async def _load(
        self, session: AsyncSession, message: IncomingMessage, now: datetime
    ) -> tuple[Conversation, IdentityRow | None, int]:
        """In one statement: the chat's conversation (locked on PostgreSQL against another
        process), the writer's identity if known, and the messages the chat sent within the
        rate window. A chat's first message creates its conversation."""
        postgresql = session.get_bind().dialect.name == "postgresql"
        parameters = {
            "channel": message.channel,
            "chat_id": message.chat_id,
            "user_id": message.user_id,
            "since": now - RATE_WINDOW,
        }
        row = (await session.execute(_LOAD[postgresql], parameters)).first()
        if row is not None:
            return row[0], row[1], int(row[2] or 0)
        conversation = Conversation(
            channel=message.channel,
            chat_id=message.chat_id,
            language=self.settings.default_language.value,
            slots={},
            findings={},
            suspended=[],
            created_at=now,
            updated_at=now,
        )
        await add_new(session, conversation)
        return conversation, None, 0

    async def _handle_in_transaction(
        self, session: AsyncSession, message: IncomingMessage, turn: _Turn
    ) -> tuple[list[Reply], str | None]:
        now = self.clock()
        postgresql = session.get_bind().dialect.name == "postgresql"
        conversation, known, recent_messages = await self._load(session, message, now)
        turn.conversation = conversation
        # A channel delivered later gets outbox rows, leased to this process when it sends
        # them itself as soon as the transaction commits.
        if conversation.channel in self.relay_channels:
            turn.queue = True
            turn.leased = self.deliver is not None
        if recent_messages >= self.settings.rate_limit_per_minute:
            # Not stored: a flood does not fill the transcript.
            language = Language(conversation.language)
            limited = [Reply(self.renderer.render(language, "rate_limited"))]
            await turn.say(limited)
            return limited, "rate_limited"
        identity = known or await self._identity(session, message.channel, message.user_id)
        if conversation.identity_id != identity.id:
            conversation.identity_id = identity.id
        flow = conversation.flow
        expired = now - conversation.updated_at > FLOW_TTL
        if flow and expired:
            flow = None
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
            suspended=list(conversation.suspended or []) if not expired else [],
            pending=conversation.pending,
        )

        async def recent(key: str, window: timedelta) -> int:
            if postgresql:
                # Counting and then adding an attempt must not interleave with another turn
                # doing the same, or a limit across chats lets every turn in flight through.
                # Held to the end of the turn; a turn takes its keys in one fixed order.
                await session.execute(_ADVISORY_LOCK, {"key": f"rate:{key}"})
            count = await session.scalar(
                select(func.count())
                .select_from(RateEvent)
                .where(RateEvent.key == key, RateEvent.at > now - window)
            )
            return int(count or 0)

        ctx = Context(
            message=message,
            conversation=view,
            language=view.language,
            knowledge=self.knowledge,
            renderer=self.renderer,
            settings=self.settings,
            gateway=self.gateway,
            identity=Identity(identity.kind, identity.merchant_id),
            now=now,
            recent=recent,
        )
        turn.inbound = Inbound(
            text=message.text,
            action=message.action[:128] if message.action else None,
            channel_message_id=message.message_id,
        )
        if conversation.state in ("queued", "agent") and self.handoffs is not None:
            message_id = await turn.user_first()
            if not self.knowledge.words.means("back_to_bot", message.text):
                # People hold the chat: the bot stays silent and passes the message on, but
                # for a typed password, which it warns about.
                await self.handoffs.on_user_message(session, conversation, message_id)
                warned = _password_warning(ctx)
                if warned:
                    await turn.say(warned)
                return warned, None
            had = await self.handoffs.cancel(session, conversation)
            back = [ctx.say("handoff/returned", had_handoff=had)]
            await turn.say(back)
            return back, None
        try:
            outcome = await self._route(ctx)
        except PlatformUnavailable as exc:
            log.warning("platform unavailable in %s: %s", view.flow or "routing", exc)
            outcome = Outcome(
                [ctx.say("platform_unavailable", ctx.human_button())], solved=False, end_flow=True
            )
        except PlatformRejected as exc:
            # Every refusal the platform gives is translated here, once, for every flow.
            log.warning("platform refused in %s: %s", view.flow or "routing", exc)
            outcome = Outcome(
                [ctx.say("platform_rejected", ctx.human_button())], solved=False, end_flow=True
            )
        outcome = await self._after_binding(ctx, outcome)
        acknowledged = acknowledgement(ctx)
        if acknowledged is not None:
            # In the same reply, before the answer: one message, not an extra bubble.
            first = outcome.replies[0] if outcome.replies else None
            if first is not None and first.image is None:
                outcome.replies[0] = first.prefaced(acknowledged)
            else:
                outcome.replies.insert(0, acknowledged)
        if ctx.parse is not None:
            turn.inbound.label, turn.inbound.score = ctx.parse.label.value, ctx.parse.score
        self._apply(session, conversation, identity, ctx, outcome, now)
        self._offer_resume(conversation, ctx, outcome)
        for limit in outcome.tripped:
            log.warning("limit %s reached (%s chat %s)", limit, message.channel, conversation.id)
            if self.metrics is not None:
                self.metrics.tripped(limit)
        if self.handoffs is not None:
            outcome.replies.extend(await self._people(turn, conversation, ctx, outcome))
        outcome.replies[:0] = _password_warning(ctx)
        with session.no_autoflush:  # the conversation is written by `_save`, with the replies
            await turn.say(outcome.replies, last=True)
        return outcome.replies, ctx.parse.label.value if ctx.parse else None

    async def _people(
        self, turn: _Turn, conversation: Conversation, ctx: Context, outcome: Outcome
    ) -> list[Reply]:
        """Handoffs, tickets, ratings and returns: what involves people, in this transaction.

        What the people side says itself (an agent took the chat) comes after the user's
        message, which is therefore stored first."""
        assert self.handoffs is not None
        session = turn.session
        said: list[Reply] = []
        if outcome.ticket_text is not None:
            await turn.user_first()
            await self.handoffs.leave_ticket(session, conversation, outcome.ticket_text)
        if outcome.rating is not None:
            await turn.user_first()
            ok = await self.handoffs.rate(session, conversation, *outcome.rating)
            said.append(ctx.say("handoff/rated", ok=ok))
        if outcome.return_to_bot:
            await turn.user_first()
            had = await self.handoffs.cancel(session, conversation)
            said.append(ctx.say("handoff/returned", had_handoff=had))
        reason = outcome.handoff
        asked_again = ctx.parse is not None and ctx.parse.label not in _PLEASANTRIES
        unsolved = not outcome.solved and conversation.failures >= 2
        unhelpful = bool(ctx.conversation.slots.get(UNHELPFUL)) and asked_again
        if reason is None and (unsolved or unhelpful):
            # The bot offers a person; it never hands a chat over by itself. The button keeps
            # the reason, so the agent who takes the chat knows why it came.
            why = "unhelpful_answer" if unhelpful else "bot_failed"
            outcome.replies[:] = [_without_human(reply) for reply in outcome.replies]
            said.append(
                ctx.say(
                    "dialogue/offer_handoff",
                    Button(ctx.ui("human"), f"human:{why}"),
                    Button(ctx.ui("keep_asking"), "dialogue:continue"),
                )
            )
        if reason is not None:
            await turn.user_first()
            said += await self.handoffs.request(
                session,
                conversation,
                reason=reason,
                priority=priority_of(ctx.message.text),
                findings=dict(conversation.findings or {}),
            )
            conversation.failures = 0
        # "Not helpful" is remembered for one turn: asking again then goes to a person.
        slots = {k: v for k, v in (conversation.slots or {}).items() if k != UNHELPFUL}
        if outcome.feedback is not None and not outcome.feedback[1]:
            slots[UNHELPFUL] = True
        conversation.slots = slots
        if said:
            offered = [
                [b.label, b.action] for reply in (*outcome.replies, *said) for b in reply.buttons
            ]
            conversation.slots = {**(conversation.slots or {}), OFFERED: offered}
        return said

    def _flow_state(self, ctx: Context) -> FlowState | None:
        view = ctx.conversation
        if not view.flow or view.flow not in FLOWS or not view.flow_step:
            return None
        slots = {k: v for k, v in view.slots.items() if k != OFFERED}
        return FlowState(view.flow, view.flow_step, slots)

    async def _route(self, ctx: Context) -> Outcome:
        state = self._flow_state(ctx)
        action = ctx.message.action or self._typed_button(ctx)
        if action:
            return await self._route_action(ctx, action, state)
        text = ctx.message.text.strip()
        explicit = self._explicit_text_route(
            text, ticket_open=state is not None and state.name == "ticket"
        )
        if explicit is not None:
            return await self._run(ctx, explicit)
        if not ctx.conversation.language_pinned and (
            language := detect_language(fold(text), current=Language(ctx.conversation.language))
        ):
            ctx.language = language
        if not text:
            return Outcome([ctx.say("empty")])
        if state is not None:
            return await self.policy.in_flow(ctx, state, text)
        entity_first = await self.policy.without_flow(ctx, text)
        if entity_first is not None:
            return entity_first
        return await self._route_text(ctx, text)

    async def _route_action(self, ctx: Context, action: str, state: FlowState | None) -> Outcome:
        if action.startswith("#"):
            # A button whose action was too long for the channel travels as its index.
            offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
            index = action[1:]
            if not index.isdigit() or not 0 <= int(index) < len(offered):
                return Outcome([ctx.say("stale_action")])
            action = offered[int(index)][1]
        prefix, _, argument = action.partition(":")
        if prefix == "resume":
            return self._resume(ctx, argument == "yes")
        if action == "dialogue:continue":
            return Outcome([ctx.say("dialogue/continue")])
        if prefix == "flow":
            if state is None:
                return Outcome([ctx.say("stale_action")])
            ctx.argument = argument
            result = await FLOWS[state.name].resume(ctx, state)
            return result if result is not UNHANDLED else Outcome([ctx.say("stale_action")])
        handler = self.router.actions.get(prefix)
        if handler is None:
            return Outcome([ctx.say("stale_action")])
        result = await self._run(ctx, _Route(handler, argument))
        return result

    def _explicit_text_route(self, text: str, *, ticket_open: bool = False) -> _Route | None:
        """Commands, language words, cancel words and bind codes: never read as anything else."""
        command = _COMMAND.match(text)
        if command:
            handler = self.router.commands.get(command.group(1).lower())
            return _Route(handler or _unknown_command, (command.group(2) or "").strip())
        if language_word(text) is not None:
            return _Route(self.router.commands["lang"], text)
        words = self.knowledge.words
        if words.means("back_to_bot", text, along=("cancel",)):
            return _Route(_back_to_bot)
        if ticket_open and words.contains("back_to_bot", text, shortest=4):
            # "那不留言了，返回机器人": while writing to staff, going back is said in passing.
            return _Route(_back_to_bot)
        if words.means("cancel", text):
            # Cancelling the message being written for staff cancels the handoff it is for.
            ticket = ticket_open and self.handoffs is not None
            return _Route(_back_to_bot) if ticket else _Route(self.router.commands["cancel"])
        code = bind_code_in(text)
        if code is not None:
            return _Route(self.router.commands["bind"], code)
        return None

    def _resume(self, ctx: Context, yes: bool) -> Outcome:
        """The offer to go back to the flow a digression suspended: taken, or declined."""
        if not ctx.conversation.suspended:
            return Outcome([ctx.say("stale_action")])
        frame = ctx.conversation.suspended[-1]
        state = FlowState(str(frame["flow"]), str(frame["step"]), dict(frame.get("slots") or {}))
        flow = FLOWS[state.name]
        if not yes:
            reply = ctx.say("dialogue/resume_dropped", flow=ctx.ui(f"flow_{flow.name}"))
            return Outcome([reply], resume_suspended=False)
        reply = flow.prompt(ctx, state, "dialogue/back_to_flow")
        return Outcome([reply], flow=state, resume_suspended=True)

    def _offer_resume(self, conversation: Conversation, ctx: Context, outcome: Outcome) -> None:
        """A flow ended with another waiting below it: offer to go back to that one."""
        if conversation.flow is not None or not conversation.suspended:
            return
        if any(b.action.startswith("resume:") for r in outcome.replies for b in r.buttons):
            return
        waiting = FLOWS[str(conversation.suspended[-1]["flow"])]
        offer = ctx.say(
            "dialogue/offer_resume",
            Button(ctx.ui("resume_yes"), "resume:yes"),
            Button(ctx.ui("resume_no"), "resume:no"),
            flow=ctx.ui(f"flow_{waiting.name}"),
        )
        outcome.replies.append(offer)
        offered = [[b.label, b.action] for b in offer.buttons]
        conversation.slots = {
            **(conversation.slots or {}),
            OFFERED: [*(conversation.slots or {}).get(OFFERED, []), *offered],
        }

    async def _after_binding(self, ctx: Context, outcome: Outcome) -> Outcome:
        """A chat that just bound takes up the request it was refused for want of a binding;
        the flows of its old identity end."""
        if outcome.bind_merchant is None:
            refused = any(reply.template == "flows/bind_first" for reply in outcome.replies)
            if refused and ctx.parse is not None and ctx.parse.label in _FLOW_LABELS:
                outcome.pending = {"label": ctx.parse.label.value, "text": ctx.message.text}
            return outcome
        outcome.end_flow = True
        outcome.resume_suspended = False
        pending = ctx.conversation.pending
        outcome.pending = {}
        if not pending:
            return outcome
        merchant = Identity("merchant", outcome.bind_merchant)
        again = ctx.saying(str(pending.get("text", "")), merchant)
        again.parse = self.matcher.parse(again.message.text, ctx.conversation.language)
        handler = self.router.labels.get(Label(str(pending["label"])))
        if handler is None:
            return outcome
        resumed = await self._run(again, _Route(handler))
        outcome.replies += [ctx.say("bind/resumed"), *resumed.replies]
        outcome.flow, outcome.end_flow = resumed.flow, resumed.flow is None
        outcome.findings.update(resumed.findings)
        return outcome

    async def _route_text(self, ctx: Context, text: str) -> Outcome:
        ctx.parse = self.matcher.parse(text, ctx.conversation.language)
        if not ctx.conversation.language_pinned:
            ctx.language = ctx.parse.language
        return await self._route_label(ctx)

    async def _route_label(self, ctx: Context) -> Outcome:
        assert ctx.parse is not None
        handler = self.router.labels.get(ctx.parse.label)
        if handler is None:
            return fallback(ctx)
        return await self._run(ctx, _Route(handler))

    async def _run(self, ctx: Context, route: _Route) -> Outcome:
        ctx.argument = route.argument
        result: Result = await route.handler(ctx)
        if result is not UNHANDLED:
            return result
        if ctx.message.action:
            return Outcome([ctx.say("stale_action")])
        return fallback(ctx)

    def _typed_button(self, ctx: Context) -> str | None:
        """The offered button a typed answer means: its number, its label, or yes/no."""
        offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
        if not offered:
            return None
        text = ctx.message.text
        meaning = read_yes_no(text, self.knowledge.words)
        if meaning is not None:
            # A yes answers the open question (a flow's, or the offer to resume one), never
            # the "was this helpful?" buttons under an answer given on the way.
            wanted = ":yes" if meaning else ":no"
            answers = [a for _, a in offered if a.endswith(wanted)]
            first = [a for a in answers if a.startswith(("flow:", "resume:"))]
            rest = [a for a in answers if not a.startswith("fb:")]
            if first or rest or answers:
                return (first or rest or answers)[0]
        words = self.knowledge.words
        # "不用再发链接了": a no that explains itself; but "不对，是260" corrects.
        explained_no = meaning is None and words.leads("no", text) and read_amount(text) is None
        if explained_no and not words.contains("correction", text):
            no = [a for _, a in offered if a.endswith(":no") and a.startswith("flow:")]
            if no:
                return no[0]
        index = read_position(text, len(offered))
        if index is not None:
            return offered[index][1]
        answer = strip_punctuation(fold(text))
        for label, action in offered:
            if answer and answer == strip_punctuation(fold(label)):
                return action
        return None

    def _apply(
        self,
        session: AsyncSession,
        conversation: Conversation,
        identity: IdentityRow,
        ctx: Context,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        if outcome.language is not None:
            conversation.language = outcome.language.value
            conversation.language_pinned = outcome.pin_language or conversation.language_pinned
        elif not conversation.language_pinned:
            conversation.language = ctx.language.value
        conversation.failures = 0 if outcome.solved else conversation.failures + 1
        slots: dict[str, Any]
        if outcome.flow is not None:
            conversation.flow, conversation.flow_step = outcome.flow.name, outcome.flow.step
            slots = dict(outcome.flow.slots)
        elif outcome.end_flow or ctx.conversation.flow is None:
            conversation.flow = conversation.flow_step = None
            slots = {}
        else:
            slots = {k: v for k, v in ctx.conversation.slots.items() if k != OFFERED}
        slots[OFFERED] = [[b.label, b.action] for reply in outcome.replies for b in reply.buttons]
        conversation.slots = slots
        conversation.updated_at = now
        if outcome.findings:
            findings = mask_data(outcome.findings)
            conversation.findings = {**(conversation.findings or {}), **findings}
        if ctx.parse is not None:
            conversation.last_label = ctx.parse.label.value
        if outcome.bind_merchant is not None:
            identity.kind, identity.merchant_id = "merchant", outcome.bind_merchant
        self._apply_stack(conversation, ctx, outcome)
        for order_no in outcome.watch_orders:
            session.add(
                OrderWatch(conversation_id=conversation.id, order_no=order_no, created_at=now)
            )
        for key in outcome.rate_events:
            session.add(RateEvent(key=key, at=now))
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

    @staticmethod
    def _apply_stack(conversation: Conversation, ctx: Context, outcome: Outcome) -> None:
        """Flows a digression suspended, and the request waiting for a binding."""
        stack = list(ctx.conversation.suspended)
        if outcome.suspend is not None:
            slots = {k: v for k, v in outcome.suspend.slots.items() if k != OFFERED}
            frame = {"flow": outcome.suspend.name, "step": outcome.suspend.step, "slots": slots}
            stack = [*stack, frame][-MAX_SUSPENDED:]
        if outcome.resume_suspended is not None and stack:
            stack.pop()
        if outcome.bind_merchant is not None:
            stack = []  # they belonged to the chat's old identity
        if stack != (conversation.suspended or []):
            conversation.suspended = stack
        if outcome.pending is not None and outcome.pending != conversation.pending:
            conversation.pending = outcome.pending or None


def _load_statement(postgresql: bool) -> Any:
    """`Engine._load`'s query, built once: it runs for every message, and building it (with
    its correlated count) cost about as much as running it."""
    recent = (
        select(func.count())
        .select_from(Message)
        .where(
            Message.conversation_id == Conversation.id,
            Message.direction == Direction.IN,
            Message.created_at > bindparam("since"),
        )
        .correlate(Conversation)
        .scalar_subquery()
    )
    query = (
        select(Conversation, IdentityRow, recent)
        .outerjoin(
            IdentityRow,
            and_(
                IdentityRow.channel == bindparam("channel"),
                IdentityRow.user_id == bindparam("user_id"),
            ),
        )
        .where(
            Conversation.channel == bindparam("channel"),
            Conversation.chat_id == bindparam("chat_id"),
        )
    )
    # On PostgreSQL the row is locked against another process handling the same chat.
    return query.with_for_update(of=Conversation) if postgresql else query


_LOAD = {postgresql: _load_statement(postgresql) for postgresql in (False, True)}
_ADVISORY_LOCK = sql_text("SELECT pg_advisory_xact_lock(hashtext(:key))")

_CONVERSATIONS = table_of(Conversation)
# Every column but the key: one written from the object, so a column added to the model later
# is saved like the others instead of silently dropped.
_SAVED = tuple(column.name for column in _CONVERSATIONS.columns if not column.primary_key)
_SAVE = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("_id"))
    .values({name: bindparam(f"_{name}") for name in _SAVED})
)


def _save(conversation: Conversation, session: Session, connection: Connection) -> None:
    """Write the conversation's columns with one UPDATE built once, and leave the object out
    of the session, so the commit's flush has nothing of it to write.

    Every message changes the conversation, and the ORM's flush of that one row (its unit of
    work, the history of each attribute) cost three times the statement that it sends."""
    if not inspect(conversation).modified:
        return
    values = {f"_{name}": getattr(conversation, name) for name in _SAVED}
    connection.execute(_SAVE, {"_id": conversation.id, **values})
    session.expunge(conversation)


def _cleaned(message: IncomingMessage) -> IncomingMessage:
    """The message with what no database stores alike (NUL, other C0 controls, lone
    surrogates) taken out of every text a channel passed on."""
    return replace(
        message,
        chat_id=clean_text(message.chat_id),
        user_id=clean_text(message.user_id),
        message_id=clean_text(message.message_id),
        text=clean_text(message.text),
        action=clean_text(message.action) if message.action is not None else None,
    )


def _password_warning(ctx: Context) -> list[Reply]:
    """A warning to put before the turn's replies when the user typed a password (which the
    transcript keeps masked): never send one in a chat."""
    if not contains_password(ctx.message.text):
        return []
    return [ctx.say("password_warning")]


def _without_human(reply: Reply) -> Reply:
    """The reply without its plain "talk to a person" button (the offer carries its own)."""
    kept = tuple(button for button in reply.buttons if button.action != "human")
    return reply if kept == reply.buttons else replace(reply, buttons=kept)


async def _back_to_bot(ctx: Context) -> Outcome:
    # An open ticket (the message being written) ends with the handoff it belongs to.
    return Outcome([], return_to_bot=True, end_flow=True)


async def _unknown_command(ctx: Context) -> Outcome:
    return Outcome([ctx.say("help", ctx.human_button())])
