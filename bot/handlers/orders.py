"""A bound merchant who sends just an order number gets that order's summary and what to do next.

The summary says only what the data shows: the platform's status, the last payment attempt and
its cause in words, and the payment channel's view when it differs. The next actions are buttons
that open the matching flow on that order (why it failed, check and re-sync, a new link).
"""

from __future__ import annotations

from bot.context import Context, Findings, Outcome
from bot.diagnostics.access import merchant_order
from bot.diagnostics.registry import FLOWS
from bot.platform.models import AttemptStatus, OrderStatus
from bot.routing import UNHANDLED, Result, Router
from bot.types import Button

router = Router("orders")


async def order_summary(ctx: Context, order_no: str) -> Outcome:
    order = await merchant_order(ctx, order_no)
    if order is None:
        reply = ctx.say("flows/order_not_found", ctx.human_button(), order_no=order_no)
        return Outcome([reply], solved=True)
    last = order.attempts[-1] if order.attempts else None
    attempt = ""
    if last is not None:
        if last.status == AttemptStatus.FAILED and last.failure_code is not None:
            attempt = ctx.knowledge.failure_codes[last.failure_code].cause[ctx.language]
        else:
            attempt = ctx.ui(f"attempt_{last.status.value}")
    buttons: list[Button] = []
    if order.last_failure is not None and order.status != OrderStatus.PAID:
        buttons.append(Button(ctx.ui("order_failure"), f"order:failure:{order.order_no}"))
        buttons.append(Button(ctx.ui("new_link", amount=str(order.amount)), f"pay:{order.amount}"))
    if not order.in_sync:
        buttons.append(Button(ctx.ui("order_resync"), f"order:sync:{order.order_no}"))
    buttons.append(ctx.human_button())
    reply = ctx.say(
        "flows/order_summary",
        *buttons,
        order_no=order.order_no,
        amount=str(order.amount),
        status=order.status.value,
        attempt=attempt,
        attempt_at=ctx.local(last.at) if last is not None else "",
        channel=order.channel.status.value if order.channel is not None else "",
    )
    findings: Findings = {"order_no": order.order_no, "status": order.status.value}
    return Outcome([reply], findings=findings)


@router.action("order")
async def order_action(ctx: Context) -> Result:
    """`order:failure:<no>` and `order:sync:<no>`: the summary's next steps."""
    what, _, order_no = ctx.argument.partition(":")
    if what == "failure":
        return await FLOWS["payment_failure"].start(ctx.saying(order_no))
    if what == "sync":
        return await FLOWS["data_sync"].start(ctx.saying(order_no))
    return UNHANDLED
