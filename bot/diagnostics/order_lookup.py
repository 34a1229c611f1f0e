"""The first turns both order flows share: get an order number, then the right to see the order.

A bound merchant sees its own orders at once. A customer gives the order number and then one
proof: the last 4 digits of the payer's phone, or the exact amount. Wrong proofs are counted per
order, per client and per chat (`bot.diagnostics.access.LIMITS`); a chat or client over its limit
is told to wait, an order over its limit reads exactly as a wrong proof. Not found and not
verified read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from bot.context import SUBJECT, Context, FlowState, Outcome, Subject
from bot.diagnostics.access import (
    Limit,
    ProofKind,
    merchant_order,
    order_locked,
    read_proofs,
    verification_locked,
    wrong_proof_keys,
)
from bot.diagnostics.flow import Flow, Slot, Step
from bot.nlu.values import read_amount, read_order_no
from bot.platform.models import Order
from bot.routing import UNHANDLED, Result
from bot.types import Button, Reply

# How far back an order named by its amount is looked for.
_RECENT = timedelta(days=7)


class OrderLookupFlow(Flow):
    """Base for flows about one order: subclasses implement `about(ctx, order)`."""

    steps: ClassVar[Mapping[str, Step]] = {
        "order": Step(Slot.ORDER_NO, "flows/ask_order_no", ("verify",)),
        "verify": Step(Slot.PROOF, "flows/ask_verification"),
    }

    async def about(self, ctx: Context, order: Order, slots: dict[str, object]) -> Outcome:
        raise NotImplementedError

    async def start(self, ctx: Context) -> Outcome:
        order_no = (
            ctx.entity("order_no")
            or read_order_no(ctx.message.text)
            or await self._named_by_amount(ctx)
        )
        if order_no:
            return await self.with_order(ctx, order_no)
        return await self.ask_order(ctx)

    async def _named_by_amount(self, ctx: Context) -> str | None:
        """A merchant's story that names the order by its amount only ("…she paid with the QR
        code, the amount was 59.90, can you check"): the one recent order of that amount.
        Never for a customer, who may only ask about an order by its number."""
        merchant_id = ctx.identity.merchant_id
        amount = read_amount(ctx.message.text)
        if amount is None or not ctx.identity.is_merchant or merchant_id is None:
            return None
        since = ctx.now - _RECENT
        orders = await ctx.gateway.list_orders(merchant_id, since=since)
        named = [order.order_no for order in orders if order.amount == amount]
        return named[0] if len(named) == 1 else None

    def locked(self, ctx: Context, limit: Limit) -> Outcome:
        minutes = int(limit.window.total_seconds() // 60)
        reply = ctx.say("flows/verify_locked", ctx.human_button(), minutes=minutes)
        return self.finish(ctx, [reply])

    async def ask_order(self, ctx: Context) -> Outcome:
        return self.wait(ctx, "order", "flows/ask_order_no")

    async def step_order(self, ctx: Context, state: FlowState) -> Result:
        order_no = (
            ctx.argument.removeprefix("order:") if ctx.argument.startswith("order:") else None
        )
        order_no = order_no or ctx.entity("order_no") or read_order_no(ctx.message.text)
        if not order_no:
            return UNHANDLED
        return await self.with_order(ctx, order_no, retry=True)

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        # Another order number once the flow has one (at the proof step, at the offer after an
        # explanation: "and BT…08?", "打错了，是BT…22"): that order instead.
        order_no = read_order_no(ctx.message.text) if state.step != "order" else None
        if order_no is None or order_no == state.slots.get("order_no"):
            return UNHANDLED
        return await self.with_order(ctx, order_no, retry=True)

    async def with_order(self, ctx: Context, order_no: str, *, retry: bool = False) -> Outcome:
        if ctx.identity.is_merchant:
            order = await merchant_order(ctx, order_no)
            if order is None:
                # The merchant's wrong input, not the bot's failure: say so and ask again.
                asked = self.wait(
                    ctx,
                    "order",
                    "flows/ask_order_no",
                    ctx.human_button(),
                    extra=[ctx.say("flows/order_not_found", order_no=order_no)],
                )
                return self.asked_again(asked, ctx, self.open_state(ctx))
            return await self.about(ctx, order, {})
        subject: Subject = ctx.conversation.slots.get(SUBJECT) or {}
        if subject.get("verified") and subject.get("order_no") == order_no:
            # A follow-up about the order the customer proved in the last reply ("so should
            # i pay again?"): the proof holds for it, and only for it.
            order = await ctx.gateway.get_order(order_no)
            if order is not None:
                return self._verified(await self.about(ctx, order, {"verified": True}), order)
        if locked := await verification_locked(ctx):
            return self.locked(ctx, locked)
        proofs = read_proofs(ctx.message.text)
        if proofs and all(proof.kind is ProofKind.PHONE for proof in proofs):
            # "BT…09 手机尾号0009": the phone digits came with the number, and are checked at
            # once (counted like any other try). An amount beside it is more often the
            # order's own, pasted with it ("订单编号:BT… 金额15.5"), and is asked for.
            checked = await self.step_verify(
                ctx, FlowState(self.name, "verify", {"order_no": order_no})
            )
            if checked is not UNHANDLED:
                return checked
        return self.wait(
            ctx, "verify", "flows/ask_verification", slots={"order_no": order_no}, order_no=order_no
        )

    @staticmethod
    def _verified(outcome: Outcome, order: Order) -> Outcome:
        """A customer's proved order: it is what the reply was about, and the customer hears
        when its payment arrives (platform notifications)."""
        outcome.findings["verified"] = True
        if order.order_no not in outcome.watch_orders:
            outcome.watch_orders.append(order.order_no)
        return outcome

    def not_verified(
        self, ctx: Context, state: FlowState, replies: list[Reply], wrong: list[str]
    ) -> Outcome:
        """A wrong proof counts toward the locks and the customer may try again (or give up,
        or ask a person): a typo in the phone digits is not the end of the conversation."""
        order_no = str(state.slots["order_no"])
        outcome = self.wait(
            ctx,
            "verify",
            "flows/ask_verification",
            Button(ctx.ui("cancel"), "cancel"),
            ctx.human_button(),
            slots=state.slots,
            extra=replies,
            order_no=order_no,
        )
        outcome.rate_events = wrong
        return self.asked_again(outcome, ctx, state)

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
            return self.not_verified(ctx, state, not_verified, wrong)
        order = await ctx.gateway.get_order(order_no)
        if order is None or not proofs[0].matches(order):
            return self.not_verified(ctx, state, not_verified, wrong)
        return self._verified(await self.about(ctx, order, {"verified": True}), order)
