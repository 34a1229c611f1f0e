"""What a handler receives (`Context`) and what it gives back (`Outcome`).

Handlers do not write to the database or send anything: they return an Outcome, which the
decide step (`bot/dialogue/turn.py`) turns into typed events in one place, and the writer
(`bot/turn_writer.py`) applies in the message's one transaction. Reads go through the context
(the platform gateway, the rate-limit counter), so a handler stays a plain async function of
its input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, TypeAlias, TypedDict
from zoneinfo import ZoneInfo

from bot.faq.knowledge import Knowledge
from bot.incidents.store import OpenIncident
from bot.nlu.entities import extract_entities
from bot.nlu.normalize import fold
from bot.platform.gateway import PlatformGateway
from bot.render import Renderer
from bot.settings import Settings
from bot.types import Button, Entity, IncomingMessage, Label, Language, Parse, Reply

# The buttons a turn offered, as stored in the conversation's slots under `OFFERED`: a typed
# answer (a number, "yes", an option's name) and Telegram's "#<index>" actions are read
# against them on the next message.
OFFERED = "_offered"
# "Not helpful" was pressed: asking again on the next message offers a person.
UNHELPFUL = "_unhelpful"
# A flow was cancelled by the last message (its frame): taking the cancel back restores it.
CANCELLED = "_cancelled"
# The last reply asked for a bind code (a wrong one, or how to find one): a code sent next
# with a few words ("sorry typo, 482913") binds.
ASKED_CODE = "_asked_code"
# What the last reply was about (`Subject`, from its findings): a follow-up with no number of
# its own ("为什么失败", "so should i pay again?") is about that order or withdrawal.
SUBJECT = "_subject"


class Subject(TypedDict, total=False):
    """The one order, withdrawal or login the last reply was about; `verified`: a customer
    proved the order in that reply's flow (so the follow-up does not ask for the proof again)."""

    order_no: str
    withdrawal: str
    login: str
    verified: bool


class SyncLine(TypedDict):
    """One order a re-sync looked at: its number and amount, the platform's status before and
    after, and the channel's."""

    order_no: str
    amount: str
    before: str
    after: str
    channel: str


class Findings(TypedDict, total=False):
    """What a turn established from the platform's data, by the flow that looked: kept on the
    conversation (merged turn by turn, masked) for the agent's context card, read for the
    checks made afterwards (`bot/outcomes/expected.py`) and for the next message's subject.

    An order (`payment_failure`, `payment_status`): `order_no`, `status`, `amount`,
    `failure_code`, `verified` (a customer proved it), `incident` (a known incident's id). A
    withdrawal: `withdrawal`, `status`, `overdue`, `failure_reason`. A login: `login`,
    `account_status`, `failed_attempts`, `locked_until`, `merchant_status`. A link:
    `payment_link`, `amount`. A reset: `password_reset_for`. A re-sync: `checked`, `resynced`,
    `still_different`."""

    order_no: str
    status: str
    amount: str
    failure_code: str | None
    verified: bool
    incident: int
    withdrawal: str
    overdue: bool
    failure_reason: str | None
    login: str
    account_status: str
    failed_attempts: int
    locked_until: str | None
    merchant_status: str | None
    payment_link: str
    password_reset_for: str
    checked: int
    resynced: list[SyncLine]
    still_different: list[SyncLine]


Slots: TypeAlias = dict[str, Any]  # a flow's own values, by the names its steps give them


class SuspendedFrame(TypedDict):
    """A flow a digression suspended, on `conversations.suspended` (newest last)."""

    flow: str
    step: str
    slots: Slots


class PendingRequest(TypedDict):
    """A request refused for want of a binding (`conversations.pending`), taken up after one."""

    label: str
    text: str


