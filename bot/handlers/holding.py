"""Flows and actions that work on live platform data, answered for now with what they will need."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.routing import UNHANDLED, Result, Router
from bot.types import Label

router = Router("holding")

LIVE_LABELS = (
    Label.DIAGNOSE_PAYMENT_FAILURE,
    Label.DIAGNOSE_LOGIN,
    Label.DIAGNOSE_DATA_SYNC,
    Label.STATUS_PAYMENT,
    Label.STATUS_WITHDRAWAL,
    Label.ACTION_PAYMENT_LINK,
    Label.ACTION_PASSWORD_RESET,
    Label.HANDOFF_HUMAN,
)


def _holding(ctx: Context, label: Label) -> Outcome:
    parse = ctx.parse
    values = {
        "order_no": parse.entity("order_no") if parse else None,
        "amount": parse.entity("amount") if parse else None,
    }
    buttons = () if label == Label.HANDOFF_HUMAN else (ctx.human_button(),)
    return Outcome([ctx.say(f"holding/{label.value}", *buttons, **values)])


@router.label(*LIVE_LABELS)
async def live_label(ctx: Context) -> Result:
    assert ctx.parse is not None
    return _holding(ctx, ctx.parse.label)


@router.action("intent")
async def intent_button(ctx: Context) -> Result:
    try:
        label = Label(ctx.argument)
    except ValueError:
        return UNHANDLED
    return _holding(ctx, label) if label in LIVE_LABELS else UNHANDLED


@router.command("human")
@router.action("human")
async def human(ctx: Context) -> Result:
    return _holding(ctx, Label.HANDOFF_HUMAN)
