"""The decide step of a turn: from what was read to the events the writer applies.

`Decider.decide` takes the context the read step built (conversation view, identity, parse to
come) and returns a `Decision`: the events of the turn, in order. It writes nothing; platform
calls happen here (the embedded platform inside the turn's transaction, a remote one outside
it, see `bot/platform/outside.py`). Handlers and flows return an `Outcome`; `_events` is the
one place an Outcome becomes events.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from itertools import chain

from bot.context import ASKED_CODE, SUBJECT, Context, ConversationView, Outcome, Subject
from bot.diagnostics.registry import FLOWS
from bot.dialogue.events import (
    CANCELLED,
    OFFERED,
    UNHELPFUL,
    Bound,
    Decision,
    Event,
    FeedbackGiven,
    FindingsNoted,
    FlowAt,
    FlowCancelled,
    FlowEnded,
    FlowSuspended,
    HandoffOffered,
    HandoffRequested,
    IncidentAsked,
    LanguageSet,
    LimitTripped,
    MarkedUnhelpful,
    OrderWatched,
    OutcomeExpected,
    PassedToAgent,
    PendingSet,
    RateCounted,
    Rated,
    RateLimited,
    ReturnedToBot,
    Said,
    StackCleared,
    SuspendedFrame,
    SuspendedTaken,
    TicketLeft,
    Unanswered,
    Understood,
    Unsolved,
)
from bot.dialogue.routes import Routes
from bot.escalation.service import priority_of
from bot.faq.knowledge import Knowledge
from bot.handlers.tone import acknowledgement
from bot.nlu.matcher import Matcher
from bot.nlu.words import BACK_IN_PASSING
from bot.outcomes.expected import expected_from
from bot.platform.gateway import PlatformRejected, PlatformUnavailable
from bot.privacy import contains_password
from bot.routing import Router
from bot.types import CHITCHAT_LABELS, Button, ConversationState, Reply

log = logging.getLogger(__name__)

# Flows waiting below the open one; a deeper digression forgets the oldest.
MAX_SUSPENDED = 3
# Unsolved messages in a row after which a person is offered.
OFFER_AFTER = 2


class Decider:
    """`people`: an escalation service takes handoffs (without one, no person is offered)."""

    def __init__(
        self,
        *,
        knowledge: Knowledge,
        matcher: Matcher,
        router: Router,
        people: bool,
    ) -> None:
        self.knowledge = knowledge
        self.people = people
        self.routes = Routes(knowledge, matcher, router, people=people)

    async def decide(self, ctx: Context, recent_messages: int) -> Decision:
        """The turn's events; `recent_messages`: what the chat sent within the rate window."""
        view = ctx.conversation
        if recent_messages >= ctx.settings.rate_limit_per_minute:
            return Decision((RateLimited(), Said(ctx.say("rate_limited"))))
        if view.state in (ConversationState.QUEUED, ConversationState.AGENT) and self.people:
            # Said in passing too: "nvm back to the bot, i figured it out", "never mind, I'll
            # keep asking the bot".
            words = self.knowledge.words
            if words.back_to_bot(ctx.message.text, in_passing=True) or words.contains(
                "continue", ctx.message.text, shortest=BACK_IN_PASSING
            ):
                return Decision((ReturnedToBot(from_people=True),))
            # People hold the chat: the bot stays silent and passes the message on, but for a
            # typed password, which it warns about.
            return Decision((PassedToAgent(), *_password_warning(ctx)))
        try:
            outcome = await self.routes.route(ctx)
        except PlatformUnavailable as exc:
            log.warning("platform unavailable in %s: %s", view.flow or "routing", exc)
            outcome = _refused(ctx, "platform_unavailable")
        except PlatformRejected as exc:
            # Every refusal the platform gives is translated here, once, for every flow.
            log.warning("platform refused in %s: %s", view.flow or "routing", exc)
            outcome = _refused(ctx, "platform_rejected")
        outcome = await self.routes.after_binding(ctx, outcome)
        acknowledged = acknowledgement(ctx)
        if acknowledged is not None:
            # In the same reply, before the answer: one message, not an extra bubble.
            first = outcome.replies[0] if outcome.replies else None
            if first is not None and first.image is None:
                outcome.replies[0] = first.prefaced(acknowledged)
            else:
                outcome.replies.insert(0, acknowledged)
        incident = _incident_notice(ctx, outcome)
        if incident is not None:
            # A merchant starting a chat hears first, in the same message, of a known problem.
            first = outcome.replies[0] if outcome.replies else None
            if first is not None and first.image is None:
                outcome.replies[0] = first.prefaced(incident)
            else:
                outcome.replies.insert(0, incident)
        return Decision(tuple(self._events(ctx, outcome)))

    def _events(self, ctx: Context, outcome: Outcome) -> list[Event]:
        """The Outcome of the handlers as events, with what the turn adds around it: the offer
        to go back to a suspended flow, the offer of a person, the password warning."""
        view = ctx.conversation
        events: list[Event] = []
        if outcome.language is not None:
            pinned = outcome.pin_language or view.language_pinned
            if (outcome.language, pinned) != (view.language, view.language_pinned):
                events.append(LanguageSet(outcome.language, pinned))
        elif not view.language_pinned and ctx.language != view.language:
            events.append(LanguageSet(ctx.language))
        if ctx.parse is not None:
            events.append(Understood(ctx.parse.label, ctx.parse.score))
        if not outcome.solved:
            events.append(Unsolved())
        if outcome.flow is not None:
            state = outcome.flow
            events.append(FlowAt(state.name, state.step, dict(state.slots)))
        elif outcome.end_flow and view.flow is not None:
            events.append(FlowEnded())
        if outcome.findings:
            events.append(FindingsNoted(outcome.findings.copy()))
        events += [
            OutcomeExpected(e.kind, e.topic, e.subject)
            for e in expected_from(outcome.findings, outcome.answered)
        ]
        if outcome.bind_merchant is not None:
            events.append(Bound(outcome.bind_merchant))
        events += _stack_events(view, outcome)
        if outcome.pending is not None or outcome.forget_pending:
            events.append(PendingSet(None if outcome.forget_pending else outcome.pending))
        events += [OrderWatched(order_no) for order_no in outcome.watch_orders]
        events += [RateCounted(key) for key in outcome.rate_events]
        if outcome.incidents_asked:
            events.append(IncidentAsked(tuple(outcome.incidents_asked)))
        events += [LimitTripped(limit) for limit in outcome.tripped]
        if outcome.feedback is not None:
            events.append(FeedbackGiven(*outcome.feedback))
        if outcome.unanswered and ctx.parse is not None:
            parse = ctx.parse
            best = parse.alternatives[0].label if parse.alternatives else None
            events.append(
                Unanswered(ctx.message.text, ctx.language, best, parse.score, parse.reason)
            )
        replies = list(outcome.replies)
        offer = _offer_resume(ctx, outcome)
        if offer is not None:
            replies.append(offer)
        if self.people:
            replies, people = self._people(ctx, outcome, replies)
            events += people
        said = [Said(reply) for reply in [*_password_warning_replies(ctx), *replies]]
        return [*said, *events]

    def _people(
        self, ctx: Context, outcome: Outcome, replies: list[Reply]
    ) -> tuple[list[Reply], list[Event]]:
        """Tickets, ratings, returns, handoffs: what involves people. Their writes (and what
        the people side says back) happen in the writer; the offer of a person is decided
        here."""
        view = ctx.conversation
        events: list[Event] = []
        if outcome.ticket_text is not None:
            events.append(TicketLeft(outcome.ticket_text))
        if outcome.rating is not None:
            events.append(Rated(*outcome.rating))
        if outcome.return_to_bot:
            events.append(ReturnedToBot())
        failures = 0 if outcome.solved else view.failures + 1
        asked_again = ctx.parse is not None and ctx.parse.label not in CHITCHAT_LABELS
        # "不是 就那个啊" right after an answer, and understood by nothing: the answer missed as
        # well, which makes two misses in a row.
        denied = (
            not outcome.solved
            and view.flow is None
            and ctx.knowledge.words.leads("no", ctx.message.text)
        )
        unsolved = not outcome.solved and (failures >= OFFER_AFTER or denied)
        # After "not helpful", asking again gets a person offered beside the answer; a flow
        # the next message starts is the user moving on, not asking again.
        unhelpful = bool(view.slots.get(UNHELPFUL)) and asked_again and outcome.flow is None
        if outcome.handoff is None and (unsolved or unhelpful):
            # The bot offers a person; it never hands a chat over by itself. The button keeps
            # the reason, so the agent who takes the chat knows why it came.
            why = "unhelpful_answer" if unhelpful else "bot_failed"
            replies = [_without_human(reply) for reply in replies]
            replies.append(
                ctx.say(
                    "dialogue/offer_handoff",
                    Button(ctx.ui("human"), f"human:{why}"),
                    Button(ctx.ui("keep_asking"), "dialogue:continue"),
                )
            )
            events.append(HandoffOffered(why))
        if outcome.handoff is not None:
            events.append(HandoffRequested(outcome.handoff, priority_of(ctx.message.text)))
        if outcome.feedback is not None and not outcome.feedback[1]:
            events.append(MarkedUnhelpful())
        return replies, events


