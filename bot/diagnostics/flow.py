"""`Flow`: a declared state table that fills slots over several messages, then acts.

Each flow declares its steps in `steps`: per step the kind of value it waits for (an amount, an
order number, a choice, yes or no, free text), the template that asks for it, and the steps it
can go on to. The step's handler is the method `step_<name>`; it takes the context and the open
state and returns an Outcome (continue at a step with `self.wait`, or end with `self.finish`),
or UNHANDLED when the message does not answer its question. The dialogue policy in the engine
then looks for a correction (`correct`), a digression or a new subject, and otherwise asks again
with `retry`, which says what is needed with an example and never counts as the bot failing.
State lives in the conversation row, so a restart resumes at the same step. Each flow's `.mmd`
diagram names its steps; a test checks the diagrams against the tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar, TypedDict

from bot.context import Context, Findings, FlowState, Outcome, PendingRequest
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label, Reply

StepHandler = Callable[[Context, FlowState], Awaitable[Result]]
TRIES = "_tries"
PROMPT = "_prompt"


class Prompt(TypedDict, total=False):
    """The open question as it was asked (`slots[PROMPT]`), to ask it again word for word: its
    template, the values it was rendered with (JSON-safe), its buttons as [label, action]."""

    template: str
    values: dict[str, Any]
    buttons: list[list[str]]


def prompt_of(slots: Mapping[str, Any]) -> Prompt:
    """The step's prompt kept in `slots` (empty when the step kept none)."""
    prompt: Prompt = slots.get(PROMPT) or Prompt()
    return prompt


# From this retry on, the re-prompt also offers to cancel and a person (issue 16: a retry
# "offers 取消 / 转人工", from the first).
OFFER_WAY_OUT = 1


class Slot(StrEnum):
    """The kind of answer a step waits for; it says what a re-prompt asks for."""

    AMOUNT = "amount"
    ORDER_NO = "order_no"
    PROOF = "proof"
    WITHDRAWAL_ID = "withdrawal_id"
    CHOICE = "choice"
    YES_NO = "yes_no"
    LOGIN = "login"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Step:
    """One state of a flow: the answer it waits for, the template that asks, the steps it
    goes on to, and `accepts`: requests that mean one of its answers (at an offer of a new
    link, "帮我重新发个链接" is pressing the offer), as (label, the button's argument);
    `optional`: the step offers something the user may just leave ("ok thx" ends it)."""

    slot: Slot
    prompt: str
    goes_to: tuple[str, ...] = ()
    accepts: tuple[tuple[Label, str], ...] = ()
    # An offer the user may simply leave: a thanks or a goodbye there ends the flow.
    optional: bool = False