@dataclass(slots=True)
class ConversationView:
    """A snapshot of the conversation as the handler sees it."""

    id: int
    channel: str
    chat_id: str
    state: str
    language: Language
    language_pinned: bool
    flow: str | None
    flow_step: str | None
    slots: Slots
    failures: int
    last_label: str | None
    suspended: list[SuspendedFrame] = field(default_factory=list)
    pending: PendingRequest | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is writing: an anonymous customer, or a merchant bound to this chat."""

    kind: str = "customer"
    merchant_id: str | None = None

    @property
    def is_merchant(self) -> bool:
        return self.kind == "merchant" and self.merchant_id is not None


@dataclass(frozen=True, slots=True)
class FlowState:
    """An open multi-turn flow: which one, the step waiting for input, the slots filled so far."""

    name: str
    step: str
    slots: Slots = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    """What should happen after a message; the engine stores and sends it."""

    replies: list[Reply] = field(default_factory=list)
    solved: bool = True
    language: Language | None = None
    pin_language: bool = False
    flow: FlowState | None = None
    end_flow: bool = False
    feedback: tuple[Label, bool] | None = None
    # The FAQ entry this turn answered with: checked afterwards for a repeat contact.
    answered: Label | None = None
    unanswered: bool = False
    findings: Findings = field(default_factory=lambda: Findings())
    bind_merchant: str | None = None
    rate_events: list[str] = field(default_factory=list)
    # Limits across chats this message tripped (the engine logs a warning and counts them).
    tripped: list[str] = field(default_factory=list)
    watch_orders: list[str] = field(default_factory=list)
    handoff: str | None = None  # the reason, when the chat should go to people
    rating: tuple[int, int] | None = None
    ticket_text: str | None = None
    return_to_bot: bool = False
    # The dialogue policy's part: the open flow waits below the new one (a digression that
    # started another flow), or the flow waiting below is taken up again (True) or dropped.
    suspend: FlowState | None = None
    resume_suspended: bool | None = None
    # The open flow, cancelled by this message: kept for one message, to be taken back.
    cancelled: FlowState | None = None
    # A request refused for want of a binding, kept to be taken up after one; `forget_pending`:
    # the one kept is done with (the chat bound).
    pending: PendingRequest | None = None
    forget_pending: bool = False
    # Open incidents the user asked about a payment failure in (told when each closes).
    incidents_asked: list[int] = field(default_factory=list)


RecentCounter = Callable[[str, timedelta], Awaitable[int]]


@dataclass
class Context:
    message: IncomingMessage
    conversation: ConversationView
    language: Language
    knowledge: Knowledge
    renderer: Renderer
    settings: Settings
    gateway: PlatformGateway
    identity: Identity
    now: datetime
    recent: RecentCounter
    parse: Parse | None = None
    argument: str = ""
    # The platform-wide payment problems open now (bot/incidents/), and whether this message
    # starts the chat (its first, or the first after a long pause): then it hears of them.
    incidents: tuple[OpenIncident, ...] = ()
    chat_started: bool = False

    def saying(self, text: str, identity: Identity | None = None) -> Context:
        """This context as if the user had typed `text` (as `identity`, when given): a button
        that stands for a request, or a request taken up again after a binding."""
        message = replace(self.message, text=text, action=None)
        return replace(
            self, message=message, parse=None, argument="", identity=identity or self.identity
        )

    @cached_property
    def entities(self) -> tuple[Entity, ...]:
        """Entities of the typed text, whether or not the NLU ran on it."""
        if self.parse is not None:
            return self.parse.entities
        return extract_entities(fold(self.message.text))

    def entity(self, kind: str) -> str | None:
        return next((e.value for e in self.entities if e.kind == kind), None)

    @property
    def inbound_key(self) -> str:
        """The inbound message as an idempotency key for the platform's writes (a payment
        link): the same for a turn run again, different for every message; no chat id in
        the clear."""
        message = self.message
        named = f"{message.channel}\x1f{message.chat_id}\x1f{message.message_id}"
        return "msg-" + hashlib.sha256(named.encode()).hexdigest()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def local(self, moment: datetime) -> str:
        """A time in the user's time zone, as people read it."""
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def say(
        self, template: str, *buttons: Button, image: bytes | None = None, **values: Any
    ) -> Reply:
        return self.renderer.reply(self.language, template, *buttons, image=image, **values)

    def ui(self, key: str, **values: Any) -> str:
        return self.renderer.ui(self.language, key, **values)

    def incident_line(self, template: str, incident: OpenIncident) -> Reply:
        """One line about an open incident (`incidents/notice`, `incidents/diagnosis`)."""
        return self.say(
            template,
            kind=incident.kind.value,
            key=incident.key,
            message=incident.message(self.language),
            merchant=self.identity.is_merchant,
        )

    def human_button(self) -> Button:
        return Button(self.ui("human"), "human")

    def topic_button(self, label: Label) -> Button:
        """A button that asks about `label`: an FAQ entry's title, or a flow's name."""
        entry = self.knowledge.entries.get(label)
        if entry is not None:
            return Button(entry.title[self.language], f"faq:{label.value}")
        return Button(self.ui(label.value), f"intent:{label.value}")
