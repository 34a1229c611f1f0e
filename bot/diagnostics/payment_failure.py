"""`diagnose.payment_failure`: why did this payment fail, and what now?

Finds the order (from the message, from the merchant's recent failed orders, or by asking),
reads its attempts, explains the last failure code in plain words with its fix, notices when a
later attempt paid the order after all, and offers a new payment link for the same amount (to a
merchant) or a person, with the findings attached.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import Slot, Step
from bot.diagnostics.order_lookup import OrderLookupFlow
from bot.diagnostics.payment_link import PaymentLinkFlow
from bot.platform.models import AttemptStatus, Order, OrderStatus
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

RECENT = timedelta(days=7)


class PaymentFailureFlow(OrderLookupFlow):
    name = "payment_failure"
    label = Label.DIAGNOSE_PAYMENT_FAILURE
    steps: ClassVar[Mapping[str, Step]] = {
        "order": Step(Slot.ORDER_NO, "flows/payment_failure/pick_order", ("verify", "offer")),
        "verify": Step(Slot.PROOF, "flows/ask_verification", ("offer",)),
        "offer": Step(Slot.CHOICE, "flows/payment_failure/explained"),
    }

    async def ask_order(self, ctx: Context) -> Outcome:
        if ctx.identity.is_merchant and ctx.identity.merchant_id:
            orders = await ctx.gateway.list_orders(ctx.identity.merchant_id, since=ctx.now - RECENT)
            failed = [
                o for o in orders if o.last_failure is not None and o.status != OrderStatus.PAID
            ][:3]
            if failed:
                buttons = [
                    Button(f"{o.order_no[-6:]} ¥{o.amount}", f"flow:order:{o.order_no}")
                    for o in failed
                ]
                return self.wait(ctx, "order", "flows/payment_failure/pick_order", *buttons)
        return await super().ask_order(ctx)

    async def about(self, ctx: Context, order: Order, slots: dict[str, object]) -> Outcome:
        code = order.last_failure
        findings: dict[str, object] = {
            "order_no": order.order_no,
            "status": order.status.value,
            "amount": str(order.amount),
            "failure_code": code.value if code else None,
        }
        if code is None or order.status in (OrderStatus.PENDING, OrderStatus.CREATED):
            paid = order.status == OrderStatus.PAID
            reply = ctx.say(
                "flows/payment_failure/no_failure",
                order_no=order.order_no,
                status=order.status.value,
                paid=paid,
                in_sync=order.in_sync,
                merchant=ctx.identity.is_merchant,
            )
            return self.finish(ctx, [reply], findings=findings)
        advice = ctx.knowledge.failure_codes[code]
        merchant = ctx.identity.is_merchant
        cause = advice.cause_for(ctx.language, merchant=merchant)
        if order.status == OrderStatus.PAID:
            paid_at = next(
                a.at for a in reversed(order.attempts) if a.status == AttemptStatus.SUCCEEDED
            )
            reply = ctx.say(
                "flows/payment_failure/paid_later",
                order_no=order.order_no,
                cause=cause,
                paid_at=ctx.local(paid_at),
                amount=str(order.amount),
                merchant=merchant,
            )
            return self.finish(ctx, [reply], findings=findings)
        values: dict[str, Any] = {
            "order_no": order.order_no,
            "amount": str(order.amount),
            "cause": cause,
            "advice": advice.advice_for(ctx.language, merchant=merchant),
            "needs_person": advice.needs_person,
            "merchant": merchant,
        }
        if advice.needs_person:
            reply = ctx.say("flows/payment_failure/explained", ctx.human_button(), **values)
            return self.finish(ctx, [reply], solved=False, findings=findings)
        if merchant:
            buttons = (
                Button(ctx.ui("new_link", amount=str(order.amount)), "flow:newlink:yes"),
                ctx.human_button(),
            )
            return self.wait(
                ctx,
                "offer",
                "flows/payment_failure/explained",
                *buttons,
                slots={"amount": str(order.amount)},
                findings=findings,
                **values,
            )
        reply = ctx.say("flows/payment_failure/explained", ctx.human_button(), **values)
        return self.finish(ctx, [reply], findings=findings)

    async def step_offer(self, ctx: Context, state: FlowState) -> Result:
        if ctx.argument != "newlink:yes":
            return UNHANDLED
        # The button named the amount ("重新生成 ¥88.50 收款链接"): pressing it is the yes.
        return await PaymentLinkFlow().create(ctx, Decimal(str(state.slots["amount"])), None)