class Flow:
    """Base class: subclasses set `name`, `label` and `steps`, write `start` and `step_*`."""

    name: ClassVar[str]
    label: ClassVar[Label]
    steps: ClassVar[Mapping[str, Step]] = {}

    def __init__(self) -> None:
        self.handlers: dict[str, StepHandler] = {
            attr.removeprefix("step_"): getattr(self, attr)
            for attr in dir(self)
            if attr.startswith("step_")
        }
        if set(self.handlers) != set(self.steps):
            raise TypeError(
                f"{self.name}: steps {sorted(self.steps)} but handlers {sorted(self.handlers)}"
            )

    async def start(self, ctx: Context) -> Outcome:
        raise NotImplementedError

    async def resume(self, ctx: Context, state: FlowState) -> Result:
        handler = self.handlers.get(state.step)
        if handler is None:
            return self.finish(ctx, [ctx.say("stale_action")], solved=False)
        return await handler(ctx, state)

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        """The message replaces a value given earlier ("不对，是260"), or UNHANDLED."""
        return UNHANDLED

    def wait(
        self,
        ctx: Context,
        step: str,
        template: str,
        *buttons: Button,
        slots: dict[str, Any] | None = None,
        extra: list[Reply] | None = None,
        findings: Findings | None = None,
        **values: Any,
    ) -> Outcome:
        """Ask with `template` and wait for the answer at `step`; the prompt is kept for re-asks."""
        state_slots = {k: v for k, v in (slots or {}).items() if k not in (TRIES, PROMPT)}
        state_slots[PROMPT] = Prompt(
            template=template,
            values=_jsonable(values),
            buttons=[[b.label, b.action] for b in buttons],
        )
        reply = ctx.say(template, *buttons, **values)
        return Outcome(
            [*(extra or []), reply],
            flow=FlowState(self.name, step, state_slots),
            findings=findings or Findings(),
        )

    def cancel(self, ctx: Context, state: FlowState) -> Outcome:
        """The flow's own "no" at its confirmation: cancelled, and kept for one message so
        that "no wait, I do want it" takes it back."""
        outcome = self.finish(ctx, [ctx.say("cancelled", had_flow=True)])
        outcome.cancelled = state
        return outcome

    def finish(
        self,
        ctx: Context,
        replies: list[Reply],
        *,
        solved: bool = True,
        findings: Findings | None = None,
        rate_events: list[str] | None = None,
    ) -> Outcome:
        """The flow's last reply. `solved` is False only where the bot did not do its part;
        a finding whose next step is a person (a disabled login, a blocked payment, a failed
        withdrawal: the reply offers one) is the bot's work done, not a bot failure."""
        return Outcome(
            replies,
            solved=solved,
            end_flow=True,
            findings=findings or Findings(),
            rate_events=rate_events or [],
        )

    def bind_first(self, ctx: Context, *general: Reply, optional: bool = False) -> Outcome:
        """An unbound chat asked for what needs a bound merchant: the useful general fact
        first (`general`), then how to bind and where the code is. The request is kept and
        taken up again once the chat binds, without being asked twice. `optional`: the flow
        goes on without a binding too (the caller adds its own next step)."""
        offer = ctx.say(
            "flows/bind_first",
            *(() if optional else (ctx.human_button(),)),
            asked=ctx.ui(self.label.value),
            optional=optional,
        )
        outcome = self.finish(ctx, [*general, offer])
        outcome.pending = PendingRequest(label=self.label.value, text=ctx.message.text)
        return outcome

    def prompt(self, ctx: Context, state: FlowState, template: str | None = None) -> Reply:
        """The open question again, as it was asked (under `template` when given: the same
        text with a line before it, e.g. "back to the payment link:")."""
        prompt = prompt_of(state.slots)
        buttons = tuple(Button(label, action) for label, action in prompt.get("buttons", []))
        asked = prompt.get("template") or self.steps[state.step].prompt
        values = prompt.get("values", {})
        question = ctx.say(asked, *buttons, **values)
        if template is None:
            return question
        return ctx.say(template, *buttons, question=question.text, flow=ctx.ui(f"flow_{self.name}"))

    def retry(self, ctx: Context, state: FlowState, *, unclear: bool = False) -> Outcome:
        """The answer did not fit: say what is needed, with an example, and ask again. A user's
        wrong input is not the bot failing; a way out is offered with it (`way_out`).
        `unclear`: the user said the question was not clear; it is said another way."""
        tries = int(state.slots.get(TRIES, 0)) + 1
        step = self.steps.get(state.step)
        slot = step.slot if step is not None else Slot.TEXT
        question = self.prompt(ctx, state)
        buttons = self.way_out(ctx, tries, question.buttons)
        reply = ctx.say(
            "dialogue/retry",
            *buttons,
            need=slot.value,
            question=question.text,
            explained=False,
            unclear=unclear,
        )
        return Outcome(
            [reply],
            solved=True,
            flow=FlowState(self.name, state.step, {**state.slots, TRIES: tries}),
        )

    def asked_again(self, outcome: Outcome, ctx: Context, state: FlowState | None) -> Outcome:
        """`outcome` (a `wait` that asks the same step again: an amount out of range, an id
        not found) counted as one more try, with the way out (`OFFER_WAY_OUT`)."""
        tries = int(state.slots.get(TRIES, 0)) + 1 if state is not None else 1
        if outcome.flow is None or not outcome.replies:
            return outcome
        last = outcome.replies[-1]
        buttons = self.way_out(ctx, tries, last.buttons)
        if buttons != last.buttons and PROMPT in outcome.flow.slots:
            prompt_of(outcome.flow.slots)["buttons"] = [[b.label, b.action] for b in buttons]
        # The flow's own explanation (out of range, not found, not verified) stays; the
        # question again says first what is needed, with an example, in the same message.
        step = self.steps.get(outcome.flow.step)
        slot = step.slot if step is not None else Slot.TEXT
        need = ctx.say(
            "dialogue/retry", need=slot.value, question="", explained=True, unclear=False
        )
        asked = replace(last, buttons=buttons)
        outcome.replies[-1] = asked.prefaced(replace(need, text=need.text.strip()))
        outcome.flow.slots[TRIES] = tries
        return outcome

    def open_state(self, ctx: Context) -> FlowState | None:
        """This flow's state when it is the open one (to count a re-ask as one more try)."""
        view = ctx.conversation
        if view.flow != self.name or not view.flow_step:
            return None
        return FlowState(view.flow, view.flow_step, dict(view.slots))

    @staticmethod
    def way_out(ctx: Context, tries: int, buttons: tuple[Button, ...]) -> tuple[Button, ...]:
        """From the `OFFER_WAY_OUT`th try on, a re-prompt also offers to cancel and a person."""
        if tries < OFFER_WAY_OUT:
            return buttons
        way_out = (Button(ctx.ui("cancel"), "cancel"), ctx.human_button())
        # By action: the buttons kept with the prompt may be labelled in the chat's old language.
        offered = {b.action for b in buttons}
        return (*buttons, *(b for b in way_out if b.action not in offered))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Template values as they can be stored in the conversation's JSON slots."""
    return {key: _json_value(value) for key, value in values.items()}


def _json_value(value: Any) -> Any:
    """Scalars as they are, lists and mappings (a list of withdrawals) kept in their shape,
    anything else as its text."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)
