"""The channel-agnostic vocabulary of the bot: messages in, replies out, what the NLU says."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


class Label(StrEnum):
    """Every label the NLU can give. The members are fixed because evaluation tools and the
    code use them; beside them, an FAQ entry a supervisor adds in the console
    (`<topic>.<name>` under one of the FAQ topics, decision record 0022) is a label too, made
    on first use by `_missing_` as the enum module's pseudo-members are. It is never iterated
    (`for label in Label` lists the fixed ones) and exists as long as the knowledge has it."""

    ABOUT_OVERVIEW = "about.overview"
    ONBOARDING_REGISTER = "onboarding.register"
    ONBOARDING_DOCUMENTS = "onboarding.documents"
    ONBOARDING_REVIEW = "onboarding.review"
    ONBOARDING_ACTIVATION = "onboarding.activation"
    METHODS_QR = "methods.qr"
    METHODS_LINK = "methods.link"
    METHODS_APP = "methods.app"
    METHODS_CHOOSE = "methods.choose"
    COLLECT_FLOW = "collect.flow"
    COLLECT_NOTIFICATION = "collect.notification"
    COLLECT_RECORDS = "collect.records"
    WITHDRAW_HOW = "withdraw.how"
    FEES_RATES = "fees.rates"
    FEES_PROMOTIONS = "fees.promotions"
    FEES_PASS_ON = "fees.pass_on"
    SECURITY_ENCRYPTION = "security.encryption"
    SECURITY_RISK_CONTROL = "security.risk_control"
    SECURITY_TWO_FACTOR = "security.two_factor"
    SUPPORT_CONTACT = "support.contact"
    TIPS_TRAINING = "tips.training"
    TIPS_REPORTS = "tips.reports"
    DIAGNOSE_PAYMENT_FAILURE = "diagnose.payment_failure"
    DIAGNOSE_LOGIN = "diagnose.login"
    DIAGNOSE_DATA_SYNC = "diagnose.data_sync"
    STATUS_PAYMENT = "status.payment"
    STATUS_WITHDRAWAL = "status.withdrawal"
    ACTION_PAYMENT_LINK = "action.payment_link"
    ACTION_PASSWORD_RESET = "action.password_reset"
    HANDOFF_HUMAN = "handoff.human"
    CHITCHAT_GREET = "chitchat.greet"
    CHITCHAT_THANKS = "chitchat.thanks"
    CHITCHAT_BYE = "chitchat.bye"
    OUT_OF_SCOPE = "out_of_scope"

    @classmethod
    def _missing_(cls, value: object) -> Label | None:
        if not isinstance(value, str) or not _ENTRY_ID.fullmatch(value):
            return None
        if value.split(".")[0] not in FAQ_TOPICS:
            return None
        member = str.__new__(cls, value)
        member._name_ = value.upper().replace(".", "_")
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]

    @property
    def is_faq(self) -> bool:
        return self.value.split(".")[0] in FAQ_TOPICS


# The topics of the FAQ entries (the part of an id before the dot), and the form of an id.
FAQ_TOPICS: frozenset[str] = frozenset(
    {"about", "onboarding", "methods", "collect", "withdraw", "fees", "security", "support", "tips"}
)
_ENTRY_ID = re.compile(r"[a-z]+\.[a-z][a-z0-9_]{1,39}")


# Greetings, thanks and goodbyes: said, never asked.
CHITCHAT_LABELS: frozenset[Label] = frozenset(
    {Label.CHITCHAT_GREET, Label.CHITCHAT_THANKS, Label.CHITCHAT_BYE}
)
# The fixed FAQ entries: every fresh install's knowledge has them (`kb check`).
FAQ_LABELS: frozenset[Label] = frozenset(label for label in Label if label.is_faq)
# A thanks and a goodbye: the two ways of ending a chat kindly (a label or its value: Label is
# a StrEnum, so the stored `last_label` string is found in it too).
CLOSING_LABELS: frozenset[Label] = frozenset({Label.CHITCHAT_THANKS, Label.CHITCHAT_BYE})


class ConversationState(StrEnum):
    """Who answers a chat: the bot, nobody yet (waiting in the queue), or an agent."""

    BOT = "bot"
    QUEUED = "queued"
    AGENT = "agent"


class HandoffStatus(StrEnum):
    """A hand-over to people. A queued one waits for an agent, an assigned one has one; out of
    hours the user is first asked for a ticket's text (`TICKET_PENDING`), then the ticket
    waits for an answer (`TICKET`). Both kinds end resolved, or returned when the user went
    back to the bot first."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    TICKET_PENDING = "ticket_pending"
    TICKET = "ticket"
    RESOLVED = "resolved"
    RETURNED = "returned"


