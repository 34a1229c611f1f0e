"""Greetings, thanks and goodbyes."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.routing import Result, Router
from bot.types import Label

router = Router("chitchat")

GREETING_TOPICS = (
    Label.FEES_RATES,
    Label.ONBOARDING_REGISTER,
    Label.WITHDRAW_HOW,
    Label.DIAGNOSE_PAYMENT_FAILURE,
)


def greeting(ctx: Context) -> Outcome:
    buttons = [ctx.topic_button(label) for label in GREETING_TOPICS]
    return Outcome([ctx.say("greet", *buttons, ctx.human_button())])


@router.label(Label.CHITCHAT_GREET)
async def greet(ctx: Context) -> Result:
    return greeting(ctx)


@router.label(Label.CHITCHAT_THANKS)
async def thanks(ctx: Context) -> Result:
    return Outcome([ctx.say("thanks")])


@router.label(Label.CHITCHAT_BYE)
async def bye(ctx: Context) -> Result:
    return Outcome([ctx.say("bye")], end_flow=True)
