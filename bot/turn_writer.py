"""The turn's SQL: the claim, the one read, and the one place a turn's events are written.

A turn reads once (`load`: the conversation, locked on PostgreSQL, the writer's identity and the
chat's messages in the rate window, in one statement built once), decides without writing
(`bot/dialogue/turn.py`), and is written here (`TurnWriter.write`): the conversation's columns
from the events, the rows they add (rate events, watched orders, feedback, unanswered
questions), the people side (handoffs, tickets, ratings) and, in one hop into SQLAlchemy's
synchronous layer, the transcript, the outbox rows and the conversation's UPDATE
(`bot/delivery.py`'s `record_turn` with `_save`). The statements on this path are built once.

Over 400 lines on purpose: it is the one module that owns a turn's SQL (decision 0003/0012),
so every statement on that path is here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, inspect, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.context import Context, ConversationView, RecentCounter
from bot.delivery import LEASE, Inbound, record_turn
from bot.dialogue.events import (
    OFFERED,
    Bound,
    Decision,
    FeedbackGiven,
    FindingsNoted,
    HandoffRequested,
    IncidentAsked,
    OrderWatched,
    OutcomeExpected,
    PassedToAgent,
    RateCounted,
    Rated,
    RateLimited,
    ReturnedToBot,
    TicketLeft,
    Unanswered,
    Understood,
)
from bot.dialogue.turn import view_after
from bot.escalation.service import HandoffService
from bot.incidents.store import ANY_OPEN, OpenIncident, note_askers, open_incidents
from bot.outcomes.expected import WINDOWS
from bot.privacy import mask_data, mask_pii
from bot.storage.models import (
    Conversation,
    FaqFeedback,
    Message,
    OrderWatch,
    OutboxItem,
    OutcomeCheck,
    ProcessedInbound,
    RateEvent,
    UnansweredQuestion,
    table_of,
)
from bot.storage.models import Identity as IdentityRow
from bot.storage.unit import add_new, inbound_claimed, insert_once
from bot.types import Direction, IncomingMessage, Language, Reply

RATE_WINDOW = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Loaded:
    """What the read step found: the conversation, the writer's identity if known, and the
    messages the chat sent within the rate window."""

    conversation: Conversation
    identity: IdentityRow | None
    recent_messages: int
    # The open incidents (bot/incidents/), read in the same transaction.
    incidents: tuple[OpenIncident, ...] = ()
    # The conversation was created by this message.
    created: bool = False


async def claim(session: AsyncSession, message: IncomingMessage) -> bool:
    """Take the message's inbound id; False for a redelivery. A Telegram update taken by the
    webhook was claimed by its inbound row, in this same transaction."""
    if inbound_claimed.get():
        return True
    taken = await insert_once(
        session, ProcessedInbound, channel=message.channel, message_id=message.message_id
    )
    return taken is not None


async def load(
    session: AsyncSession,
    message: IncomingMessage,
    now: datetime,
    language: Language,
    rate_limit: int,
) -> Loaded:
    """In one statement: the chat's conversation (locked on PostgreSQL against another
    process), the writer's identity if known, the messages the chat sent within the rate
    window, and whether an incident is open (then a second read gets them). A chat's first
    message creates its conversation (in `language`), and an account's first message its
    identity, unless the chat is over `rate_limit`."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    parameters = {
        "channel": message.channel,
        "chat_id": message.chat_id,
        "user_id": message.user_id,
        "since": now - RATE_WINDOW,
    }
    row = (await session.execute(_LOAD[postgresql], parameters)).first()
    any_incident = True  # a new conversation has not asked yet
    if row is not None:
        loaded = Loaded(row[0], row[1], int(row[2] or 0))
        any_incident = bool(row[3])
    else:
        conversation = await new_conversation(
            session, message.channel, message.chat_id, now, language
        )
        loaded = Loaded(conversation, None, 0, created=True)
    if loaded.identity is None and loaded.recent_messages < rate_limit:
        loaded.identity = await identity_of(session, message.channel, message.user_id)
    if any_incident and loaded.recent_messages < rate_limit:
        loaded.incidents = await open_incidents(session)
    return loaded


async def new_conversation(
    session: AsyncSession, channel: str, chat_id: str, now: datetime, language: Language
) -> Conversation:
    conversation = Conversation(
        channel=channel,
        chat_id=chat_id,
        language=language.value,
        slots={},
        findings={},
        suspended=[],
        created_at=now,
        updated_at=now,
    )
    await add_new(session, conversation)
    return conversation


