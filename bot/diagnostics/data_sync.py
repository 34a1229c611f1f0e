"""`diagnose.data_sync`: the back office and the customer see different statuses.

Compares the platform's status with the payment channel's for one order, or for the merchant's
orders of the last 24 hours; re-syncs each mismatch through the gateway (a re-sync only moves an
order forward) and reports what changed. What still differs goes to a person with the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from bot.context import Context, Findings, FlowState, Outcome, SyncLine
from bot.diagnostics.access import merchant_order
from bot.diagnostics.flow import Flow, Slot, Step
from bot.platform.models import Order
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

WINDOW = timedelta(hours=24)


class DataSyncFlow(Flow):
    name = "data_sync"
    label = Label.DIAGNOSE_DATA_SYNC
    steps: ClassVar[Mapping[str, Step]] = {"order": Step(Slot.ORDER_NO, "flows/data_sync/ask")}

    async def start(self, ctx: Context) -> Outcome:
        if not ctx.identity.is_merchant or ctx.identity.merchant_id is None:
            return self.bind_first(ctx, ctx.say("flows/data_sync/general"))
        order_no = ctx.entity("order_no")
        if order_no:
            return await self.check_one(ctx, order_no)
        buttons = (Button(ctx.ui("check_recent"), "flow:recent"),)
        return self.wait(ctx, "order", "flows/data_sync/ask", *buttons)

    async def step_order(self, ctx: Context, state: FlowState) -> Result:
        assert ctx.identity.merchant_id is not None
        if ctx.argument == "recent":
            orders = await ctx.gateway.list_orders(
                ctx.identity.merchant_id, since=ctx.now - WINDOW, limit=200
            )
            return await self.repair(ctx, orders, scope="recent")
        order_no = ctx.entity("order_no")
        if not order_no:
            return UNHANDLED
        return await self.check_one(ctx, order_no)

    async def check_one(self, ctx: Context, order_no: str) -> Outcome:
        order = await merchant_order(ctx, order_no)
        if order is None:
            return self.finish(
                ctx,
                [ctx.say("flows/order_not_found", ctx.human_button(), order_no=order_no)],
            )
        return await self.repair(ctx, [order], scope="one")

    async def repair(self, ctx: Context, orders: list[Order], *, scope: str) -> Outcome:
        mismatched = [o for o in orders if not o.in_sync]
        fixed: list[SyncLine] = []
        still: list[SyncLine] = []
        for order in mismatched:
            result = await ctx.gateway.resync_order(order.order_no)
            line: SyncLine = {
                "order_no": order.order_no,
                "amount": str(order.amount),
                "before": result.before.value,
                "after": result.after.value,
                "channel": result.channel_status.value if result.channel_status else "",
            }
            (fixed if result.in_sync else still).append(line)
        findings: Findings = {
            "checked": len(orders),
            "resynced": fixed,
            "still_different": still,
        }
        values: dict[str, Any] = {
            "checked": len(orders),
            "fixed": fixed,
            "still": still,
            "scope": scope,
            "order_no": orders[0].order_no if len(orders) == 1 else "",
            "status": orders[0].status.value if len(orders) == 1 else "",
            "amount": str(orders[0].amount) if len(orders) == 1 else "",
        }
        if still:
            reply = ctx.say("flows/data_sync/result", ctx.human_button(), **values)
            return self.finish(ctx, [reply], findings=findings)
        return self.finish(ctx, [ctx.say("flows/data_sync/result", **values)], findings=findings)