def flow_after(view: ConversationView, outcome: Outcome) -> str | None:
    """The flow open once the outcome is applied."""
    if outcome.flow is not None:
        return outcome.flow.name
    return None if outcome.end_flow else view.flow


def _stack_events(view: ConversationView, outcome: Outcome) -> list[Event]:
    events: list[Event] = []
    if outcome.suspend is not None:
        slots = {k: v for k, v in outcome.suspend.slots.items() if k != OFFERED}
        frame = SuspendedFrame(flow=outcome.suspend.name, step=outcome.suspend.step, slots=slots)
        events.append(FlowSuspended(frame))
    if outcome.cancelled is not None:
        slots = {k: v for k, v in outcome.cancelled.slots.items() if k != OFFERED}
        cancelled = outcome.cancelled
        events.append(
            FlowCancelled(SuspendedFrame(flow=cancelled.name, step=cancelled.step, slots=slots))
        )
    if outcome.resume_suspended is not None and (view.suspended or outcome.suspend):
        events.append(SuspendedTaken(outcome.resume_suspended))
    elif (
        outcome.flow is not None
        and outcome.suspend is None
        and view.suspended
        and view.suspended[-1]["flow"] == outcome.flow.name
    ):
        # The same flow started afresh ("一百二" read as a new link request while the first
        # waits below): the one waiting is superseded, never offered back after this one.
        events.append(SuspendedTaken(resumed=True))
    if outcome.bind_merchant is not None and (view.suspended or outcome.suspend):
        events.append(StackCleared())
    return events