async def identity_of(session: AsyncSession, channel: str, user_id: str) -> IdentityRow:
    """The chat account's identity; an account seen for the first time is a customer."""
    identity = IdentityRow(channel=channel, user_id=user_id, kind="customer")
    if await add_new(session, identity, unless_taken=True):
        return identity
    known = await session.scalar(
        select(IdentityRow).where(IdentityRow.channel == channel, IdentityRow.user_id == user_id)
    )
    assert known is not None  # the key was taken, in this transaction's view
    return known


def recent_counter(session: AsyncSession, now: datetime) -> RecentCounter:
    """How many attempts a limit across chats saw within a window (`rate_events`)."""
    postgresql = session.get_bind().dialect.name == "postgresql"

    async def recent(key: str, window: timedelta) -> int:
        if postgresql:
            # Counting and then adding an attempt must not interleave with another turn doing
            # the same, or a limit across chats lets every turn in flight through. Held to the
            # end of the turn; a turn takes its keys in one fixed order.
            await session.execute(_ADVISORY_LOCK, {"key": f"rate:{key}"})
        count = await session.scalar(_RECENT, {"key": key, "since": now - window})
        return int(count or 0)

    return recent


@dataclass(slots=True)
class _Transcript:
    """What one message writes to the transcript and the outbox, in its transaction: the
    user's message and the replies together in the end, unless something must come between."""

    session: AsyncSession
    conversation: Conversation
    inbound: Inbound | None
    queue: bool
    # The replies' outbox rows are written leased to this process (which sends them itself).
    leased: bool
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


