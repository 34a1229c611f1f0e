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

from bot.context import Context, Findings, FlowState, Outcome
from bot.diagnostics.flow import Slot, Step
from bot.diagnostics.order_lookup import OrderLookupFlow
from bot.diagnostics.payment_link import PaymentLinkFlow
from bot.nlu.values import read_amount, read_order_no
from bot.nlu.words import few
from bot.platform.models import AttemptStatus, Order, OrderStatus
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

RECENT = timedelta(days=7)
PAGE = 3  # failed orders offered at once, most recent first; a "more" button shows the next ones
# An order picked by its amount is named in a few words ("the 4999 one", "35块那笔").
_PICK_WORDS = 6
_PICK_CHARS = 10


class PaymentFailureFlow(OrderLookupFlow):
    name = "payment_failure"
    label = Label.DIAGNOSE_PAYMENT_FAILURE
    steps: ClassVar[Mapping[str, Step]] = {
        "order": Step(Slot.ORDER_NO, "flows/payment_failure/pick_order", ("verify", "offer")),
        "verify": Step(Slot.PROOF, "flows/ask_verification", ("offer",)),
        "offer": Step(
            Slot.CHOICE,
            "flows/payment_failure/explained",
            accepts=((Label.ACTION_PAYMENT_LINK, "newlink:yes"),),
            optional=True,
        ),
    }

    async def ask_order(self, ctx: Context) -> Outcome:
        page = await self._failed_page(ctx, 0)
        return page if page is not None else await super().ask_order(ctx)

    async def step_order(self, ctx: Context, state: FlowState) -> Result:
        if ctx.argument.startswith("more:"):
            more = ctx.argument.removeprefix("more:")
            page = await self._failed_page(ctx, int(more) if more.isdigit() else 0)
            return page if page is not None else UNHANDLED
        result = await super().step_order(ctx, state)
        if result is UNHANDLED:
            return await self._by_amount(ctx, state)
        return result

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        result = await super().correct(ctx, state)
        if result is UNHANDLED and state.step == "offer":
            # "and the one for 35 bucks?" after an explanation: that other failed order.
            return await self._by_amount(ctx, state)
        return result

    async def another(self, ctx: Context, order_no: str) -> Outcome | None:
        """ "and the one for 35 bucks?" right after an order's reply: the recent failed order
        of that amount, explained; None when the message names none."""
        result = await self._by_amount(ctx, FlowState(self.name, "order", {"order_no": order_no}))
        return None if result is UNHANDLED else result

    async def _by_amount(self, ctx: Context, state: FlowState) -> Result:
        """ "the 4999 one": the one recent failed order of that amount, shown on a button or
        not, named in a short message (a longer one with an amount says something else)."""
        text = ctx.message.text
        amount = read_amount(text)
        if (
            amount is None
            or not few(text, _PICK_WORDS, _PICK_CHARS)
            or read_order_no(text) is not None
        ):
            return UNHANDLED
        held = state.slots.get("order_no")
        picks = [o for o in await self._failed(ctx) if o.amount == amount and o.order_no != held]
        if len(picks) != 1:
            return UNHANDLED
        return await self.with_order(ctx, picks[0].order_no, retry=True)

    async def _failed(self, ctx: Context) -> list[Order]:
        """The merchant's recent failed orders, newest first."""
        if not (ctx.identity.is_merchant and ctx.identity.merchant_id):
            return []
        orders = await ctx.gateway.list_orders(ctx.identity.merchant_id, since=ctx.now - RECENT)
        return sorted(
            (o for o in orders if o.last_failure is not None and o.status != OrderStatus.PAID),
            key=lambda o: o.created_at,
            reverse=True,
        )

    async def _failed_page(self, ctx: Context, offset: int) -> Outcome | None:
        """The merchant's recent failed orders from `offset` on, PAGE at a time, newest first,
        with a "more" button while others remain; None when there are none to offer."""
        failed = await self._failed(ctx)
        shown = failed[offset : offset + PAGE]
        if not shown:
            return None
        buttons = [
            Button(f"{o.order_no[-6:]} ¥{o.amount}", f"flow:order:{o.order_no}") for o in shown
        ]
        if len(failed) > offset + PAGE:
            buttons.append(Button(ctx.ui("more"), f"flow:more:{offset + PAGE}"))
        return self.wait(ctx, "order", "flows/payment_failure/pick_order", *buttons)

    async def about(self, ctx: Context, order: Order, slots: dict[str, object]) -> Outcome:
        outcome = await self._explain(ctx, order)
        code = order.last_failure
        caught = [
            i for i in ctx.incidents if i.concerns(order.method.value, code.value if code else None)
        ]
        if caught and order.status != OrderStatus.PAID and outcome.replies:
            # A known platform-wide problem is said first: it is not the merchant's fault.
            line = ctx.incident_line("incidents/diagnosis", caught[0])
            outcome.replies[0] = outcome.replies[0].prefaced(line)
            outcome.incidents_asked = [i.id for i in caught]
            outcome.findings["incident"] = caught[0].id
        return outcome

    async def _explain(self, ctx: Context, order: Order) -> Outcome:
        code = order.last_failure
        findings: Findings = {
            "order_no": order.order_no,
            "status": order.status.value,
            "amount": str(order.amount),
            "failure_code": code.value if code else None,
        }
        if code is None or order.status in (OrderStatus.PENDING, OrderStatus.CREATED):
            paid = order.status == OrderStatus.PAID
            # The channel disagrees with the platform: the next step is on a button, a re-sync
            # for the merchant (as on the order's summary), a person for anyone.
            next_steps: list[Button] = []
            if not order.in_sync:
                if ctx.identity.is_merchant:
                    resync = Button(ctx.ui("order_resync"), f"order:sync:{order.order_no}")
                    next_steps.append(resync)
                next_steps.append(ctx.human_button())
            reply = ctx.say(
                "flows/payment_failure/no_failure",
                *next_steps,
                order_no=order.order_no,
                amount=str(order.amount),
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
            return self.finish(ctx, [reply], findings=findings)
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
                slots={"amount": str(order.amount), "order_no": order.order_no},
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
