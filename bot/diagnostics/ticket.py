"""The message a user leaves when no person can answer now; it becomes a ticket."""

from __future__ import annotations

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import Flow
from bot.routing import UNHANDLED, Result
from bot.types import Label


class TicketFlow(Flow):
    """Started by the handoff service (outside hours, or nobody online), not by a label."""

    name = "ticket"
    label = Label.HANDOFF_HUMAN

    async def start(self, ctx: Context) -> Outcome:
        return Outcome([], handoff="user_asked")

    async def step_message(self, ctx: Context, state: FlowState) -> Result:
        text = ctx.message.text.strip()
        if not text:
            return UNHANDLED
        return Outcome([ctx.say("handoff/ticket_received")], end_flow=True, ticket_text=text)