def stack_after(
    view: ConversationView, events: list[Event] | tuple[Event, ...]
) -> list[SuspendedFrame]:
    """The suspended flows once the stack's events are applied (the writer stores this)."""
    stack = list(view.suspended)
    for event in events:
        if isinstance(event, FlowSuspended):
            stack = [*stack, event.frame][-MAX_SUSPENDED:]
        elif isinstance(event, SuspendedTaken) and stack:
            stack.pop()
        elif isinstance(event, StackCleared):
            stack = []
    return stack


# The replies that ask an unbound chat for its bind code.
_ASKS_FOR_CODE = frozenset({"bind/wrong_code", "bind/how"})


def subject_of(decision: Decision) -> Subject:
    """The one order, withdrawal or login this turn's findings are about (none for several)."""
    for noted in reversed(decision.of(FindingsNoted)):
        findings = noted.findings
        if order_no := findings.get("order_no"):
            return Subject(order_no=order_no, verified=findings.get("verified", False))
        if withdrawal := findings.get("withdrawal"):
            return Subject(withdrawal=withdrawal)
        if login := findings.get("login") or findings.get("password_reset_for"):
            return Subject(login=login)
        synced = [*findings.get("resynced", ()), *findings.get("still_different", ())]
        if len(synced) == 1:
            # One order re-synced: "所以钱到底到了没" is about it.
            return Subject(order_no=synced[0]["order_no"])
    return Subject()


