"""What a turn decided, as data: the events the decide step returns and the writer applies.

Deciding and writing are apart so that a test can read what a message did (which template
answered, which flow opened, what waits on the stack, whether a person was offered) without a
database, and so that one module (`bot/turn_writer.py`) holds every write of a turn.
Events are in the order they happened; the writer applies them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from bot.context import CANCELLED as CANCELLED

# The conversation's stored shapes live with the view handlers read; named here too, for the
# decide step and the writer.
from bot.context import OFFERED as OFFERED
from bot.context import UNHELPFUL as UNHELPFUL
from bot.context import Findings as Findings
from bot.context import PendingRequest as PendingRequest
from bot.context import Slots as Slots
from bot.context import SuspendedFrame as SuspendedFrame
from bot.types import Label, Language, OutcomeKind, Reply

# -- what is said -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Said:
    """A reply, naming the template it was rendered from (`reply.template`)."""

    reply: Reply

    @property
    def template(self) -> str | None:
        return self.reply.template


# -- the flow stack -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowAt:
    """A flow is open at `step` with `slots`: started, moved on, or asked again."""

    flow: str
    step: str
    slots: Slots = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlowEnded:
    """The open flow is over (done, cancelled, or gone with the identity it belonged to)."""


@dataclass(frozen=True, slots=True)
class FlowSuspended:
    """The open flow waits below a new one, to be offered back when that one ends."""

    frame: SuspendedFrame


@dataclass(frozen=True, slots=True)
class SuspendedTaken:
    """The flow waiting below is taken off the stack: `resumed` (it is open again, a `FlowAt`
    follows) or declined."""

    resumed: bool


@dataclass(frozen=True, slots=True)
class StackCleared:
    """Every suspended flow is dropped: they belonged to the chat's old identity."""


@dataclass(frozen=True, slots=True)
class PendingSet:
    """A request refused for want of a binding is kept (None: forgotten)."""

    request: PendingRequest | None


# -- what the conversation learned -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LanguageSet:
    language: Language
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Understood:
    """What the NLU made of the message: stored with it and as the conversation's last label."""

    label: Label
    score: float


@dataclass(frozen=True, slots=True)
class Unsolved:
    """The bot did not help with this message (a fallback, an outage): counts toward the
    offer of a person. A turn without it resets the count."""


@dataclass(frozen=True, slots=True)
class FindingsNoted:
    """Facts a flow established, for the agent who may take the chat (masked when written)."""

    findings: Findings


@dataclass(frozen=True, slots=True)
class Bound:
    """The chat account is now this merchant's."""

    merchant_id: str


@dataclass(frozen=True, slots=True)
class OrderWatched:
    """Tell the chat when this order's payment status changes."""

    order_no: str


@dataclass(frozen=True, slots=True)
class IncidentAsked:
    """The chat asked about a payment failure caught in these open incidents: it is told
    when each closes (`incident_askers`)."""

    incident_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RateCounted:
    """One attempt toward a limit across chats (`rate_events`)."""

    key: str


@dataclass(frozen=True, slots=True)
class LimitTripped:
    """A limit across chats refused this message (logged and counted, never stored)."""

    limit: str


@dataclass(frozen=True, slots=True)
class FeedbackGiven:
    entry: Label
    helpful: bool


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A question the knowledge did not answer, for the support lead's list."""

    text: str
    language: Language
    best_label: Label | None
    score: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class OutcomeExpected:
    """What the bot did is to be checked afterwards (`outcome_checks`, verified resolution):
    `kind` names the evidence, `subject` what the platform is asked about, `topic` the flow."""

    kind: OutcomeKind
    topic: str
    subject: str


# -- people -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoffOffered:
    """A person is offered (never handed over by the bot itself); `reason` rides the button."""

    reason: str


@dataclass(frozen=True, slots=True)
class HandoffRequested:
    """The user asked for a person: queue, an agent, or a ticket out of hours."""

    reason: str
    priority: int


@dataclass(frozen=True, slots=True)
class TicketLeft:
    text: str


@dataclass(frozen=True, slots=True)
class Rated:
    handoff_id: int
    score: int


@dataclass(frozen=True, slots=True)
class ReturnedToBot:
    """The user goes back to the bot; an open handoff or ticket is cancelled. `from_people`:
    people held the chat, and this is all the message does."""

    from_people: bool = False


@dataclass(frozen=True, slots=True)
class FlowCancelled:
    """Remembered for one message (`CANCELLED`): "no wait, I do want it" takes it back."""

    frame: SuspendedFrame


@dataclass(frozen=True, slots=True)
class MarkedUnhelpful:
    """Remembered for one message (`UNHELPFUL`): asking again then offers a person."""


@dataclass(frozen=True, slots=True)
class PassedToAgent:
    """People hold the chat: the message goes to them, the bot says nothing else."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The chat wrote too often: the message is not stored, one line says so."""


Event: TypeAlias = (
    Said
    | FlowAt
    | FlowEnded
    | FlowSuspended
    | SuspendedTaken
    | StackCleared
    | PendingSet
    | LanguageSet
    | Understood
    | Unsolved
    | FindingsNoted
    | Bound
    | OrderWatched
    | RateCounted
    | IncidentAsked
    | LimitTripped
    | FeedbackGiven
    | Unanswered
    | OutcomeExpected
    | HandoffOffered
    | HandoffRequested
    | TicketLeft
    | Rated
    | ReturnedToBot
    | MarkedUnhelpful
    | FlowCancelled
    | PassedToAgent
    | RateLimited
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The decide step's answer: the events, in order."""

    events: tuple[Event, ...]
    # The events by kind, indexed once: the writer and the engine ask for several kinds.
    _kinds: dict[type[Any], list[Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds: dict[type[Any], list[Any]] = {}
        for event in self.events:
            kinds.setdefault(type(event), []).append(event)
        object.__setattr__(self, "_kinds", kinds)

    @property
    def replies(self) -> list[Reply]:
        return [event.reply for event in self._kinds.get(Said, ())]

    @property
    def templates(self) -> list[str | None]:
        """The template of every reply, in order: what tests read instead of copy."""
        return [reply.template for reply in self.replies]

    def of(self, kind: type[Any]) -> list[Any]:
        """The events of one kind, in order."""
        return list(self._kinds.get(kind, ()))

    @property
    def label(self) -> str | None:
        """What the metrics count the turn under: the NLU's label, or the limit that stopped it."""
        if RateLimited in self._kinds:
            return "rate_limited"
        understood = self._kinds.get(Understood)
        return understood[-1].label.value if understood else None
