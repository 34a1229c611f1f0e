"""FAQ answers from the knowledge base, with related questions and a helpful/not-helpful vote."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.routing import UNHANDLED, Result, Router
from bot.types import FAQ_LABELS, Button, Label

router = Router("faq")


async def answer(ctx: Context, label: Label) -> Outcome:
    entry = ctx.knowledge.entries[label]
    related = [ctx.knowledge.entries[r] for r in entry.related[:2]]
    buttons = (
        Button(ctx.ui("helpful"), f"fb:{label.value}:yes"),
        Button(ctx.ui("unhelpful"), f"fb:{label.value}:no"),
        *(Button(r.title[ctx.language], f"faq:{r.id.value}") for r in related),
    )
    # The related questions travel as buttons only: a "Related: …" line said the same twice.
    reply = ctx.say("faq_answer", *buttons, answer=entry.answer[ctx.language])
    return Outcome([reply], answered=label)


@router.label(*sorted(FAQ_LABELS))
async def faq_label(ctx: Context) -> Result:
    assert ctx.parse is not None
    return await answer(ctx, ctx.parse.label)


@router.action("faq")
async def faq_button(ctx: Context) -> Result:
    try:
        label = Label(ctx.argument)
    except ValueError:
        return UNHANDLED
    if label not in ctx.knowledge.entries:
        return UNHANDLED
    return await answer(ctx, label)


@router.action("fb")
async def feedback(ctx: Context) -> Result:
    entry_id, _, vote = ctx.argument.rpartition(":")
    try:
        label = Label(entry_id)
    except ValueError:
        return UNHANDLED
    if label not in ctx.knowledge.entries or vote not in {"yes", "no"}:
        return UNHANDLED
    helpful = vote == "yes"
    if helpful:
        return Outcome([ctx.say("feedback_thanks")], feedback=(label, True))
    reply = ctx.say("feedback_sorry", ctx.human_button())
    return Outcome([reply], solved=False, feedback=(label, False))