class TurnWriter:
    """Applies a turn's `Decision`; `handoffs`: the people side, when there is one."""

    def __init__(self, handoffs: HandoffService | None) -> None:
        self.handoffs = handoffs

    async def write(
        self,
        session: AsyncSession,
        loaded: Loaded,
        ctx: Context,
        decision: Decision,
        *,
        now: datetime,
        queue: bool,
        leased: bool,
    ) -> tuple[list[Reply], list[OutboxItem]]:
        """Write the turn; returns every reply said (the people side's too) and the outbox
        rows to send once the transaction commits."""
        conversation, message = loaded.conversation, ctx.message
        replies = decision.replies
        first = decision.events[0] if decision.events else None
        if isinstance(first, RateLimited):
            # Not stored: a flood does not fill the transcript.
            transcript = _Transcript(session, conversation, None, queue, leased)
            await transcript.say(replies)
            return replies, transcript.queued
        identity = loaded.identity
        assert identity is not None  # `load` found or made it, the chat being under its limit
        if conversation.identity_id != identity.id:
            conversation.identity_id = identity.id
        inbound = Inbound(
            text=message.text,
            action=message.action[:128] if message.action else None,
            channel_message_id=message.message_id,
        )
        understood = decision.of(Understood)
        if understood:
            inbound.label, inbound.score = understood[-1].label.value, understood[-1].score
        transcript = _Transcript(session, conversation, inbound, queue, leased)
        if self.handoffs is not None and isinstance(first, PassedToAgent):
            return await self._held(transcript, replies), transcript.queued
        if self.handoffs is not None and isinstance(first, ReturnedToBot) and first.from_people:
            return await self._left_people(transcript, ctx), transcript.queued
        outcomes = self._apply(session, conversation, identity, ctx.conversation, decision, now)
        if outcomes:
            with session.no_autoflush:  # the conversation is written by `_save`, as below
                await session.execute(_ADD_OUTCOMES, outcomes)
        for asked in decision.of(IncidentAsked):
            await note_askers(session, asked.incident_ids, conversation.id, now)
        if self.handoffs is not None:
            replies = [*replies, *await self._people(transcript, ctx, decision)]
        if len(replies) > len(decision.replies):
            # What the people side said offers buttons too (the ticket's, the queue's).
            offered = [[b.label, b.action] for reply in replies for b in reply.buttons]
            conversation.slots = {**(conversation.slots or {}), OFFERED: offered}
        with session.no_autoflush:  # the conversation is written by `_save`, with the replies
            await transcript.say(replies, last=True)
        return replies, transcript.queued

    async def _held(self, transcript: _Transcript, replies: list[Reply]) -> list[Reply]:
        """People hold the chat: the message goes to them (the console shows it live)."""
        assert self.handoffs is not None
        session, conversation = transcript.session, transcript.conversation
        message_id = await transcript.user_first()
        await self.handoffs.on_user_message(session, conversation, message_id)
        if replies:
            await transcript.say(replies)
        return replies

    async def _left_people(self, transcript: _Transcript, ctx: Context) -> list[Reply]:
        """The user goes back to the bot from the queue or an agent."""
        assert self.handoffs is not None
        session, conversation = transcript.session, transcript.conversation
        await transcript.user_first()
        had = await self.handoffs.cancel(session, conversation)
        back = [ctx.say("handoff/returned", had_handoff=had)]
        await transcript.say(back)
        return back

    @staticmethod
    def _apply(
        session: AsyncSession,
        conversation: Conversation,
        identity: IdentityRow,
        view: ConversationView,
        decision: Decision,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """The conversation's columns and the rows the events add; the outcome checks are
        returned, for one built-once insert (an ORM object would cost a flush per FAQ answer,
        the most common turn)."""
        outcomes: list[dict[str, Any]] = []
        after = view_after(view, decision)
        conversation.flow, conversation.flow_step = after.flow, after.flow_step
        conversation.slots = after.slots
        conversation.language = after.language.value
        conversation.language_pinned = after.language_pinned
        conversation.failures = after.failures
        conversation.last_label = after.last_label
        conversation.updated_at = now
        if after.suspended != (conversation.suspended or []):
            conversation.suspended = [dict(frame) for frame in after.suspended]
        if after.pending != conversation.pending:
            conversation.pending = dict(after.pending) if after.pending else None
        for event in decision.events:
            if isinstance(event, FindingsNoted):
                findings = mask_data(dict(event.findings))
                conversation.findings = {**(conversation.findings or {}), **findings}
            elif isinstance(event, Bound):
                identity.kind, identity.merchant_id = "merchant", event.merchant_id
            elif isinstance(event, OrderWatched):
                session.add(
                    OrderWatch(
                        conversation_id=conversation.id, order_no=event.order_no, created_at=now
                    )
                )
            elif isinstance(event, RateCounted):
                session.add(RateEvent(key=event.key, at=now))
            elif isinstance(event, FeedbackGiven):
                session.add(
                    FaqFeedback(
                        conversation_id=conversation.id,
                        entry_id=event.entry.value,
                        helpful=event.helpful,
                    )
                )
            elif isinstance(event, OutcomeExpected):
                outcomes.append(
                    {
                        "conversation_id": conversation.id,
                        "kind": event.kind,
                        "topic": event.topic,
                        "subject": event.subject,
                        "started_at": now,
                        "due_at": now + WINDOWS[event.kind],
                    }
                )
            elif isinstance(event, Unanswered):
                session.add(
                    UnansweredQuestion(
                        conversation_id=conversation.id,
                        text=mask_pii(event.text),
                        language=event.language.value,
                        best_label=event.best_label.value if event.best_label else None,
                        score=event.score,
                        reason=event.reason,
                    )
                )
        return outcomes

    async def _people(
        self, transcript: _Transcript, ctx: Context, decision: Decision
    ) -> list[Reply]:
        """Handoffs, tickets, ratings and returns, in this transaction; returns what the people
        side says (an agent took the chat, a place in the queue). It comes after the user's
        message, which is therefore stored first."""
        assert self.handoffs is not None
        session, conversation = transcript.session, transcript.conversation
        said: list[Reply] = []
        for event in decision.events:
            if isinstance(event, TicketLeft):
                await transcript.user_first()
                await self.handoffs.leave_ticket(session, conversation, event.text)
            elif isinstance(event, Rated):
                await transcript.user_first()
                ok = await self.handoffs.rate(session, conversation, event.handoff_id, event.score)
                said.append(ctx.say("handoff/rated", ok=ok))
            elif isinstance(event, ReturnedToBot):
                await transcript.user_first()
                had = await self.handoffs.cancel(session, conversation)
                said.append(ctx.say("handoff/returned", had_handoff=had))
            elif isinstance(event, HandoffRequested):
                await transcript.user_first()
                said += await self.handoffs.request(
                    session,
                    conversation,
                    reason=event.reason,
                    priority=event.priority,
                    findings=dict(conversation.findings or {}),
                )
                conversation.failures = 0
        return said


def _load_statement(postgresql: bool) -> Any:
    """`load`'s query, built once: it runs for every message, and building it (with its
    correlated count) cost about as much as running it."""
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
        select(Conversation, IdentityRow, recent, ANY_OPEN)
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
_RECENT = (
    select(func.count())
    .select_from(RateEvent)
    .where(RateEvent.key == bindparam("key"), RateEvent.at > bindparam("since"))
)

_CONVERSATIONS = table_of(Conversation)
_ADD_OUTCOMES = insert(table_of(OutcomeCheck))
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
