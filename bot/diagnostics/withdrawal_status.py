"""`status.withdrawal`: where is my withdrawal? Status and expected arrival in a sentence or two.

Withdrawals arrive within 1-3 working days (weekends and public holidays not counted,
`bot.diagnostics.calendar`); the reply names a holiday in the way. One still open after that is
overdue and gets a person. A chat with no merchant bound hears that general fact and how to bind;
the request is kept, and the actual withdrawal is looked up as soon as the chat binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, tzinfo
from decimal import Decimal
from typing import Any, ClassVar

from bot.context import Context, Findings, FlowState, Outcome
from bot.diagnostics.calendar import add_working_days, working_days_between
from bot.diagnostics.flow import Flow, Slot, Step
from bot.nlu.values import Option, read_amount, read_choice, read_withdrawal_id
from bot.platform.models import Withdrawal, WithdrawalStatus
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

PROMISED_DAYS = 3
PAGE = 3  # withdrawals offered at once, most recent first; a "more" button shows the next ones
AMOUNT_SEARCH = 20  # how far back "the 2500 one" looks for a withdrawal of that amount


# The day a withdrawal was requested, as people name it, by how many days before today.
_DAYS_AGO = {
    0: ("today", "今天"),
    1: ("yesterday", "昨天", "昨日"),
    2: ("前天",),
}


def _said_amount(ctx: Context) -> Decimal | None:
    """The amount the message names: its entity (one a follow-up carried along), else read from
    the text."""
    given = ctx.entity("amount")
    if given:
        return Decimal(given)
    return read_amount(ctx.message.text) if ctx.message.text else None


def _named_by(withdrawal: Withdrawal, today: date, zone: tzinfo) -> tuple[str, ...]:
    """Words that pick a withdrawal out of a list: its status ("the failed one", "失败的") and
    the day it was requested ("the one from yesterday", "昨天那笔")."""
    status = {
        WithdrawalStatus.FAILED: ("failed", "失败", "没成功"),
        WithdrawalStatus.PAID: ("paid", "arrived", "到账", "已到"),
        WithdrawalStatus.PROCESSING: ("processing", "处理中"),
        WithdrawalStatus.REQUESTED: ("requested", "new", "latest", "刚提交", "最新", "刚申请"),
    }.get(withdrawal.status, ())
    ago = (today - withdrawal.requested_at.astimezone(zone).date()).days
    return (*status, *_DAYS_AGO.get(ago, ()))


class WithdrawalStatusFlow(Flow):
    name = "withdrawal_status"
    steps: ClassVar[Mapping[str, Step]] = {"pick": Step(Slot.CHOICE, "flows/withdrawal/pick")}
    label = Label.STATUS_WITHDRAWAL

    async def start(self, ctx: Context) -> Outcome:
        if not ctx.identity.is_merchant or ctx.identity.merchant_id is None:
            return self.bind_first(ctx, ctx.say("flows/withdrawal/unbound"))
        # "and the 800 one?": an amount picks one from the start; "提现失败是什么原因" describes
        # the problem, and the list to pick from comes first.
        wanted = ctx.entity("withdrawal_id")
        if not wanted and (amount := _said_amount(ctx)) is not None:
            wanted = await self._described(ctx, 0, amount)
        if wanted:
            return await self.one(ctx, wanted)
        recent = await ctx.gateway.list_withdrawals(ctx.identity.merchant_id, limit=PAGE + 1)
        if not recent:
            return self.finish(ctx, [ctx.say("flows/withdrawal/none")])
        if len(recent) == 1:
            return self.report(ctx, recent[0])
        return await self.page(ctx, 0)

    async def page(self, ctx: Context, offset: int) -> Outcome:
        """Offer the withdrawals from `offset` on, PAGE at a time, with "more" if others remain."""
        assert ctx.identity.merchant_id is not None
        listed = await ctx.gateway.list_withdrawals(
            ctx.identity.merchant_id, limit=offset + PAGE + 1
        )
        shown = listed[offset : offset + PAGE]
        buttons = [Button(f"{w.id} ¥{w.amount}", f"flow:pick:{w.id}") for w in shown]
        if len(listed) > offset + PAGE:
            buttons.append(Button(ctx.ui("more"), f"flow:more:{offset + PAGE}"))
        # Listed in the text too: not every channel shows buttons, and a merchant answers by
        # what it sees ("W0001", "the 800 one", "失败的那笔").
        listed_here = [
            {
                "id": w.id,
                "amount": str(w.amount),
                "status": w.status.value,
                "requested": ctx.local(w.requested_at),
            }
            for w in shown
        ]
        return self.wait(
            ctx,
            "pick",
            "flows/withdrawal/pick",
            *buttons,
            slots={"offset": offset},
            withdrawals=listed_here,
        )

    async def step_pick(self, ctx: Context, state: FlowState) -> Result:
        more = ctx.argument.removeprefix("more:") if ctx.argument.startswith("more:") else None
        if more is not None and ctx.identity.merchant_id is not None:
            return await self.page(ctx, int(more) if more.isdigit() else 0)
        wanted = ctx.argument.removeprefix("pick:") if ctx.argument.startswith("pick:") else None
        wanted = wanted or ctx.entity("withdrawal_id") or read_withdrawal_id(ctx.message.text)
        if not wanted:
            offset = int(state.slots.get("offset") or 0)
            wanted = await self._described(ctx, offset, _said_amount(ctx))
        if not wanted:
            return UNHANDLED
        return await self.one(ctx, wanted, state)

    async def _described(self, ctx: Context, offset: int, amount: Decimal | None) -> str | None:
        """The withdrawal the message describes: "2500那笔", "the 800 one" (the one of that
        amount, when only one of the recent ones, shown or not yet, has it; one read serves
        both), "失败的那笔", "the one from yesterday" (among those shown from `offset`)."""
        if ctx.identity.merchant_id is None or (amount is None and not ctx.message.text):
            return None
        limit = max(offset + PAGE, AMOUNT_SEARCH) if amount is not None else offset + PAGE
        listed = await ctx.gateway.list_withdrawals(ctx.identity.merchant_id, limit=limit)
        same = [w for w in listed[:AMOUNT_SEARCH] if amount is not None and w.amount == amount]
        if len(same) == 1:
            return same[0].id
        recent = listed[offset : offset + PAGE]
        today = ctx.now.astimezone(ctx.zone).date()
        options = [Option(w.id, f"flow:pick:{w.id}", _named_by(w, today, ctx.zone)) for w in recent]
        index = read_choice(ctx.message.text, options)
        return recent[index].id if index is not None else None

    async def another(self, ctx: Context, shown: str) -> Outcome | None:
        """ "失败那笔呢", "and the one from yesterday?" right after withdrawal `shown`: the
        other recent withdrawal those words name, when exactly one does."""
        if ctx.identity.merchant_id is None or not ctx.message.text:
            return None
        listed = await ctx.gateway.list_withdrawals(ctx.identity.merchant_id, limit=PAGE + 1)
        others = [w for w in listed if w.id != shown]
        today = ctx.now.astimezone(ctx.zone).date()
        options = [Option(w.id, f"flow:pick:{w.id}", _named_by(w, today, ctx.zone)) for w in others]
        index = read_choice(ctx.message.text, options)
        return self.report(ctx, others[index]) if index is not None else None

    async def one(self, ctx: Context, wanted: str, state: FlowState | None = None) -> Outcome:
        found = await ctx.gateway.get_withdrawal(wanted)
        if found is None or found.merchant_id != ctx.identity.merchant_id:
            # A mistyped id is the merchant's wrong input: say so, and offer the withdrawals
            # there are (or a person, when there are none) to pick from.
            missing = ctx.say("flows/withdrawal/not_found", id=wanted)
            assert ctx.identity.merchant_id is not None
            if not await ctx.gateway.list_withdrawals(ctx.identity.merchant_id, limit=1):
                return self.finish(ctx, [replace(missing, buttons=(ctx.human_button(),))])
            asked = await self.page(ctx, 0)
            asked.replies.insert(0, missing)
            return self.asked_again(asked, ctx, state)
        return self.report(ctx, found)

    def report(self, ctx: Context, withdrawal: Withdrawal) -> Outcome:
        requested = withdrawal.requested_at.astimezone(ctx.zone)
        span = add_working_days(requested.date(), PROMISED_DAYS)
        today = ctx.now.astimezone(ctx.zone).date()
        open_ = withdrawal.status in (WithdrawalStatus.REQUESTED, WithdrawalStatus.PROCESSING)
        overdue = open_ and working_days_between(requested.date(), today) > PROMISED_DAYS
        values: dict[str, Any] = {
            "id": withdrawal.id,
            "amount": str(withdrawal.amount),
            "status": withdrawal.status.value,
            "requested": ctx.local(withdrawal.requested_at),
            "latest": span.end.isoformat(),
            # chinese_calendar.Holiday: the templates name each in their language.
            "holidays": span.holidays,
            "holidays_known": span.covered,
            "paid_at": ctx.local(withdrawal.paid_at) if withdrawal.paid_at else "",
            "reason": "",
            "advice": "",
            "overdue": overdue,
        }
        words = ctx.knowledge.withdrawal_failure(withdrawal.failure_reason)
        if words is not None:
            values["reason"] = words.cause[ctx.language]
            values["advice"] = words.advice[ctx.language]
        findings: Findings = {
            "withdrawal": withdrawal.id,
            "status": withdrawal.status.value,
            "overdue": overdue,
            "failure_reason": withdrawal.failure_reason,
        }
        if withdrawal.status == WithdrawalStatus.FAILED or overdue:
            reply = ctx.say("flows/withdrawal/status", ctx.human_button(), **values)
            return self.finish(ctx, [reply], findings=findings)
        return self.finish(ctx, [ctx.say("flows/withdrawal/status", **values)], findings=findings)