class OutcomeKind(StrEnum):
    """What the bot did that is checked afterwards (`outcome_checks`): a payment link made, a
    password reset started, an order re-synced, a payment failure explained, an FAQ answered."""

    PAYMENT_LINK = "payment_link"
    PASSWORD_RESET = "password_reset"
    RESYNC = "resync"
    PAYMENT_FAILURE = "payment_failure"
    FAQ = "faq"


class OutcomeStatus(StrEnum):
    """A check waiting for its evidence or its deadline (`PENDING`), the evidence found
    (`VERIFIED`), or the deadline passed without it (`NOT_VERIFIED`)."""

    PENDING = "pending"
    VERIFIED = "verified"
    NOT_VERIFIED = "not_verified"


class OutboxStatus(StrEnum):
    """A reply waiting to go out (`PENDING`), leased to a process sending it (`SENDING`), taken
    by the channel (`SENT`), or refused for good (`FAILED`)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class IncidentStatus(StrEnum):
    """A platform-wide payment problem: open while it lasts, closed once it is over."""

    OPEN = "open"
    CLOSED = "closed"


class IncidentKind(StrEnum):
    """What an incident is about: one failure code, one channel, or what a supervisor said."""

    FAILURE_CODE = "failure_code"
    CHANNEL = "channel"
    MANUAL = "manual"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class SenderKind(StrEnum):
    USER = "user"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One thing a user did in a chat: typed `text`, or pressed a button (`action`).

    `client` is who sent it as far as limits across chats count: the web chat's peer address,
    the Telegram user; None where there is no such thing (the terminal)."""

    channel: str
    chat_id: str
    user_id: str
    message_id: str
    text: str = ""
    action: str | None = None
    received_at: datetime | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    action: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says; each channel renders buttons and images in its own way."""

    text: str
    buttons: tuple[Button, ...] = ()
    image: bytes | None = None
    # The template it was rendered from, and the one of a line put before it (an
    # acknowledgement): what tests and the turn's decisions name, never sent.
    template: str | None = field(default=None, compare=False)
    preface: str | None = field(default=None, compare=False)

    def prefaced(self, line: Reply) -> Reply:
        """This reply with `line` said first, in the same message."""
        text = f"{line.text}\n{self.text}" if self.text and line.text else self.text or line.text
        return Reply(text, self.buttons, self.image, template=self.template, preface=line.template)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape channels and scripts share; an image travels as a PNG data URI."""
        image = None
        if self.image is not None:
            image = "data:image/png;base64," + base64.b64encode(self.image).decode("ascii")
        return {
            "text": self.text,
            "buttons": [{"label": b.label, "action": b.action} for b in self.buttons],
            "image": image,
        }


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Alternative:
    label: Label
    score: float


@dataclass(frozen=True, slots=True)
class Parse:
    """What the NLU says about a text: the label it chose, how sure, and what else it considered."""

    label: Label
    score: float
    language: Language
    entities: tuple[Entity, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    coverage: float = 1.0
    matched: str | None = None
    reason: str | None = None

    def entity(self, kind: str) -> str | None:
        return next((e.value for e in self.entities if e.kind == kind), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label.value,
            "score": round(self.score, 4),
            "language": self.language.value,
            "entities": [
                {"kind": e.kind, "value": e.value, "start": e.start, "end": e.end}
                for e in self.entities
            ],
            "alternatives": [
                {"label": a.label.value, "score": round(a.score, 4)} for a in self.alternatives
            ],
            "coverage": round(self.coverage, 4),
            "matched": self.matched,
            "reason": self.reason,
        }
