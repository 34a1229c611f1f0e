"""`Flow`: a small state machine that fills slots over several messages, then acts.

A flow's steps are methods named `step_<name>`; each takes the context and the open state and
returns an Outcome (continue at a step with `self.wait`, or end with `self.finish`), or
UNHANDLED when the message is not an answer to its question. The engine then checks whether the
user changed the subject, and otherwise calls `reprompt`. State lives in the conversation row,
so a restart resumes at the same step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from bot.context import Context, FlowState, Outcome
from bot.routing import Result
from bot.types import Button, Label, Reply

StepHandler = Callable[[Context, FlowState], Awaitable[Result]]
MAX_REPROMPTS = 2
TRIES = "_tries"
PROMPT = "_prompt"


class Flow:
    """Base class: subclasses set `name` and `label`, write `start` and `step_*` methods."""

    name: ClassVar[str]
    label: ClassVar[Label]

    def __init__(self) -> None:
        self.steps: dict[str, StepHandler] = {
            attr.removeprefix("step_"): getattr(self, attr)
            for attr in dir(self)
            if attr.startswith("step_")
        }

    async def start(self, ctx: Context) -> Outcome:
        raise NotImplementedError

    async def resume(self, ctx: Context, state: FlowState) -> Result:
        handler = self.steps.get(state.step)
        if handler is None:
            return self.finish(ctx, [ctx.say("stale_action")], solved=False)
        return await handler(ctx, state)

    def wait(
        self,
        ctx: Context,
        step: str,
        template: str,
        *buttons: Button,
        slots: dict[str, Any] | None = None,
        extra: list[Reply] | None = None,
        findings: dict[str, Any] | None = None,
        **values: Any,
    ) -> Outcome:
        """Ask with `template` and wait for the answer at `step`; the prompt is kept for re-asks."""
        state_slots = {k: v for k, v in (slots or {}).items() if k not in (TRIES, PROMPT)}
        state_slots[PROMPT] = {
            "template": template,
            "values": _jsonable(values),
            "buttons": [[b.label, b.action] for b in buttons],
        }
        reply = ctx.say(template, *buttons, **values)
        return Outcome(
            [*(extra or []), reply],
            flow=FlowState(self.name, step, state_slots),
            findings=findings or {},
        )

    def finish(
        self,
        ctx: Context,
        replies: list[Reply],
        *,
        solved: bool = True,
        findings: dict[str, Any] | None = None,
        rate_events: list[str] | None = None,
    ) -> Outcome:
        return Outcome(
            replies,
            solved=solved,
            end_flow=True,
            findings=findings or {},
            rate_events=rate_events or [],
        )

    def reprompt(self, ctx: Context, state: FlowState) -> Outcome:
        """The answer did not fit: say so and ask again, at most twice, then give up politely."""
        tries = int(state.slots.get(TRIES, 0)) + 1
        prompt = state.slots.get(PROMPT) or {}
        if tries > MAX_REPROMPTS or not prompt:
            return self.finish(ctx, [ctx.say("flow_gave_up", ctx.human_button())], solved=False)
        buttons = tuple(Button(label, action) for label, action in prompt.get("buttons", []))
        reply = ctx.say(prompt["template"], *buttons, **prompt.get("values", {}))
        slots = {**state.slots, TRIES: tries}
        return Outcome(
            [ctx.say("flow_invalid"), reply],
            solved=True,
            flow=FlowState(self.name, state.step, slots),
        )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Template values as they can be stored in the conversation's JSON slots."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [v if isinstance(v, str | int | float | bool) else str(v) for v in value]
        else:
            out[key] = str(value)
    return out
