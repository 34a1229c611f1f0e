"""The honest "I don't know": up to three suggestions and a person, never a guess."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.routing import Result, Router
from bot.types import Label

router = Router("fallback")


def fallback(ctx: Context) -> Outcome:
    parse = ctx.parse
    repeated = ctx.conversation.failures >= 1
    suggestions = []
    if parse is not None and not repeated:
        suggestions = [
            ctx.topic_button(a.label)
            for a in parse.alternatives
            if a.score >= ctx.settings.nlu_suggest_score
            and a.label
            not in {
                Label.OUT_OF_SCOPE,
                Label.CHITCHAT_GREET,
                Label.CHITCHAT_THANKS,
                Label.CHITCHAT_BYE,
            }
        ][: ctx.settings.suggestions]
    reply = ctx.say(
        "fallback",
        *suggestions,
        ctx.human_button(),
        suggestions=bool(suggestions),
        repeated=repeated,
    )
    return Outcome([reply], solved=False, unanswered=parse is not None)


@router.label(Label.OUT_OF_SCOPE)
async def out_of_scope(ctx: Context) -> Result:
    return fallback(ctx)
