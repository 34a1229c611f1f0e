"""`status.payment`: has this order been paid? Live status in one or two sentences."""

from __future__ import annotations

from bot.context import Context, Findings, Outcome
from bot.diagnostics.order_lookup import OrderLookupFlow
from bot.platform.models import FailureCode, Order
from bot.types import Label


class PaymentStatusFlow(OrderLookupFlow):
    name = "payment_status"
    label = Label.STATUS_PAYMENT

    async def about(self, ctx: Context, order: Order, slots: dict[str, object]) -> Outcome:
        paid_at = next((a.at for a in reversed(order.attempts) if a.status == "succeeded"), None)
        last = order.attempts[-1] if order.attempts else None
        # A timeout is no result, not a refusal: the payer may have been charged all the same.
        no_result = last is not None and last.failure_code == FailureCode.NETWORK_TIMEOUT
        # A customer told the channel's record differs gets the way to a person at hand.
        person = () if ctx.identity.is_merchant or order.in_sync else (ctx.human_button(),)
        reply = ctx.say(
            "flows/payment_status/status",
            *person,
            order_no=order.order_no,
            status=order.status.value,
            amount=str(order.amount),
            paid_at=ctx.local(paid_at) if paid_at else "",
            merchant=ctx.identity.is_merchant,
            in_sync=order.in_sync,
            no_result=no_result,
        )
        findings: Findings = {"order_no": order.order_no, "status": order.status.value}
        return self.finish(ctx, [reply], findings=findings)
