"""Buttons that name a topic (`intent:<label>`), and the hand-over to a person.

The hand-over answers for now with how to reach the support team; the queue comes next.
"""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.diagnostics.registry import start_by_label
from bot.routing import UNHANDLED, Result, Router
from bot.types import Label

router = Router("holding")


def _handoff(ctx: Context) -> Outcome:
    parse = ctx.parse
    order_no = parse.entity("order_no") if parse else None
    return Outcome(
        [ctx.say(f"holding/{Label.HANDOFF_HUMAN.value}", order_no=order_no)], end_flow=True
    )


@router.label(Label.HANDOFF_HUMAN)
async def handoff_label(ctx: Context) -> Result:
    return _handoff(ctx)


@router.action("intent")
async def intent_button(ctx: Context) -> Result:
    try:
        label = Label(ctx.argument)
    except ValueError:
        return UNHANDLED
    if label == Label.HANDOFF_HUMAN:
        return _handoff(ctx)
    started = await start_by_label(ctx, label)
    return started if started is not None else UNHANDLED


@router.command("human")
@router.action("human")
async def human(ctx: Context) -> Result:
    return _handoff(ctx)
