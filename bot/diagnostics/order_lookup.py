"""The first turns both order flows share: get an order number, then the right to see the order.

A bound merchant sees its own orders at once. A customer gives the order number and then one
proof: the last 4 digits of the payer's phone, or the exact amount. Wrong proofs are counted per
order, per client and per chat (`bot.diagnostics.access.LIMITS`); a chat or client over its limit
is told to wait, an order over its limit reads exactly as a wrong proof. Not found and not
verified read the same.
"""

from __future__ import annotations

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.access import (
    Limit,
    merchant_order,
    order_locked,
    read_proofs,
    verification_locked,
    wrong_proof_keys,
)
from bot.diagnostics.flow import Flow
from bot.platform.models import Order
from bot.routing import UNHANDLED, Result


class OrderLookupFlow(Flow):
    """Base for flows about one order: subclasses implement `about(ctx, order)`."""

    async def about(self, ctx: Context, order: Order, slots: dict[str, object]) -> Outcome:
        raise NotImplementedError

    async def start(self, ctx: Context) -> Outcome:
        order_no = ctx.entity("order_no")
        if order_no:
            return await self.with_order(ctx, order_no)
        return await self.ask_order(ctx)

    def locked(self, ctx: Context, limit: Limit) -> Outcome:
        minutes = int(limit.window.total_seconds() // 60)
        reply = ctx.say("flows/verify_locked", ctx.human_button(), minutes=minutes)
        return self.finish(ctx, [reply], solved=False)

    async def ask_order(self, ctx: Context) -> Outcome:
        return self.wait(ctx, "order", "flows/ask_order_no")

    async def step_order(self, ctx: Context, state: FlowState) -> Result:
        order_no = (
            ctx.argument.removeprefix("order:") if ctx.argument.startswith("order:") else None
        )
        order_no = order_no or ctx.entity("order_no")
        if not order_no:
            return UNHANDLED
        return await self.with_order(ctx, order_no)

    async def with_order(self, ctx: Context, order_no: str) -> Outcome:
        if ctx.identity.is_merchant:
            order = await merchant_order(ctx, order_no)
            if order is None:
                return self.finish(
                    ctx,
                    [ctx.say("flows/order_not_found", ctx.human_button(), order_no=order_no)],
                    solved=False,
                )
            return await self.about(ctx, order, {})
        if locked := await verification_locked(ctx):
            return self.locked(ctx, locked)
        return self.wait(
            ctx, "verify", "flows/ask_verification", slots={"order_no": order_no}, order_no=order_no
        )

    async def step_verify(self, ctx: Context, state: FlowState) -> Result:
        proofs = read_proofs(ctx.message.text)
        if not proofs:
            return UNHANDLED
        order_no = str(state.slots["order_no"])
        if len(proofs) > 1:
            # Nothing is compared: one message buys one try, not two.
            return self.wait(
                ctx,
                "verify",
                "flows/ask_verification",
                slots=state.slots,
                extra=[ctx.say("flows/one_proof")],
                order_no=order_no,
            )
        if locked := await verification_locked(ctx):
            return self.locked(ctx, locked)
        not_verified = [ctx.say("flows/not_verified", order_no=order_no)]
        wrong = wrong_proof_keys(ctx, order_no)
        if await order_locked(ctx, order_no):
            # Every proof counts while the order is locked, the right one too, so neither the
            # reply nor the writes tell a guesser that this one was right.
            return self.finish(ctx, not_verified, solved=False, rate_events=wrong)
        order = await ctx.gateway.get_order(order_no)
        if order is None or not proofs[0].matches(order):
            return self.finish(ctx, not_verified, solved=False, rate_events=wrong)
        outcome = await self.about(ctx, order, {"verified": True})
        # The customer hears when this order's payment arrives (platform notifications).
        outcome.watch_orders.append(order.order_no)
        return outcome