def view_after(view: ConversationView, decision: Decision) -> ConversationView:
    """The conversation as the decision leaves it, before the people side has its say (a
    handoff out of hours opens the ticket flow): what the writer stores, and what the next
    message is decided against."""
    flow, step = view.flow, view.flow_step
    slots = {
        k: v
        for k, v in view.slots.items()
        if k not in (OFFERED, UNHELPFUL, CANCELLED, SUBJECT, ASKED_CODE)
    }
    language, pinned, label, pending = (
        view.language,
        view.language_pinned,
        view.last_label,
        view.pending,
    )
    for event in decision.events:
        if isinstance(event, FlowAt):
            flow, step, slots = event.flow, event.step, dict(event.slots)
        elif isinstance(event, FlowEnded):
            flow, step, slots = None, None, {}
        elif isinstance(event, LanguageSet):
            language, pinned = event.language, event.pinned
        elif isinstance(event, Understood):
            label = event.label.value
        elif isinstance(event, PendingSet):
            pending = event.request
    if flow is None:
        step, slots = None, {}
    if decision.of(MarkedUnhelpful):
        slots[UNHELPFUL] = True
    for cancelled in decision.of(FlowCancelled):
        slots[CANCELLED] = dict(cancelled.frame)
    if any(reply.template in _ASKS_FOR_CODE for reply in decision.replies):
        slots[ASKED_CODE] = True
    subject = subject_of(decision)
    if subject:
        slots[SUBJECT] = subject
    buttons = chain.from_iterable(reply.buttons for reply in decision.replies)
    slots[OFFERED] = [[button.label, button.action] for button in buttons]
    return ConversationView(
        id=view.id,
        channel=view.channel,
        chat_id=view.chat_id,
        state=view.state,
        language=language,
        language_pinned=pinned,
        flow=flow,
        flow_step=step,
        slots=slots,
        failures=view.failures + 1 if decision.of(Unsolved) else 0,
        last_label=label,
        suspended=stack_after(view, decision.events),
        pending=pending,
    )


def _offer_resume(ctx: Context, outcome: Outcome) -> Reply | None:
    """A flow ended with another waiting below it: offer to go back to that one."""
    if flow_after(ctx.conversation, outcome) is not None:
        return None
    stack = stack_after(ctx.conversation, _stack_events(ctx.conversation, outcome))
    if not stack:
        return None
    if any(b.action.startswith("resume:") for r in outcome.replies for b in r.buttons):
        return None
    waiting = FLOWS[stack[-1]["flow"]]
    return ctx.say(
        "dialogue/offer_resume",
        Button(ctx.ui("resume_yes"), "resume:yes"),
        Button(ctx.ui("resume_no"), "resume:no"),
        flow=ctx.ui(f"flow_{waiting.name}"),
    )


def _refused(ctx: Context, template: str) -> Outcome:
    return Outcome([ctx.say(template, ctx.human_button())], solved=False, end_flow=True)


def _password_warning_replies(ctx: Context) -> list[Reply]:
    """A warning to put before the turn's replies when the user typed a password (which the
    transcript keeps masked): never send one in a chat."""
    if not contains_password(ctx.message.text):
        return []
    return [ctx.say("password_warning")]


def _password_warning(ctx: Context) -> list[Said]:
    return [Said(reply) for reply in _password_warning_replies(ctx)]


def _without_human(reply: Reply) -> Reply:
    """The reply without its plain "talk to a person" button (the offer carries its own)."""
    kept = tuple(button for button in reply.buttons if button.action != "human")
    return reply if kept == reply.buttons else replace(reply, buttons=kept)


def _incident_notice(ctx: Context, outcome: Outcome) -> Reply | None:
    """The one line about the oldest open incident for a merchant whose message starts the
    chat, unless the answer speaks of an incident already (a payment-failure diagnosis)."""
    if not (ctx.incidents and ctx.chat_started and ctx.identity.is_merchant):
        return None
    if outcome.incidents_asked or any(
        INCIDENT_TEMPLATES & {r.template, r.preface} for r in outcome.replies
    ):
        return None
    return ctx.incident_line("incidents/notice", ctx.incidents[0])


INCIDENT_TEMPLATES = frozenset({"incidents/notice", "incidents/diagnosis"})
