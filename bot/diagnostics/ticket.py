"""The message a user leaves when no person can answer now; it becomes a ticket.

Leaving a message is explicit: the text is read back and left only once the user confirms it,
so a new question typed at the prompt is never filed by mistake (the dialogue policy answers a
clear question there as a digression and asks for the message again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import Flow, Slot, Step
from bot.nlu.words import Words
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

MAX_TICKET = 2000


class TicketFlow(Flow):
    """Started by the handoff service (outside hours, or nobody online), not by a label."""

    name = "ticket"
    label = Label.HANDOFF_HUMAN
    steps: ClassVar[Mapping[str, Step]] = {
        "message": Step(Slot.TEXT, "handoff/ask_message", ("confirm",)),
        "confirm": Step(Slot.YES_NO, "handoff/ticket_confirm"),
    }

    async def start(self, ctx: Context) -> Outcome:
        return Outcome([], handoff="user_asked")

    async def step_message(self, ctx: Context, state: FlowState) -> Result:
        return self._message(ctx, state, ctx.message.text.strip())

    def _message(self, ctx: Context, state: FlowState, text: str) -> Result:
        if not text:
            return UNHANDLED
        words = ctx.knowledge.words
        if words.means("leave_message", text, along=("yes",)) or words.means("yes", text):
            # "好，那我留言", "ok leave a msg then", a bare "yes" to the offer of leaving one:
            # agreeing to write one, not the message.
            return self.wait(ctx, "message", "handoff/ask_message", slots=state.slots)
        buttons = (
            Button(ctx.ui("leave_it"), "flow:confirm:yes"),
            Button(ctx.ui("rewrite"), "flow:confirm:no"),
        )
        return self.wait(
            ctx,
            "confirm",
            "handoff/ticket_confirm",
            *buttons,
            slots={**state.slots, "text": text[:MAX_TICKET]},
            text=text[:MAX_TICKET],
        )

    async def step_confirm(self, ctx: Context, state: FlowState) -> Result:
        if ctx.argument == "confirm:no":
            return self.wait(ctx, "message", "handoff/ask_message", slots=state.slots)
        if ctx.argument != "confirm:yes":
            return UNHANDLED
        text = str(state.slots.get("text", ""))
        return Outcome([ctx.say("handoff/ticket_received")], end_flow=True, ticket_text=text)

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        # At the read-back, anything typed that is not yes or no is the message, rewritten
        # ("改成：W0003 提现失败…" without its "改成").
        text = ctx.message.text.strip()
        if state.step != "confirm" or not text:
            return UNHANDLED
        words = ctx.knowledge.words
        if words.leads("correction", text):
            text = _after_correction(words, text)
        return self._message(ctx, state, text)


def _after_correction(words: Words, text: str) -> str:
    """The message after the correction word that leads it, as typed (punctuation kept)."""
    folded = text.lstrip()
    for phrase in sorted(words.phrases.get("correction", ()), key=len, reverse=True):
        if folded.lower().startswith(phrase):
            rest = folded[len(phrase) :].lstrip(" :：,，")
            return rest or text
    return text
