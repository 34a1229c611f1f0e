"""`action.payment_link`: amount (and an optional note), a confirmation, then the link and its QR.

Only a bound merchant can create links: a link collects money for a merchant, so a stranger must
not make one in its name. Nothing is created before the merchant confirms. A merchant under
review or suspended may not collect: the platform refuses the link (`MerchantNotActive`), and the
merchant hears why and what to do, up front when the platform already says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import Flow, Slot, Step
from bot.nlu.values import read_amount
from bot.platform.gateway import MerchantNotActive
from bot.platform.models import MerchantStatus
from bot.qr import qr_png
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

_MAX_NOTE = 60
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?=\s*$)")


def _amount_in(text: str | None) -> str | None:
    """The one amount `text` gives, in any form people type (see `read_amount`): a message,
    or the argument of "/pay 88.5"."""
    amount = read_amount(text) if text else None
    return str(amount) if amount is not None else None


def _corrected(ctx: Context) -> str | None:
    """The amount after the last correction in a message that corrects itself ("12块，哦不对，
    15块5", "50, no wait, 55"): the one meant."""
    rest = ctx.knowledge.words.after_last("correction", ctx.message.text)
    return _amount_in(rest) if rest else None


class PaymentLinkFlow(Flow):
    name = "payment_link"
    label = Label.ACTION_PAYMENT_LINK
    steps: ClassVar[Mapping[str, Step]] = {
        "amount": Step(Slot.AMOUNT, "flows/payment_link/ask_amount", ("confirm",)),
        # "好，弄个链接吧", "sure make the link": a yes that says the flow's own request.
        "confirm": Step(
            Slot.YES_NO,
            "flows/payment_link/confirm",
            accepts=((Label.ACTION_PAYMENT_LINK, "confirm:yes"),),
        ),
    }

    async def start(self, ctx: Context) -> Outcome:
        if not ctx.identity.is_merchant:
            return self.bind_first(ctx)
        merchant = await ctx.gateway.get_merchant(ctx.identity.merchant_id or "")
        if merchant is not None and merchant.status != MerchantStatus.ACTIVE:
            return self.not_active(ctx, merchant.status)
        amount = (
            _amount_in(ctx.argument)
            or _corrected(ctx)
            or ctx.entity("amount")
            or _amount_in(ctx.message.text)
        )
        note = ctx.entity("note") if amount else None
        if amount is None:
            return self.wait(
                ctx,
                "amount",
                "flows/payment_link/ask_amount",
                low=str(ctx.settings.payment_link_min),
                high=str(ctx.settings.payment_link_max),
            )
        return self.confirm(ctx, Decimal(amount), note)

    def not_active(self, ctx: Context, status: MerchantStatus) -> Outcome:
        reply = ctx.say(
            "flows/payment_link/merchant_not_active", ctx.human_button(), status=status.value
        )
        return self.finish(ctx, [reply], findings={"merchant_status": status.value})

    def _check(self, ctx: Context, amount: Decimal) -> bool:
        return ctx.settings.payment_link_min <= amount <= ctx.settings.payment_link_max

    def confirm(self, ctx: Context, amount: Decimal, note: str | None) -> Outcome:
        if not self._check(ctx, amount):
            return self.wait(
                ctx,
                "amount",
                "flows/payment_link/out_of_range",
                amount=str(amount),
                low=str(ctx.settings.payment_link_min),
                high=str(ctx.settings.payment_link_max),
            )
        buttons = (
            Button(ctx.ui("confirm"), "flow:confirm:yes"),
            Button(ctx.ui("cancel"), "flow:confirm:no"),
        )
        return self.wait(
            ctx,
            "confirm",
            "flows/payment_link/confirm",
            *buttons,
            slots={"amount": str(amount), "note": note},
            amount=str(amount),
            note=note or "",
        )

    async def step_amount(self, ctx: Context, state: FlowState) -> Result:
        amount = _corrected(ctx) or _amount_in(ctx.message.text)
        if amount is None:
            # "0" or "-5": a number, but no amount a link can collect: the range, again.
            typed = _NUMBER.match(ctx.message.text.strip())
            if typed is None or Decimal(typed.group(0)) > 0:
                return UNHANDLED
            return self.asked_again(self.confirm(ctx, Decimal(typed.group(0)), None), ctx, state)
        outcome = self.confirm(ctx, Decimal(amount), ctx.entity("note"))
        if outcome.flow is not None and outcome.flow.step == "amount":
            return self.asked_again(outcome, ctx, state)
        return outcome

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        # "不对，是260" / "actually make it 45" at the confirmation: confirm the new amount.
        amount = _amount_in(ctx.message.text)
        if amount is None or state.step != "confirm":
            return UNHANDLED
        note = ctx.entity("note") or state.slots.get("note")
        return self.confirm(ctx, Decimal(amount), note)

    async def step_confirm(self, ctx: Context, state: FlowState) -> Result:
        if ctx.argument == "confirm:no":
            return self.cancel(ctx, state)
        if ctx.argument != "confirm:yes":
            return UNHANDLED
        note = state.slots.get("note")
        return await self.create(ctx, Decimal(state.slots["amount"]), note)

    async def create(self, ctx: Context, amount: Decimal, note: str | None) -> Outcome:
        """The link itself, once the merchant has said yes to this amount."""
        assert ctx.identity.merchant_id is not None
        if not self._check(ctx, amount):
            return self.finish(ctx, [ctx.say("stale_action")], solved=False)
        try:
            link = await ctx.gateway.create_payment_link(
                ctx.identity.merchant_id,
                amount,
                note[:_MAX_NOTE] if note else None,
                # The turn's inbound message: a turn run again never makes a second link.
                idempotency_key=ctx.inbound_key,
            )
        except MerchantNotActive as refused:
            return self.not_active(ctx, refused.status)
        reply = ctx.say(
            "flows/payment_link/created",
            image=qr_png(link.url),
            url=link.url,
            amount=str(link.amount),
            note=link.description or "",
        )
        return self.finish(
            ctx, [reply], findings={"payment_link": link.id, "amount": str(link.amount)}
        )
