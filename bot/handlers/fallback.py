"""The honest "I don't know": suggestions when the message nearly matched, never a guess.

Two kinds of not knowing. A message that nearly matched a topic (its score or coverage fell just
short, or two topics tied) gets up to three "did you mean" buttons. A message about something
the bot does not cover (an out-of-scope example matched it best, its words belong to topics the
guide does not answer, or nothing matched) gets no unrelated buttons: it hears plainly that this
is outside what the bot can help with, in one line what it can do, and a person is offered.
"""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.routing import Result, Router
from bot.types import CHITCHAT_LABELS, Label

router = Router("fallback")

# Why the matcher refused, when the message is about something the bot does not cover (as
# opposed to a near miss: a low score or coverage, or two topics tied).
OUTSIDE = frozenset({"out_of_scope_example", "foreign_topic", "no_match"})
# An in-scope topic this close to the score that refused is still a near miss: an out-of-scope
# example that only just won ("提现要手续费吗" ~ "微信支付提现要手续费吗") leaves the
# suggestion of our own fees worth offering.
NEAR_GAP = 0.05
# (A person is always offered by its own button below the suggestions: not twice.)
_NOT_SUGGESTED = CHITCHAT_LABELS | {Label.OUT_OF_SCOPE, Label.HANDOFF_HUMAN}


def fallback(ctx: Context) -> Outcome:
    parse = ctx.parse
    repeated = ctx.conversation.failures >= 1
    suggestions = []
    outside = (
        parse is not None
        and parse.reason in OUTSIDE
        and not (parse.alternatives and parse.alternatives[0].score >= parse.score - NEAR_GAP)
    )
    if parse is not None and not outside and not repeated:
        suggestions = [
            ctx.topic_button(a.label)
            for a in parse.alternatives
            if a.score >= ctx.settings.nlu_suggest_score and a.label not in _NOT_SUGGESTED
        ][: ctx.settings.suggestions]
    reply = ctx.say(
        "fallback",
        *suggestions,
        ctx.human_button(),
        suggestions=bool(suggestions),
        repeated=repeated,
        outside=outside,
    )
    return Outcome([reply], solved=False, unanswered=parse is not None)


@router.label(Label.OUT_OF_SCOPE)
async def out_of_scope(ctx: Context) -> Result:
    return fallback(ctx)
