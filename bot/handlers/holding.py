"""Buttons that name a topic (`intent:<label>`), the hand-over to a person, and its rating."""

from __future__ import annotations

from bot.context import Context, Outcome
from bot.diagnostics.registry import start_by_label
from bot.routing import UNHANDLED, Result, Router
from bot.types import Label

router = Router("holding")


# Why a chat went to people, as the offer's button says ("human:bot_failed"); otherwise asked.
_REASONS = frozenset({"bot_failed", "unhelpful_answer"})


def _handoff(ctx: Context) -> Outcome:
    """The engine opens the handoff and says what happens next (queue, agent, or a ticket)."""
    reason = ctx.argument if ctx.argument in _REASONS else "user_asked"
    return Outcome([], end_flow=True, handoff=reason)


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


@router.action("rate")
async def rate(ctx: Context) -> Result:
    handoff_id, _, score = ctx.argument.partition(":")
    if not handoff_id.isdigit() or not score.isdigit():
        return UNHANDLED
    return Outcome([], rating=(int(handoff_id), int(score)))
